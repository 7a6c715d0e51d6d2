# -*- coding: utf-8 -*-
# Copyright: imagestore.upload contributors
# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Provider name -> protocol class (private). A new provider adds one line here."""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

from ansible_collections.imagestore.upload.plugins.module_utils._legacy import bridge
from ansible_collections.imagestore.upload.plugins.module_utils._servicefabric import ServiceFabric as _OldServiceFabric
from ansible_collections.imagestore.upload.plugins.module_utils._vsphere_protocol import VSphere
from ansible_collections.imagestore.upload.plugins.module_utils._zstack import ZStack as _OldZStack

_STR = dict(type="str")

PROVIDERS = {
    "servicefabric": bridge(_OldServiceFabric, {"path": _STR}, ("path",), {"path": _STR}, ("path",)),
    "vsphere": VSphere,
    "zstack": bridge(_OldZStack, {"name": _STR, "backup_storage": _STR, "format": _STR,
                                  "media_type": dict(type="str", choices=["RootVolumeTemplate", "ISO", "DataVolumeTemplate"]),
                                  "platform": dict(type="str", choices=["Linux", "Windows", "Other", "Paravirtualization", "WindowsVirtio"]),
                                  "image_id": _STR},
                     ("name", "backup_storage"), {"image_id": _STR}, ("image_id",),
                     absent_options={"purge": dict(type="bool", default=False)}),
}
