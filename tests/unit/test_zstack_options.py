"""The ZStack protocol's options are exactly what its doc fragment documents (names, types, defaults, choices)."""

import yaml

from ansible_collections.imagestore.upload.plugins.doc_fragments.zstack import ModuleDocFragment
from ansible_collections.imagestore.upload.plugins.module_utils._zstack_protocol import ZStack


def documented(text):
    return yaml.safe_load(text)["options"]


def as_documented(spec):
    """An argument spec entry in the form the documentation gives it (type str and no default when not said)."""
    out = {"type": spec.get("type", "str")}
    for key in ("default", "choices"):
        if key in spec:
            out[key] = spec[key]
    return out


def compare(spec, docs):
    assert sorted(spec) == sorted(docs)
    for name, entry in spec.items():
        doc = dict((k, v) for k, v in docs[name].items() if k in ("type", "default", "choices"))
        doc.setdefault("type", "str")
        assert as_documented(entry) == doc, name
        assert docs[name]["description"], name


def test_image_upload_options_match_the_fragment():
    compare(ZStack.options, documented(ModuleDocFragment.DOCUMENTATION))


def test_session_module_options_match_the_fragment():
    spec = dict(ZStack.selectors)
    spec.update(ZStack.absent_options)
    compare(spec, documented(ModuleDocFragment.SESSION))
    assert ZStack.selector_group == ("image_id",)


def test_required_options_are_documented_as_required_for_zstack():
    docs = documented(ModuleDocFragment.DOCUMENTATION)
    for name in ZStack.required:
        assert "Required with O(provider=zstack)" in " ".join(docs[name]["description"]), name
