# -*- coding: utf-8 -*-
# Copyright: imagestore.upload contributors
# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import absolute_import, division, print_function

__metaclass__ = type


class ModuleDocFragment(object):
    # vSphere options of image_upload (imagestore.upload.vsphere)
    DOCUMENTATION = r'''
options:
  library:
    description:
      - vSphere. Name or id of the content library.
      - Required with O(provider=vsphere).
    type: str
  item:
    description:
      - vSphere. Name of the library item; created if missing (of type V(iso) for C(.iso), V(ovf) for C(.ovf) or
        C(.ova), else V(file)). With C(state=absent), the item is deleted with its files and update sessions.
      - Required with O(provider=vsphere).
    type: str
  file_name:
    description:
      - vSphere. Name of the file inside the item; defaults to the base name of O(src).
    type: str
  keep_session_on_failure:
    description:
      - vSphere. On a retryable failure, leave the update session ACTIVE so the next run resumes it
        (it expires on its own when idle). Otherwise a failed session is failed, canceled and deleted, and an item
        this run created is deleted with it unless it holds files.
    type: bool
    default: false
'''

    # vSphere options of the session modules (imagestore.upload.vsphere.SELECTORS)
    SELECTORS = r'''
options:
  library:
    description:
      - vSphere. Name or id of the content library; with O(item), names the item's update sessions (instead of O(session_id)).
    type: str
  item:
    description:
      - vSphere. Name of the library item whose update sessions are meant.
    type: str
'''

    # vSphere options of every module (imagestore.upload.vsphere.COMMON)
    COMMON = r'''
options:
  api_style:
    description:
      - vSphere. V(api) uses the C(/api) endpoints of vCenter 7.0 and later, V(rest) the older C(/rest) ones
        (also what vcsim serves), V(auto) probes once per run and picks C(/api) where it answers.
    type: str
    default: auto
    choices: [auto, api, rest]
'''
