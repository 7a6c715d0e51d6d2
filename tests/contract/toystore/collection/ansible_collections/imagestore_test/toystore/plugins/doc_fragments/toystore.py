# -*- coding: utf-8 -*-
# Copyright: imagestore.upload contributors
# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import absolute_import, division, print_function

__metaclass__ = type


class ModuleDocFragment(object):
    # image_upload: the toy store's own options
    DOCUMENTATION = r'''
options:
  path:
    description:
      - Toy store. Relative path of the file in the store, for example V(images/disk.img); required.
      - The upload session's id is derived from O(path), the size and the SHA-256 of the file, so the same
        bytes from any host resume it.
    type: str
  timeout:
    description:
      - Seconds the whole run may take; V(0) means no limit.
    type: int
    default: 0
  use_proxy:
    description:
      - Use the proxy the environment names, as M(ansible.builtin.uri) does.
    type: bool
    default: true
'''

    # upload_session_info, upload_session_commit, upload_session_absent: how a session is named
    SESSION = r'''
options:
  session_id:
    description:
      - Id of the upload session (32 lower-case hex digits). Give O(session_id) or O(path), not both.
    type: str
  path:
    description:
      - Toy store. Path whose upload sessions are meant.
    type: str
  timeout:
    description:
      - Seconds the operation may take; V(0) means no limit.
    type: int
    default: 0
  use_proxy:
    description:
      - Use the proxy the environment names, as M(ansible.builtin.uri) does.
    type: bool
    default: true
'''
