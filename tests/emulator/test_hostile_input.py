"""Hostile input: every answer in the provider's own error format, no traceback in the log, no huge files
for a declared size, and a maximum file size (issue 12 H)."""

import os
import uuid

import pytest
import requests

from field_helpers import VS, ZS, RawRequest, fabric_error, multipart_slice, new_id, sf_chunk, sf_put, zs_slice_headers
from imagestore_emulator.process import EmulatorProcess
from imagestore_emulator.testing import running_emulator

EiB = 2 ** 60
TiB = 2 ** 40
MAX = 8 * 1024 * 1024


@pytest.fixture(scope="module")
def proc(tmp_path_factory):
    """An emulator process (its log is a file) with an 8 MiB maximum file size."""
    emulator = EmulatorProcess(tmp_path_factory.mktemp("hostile"), extra_args=["--max-file-size", "8M"]).start()
    yield emulator
    emulator.stop()


def log_of(proc):
    with open(os.path.join(proc.data_dir, "emulator.stderr.log"), encoding="utf-8", errors="replace") as fh:
        return fh.read()


def largest_file(root):
    """Apparent size of the largest file under ``root`` (a sparse file counts at its apparent size)."""
    return max((os.path.getsize(os.path.join(d, f)) for d, _, names in os.walk(root) for f in names), default=0)


def test_8_eib_offset_and_1_tib_size_are_refused_as_fabric_errors(proc):
    url = proc.url
    sid = new_id()
    offset = 8 * EiB - 2
    r = sf_chunk(url, "big.img", sid, offset, b"xy", 8 * EiB)
    assert r.status_code == 400 and fabric_error(r) == "FABRIC_E_UPLOAD_SESSION_RANGE_NOT_SATISFIABLE"   # beyond int64
    r = sf_chunk(url, "big.img", sid, offset - 8 * EiB + TiB, b"xy", TiB)
    assert r.status_code == 413 and fabric_error(r) == "FABRIC_E_VALUE_TOO_LARGE"
    assert "larger than this image store accepts (8388608 bytes)" in r.json()["Error"]["Message"]
    assert requests.get(url + "/ImageStore/$/GetUploadSession", params={"api-version": "6.0", "session-id": sid}).status_code == 204
    raw = RawRequest(url, "PUT", "/ImageStore/huge.bin?api-version=6.0", {"Content-Length": str(TiB)}, b"x" * 100)
    status, reason, _, body = raw.response()
    raw.close()
    assert (status, reason) == (413, "FABRIC_E_VALUE_TOO_LARGE") and b"FABRIC_E_VALUE_TOO_LARGE" in body
    assert largest_file(proc.data_dir) < MAX
    assert "Traceback" not in log_of(proc)


@pytest.mark.parametrize("content_range", ["bytes -5-10/100", "bytes a-b/c", "bytes 0-1/-3", "bytes 5-1/10",
                                           "bytes 0-1/99999999999999999999999999"])
def test_bad_numbers_in_content_range(proc, content_range):
    r = requests.put(proc.url + "/ImageStore/f/$/UploadChunk", params={"api-version": "6.0", "session-id": new_id()},
                     headers={"Content-Range": content_range}, data=b"xy")
    assert r.status_code == 400 and fabric_error(r) == "FABRIC_E_UPLOAD_SESSION_RANGE_NOT_SATISFIABLE"


@pytest.mark.parametrize("length", ["-5", "abc", "1e3", "0x10"])
def test_bad_content_length_is_answered_in_each_providers_format(proc, length):
    for target, check in (("/ImageStore/x?api-version=6.0", lambda b: b"E_INVALIDARG" in b),
                          ("/api/content/library", lambda b: b"error_type" in b),
                          ("/zstack/v1/images", lambda b: b"bad Content-Length" in b)):
        raw = RawRequest(proc.url, "PUT", target, {"Content-Length": length})
        status, _, _, body = raw.response()
        raw.close()
        assert status == 400 and check(body), (target, body)


def test_chunked_bodies_where_a_length_is_needed_are_answered_411_in_the_providers_format(proc):
    raw = RawRequest(proc.url, "PUT", "/ImageStore/f/$/UploadChunk?api-version=6.0&session-id=%s" % new_id(),
                     {"Transfer-Encoding": "chunked", "Content-Range": "bytes 0-1/2"}, b"2\r\nxy\r\n0\r\n\r\n")
    status, _, _, body = raw.response()
    raw.close()
    assert status == 411 and b'"Error"' in body


def test_a_chunked_whole_file_put_is_stored(proc):
    raw = RawRequest(proc.url, "PUT", "/ImageStore/chunked.txt?api-version=6.0", {"Transfer-Encoding": "chunked"},
                     b"5\r\nhello\r\n6;ext=1\r\n world\r\n0\r\n\r\n")
    status, _, _, _ = raw.response()
    raw.close()
    assert status == 200
    assert requests.get(proc.url + "/_emulator/servicefabric/content/chunked.txt").content == b"hello world"


def test_vsphere_sizes_over_the_maximum_and_negative(proc):
    vs = VS(proc.url, proc.credentials["vsphere"])
    _, added = vs.new_file("big.iso", size=TiB)
    assert added.status_code == 500 and added.json()["error_type"] == "UNABLE_TO_ALLOCATE_RESOURCE"
    _, added = vs.new_file("neg.iso", size=-1)
    assert added.status_code == 400 and added.json()["error_type"] == "INVALID_ARGUMENT"
    session_id, added = vs.new_file("ok.iso")
    assert added.status_code == 201
    raw = RawRequest(proc.url, "PUT", "/cls-data/%s/ok.iso" % session_id,
                     {"Content-Length": str(TiB), "vmware-api-session-id": vs.token}, b"x" * 1000)
    status, _, _, body = raw.response()
    raw.close()
    assert status == 500 and b"com.vmware.vapi.std.errors.unable_to_allocate_resource" in body
    assert largest_file(proc.data_dir) < MAX


