"""vSphere's options as the protocol declares them match its doc fragment (names, types, defaults, choices)."""

import yaml

import pytest

from ansible_collections.imagestore.upload.plugins.doc_fragments.vsphere import ModuleDocFragment
from ansible_collections.imagestore.upload.plugins.module_utils._vsphere_protocol import VSphere

KEYS = ("type", "default", "choices")


def documented(text):
    return dict((name, dict((k, entry.get(k)) for k in KEYS)) for name, entry in yaml.safe_load(text)["options"].items())


def declared(spec):
    return dict((name, dict((k, entry.get(k)) for k in KEYS)) for name, entry in spec.items())


@pytest.mark.parametrize("spec,text", [(VSphere.options, ModuleDocFragment.DOCUMENTATION),
                                       (VSphere.selectors, ModuleDocFragment.SESSIONS)], ids=["image_upload", "session modules"])
def test_options_match_the_fragment(spec, text):
    assert declared(spec) == documented(text)


def test_required_and_selectors_are_documented_options():
    assert set(VSphere.required) <= set(VSphere.options) and set(VSphere.selector_group) <= set(VSphere.selectors)
    for name in VSphere.required:
        assert "Required with O(provider=vsphere)" in " ".join(yaml.safe_load(ModuleDocFragment.DOCUMENTATION)["options"][name]["description"])


def test_api_style_is_no_longer_a_connection_option():
    from ansible_collections.imagestore.upload.plugins.doc_fragments.connection import ModuleDocFragment as Connection
    from ansible_collections.imagestore.upload.plugins.module_utils._options import connection_options
    assert "api_style" not in yaml.safe_load(Connection.DOCUMENTATION)["options"] and "api_style" not in connection_options()
