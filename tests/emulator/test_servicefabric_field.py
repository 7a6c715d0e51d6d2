"""Service Fabric as real clusters behave (issue 15): the server-side ``timeout``, 504 before or after the
operation, 503 NOT_PRIMARY / NOT_READY, slow commits, the renegotiating client-certificate gateway,
counters that prove nothing was sent twice, and FileVersion / ModifiedDate on every replacement."""

import os
import socket
import ssl
import time
from urllib.parse import urlsplit

import pytest
import requests
import trustme

from field_helpers import (RawRequest, fabric_error, faults, new_id, sf_chunk, sf_commit, sf_file_info, sf_put, sf_sessions,
                           sf_stored, wait_for)
from imagestore_emulator.testing import running_emulator


@pytest.fixture(scope="module")
def emulator():
    with running_emulator() as info:
        yield info


@pytest.fixture
def url(emulator):
    u = emulator["url"]
    requests.post(u + "/_emulator/reset")
    requests.delete(u + "/_emulator/faults")
    yield u
    requests.delete(u + "/_emulator/faults")
    requests.post(u + "/_emulator/config", json={"sf_commit_seconds": 0})


def received(url, path=None):
    body = requests.get(url + "/_emulator/servicefabric/received").json()
    return body if path is None else body["paths"].get(path)


def test_timeout_bounds_every_call_and_the_operation_completes_behind_it(url):
    faults(url, {"provider": "servicefabric", "operation": "chunk", "action": "delay", "ms": 1500})
    sid, data = new_id(), b"a" * 1000
    r = sf_chunk(url, "t/a.bin", sid, 0, data, len(data), timeout="1")
    assert (r.status_code, r.reason, fabric_error(r)) == (504, "FABRIC_E_TIMEOUT", "FABRIC_E_TIMEOUT")
    session = next(s for s in sf_sessions(url) if s["id"] == sid)
    assert session["received"] == [{"start": 0, "end": 999}]           # the chunk was stored behind the 504
    faults(url, {"provider": "servicefabric", "operation": "content", "action": "delay", "ms": 1200})
    r = requests.get(url + "/ImageStore", params={"api-version": "6.0", "timeout": "not-a-number"})
    assert r.status_code in (200, 204)                                # unparsable: the default 60 s applies


def test_504_before_and_after_processing(url):
    faults(url, {"provider": "servicefabric", "operation": "put_file", "action": "status", "status": 504})
    r = sf_put(url, "t/before.txt", b"one")
    assert (r.status_code, r.reason, fabric_error(r)) == (504, "FABRIC_E_TIMEOUT", "FABRIC_E_TIMEOUT")
    assert sf_stored(url, "t/before.txt") is None                     # before: nothing happened
    faults(url, {"provider": "servicefabric", "operation": "put_file", "action": "status_after"})
    r = sf_put(url, "t/after.txt", b"two")
    assert (r.status_code, fabric_error(r)) == (504, "FABRIC_E_TIMEOUT")
    assert sf_stored(url, "t/after.txt") == b"two"                    # after: the file is stored
    sid = new_id()
    assert sf_chunk(url, "t/c.bin", sid, 0, b"ccc", 3).status_code == 200
    faults(url, {"provider": "servicefabric", "operation": "commit", "action": "status_after"})
    assert sf_commit(url, sid).status_code == 504
    assert sf_stored(url, "t/c.bin") == b"ccc"
    assert sf_commit(url, sid).status_code == 200                      # a second commit of a committed session: 200


@pytest.mark.parametrize("code", ["FABRIC_E_NOT_PRIMARY", "FABRIC_E_NOT_READY"])
def test_503_codes(url, code):
    faults(url, {"provider": "servicefabric", "operation": "*", "action": "status", "status": 503, "code": code})
    r = requests.get(url + "/ImageStore", params={"api-version": "6.0"})
    assert (r.status_code, r.reason, fabric_error(r)) == (503, code, code)


def test_a_probability_of_five_percent_with_the_existing_fields(url):
    faults(url, {"provider": "servicefabric", "operation": "put_file", "action": "status_after", "probability": 0.05,
                 "count": 0}, seed=7)
    statuses = [sf_put(url, "p/%d.txt" % i, b"x").status_code for i in range(200)]
    fired = statuses.count(504)
    assert 2 <= fired <= 25 and statuses.count(200) == 200 - fired
    assert len(requests.get(url + "/_emulator/faults").json()["fired"]) == fired
    assert all(sf_stored(url, "p/%d.txt" % i) == b"x" for i in range(200))     # every one landed


