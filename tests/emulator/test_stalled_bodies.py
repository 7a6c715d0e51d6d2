"""Request bodies that stall or whose connection dies: after the body time-out (or the reset) the request is
abandoned and what it held is released, for every provider (issue 12 E)."""

import time

import pytest
import requests

from field_helpers import (VS, ZS, RawRequest, multipart_slice, new_id, sf_chunk, sf_chunk_head, sf_sessions, wait_for,
                           zs_slice_headers)
from imagestore_emulator.testing import running_emulator

BODY_TIMEOUT = 1.0
SIZE = 64 * 1024


@pytest.fixture(scope="module")
def emulator():
    with running_emulator(extra_args=["--body-timeout", str(BODY_TIMEOUT)]) as info:
        yield info


def sf_in_flight(url, sid):
    """The session's in-flight ranges; None before the chunk's head was read (no session yet)."""
    session = next((s for s in sf_sessions(url) if s["id"] == sid), None)
    return None if session is None else session["in_flight"]


@pytest.mark.parametrize("ending", ["stall", "reset"])
def test_service_fabric_range_is_expected_again(emulator, ending):
    url = emulator["url"]
    sid, data = new_id(), bytes(range(256)) * (SIZE // 256)
    target, headers = sf_chunk_head("stall-%s.bin" % ending, sid, 0, SIZE - 1, SIZE)
    raw = RawRequest(url, "PUT", target, headers, data[:SIZE // 2])
    wait_for(lambda: sf_in_flight(url, sid) == [{"start": 0, "end": SIZE - 1}], what="the range to be in flight")
    started = time.monotonic()
    if ending == "stall":
        assert raw.closed_by_server(timeout=BODY_TIMEOUT + 10)      # the socket stays open on our side: no FIN
        assert BODY_TIMEOUT * 0.9 <= time.monotonic() - started < BODY_TIMEOUT + 5
    else:
        raw.reset()
    wait_for(lambda: sf_in_flight(url, sid) == [], what="the range to be released")
    raw.close()
    session = requests.get(url + "/ImageStore/$/GetUploadSession", params={"api-version": "6.0", "session-id": sid}).json()
    assert session["UploadSessions"][0]["ExpectedRanges"] == [{"StartPosition": "0", "EndPosition": str(SIZE - 1)}]
    assert sf_chunk(url, "stall-%s.bin" % ending, sid, 0, data, SIZE).status_code == 200
    assert requests.post(url + "/ImageStore/$/CommitUploadSession", params={"api-version": "6.0", "session-id": sid}).status_code == 200
    assert requests.get(url + "/_emulator/servicefabric/content/stall-%s.bin" % ending).content == data


def test_a_slow_but_moving_body_is_not_abandoned(emulator):
    url = emulator["url"]
    sid, data = new_id(), b"s" * 4000
    target, headers = sf_chunk_head("slow.bin", sid, 0, len(data) - 1, len(data))
    raw = RawRequest(url, "PUT", target, headers)
    for offset in range(0, len(data), 1000):           # 4 pieces, 0.4 s apart: 1.6 s in all, never 1 s of silence
        raw.send(data[offset:offset + 1000])
        time.sleep(0.4)
    status, _, _, _ = raw.response()
    raw.close()
    assert status == 200


def test_zstack_slice_is_not_half_recorded(emulator):
    url = emulator["url"]
    zs = ZS(url, emulator["credentials"]["zstack"])
    image_uuid, job_uuid = zs.start_upload("stall-" + new_id()[:8])
    data = b"q" * SIZE
    body, content_type = multipart_slice(data)
    headers = zs_slice_headers(image_uuid, SIZE * 2, 0, SIZE, 0, len(body), content_type, data)
    raw = RawRequest(url, "POST", "/imagestore/upload", headers, body[:len(body) // 2])
    wait_for(lambda: zs.job(job_uuid)["inFlightSlices"] == [0], what="the slice to be in flight")
    assert raw.closed_by_server(timeout=BODY_TIMEOUT + 10)
    job = wait_for(lambda: (lambda j: j if j["inFlightSlices"] == [] else None)(zs.job(job_uuid)), what="the slice released")
    raw.close()
    assert job["receivedSlices"] == [] and job["offset"] == 0 and job["state"] == "Running"
    r = requests.post(url + "/imagestore/upload", data=body, headers=headers)
    assert r.status_code == 200 and zs.job(job_uuid)["receivedSlices"] == [0]


def test_vsphere_transfer_ends_in_error_and_can_be_sent_again(emulator):
    url = emulator["url"]
    vs = VS(url, emulator["credentials"]["vsphere"])
    session_id, added = vs.new_file("disk.iso", size=SIZE)
    assert added.status_code == 201
    raw = RawRequest(url, "PUT", "/cls-data/%s/disk.iso" % session_id,
                     {"Content-Length": str(SIZE), "vmware-api-session-id": vs.token}, b"v" * (SIZE // 2))
    wait_for(lambda: vs.file(session_id, "disk.iso")["status"] == "TRANSFERRING", what="the transfer to start")
    assert raw.closed_by_server(timeout=BODY_TIMEOUT + 10)
    f = wait_for(lambda: (lambda f: f if f["status"] == "ERROR" else None)(vs.file(session_id, "disk.iso")), what="ERROR")
    raw.close()
    assert "stalled after %d bytes" % (SIZE // 2) in f["error_message"]["default_message"]
    session = vs.http.get("%s/api/content/library/item/update-session/%s" % (url, session_id)).json()
    assert session["state"] == "ACTIVE"                 # the session lives on: add the file again and resend it
    again = vs.http.post("%s/api/content/library/item/update-session/%s/file" % (url, session_id),
                         json={"name": "disk.iso", "source_type": "PUSH", "size": SIZE})
    assert again.status_code == 201
    r = vs.http.put(again.json()["upload_endpoint"]["uri"], data=b"v" * SIZE)
    assert r.status_code == 200 and vs.file(session_id, "disk.iso")["status"] == "READY"


def test_body_timeout_is_a_setting(emulator):
    url = emulator["url"]
    assert requests.get(url + "/_emulator/config").json()["body_timeout_seconds"] == BODY_TIMEOUT
    assert requests.post(url + "/_emulator/config", json={"body_timeout_seconds": 2}).json()["body_timeout_seconds"] == 2
    sid = new_id()
    target, headers = sf_chunk_head("two.bin", sid, 0, 99, 100)
    raw = RawRequest(url, "PUT", target, headers, b"x" * 10)
    started = time.monotonic()
    assert raw.closed_by_server(timeout=15)
    raw.close()
    assert time.monotonic() - started >= 1.8
    requests.post(url + "/_emulator/config", json={"body_timeout_seconds": BODY_TIMEOUT})
