# -*- coding: utf-8 -*-
# Copyright: imagestore.upload contributors
# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import absolute_import, division, print_function

__metaclass__ = type


class ModuleDocFragment(object):
    # Service Fabric's options of image_upload (plugins/module_utils/_servicefabric_protocol.py, ServiceFabric.options).
    DOCUMENTATION = r'''
options:
  path:
    description:
      - Service Fabric. Image store relative path of the file (or application package folder), for example
        V(images/disk.vhd). Absolute paths, C(..) segments and control characters are refused.
      - Required with O(provider=servicefabric).
    type: str
  compress:
    description:
      - Service Fabric. For an application package folder, upload each code, config and data package as a C(.zip)
        beside its service manifest, in the layout the cluster unpacks when the application type is provisioned.
        The archives are built byte for byte the same from the same files, so re-runs and resumes still compare
        and continue by content.
    type: bool
    default: false
'''

    # Service Fabric's options of the session modules (ServiceFabric.selectors).
    SELECTORS = r'''
options:
  path:
    description:
      - Service Fabric. Image store relative path whose upload sessions are meant (instead of O(session_id)).
    type: str
'''
