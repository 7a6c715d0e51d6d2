# -*- coding: utf-8 -*-
# Copyright: imagestore.upload contributors
# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Provider name -> protocol class (private). A new provider adds one line here."""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

from ansible_collections.imagestore.upload.plugins.module_utils._legacy import bridge
from ansible_collections.imagestore.upload.plugins.module_utils._servicefabric_protocol import ServiceFabric
from ansible_collections.imagestore.upload.plugins.module_utils._vsphere import VSphere as _OldVSphere
from ansible_collections.imagestore.upload.plugins.module_utils._zstack_protocol import ZStack

_STR = dict(type="str")

PROVIDERS = {
    "servicefabric": ServiceFabric,
    "vsphere": bridge(_OldVSphere, {"library": _STR, "item": _STR, "file_name": _STR,
                                    "keep_session_on_failure": dict(type="bool", default=False),
                                    "api_style": dict(type="str", default="auto", choices=["auto", "api", "rest"])},
                      ("library", "item"), {"library": _STR, "item": _STR,
                                            "api_style": dict(type="str", default="auto", choices=["auto", "api", "rest"])},
                      ("library", "item")),
    "zstack": ZStack,
}
