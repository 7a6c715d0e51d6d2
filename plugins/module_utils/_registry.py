# -*- coding: utf-8 -*-
# Copyright: imagestore.upload contributors
# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Provider name -> protocol class (private). A new provider adds one line here."""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

from ansible_collections.imagestore.upload.plugins.module_utils._servicefabric_protocol import ServiceFabric
from ansible_collections.imagestore.upload.plugins.module_utils._vsphere_protocol import VSphere
from ansible_collections.imagestore.upload.plugins.module_utils._zstack_protocol import ZStack

PROVIDERS = {
    "servicefabric": ServiceFabric,
    "vsphere": VSphere,
    "zstack": ZStack,
}