def test_slow_commit_times_out_and_completes_in_the_background(url):
    requests.post(url + "/_emulator/config", json={"sf_commit_seconds": 2})
    sid, data = new_id(), os.urandom(5000)
    assert sf_chunk(url, "slow/app.sfpkg", sid, 0, data, len(data)).status_code == 200
    started = time.monotonic()
    r = sf_commit(url, sid, timeout="1")
    assert (r.status_code, fabric_error(r)) == (504, "FABRIC_E_TIMEOUT") and time.monotonic() - started < 1.9
    assert next(s for s in sf_sessions(url) if s["id"] == sid)["committing"] is True
    wait_for(lambda: sf_stored(url, "slow/app.sfpkg") == data, timeout=10, what="the commit to land")
    info = requests.get(url + "/ImageStore/$/GetUploadSession", params={"api-version": "6.0", "session-id": sid}).json()
    assert info["UploadSessions"][0]["ExpectedRanges"] == []
    assert sf_commit(url, sid, timeout="1").status_code == 200
    sid2 = new_id()
    assert sf_chunk(url, "slow/b.bin", sid2, 0, b"b", 1).status_code == 200
    assert sf_commit(url, sid2, timeout="5").status_code == 200       # within its timeout: 200 after 2 s
    assert sf_stored(url, "slow/b.bin") == b"b"


def test_counters_prove_what_was_sent_twice(url):
    sid, data = new_id(), os.urandom(3000)
    for start in (0, 1000, 2000):
        assert sf_chunk(url, "n/a.bin", sid, start, data[start:start + 1000], 3000).status_code == 200
    assert sf_chunk(url, "n/a.bin", sid, 1000, data[1000:2000], 3000).status_code == 400     # a range already stored
    assert sf_commit(url, sid).status_code == 200
    assert sf_chunk(url, "n/a.bin", sid, 2000, data[2000:], 3000).status_code == 200          # after the commit
    assert sf_put(url, "n/b.txt", b"same").status_code == 200
    assert sf_put(url, "n/b.txt", b"same").status_code == 200
    assert sf_put(url, "n/c.txt", b"c").status_code == 200
    a, b, c = received(url, "n/a.bin"), received(url, "n/b.txt"), received(url, "n/c.txt")
    assert (a["chunk_bodies"], a["chunk_bytes"], a["repeat_chunk_bodies"], a["repeat_chunk_bytes"]) == (4, 4000, 2, 2000)
    assert (b["file_bodies"], b["file_bytes"], b["repeat_file_bodies"], b["repeat_file_bytes"]) == (2, 8, 1, 4)
    assert (c["file_bodies"], c["repeat_file_bodies"]) == (1, 0)
    totals = received(url)["totals"]
    assert totals["repeat_chunk_bodies"] == 2 and totals["repeat_file_bodies"] == 1
    requests.post(url + "/_emulator/reset")
    assert received(url)["paths"] == {}


def test_file_version_and_modified_date_change_on_every_replacement(url):
    seen = []
    assert sf_put(url, "v/f.bin", b"1").status_code == 200
    seen.append(sf_file_info(url, "v/f.bin"))
    assert sf_put(url, "v/f.bin", b"1").status_code == 200                 # the same bytes again: still a replacement
    seen.append(sf_file_info(url, "v/f.bin"))
    sid = new_id()
    assert sf_chunk(url, "v/f.bin", sid, 0, b"22", 2).status_code == 200
    assert sf_commit(url, sid).status_code == 200
    seen.append(sf_file_info(url, "v/f.bin"))
    versions = [int(i["FileVersion"]["VersionNumber"]) for i in seen]
    dates = [i["ModifiedDate"] for i in seen]
    assert versions == sorted(set(versions)) and len(set(dates)) == 3 and dates == sorted(dates)
    assert sf_file_info(url, "v/f.bin") == seen[-1]                       # reading changes nothing


