"""Each module's argument spec is exactly what its documentation (with its fragments) says, and each provider's own
options are exactly what its doc fragment says: names, types, defaults, choices, required, no_log."""

import importlib
import re

import pytest
import yaml

from ansible_collections.imagestore.upload.plugins.module_utils._registry import PROVIDERS
from ansible_collections.imagestore.upload.plugins.module_utils._runner import module_spec

MODULES = {"image_upload": "upload", "upload_session_info": "sessions", "upload_session_commit": "commit",
           "upload_session_absent": "absent"}
FRAGMENTS = "ansible_collections.imagestore.upload.plugins.doc_fragments."


def fragment(name):
    module, dummy, attribute = name.partition(".")
    cls = importlib.import_module(FRAGMENTS + module).ModuleDocFragment
    return yaml.safe_load(getattr(cls, attribute or "DOCUMENTATION"))


def documented_options(module):
    doc = yaml.safe_load(importlib.import_module("ansible_collections.imagestore.upload.plugins.modules." + module).DOCUMENTATION)
    options = dict(doc.get("options") or {})
    for name in doc.get("extends_documentation_fragment") or []:
        assert name.startswith("imagestore.upload."), name
        for option, entry in (fragment(name[len("imagestore.upload."):]).get("options") or {}).items():
            assert option not in options or options[option] == entry, "%s: %s documented twice, differently" % (module, option)
            options[option] = entry
    return options


def comparable(entry, documented):
    """The attributes both sides state, in the documentation's terms."""
    entry = dict(entry)
    if documented:
        entry.pop("description", None)
        entry.setdefault("required", False)
        entry.setdefault("type", "str")
        for key in ("elements", "aliases", "version_added", "no_log", "suboptions"):
            entry.pop(key, None)
    else:
        entry.pop("fallback", None)
        entry.pop("no_log", None)
        entry.setdefault("required", False)
        entry.setdefault("type", "str")
    if "default" in entry and entry["default"] is not None and entry.get("type") == "float":
        entry["default"] = float(entry["default"])
    if entry.get("type") == "str" and entry.get("default") is not None:
        entry["default"] = str(entry["default"])
    if "default" in entry and entry["default"] is None:
        del entry["default"]
    return entry


@pytest.mark.parametrize("module", sorted(MODULES))
def test_module_spec_matches_its_documentation(module):
    spec, dummy = module_spec(MODULES[module])
    docs = documented_options(module)
    assert sorted(spec) == sorted(docs), "only in the spec: %s; only documented: %s" % (
        sorted(set(spec) - set(docs)), sorted(set(docs) - set(spec)))
    for option in spec:
        assert comparable(spec[option], False) == comparable(docs[option], True), option


@pytest.mark.parametrize("provider", sorted(PROVIDERS))
def test_each_provider_documents_exactly_its_own_options(provider):
    cls = PROVIDERS[provider]
    for attribute, group in (("DOCUMENTATION", cls.options), ("SELECTORS", cls.selectors), ("ABSENT", cls.absent_options)):
        documented = {}
        for name in (attribute, "COMMON") if attribute != "ABSENT" else (attribute,):
            try:                        # COMMON: the provider's options of every module, documented once
                documented.update(fragment("%s.%s" % (provider, name)).get("options") or {})
            except AttributeError:
                pass
        assert sorted(documented) == sorted(group), "%s.%s" % (provider, attribute)
        for option, entry in group.items():
            assert comparable(entry, False) == comparable(documented[option], True), "%s: %s" % (provider, option)
            text = " ".join(documented[option]["description"]) if isinstance(documented[option]["description"], list) else ""
            assert re.match(r"^(%s\.|%s only\.)" % (re.escape(
                {"servicefabric": "Service Fabric", "vsphere": "vSphere", "zstack": "ZStack"}.get(provider, provider)),
                re.escape(provider)), text), "%s: %s should say which provider it is for" % (provider, option)


@pytest.mark.parametrize("provider", sorted(PROVIDERS))
def test_required_options_say_so_for_their_provider(provider):
    cls = PROVIDERS[provider]
    documented = fragment("%s.DOCUMENTATION" % provider).get("options") or {}
    for option in cls.required:
        text = " ".join(documented[option]["description"])
        assert "Required with O(provider=%s)" % provider in text, "%s: %s" % (provider, option)
