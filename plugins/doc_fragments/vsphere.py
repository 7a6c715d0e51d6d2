# -*- coding: utf-8 -*-
# Copyright: imagestore.upload contributors
# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import absolute_import, division, print_function

__metaclass__ = type


class ModuleDocFragment(object):
    DOCUMENTATION = r'''
options:
  library:
    description:
      - vSphere. Name or id of the content library.
    type: str
  item:
    description:
      - vSphere. Name of the library item; created if missing.
    type: str
  file_name:
    description:
      - vSphere. Name of the file inside the item; defaults to the base name of O(src).
    type: str
  keep_session_on_failure:
    description:
      - vSphere. On a retryable failure, leave the update session ACTIVE so the next run resumes it
        (it expires on its own when idle). Otherwise a failed session is failed, canceled and deleted.
    type: bool
    default: false
  api_style:
    description:
      - vSphere. V(api) uses the C(/api) endpoints of vCenter 7.0 and later, V(rest) the older C(/rest) ones
        (also what vcsim serves), V(auto) probes once per run and picks C(/api) where it answers.
    type: str
    default: auto
    choices: [auto, api, rest]
'''

    SESSION = r'''
options:
  library:
    description:
      - vSphere. Name or id of the content library; with O(item), names the item's update session.
    type: str
  item:
    description:
      - vSphere. Name of the library item whose update session is meant.
    type: str
  api_style:
    description:
      - vSphere. V(api) uses the C(/api) endpoints of vCenter 7.0 and later, V(rest) the older C(/rest) ones
        (also what vcsim serves), V(auto) probes once per run and picks C(/api) where it answers.
    type: str
    default: auto
    choices: [auto, api, rest]
'''