def test_cluster_endpoints_sfctl_calls(url):
    root = requests.get(url + "/")
    assert root.status_code == 200 and root.headers["Content-Type"].startswith("text/html")
    version = requests.get(url + "/$/GetClusterVersion", params={"api-version": "6.4", "timeout": "60"})
    assert version.status_code == 200 and version.json()["Version"].startswith("9.")
    assert requests.get(url + "/$/GetClusterVersion").json()["Error"]["Code"] == "E_INVALIDARG"


# ------------------------------------------------------------ the renegotiating client-certificate gateway

@pytest.fixture(scope="module")
def tls(tmp_path_factory):
    d = tmp_path_factory.mktemp("pki")
    ca = trustme.CA()
    server, client = ca.issue_cert("127.0.0.1"), ca.issue_cert("sf-admin@example.com")
    paths = {name: str(d / name) for name in ("ca.pem", "server.pem", "server.key", "client.pem", "client.key")}
    ca.cert_pem.write_to_path(paths["ca.pem"])
    server.cert_chain_pems[0].write_to_path(paths["server.pem"])
    server.private_key_pem.write_to_path(paths["server.key"])
    client.cert_chain_pems[0].write_to_path(paths["client.pem"])
    client.private_key_pem.write_to_path(paths["client.key"])
    args = ["--tls-cert", paths["server.pem"], "--tls-key", paths["server.key"], "--client-ca", paths["ca.pem"],
            "--sf-cert-renegotiation"]
    with running_emulator(extra_args=args) as info:
        session = requests.Session()
        session.trust_env = False                   # REQUESTS_CA_BUNDLE would override session.verify
        session.verify, session.cert = paths["ca.pem"], (paths["client.pem"], paths["client.key"])
        yield info, session


def test_large_first_body_on_a_fresh_connection_is_refused(tls):
    info, http = tls
    url = info["url"]
    big, small = os.urandom(100 * 1024), os.urandom(48 * 1024)
    r = http.put(url + "/ImageStore/r/big.bin", params={"api-version": "6.0"}, data=big)
    assert (r.status_code, r.reason, r.content) == (403, "Client certificate required", b"")
    assert r.headers["Connection"] == "close"
    assert http.put(url + "/ImageStore/r/small.bin", params={"api-version": "6.0"}, data=small).status_code == 200
    # that connection carried a small body first: a large one passes on it
    assert http.put(url + "/ImageStore/r/big.bin", params={"api-version": "6.0"}, data=big).status_code == 200
    http.close()
    assert http.get(url + "/ImageStore", params={"api-version": "6.0"}).status_code == 200     # fresh, bodiless
    assert http.put(url + "/ImageStore/r/big2.bin", params={"api-version": "6.0"}, data=big).status_code == 200
    gateway = http.get(url + "/_emulator/servicefabric/received").json()["gateway"]
    assert gateway["renegotiation_refusals"] == 1
    with open(os.path.join(info["data_dir"], "servicefabric", "content", "r", "big.bin"), "rb") as fh:
        assert fh.read() == big


def test_renegotiation_is_off_without_client_certificates(url):
    requests.post(url + "/_emulator/config", json={"sf_cert_renegotiation": True})
    try:
        assert sf_put(url, "plain/big.bin", os.urandom(100 * 1024)).status_code == 200
    finally:
        requests.post(url + "/_emulator/config", json={"sf_cert_renegotiation": False})


def test_a_refused_body_is_not_read(tls):
    info, http = tls
    context = ssl.create_default_context(cafile=http.verify)
    context.load_cert_chain(*http.cert)
    raw = RawRequest.__new__(RawRequest)          # the same helper, over a TLS socket made here
    parts = urlsplit(info["url"])
    raw.sock = context.wrap_socket(socket.create_connection((parts.hostname, parts.port), timeout=30),
                                   server_hostname=parts.hostname)
    raw.sock.sendall(("PUT /ImageStore/r/x.bin?api-version=6.0 HTTP/1.1\r\nHost: %s\r\nContent-Length: %d\r\n\r\n"
                      % (parts.netloc, 10 * 1024 * 1024)).encode())
    status, reason, headers, _ = raw.response()
    assert (status, reason, headers["connection"]) == (403, "Client certificate required", "close")
    assert raw.closed_by_server(timeout=10)
    raw.close()
