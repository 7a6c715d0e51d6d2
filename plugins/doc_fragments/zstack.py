# -*- coding: utf-8 -*-
# Copyright: imagestore.upload contributors
# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import absolute_import, division, print_function

__metaclass__ = type


class ModuleDocFragment(object):
    # Options of imagestore.upload.image_upload for provider zstack
    DOCUMENTATION = r'''
options:
  name:
    description:
      - ZStack. Name of the image. Required with O(provider=zstack).
      - With O(state=absent), every image of this name on O(backup_storage) is deleted and expunged.
    type: str
  backup_storage:
    description:
      - ZStack. Name or uuid of the backup storage (an ImageStore backup storage that is Connected and Enabled).
        Required with O(provider=zstack).
    type: str
  format:
    description:
      - ZStack. Image format (V(qcow2), V(raw), V(iso), V(vmdk), ...). Default from the extension of O(src)
        (C(.qcow2), C(.raw) and C(.img), C(.vmdk), C(.iso)).
    type: str
  media_type:
    description:
      - ZStack. Default V(ISO) for the format V(iso), else V(RootVolumeTemplate).
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
      - An unfinished upload job for this id is resumed only when it was submitted by this collection for the same
        content (its description records the file's MD5 and size). One submitted for other content (the file was
        rewritten) is canceled and its image deleted, with a warning; one submitted by another client is refused.
    type: str
  replace:
    description:
      - ZStack. What happens to the other Ready images named O(name) on O(backup_storage) when the file is uploaded
        (or found already uploaded).
      - V(true) (the default) deletes and expunges them once the new image is Ready and verified, so the name
        holds exactly the uploaded content; the result lists them in RV(ignore:replaced) and the diff shows the
        replacement. Check mode says which images would be replaced.
      - V(false) refuses, before anything is sent, when such an image exists, and names it.
    type: bool
    default: true
'''

    # Options of upload_session_info, upload_session_commit and upload_session_absent for provider zstack
    SELECTORS = r'''
options:
  image_id:
    description:
      - ZStack. The upload's image id (default of M(imagestore.upload.image_upload) is the MD5 of the file), instead
        of O(session_id) (the long job uuid).
      - M(imagestore.upload.upload_session_info) lists the unfinished upload jobs of this id; commit and absent also
        see the finished jobs this collection submitted for it.
    type: str
'''

    # Options of upload_session_absent only, for provider zstack
    ABSENT = r'''
options:
  purge:
    description:
      - ZStack. Also delete (C(deleteMode=Permissive)) and expunge the
        image of an upload job that did not succeed. The image of a Succeeded job is never touched.
    type: bool
    default: false
'''
