"""Service Fabric over TLS with client-certificate authentication, against the emulator's TLS mode behaving like a
Windows gateway that renegotiates TLS for the client certificate (a large body first on a fresh connection: 403)."""

import pytest
import trustme

from imagestore_emulator.process import EmulatorProcess
from tests.conftest import assert_no_traceback


@pytest.fixture(scope="module")
def pki(tmp_path_factory):
    d = tmp_path_factory.mktemp("pki")
    ca = trustme.CA()
    server = ca.issue_cert("127.0.0.1", "localhost")
    client = ca.issue_cert("sf-admin@example.com")
    other_ca = trustme.CA()
    stranger = other_ca.issue_cert("stranger@example.com")
    files = {
        "ca": d / "ca.pem", "server_cert": d / "server.pem", "server_key": d / "server.key",
        "client_cert": d / "client.pem", "client_key": d / "client.key", "stranger": d / "stranger.pem",
    }
    ca.cert_pem.write_to_path(str(files["ca"]))
    server.cert_chain_pems[0].write_to_path(str(files["server_cert"]))
    server.private_key_pem.write_to_path(str(files["server_key"]))
    client.cert_chain_pems[0].write_to_path(str(files["client_cert"]))
    client.private_key_pem.write_to_path(str(files["client_key"]))
    stranger.private_key_and_cert_chain_pem.write_to_path(str(files["stranger"]))
    return {k: str(v) for k, v in files.items()}


@pytest.fixture(scope="module")
def tls_emulator(pki, tmp_path_factory):
    emu = EmulatorProcess(tmp_path_factory.mktemp("tls-emulator"), extra_args=[
        "--tls-cert", pki["server_cert"], "--tls-key", pki["server_key"], "--client-ca", pki["ca"],
        "--sf-cert-renegotiation"]).start()
    yield emu
    emu.stop()


def args(emu, **kw):
    a = {"provider": "servicefabric", "endpoint": emu.url, "retries": 1}
    a.update(kw)
    return a


def test_client_certificate_and_ca_bundle(ansible, pki, tls_emulator, image):
    assert tls_emulator.url.startswith("https://")
    src, digest = image(3 * 1024 * 1024)
    result, run = ansible.module("image_upload", args(tls_emulator, src=src, path="tls/disk.img", ca_path=pki["ca"],
                                                      client_cert=pki["client_cert"], client_key=pki["client_key"],
                                                      chunk_size="1MiB"))
    assert result["changed"] and result["sha256"] == digest, run.output
    info, _ = ansible.module("upload_session_info", args(tls_emulator, path="tls/disk.img", ca_path=pki["ca"],
                                                         client_cert=pki["client_cert"], client_key=pki["client_key"]))
    assert info["sessions"][0]["size"] == 3 * 1024 * 1024 and info["sessions"][0]["state"] == "done"


def test_every_connection_carries_a_small_request_before_a_large_body(ansible, pki, tls_emulator, tmp_path):
    import hashlib
    import requests
    from tests.conftest import make_file
    pkg = tmp_path / "BigFirstApp"
    (pkg / "Code").mkdir(parents=True)
    digests = {"Code/a-big.bin": make_file(str(pkg / "Code" / "a-big.bin"), 6 * 1024 * 1024 + 1, seed=91),
               "Code/b-small.cfg": make_file(str(pkg / "Code" / "b-small.cfg"), 100, seed=92),
               "ApplicationManifest.xml": make_file(str(pkg / "ApplicationManifest.xml"), 300 * 1024, seed=93)}
    result, run = ansible.module("image_upload", args(tls_emulator, src=str(pkg), path="tls/BigFirstApp", ca_path=pki["ca"],
                                                      client_cert=pki["client_cert"], client_key=pki["client_key"],
                                                      chunk_size="1MiB", parallel=4))
    assert result["changed"] and not result.get("failed"), run.output[-3000:]
    control = dict(verify=pki["ca"], cert=(pki["client_cert"], pki["client_key"]))
    for rel, digest in digests.items():
        stored = requests.get(tls_emulator.url + "/_emulator/servicefabric/content/tls/BigFirstApp/" + rel, **control)
        assert hashlib.sha256(stored.content).hexdigest() == digest, rel
    gateway = requests.get(tls_emulator.url + "/_emulator/servicefabric/received", **control).json()["gateway"]
    assert gateway["renegotiation_refusals"] == 0, gateway


def test_untrusted_server_certificate_fails_clearly(ansible, pki, tls_emulator, image):
    src, _ = image(1000)
    result, run = ansible.module("image_upload", args(tls_emulator, src=src, path="tls/x.img",
                                                      client_cert=pki["client_cert"], client_key=pki["client_key"]))
    assert result["failed"]
    assert result["msg"].startswith("get image store content of tls/x.img: TLS certificate of %s could not be verified"
                                    % tls_emulator.url)
    assert "Set ca_path to the CA bundle that signed it" in result["msg"]
    assert_no_traceback(run.output)


@pytest.mark.parametrize("cert", [None, "stranger"])
def test_missing_or_foreign_client_certificate_fails_clearly(ansible, pki, tls_emulator, image, cert):
    src, _ = image(1000)
    extra = {"client_cert": pki["stranger"]} if cert else {}
    result, run = ansible.module("image_upload", args(tls_emulator, src=src, path="tls/y.img", ca_path=pki["ca"], **extra))
    assert result["failed"]
    assert result["msg"].startswith("get image store content of tls/y.img")
    assert any(word in result["msg"] for word in ("TLS handshake", "connection to", "certificate")), result["msg"]
    assert_no_traceback(run.output)


def test_validate_certs_false_skips_verification(ansible, pki, tls_emulator, image):
    src, _ = image(1000)
    result, run = ansible.module("image_upload", args(tls_emulator, src=src, path="tls/z.img", validate_certs=False,
                                                      client_cert=pki["client_cert"], client_key=pki["client_key"]))
    assert result["changed"], run.output
