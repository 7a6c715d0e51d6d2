"""The toy store survives what the contract suite does to it: cut and stalled bodies release their range, a range
received or in flight answers 409, a commit checks the SHA-256, a restart keeps the state. No Ansible here: seconds."""

import hashlib
import socket
import time

import pytest
import requests

from toystore.process import ToyStoreProcess

SIZE = 1 << 20
DATA = bytes(range(256)) * (SIZE // 256)
SHA = hashlib.sha256(DATA).hexdigest()
SID = "0123456789abcdef" * 2


@pytest.fixture
def toy(tmp_path):
    server = ToyStoreProcess(tmp_path / "toy", body_timeout=1.0).start()
    yield server
    server.stop()
    with open(str(tmp_path / "toy" / "server.log")) as fh:
        assert "Traceback" not in fh.read()


def api(toy):
    s = requests.Session()
    s.headers["Authorization"] = "Bearer %s" % s.post(toy.url + "/v1/login", json=toy.credentials).json()["token"]
    s.put("%s/v1/sessions/%s" % (toy.url, SID), json={"path": "a/b.img", "size": SIZE, "sha256": SHA}).raise_for_status()
    return s


def put(s, toy, start, end, data=None):
    return s.put("%s/v1/sessions/%s/data" % (toy.url, SID), data=DATA[start:end + 1] if data is None else data,
                 headers={"Content-Range": "bytes %d-%d/%d" % (start, end, SIZE)})


def session(s, toy):
    return s.get("%s/v1/sessions/%s" % (toy.url, SID)).json()


def half_sent(toy, token, start, end, sent):
    """A PUT whose body stops after ``sent`` bytes, its socket left open."""
    sock = socket.create_connection(("127.0.0.1", toy.port))
    sock.sendall(("PUT /v1/sessions/%s/data HTTP/1.1\r\nHost: t\r\n%s\r\nContent-Range: bytes %d-%d/%d\r\nContent-Length: %d\r\n\r\n"
                  % (SID, token, start, end, SIZE, end - start + 1)).encode() + DATA[start:start + sent])
    return sock


def wait_for(condition, seconds=5.0):
    end = time.monotonic() + seconds
    while not condition():
        assert time.monotonic() < end
        time.sleep(0.05)


def test_ranges_in_any_order_then_commit_replaces_the_file(toy):
    s = api(toy)
    assert put(s, toy, SIZE // 2, SIZE - 1).status_code == 204 and put(s, toy, 0, SIZE // 2 - 1).status_code == 204
    again = put(s, toy, 100, 200)
    assert again.status_code == 409 and again.json()["error"]["code"] == "RANGE_RECEIVED"
    committed = s.post("%s/v1/sessions/%s/commit" % (toy.url, SID)).json()
    assert committed["sha256"] == SHA and toy.control("GET", "files", params={"path": "a/b.img"}).content == DATA
    assert s.get(toy.url + "/v1/sessions", params={"path": "a/b.img"}).json() == {"sessions": []}
    assert toy.stats()["payload_bytes"] == SIZE


def test_a_cut_body_releases_its_range_at_once_and_counts_nothing(toy):
    s = api(toy)
    sock = half_sent(toy, "Authorization: %s" % s.headers["Authorization"], 0, SIZE - 1, 1000)
    wait_for(lambda: session(s, toy)["in_flight"] == [[0, SIZE - 1]])
    busy = put(s, toy, 0, 99)
    assert busy.status_code == 409 and busy.json()["error"]["code"] == "RANGE_IN_FLIGHT" and busy.headers["Retry-After"] == "1"
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, b"\x01\x00\x00\x00\x00\x00\x00\x00")      # close with RST
    sock.close()
    wait_for(lambda: session(s, toy)["in_flight"] == [])
    assert session(s, toy)["missing"] == [[0, SIZE - 1]] and toy.stats()["payload_bytes"] == 0
    assert toy.stats()["cut_bodies"] == 1


def test_a_stalled_body_is_released_after_the_body_timeout(toy):
    s = api(toy)
    sock = half_sent(toy, "Authorization: %s" % s.headers["Authorization"], 0, 999, 10)
    wait_for(lambda: session(s, toy)["in_flight"] == [[0, 999]])
    started = time.monotonic()
    wait_for(lambda: session(s, toy)["in_flight"] == [])
    assert time.monotonic() - started < 2.0
    sock.close()
    assert put(s, toy, 0, SIZE - 1).status_code == 204


def test_a_commit_checks_the_declared_sha256_and_a_restart_keeps_the_state(toy):
    s = api(toy)
    assert put(s, toy, 0, 9, data=b"x" * 10).status_code == 204 and put(s, toy, 10, SIZE - 1).status_code == 204
    refused = s.post("%s/v1/sessions/%s/commit" % (toy.url, SID))
    assert refused.status_code == 422 and refused.json()["error"]["code"] == "DIGEST_MISMATCH"
    toy.stop()
    toy.start()
    s = api(toy)                    # a new login; the same session, with what it received
    assert session(s, toy)["missing"] == [] and session(s, toy)["size"] == SIZE


def faults(toy, *rules):
    r = toy.control("POST", "faults", json={"rules": [dict({"provider": "toystore"}, **rule) for rule in rules]})
    assert r.status_code == 200, r.text


def test_fault_rules_in_the_emulators_format_fire_by_operation_name(toy):
    s = api(toy)
    faults(toy, dict(operation="data", action="status", status=503, retry_after=2, code="BUSY", after=1),
           dict(operation="commit", action="drop_response"))
    assert put(s, toy, 0, 99).status_code == 204                              # let through: after=1
    refused = put(s, toy, 100, 199)
    assert refused.status_code == 503 and refused.headers["Retry-After"] == "2" and refused.json()["error"]["code"] == "BUSY"
    assert put(s, toy, 100, SIZE - 1).status_code == 204                      # count=1: spent
    with pytest.raises(requests.ConnectionError):                             # committed, and the answer lost
        s.post("%s/v1/sessions/%s/commit" % (toy.url, SID))
    assert toy.control("GET", "files", params={"path": "a/b.img"}).content == DATA
    fired = toy.control("GET", "faults").json()["fired"]
    assert [(f["operation"], f["action"]) for f in fired] == [("data", "status"), ("commit", "drop_response")]
    toy.control("DELETE", "faults")
    assert toy.control("GET", "faults").json() == {"rules": [], "fired": []}


def test_an_expired_session_ends_and_a_full_disk_is_507_no_space(toy):
    s = api(toy)
    faults(toy, dict(operation="data", action="enospc", bytes=1000))
    full = put(s, toy, 0, SIZE - 1)
    assert full.status_code == 507 and full.json()["error"] == {"code": "NO_SPACE", "message":
                                                                "the store's disk is full (No space left on device)"}
    assert session(s, toy)["missing"] == [[0, SIZE - 1]] and session(s, toy)["in_flight"] == []
    assert put(s, toy, 0, 99).status_code == 204 and toy.stats()["payload_bytes"] == 100
    faults(toy, dict(operation="data", action="expire"))
    gone = put(s, toy, 100, 199)
    assert gone.status_code == 404 and gone.json()["error"]["code"] == "NO_SESSION"
    assert s.get("%s/v1/sessions/%s" % (toy.url, SID)).status_code == 404


def test_a_killed_store_restarts_on_its_port_with_its_sessions(toy):
    s = api(toy)
    assert put(s, toy, 0, 99).status_code == 204
    port = toy.port
    toy.kill()
    toy.restart()
    assert toy.port == port
    s = api(toy)
    assert session(s, toy)["missing"] == [[100, SIZE - 1]]
