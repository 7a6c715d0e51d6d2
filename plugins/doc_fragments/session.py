# -*- coding: utf-8 -*-
# Copyright: imagestore.upload contributors
# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import absolute_import, division, print_function

__metaclass__ = type


class ModuleDocFragment(object):
    DOCUMENTATION = r'''
options:
  session_id:
    description:
      - Id of the upload session (Service Fabric session GUID, vSphere update session id, ZStack long job uuid).
    type: str
  path:
    description:
      - Service Fabric. Image store relative path whose sessions are meant (instead of O(session_id)).
    type: str
  image_id:
    description:
      - ZStack. The upload's image id (default of M(imagestore.upload.image_upload) is the MD5 of the file), instead of O(session_id).
    type: str
  timeout:
    description:
      - Seconds the operation may take in all (waiting for a commit to finish, for example); V(0) means no limit.
    type: int
    default: 0
'''
