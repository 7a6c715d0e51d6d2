"""pytest plugin configuration: environment first, then command-line option, then ini."""

from pytest_imagestore.plugin import resolve_targets, setting


class FakeConfig:
    def __init__(self, options=None, ini=None):
        self.options = options or {}
        self.ini = ini or {}

    def getoption(self, name, default=None):
        return self.options.get(name, default)

    def getini(self, name):
        return self.ini.get(name)


def test_environment_beats_option_beats_ini(monkeypatch):
    config = FakeConfig({"imagestore_servicefabric_endpoint": "http://cli"}, {"imagestore_servicefabric_endpoint": "http://ini"})
    monkeypatch.setenv("IMAGESTORE_TEST_SERVICEFABRIC_ENDPOINT", "http://env")
    assert setting(config, "servicefabric_endpoint") == "http://env"
    monkeypatch.delenv("IMAGESTORE_TEST_SERVICEFABRIC_ENDPOINT")
    assert setting(config, "servicefabric_endpoint") == "http://cli"
    assert setting(FakeConfig(ini={"imagestore_servicefabric_endpoint": "http://ini"}), "servicefabric_endpoint") == "http://ini"
    assert setting(FakeConfig(), "servicefabric_endpoint", "dflt") == "dflt"


def test_configured_systems_need_no_emulator(monkeypatch):
    for key in ("SERVICEFABRIC", "VSPHERE", "ZSTACK"):
        monkeypatch.setenv("IMAGESTORE_TEST_%s_ENDPOINT" % key, "https://%s.example" % key.lower())
    monkeypatch.setenv("IMAGESTORE_TEST_VSPHERE_PASSWORD", "s3cret")
    monkeypatch.setenv("IMAGESTORE_TEST_VALIDATE_CERTS", "false")

    def no_emulator():
        raise AssertionError("the emulator must not start when every provider is configured")
    targets = resolve_targets(FakeConfig(), no_emulator)
    assert {p: t.endpoint for p, t in targets.items()} == {
        "servicefabric": "https://servicefabric.example", "vsphere": "https://vsphere.example", "zstack": "https://zstack.example"}
    assert not any(t.emulated for t in targets.values())
    args = targets["vsphere"].module_args(library="images", item="x")
    assert args["password"] == "s3cret" and args["validate_certs"] is False and args["provider"] == "vsphere"
    assert "s3cret" not in repr(targets["vsphere"])


def test_unconfigured_providers_use_one_emulator(monkeypatch):
    for key in ("SERVICEFABRIC", "VSPHERE", "ZSTACK"):
        monkeypatch.delenv("IMAGESTORE_TEST_%s_ENDPOINT" % key, raising=False)

    class Emu:
        url = "http://127.0.0.1:1"
        credentials = {"zstack": {"username": "admin", "password": "password"}}
    started = []
    targets = resolve_targets(FakeConfig(), lambda: started.append(1) or Emu())
    assert started == [1] and all(t.emulated for t in targets.values())
    assert targets["zstack"].module_args()["username"] == "admin"
