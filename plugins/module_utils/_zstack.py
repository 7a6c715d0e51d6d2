# -*- coding: utf-8 -*-
# Copyright: imagestore.upload contributors
# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)
"""ZStack adapter (private). Not implemented yet: every operation fails with a clear message."""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

from ansible_collections.imagestore.upload.plugins.module_utils._base import Provider
from ansible_collections.imagestore.upload.plugins.module_utils._http import ImageStoreError


class ZStack(Provider):
    name = "zstack"

    def _unavailable(self):
        raise ImageStoreError("provider zstack is not available in this version of imagestore.upload")

    upload = sessions = commit = absent = _unavailable
