# -*- coding: utf-8 -*-
# Copyright: imagestore.upload contributors
# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)
"""TEMPORARY bridge: runs a provider not yet ported to the engine through the new runner (private)."""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

from ansible_collections.imagestore.upload.plugins.module_utils._errors import ImageStoreError, LocalFileError
from ansible_collections.imagestore.upload.plugins.module_utils._protocol import Protocol
from ansible_collections.imagestore.upload.plugins.module_utils._upload import SourceChangedError, TransferError


def bridge(old_cls, options, required, selectors, selector_group, absent_options=None):
    class Legacy(Protocol):
        name = old_cls.name
        legacy = True

        def run_legacy(self, operation):
            params = dict(self.params)
            provider = old_cls(params, check_mode=self.check_mode, warn=self.ctx.warn)
            try:
                try:
                    result = getattr(provider, operation)()
                finally:
                    provider.close()
            except (SourceChangedError, TransferError) as exc:
                raise ImageStoreError(str(exc))
            except (IOError, OSError) as exc:
                raise LocalFileError("local file error: %s" % exc)
            if operation == "sessions":
                result = {"changed": False, "sessions": result}
            return result

    Legacy.options = options
    Legacy.required = required
    Legacy.selectors = selectors
    Legacy.selector_group = selector_group
    Legacy.absent_options = absent_options or {}
    Legacy.parse_error = staticmethod(lambda response: (None, (response.text or "")[:300]))
    return Legacy
