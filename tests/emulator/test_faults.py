"""Fault injection of the emulator core: rules, actions and what fired."""

import hashlib
import uuid

import pytest
import requests

from imagestore_emulator.testing import running_emulator


@pytest.fixture
def emu():
    with running_emulator() as info:
        yield info["url"]


def chunk(url, sid, path, start, data, total):
    return requests.put("%s/ImageStore/%s/$/UploadChunk" % (url, path), params={"api-version": "6.0", "session-id": sid},
                        headers={"Content-Range": "bytes %d-%d/%d" % (start, start + len(data) - 1, total)}, data=data)


def test_status_fault_answers_in_the_providers_format_then_stops(emu):
    r = requests.post(emu + "/_emulator/faults", json={"provider": "servicefabric", "operation": "content",
                                                      "action": "status", "status": 503, "retry_after": 2})
    assert r.status_code == 200 and r.json()["rules"][0]["id"] == 1
    first = requests.get(emu + "/ImageStore/x", params={"api-version": "6.0"})
    assert first.status_code == 503 and first.headers["Retry-After"] == "2"
    assert first.json()["Error"]["Code"] == "FABRIC_E_NOT_READY"
    second = requests.get(emu + "/ImageStore/x", params={"api-version": "6.0"})
    assert second.status_code == 404                       # count 1: fired once
    state = requests.get(emu + "/_emulator/faults").json()
    assert [(f["operation"], f["action"]) for f in state["fired"]] == [("content", "status")]


def test_close_after_bytes_records_nothing(emu):
    requests.post(emu + "/_emulator/faults", json={"operation": "chunk", "action": "close_after_bytes", "bytes": 1000})
    sid = str(uuid.uuid4())
    with pytest.raises(requests.ConnectionError):
        chunk(emu, sid, "a.bin", 0, b"x" * 4096, 4096)
    r = requests.get(emu + "/ImageStore/$/GetUploadSession", params={"api-version": "6.0", "session-id": sid})
    assert r.status_code == 204 or r.json()["UploadSessions"][0]["ExpectedRanges"] == [
        {"StartPosition": "0", "EndPosition": "4095"}]


def test_drop_response_processes_the_request(emu):
    requests.post(emu + "/_emulator/faults", json={"operation": "chunk", "action": "drop_response"})
    sid = str(uuid.uuid4())
    with pytest.raises(requests.ConnectionError):
        chunk(emu, sid, "b.bin", 0, b"y" * 100, 200)
    r = requests.get(emu + "/ImageStore/$/GetUploadSession", params={"api-version": "6.0", "session-id": sid})
    assert r.json()["UploadSessions"][0]["ExpectedRanges"] == [{"StartPosition": "100", "EndPosition": "199"}]


def test_expire_and_after_and_probability_are_reproducible(emu):
    sid = str(uuid.uuid4())
    assert chunk(emu, sid, "c.bin", 0, b"z" * 10, 20).status_code == 200
    requests.post(emu + "/_emulator/faults", json={"operation": "chunk", "action": "expire", "after": 0})
    assert chunk(emu, sid, "c.bin", 10, b"z" * 10, 20).status_code == 200   # a new session was started
    r = requests.get(emu + "/ImageStore/$/GetUploadSession", params={"api-version": "6.0", "session-id": sid})
    assert r.json()["UploadSessions"][0]["ExpectedRanges"] == [{"StartPosition": "0", "EndPosition": "9"}]

    def pattern(seed):
        requests.delete(emu + "/_emulator/faults")
        requests.post(emu + "/_emulator/faults", json={"seed": seed, "rules": [
            {"operation": "content", "action": "status", "status": 500, "count": 0, "probability": 0.5}]})
        return [requests.get(emu + "/ImageStore/q", params={"api-version": "6.0"}).status_code for _ in range(20)]
    assert pattern(7) == pattern(7) and 500 in pattern(7) and 404 in pattern(7)


def test_bad_rule_is_refused(emu):
    r = requests.post(emu + "/_emulator/faults", json={"action": "explode"})
    assert r.status_code == 400 and "action must be one of" in r.json()["error"]


def test_fault_flag_at_start(tmp_path):
    with running_emulator(extra_args=["--fault", '{"operation": "put_file", "action": "status", "status": 500}']) as info:
        r = requests.put(info["url"] + "/ImageStore/d.bin", params={"api-version": "6.0"}, data=b"d")
        assert r.status_code == 500
        assert requests.put(info["url"] + "/ImageStore/d.bin", params={"api-version": "6.0"}, data=b"d").status_code == 200
        back = requests.get(info["url"] + "/_emulator/servicefabric/content/d.bin").content
        assert hashlib.sha256(back).hexdigest() == hashlib.sha256(b"d").hexdigest()
