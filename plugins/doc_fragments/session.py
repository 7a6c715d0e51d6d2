# -*- coding: utf-8 -*-
# Copyright: imagestore.upload contributors
# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import absolute_import, division, print_function

__metaclass__ = type


class ModuleDocFragment(object):
    # How the session modules name a session: by id, or by destination (each provider's SELECTORS fragment).
    DOCUMENTATION = r'''
options:
  session_id:
    description:
      - Id of the upload session (Service Fabric session GUID, vSphere update session id, ZStack long job uuid).
      - Give it, or the destination options of the provider (Service Fabric O(path), vSphere O(library) and O(item),
        ZStack O(image_id)); not both.
    type: str
notes:
  - States are the same words for every provider (V(active), V(suspended), V(complete), V(done), V(failed),
    V(canceled), V(expired)); the server's own word is kept as C(raw_state).
'''
