# -*- coding: utf-8 -*-
# Copyright: imagestore.upload contributors
# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import absolute_import, division, print_function

__metaclass__ = type


class ModuleDocFragment(object):
    DOCUMENTATION = r'''
options:
  name:
    description:
      - ZStack. Name of the image.
    type: str
  backup_storage:
    description:
      - ZStack. Name or uuid of the backup storage.
    type: str
  format:
    description:
      - ZStack. Image format (V(qcow2), V(raw), V(iso), V(vmdk), ...). Default from the file extension.
    type: str
  media_type:
    description:
      - ZStack. Default V(ISO) for C(.iso) files, else V(RootVolumeTemplate).
    type: str
    choices: [RootVolumeTemplate, ISO, DataVolumeTemplate]
  platform:
    description:
      - ZStack. Guest platform; default V(Linux).
    type: str
    choices: [Linux, Windows, Other, Paravirtualization, WindowsVirtio]
  image_id:
    description:
      - ZStack. The upload's id, which finds an interrupted upload again; default the MD5 of the file.
    type: str
'''

    SESSION = r'''
options:
  image_id:
    description:
      - ZStack. The upload's image id (default of M(imagestore.upload.image_upload) is the MD5 of the file), instead of O(session_id).
    type: str
'''

    ABSENT = r'''
options:
  purge:
    description:
      - ZStack. Also delete and expunge the half-uploaded image of a canceled upload job.
    type: bool
    default: false
'''