def test_zstack_declared_sizes_over_the_maximum_and_bad_numbers(proc):
    zs = ZS(proc.url, proc.credentials["zstack"])
    image_uuid, _ = zs.start_upload("hostile-" + new_id()[:8])
    data = b"z" * 1024
    body, content_type = multipart_slice(data)
    headers = zs_slice_headers(image_uuid, TiB, 0, len(data), 0, len(body), content_type, data)
    r = requests.post(proc.url + "/imagestore/upload", data=body, headers=headers)
    assert r.status_code == 400 and r.json()["error"]["code"] == "SYS.1006"
    assert r.json()["error"]["details"].startswith("cannot reserve %d on the backup storage" % TiB)
    for name, value in (("X-SLICE-OFFSET", "-1"), ("X-IMAGE-SIZE", "1e9"), ("X-SLICE-INDEX", "x")):
        bad = dict(zs_slice_headers(image_uuid, len(data), 0, len(data), 0, len(body), content_type, data), **{name: value})
        r = requests.post(proc.url + "/imagestore/upload", data=body, headers=bad)
        assert r.status_code == 400 and r.json()["error"]["code"] == "SYS.1007", (name, r.text)
    assert largest_file(proc.data_dir) < MAX


def test_control_api_refuses_bad_settings_and_rules(proc):
    for bad in ({"latency_ms": "abc"}, {"body_timeout_seconds": -1}, {"max_file_size": "lots"}, {"nope": 1},
                {"sf_cert_renegotiation": "yes"}, [1, 2]):
        r = requests.post(proc.url + "/_emulator/config", json=bad)
        assert r.status_code == 400 and "error" in r.json(), bad
    for bad in ({"action": "explode"}, {"action": "status", "status": 9999}, {"action": "delay", "ms": -1},
                {"action": "status", "probability": 2}, {"action": "status", "code": 5}):
        assert requests.post(proc.url + "/_emulator/faults", json=bad).status_code == 400, bad
    assert requests.post(proc.url + "/_emulator/faults", data=b"{not json").status_code == 400
    assert requests.post(proc.url + "/_emulator/config", json={"max_file_size": "16M"}).json()["max_file_size"] == 16 * 2 ** 20
    requests.post(proc.url + "/_emulator/config", json={"max_file_size": MAX})


def test_deeply_nested_json_is_an_argument_error_not_a_crash(proc):
    vs = VS(proc.url, proc.credentials["vsphere"])
    r = vs.http.post(proc.url + "/api/content/library/item", data=b"[" * 100000 + b"]" * 100000,
                     headers={"Content-Type": "application/json"})
    assert r.status_code == 400 and r.json()["error_type"] == "INVALID_ARGUMENT"
    zs = ZS(proc.url, proc.credentials["zstack"])
    r = zs.http.post(proc.url + "/zstack/v1/longjobs", data=b"[" * 100000 + b"]" * 100000)
    assert r.status_code == 400 and "invalid JSON body" in r.text


def test_no_traceback_in_the_log_after_all_of_it(proc):
    assert "Traceback" not in log_of(proc)


def test_an_unexpected_error_is_a_500_in_the_providers_format_with_one_log_line(capfd):
    with running_emulator() as info:
        providers = {p.name: p for p in info["server"].app.providers}

        def boom(*args, **kwargs):
            raise RuntimeError("synthetic failure")

        providers["servicefabric"]._get_content = boom
        providers["vsphere"]._op_library_list = boom
        providers["zstack"]._api_query_images = boom
        r = requests.get(info["url"] + "/ImageStore/x", params={"api-version": "6.0"})
        assert (r.status_code, r.reason, r.json()["Error"]["Code"]) == (500, "E_FAIL", "E_FAIL")
        vs = VS(info["url"], info["credentials"]["vsphere"])
        r = vs.http.get(info["url"] + "/api/content/library")
        assert r.status_code == 500 and r.json()["error_type"] == "INTERNAL_SERVER_ERROR"
        zs = ZS(info["url"], info["credentials"]["zstack"])
        r = zs.images()
        assert r.status_code == 500 and r.text == "emulator internal error: RuntimeError"
    err = capfd.readouterr().err
    assert "Traceback" not in err
    lines = [line for line in err.splitlines() if "synthetic failure" in line]
    assert len(lines) == 3 and all(line.startswith("imagestore-emulator: 500 for GET ") for line in lines)


def test_a_broken_fault_flag_on_the_command_line_is_an_error_message(tmp_path):
    emulator = EmulatorProcess(tmp_path, extra_args=["--fault", "{not json"])
    with pytest.raises(Exception):
        emulator.start(timeout=20)
    emulator.stop()
    with open(tmp_path / "emulator.stderr.log", encoding="utf-8") as fh:
        log = fh.read()
    assert "Traceback" not in log and "imagestore-emulator:" in log


def test_session_ids_and_paths_stay_argument_errors(proc):
    r = sf_put(proc.url, "a%00b", b"x")
    assert r.status_code == 400 and fabric_error(r) == "E_INVALIDARG"
    r = requests.get(proc.url + "/ImageStore/$/GetUploadSession", params={"api-version": "6.0", "session-id": "x" * 10000})
    assert r.status_code == 400 and fabric_error(r) == "FABRIC_E_INVALID_UPLOAD_SESSION_ID"
    assert uuid.UUID(new_id())
