"""The Service Fabric Image Store part of the emulator, checked against the protocol note's rules."""

import hashlib
import os
import re
import socket
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from urllib.parse import quote, urlsplit

import pytest
import requests
from hypothesis import given, settings
from hypothesis import strategies as st

from imagestore_emulator.testing import running_emulator

API = {"api-version": "6.0"}
RANGE = "FABRIC_E_UPLOAD_SESSION_RANGE_NOT_SATISFIABLE"
BAD_ID = "FABRIC_E_INVALID_UPLOAD_SESSION_ID"
INVALID = "E_INVALIDARG"
NOT_FOUND = "FABRIC_E_FILE_NOT_FOUND"


class SF:
    """A thin client of the Image Store API (content paths percent-encoded as Microsoft's clients do)."""

    def __init__(self, url):
        self.url = url
        self.http = requests.Session()

    def _path(self, path):
        encoded = quote(path, safe="")
        if not encoded.strip("."):          # "." and ".." would be dropped by the URL parser on the way
            encoded = encoded.replace(".", "%2E")
        return "%s/ImageStore/%s" % (self.url, encoded)

    def chunk(self, path, sid, start, data, total, content_range=None, **params):
        header = content_range or "bytes %d-%d/%d" % (start, start + len(data) - 1, total)
        return self.http.put(self._path(path) + "/$/UploadChunk", params=dict(API, **{"session-id": sid}, **params),
                             headers={"Content-Range": header}, data=data)

    def session(self, sid, **params):
        return self.http.get(self.url + "/ImageStore/$/GetUploadSession", params=dict(API, **{"session-id": sid}, **params))

    def sessions_at(self, path):
        return self.http.get(self._path(path) + "/$/GetUploadSession", params=API)

    def expected(self, sid):
        r = self.session(sid)
        assert r.status_code == 200, r.text
        return [(int(x["StartPosition"]), int(x["EndPosition"])) for x in r.json()["UploadSessions"][0]["ExpectedRanges"]]

    def commit(self, sid):
        return self.http.post(self.url + "/ImageStore/$/CommitUploadSession", params=dict(API, **{"session-id": sid}))

    def delete_session(self, sid):
        return self.http.delete(self.url + "/ImageStore/$/DeleteUploadSession", params=dict(API, **{"session-id": sid}))

    def put(self, path, data):
        return self.http.put(self._path(path), params=API, data=data)

    def info(self, path=None):
        return self.http.get(self._path(path) if path else self.url + "/ImageStore", params=API)

    def delete(self, path):
        return self.http.delete(self._path(path), params=API)

    def stored(self, path):
        r = self.http.get(self.url + "/_emulator/servicefabric/content/" + path)
        return r.content if r.status_code == 200 else None

    def control(self, rest, method="GET"):
        return self.http.request(method, self.url + "/_emulator/servicefabric/" + rest)

    def upload(self, path, data, sid=None, chunk=1000):
        sid = sid or str(uuid.uuid4())
        for start in range(0, len(data), chunk):
            assert self.chunk(path, sid, start, data[start:start + chunk], len(data)).status_code == 200
        assert self.commit(sid).status_code == 200
        return sid


def assert_error(response, status, code):
    assert response.status_code == status, response.text
    assert response.json()["Error"]["Code"] == code, response.text
    assert response.json()["Error"]["Message"]


@pytest.fixture(scope="module")
def emulator():
    with running_emulator() as info:
        yield info


@pytest.fixture
def sf(emulator):
    """A client of a freshly reset emulator."""
    requests.post(emulator["url"] + "/_emulator/reset").raise_for_status()
    yield SF(emulator["url"])
    requests.post(emulator["url"] + "/_emulator/config", json={"sf_session_expiry_seconds": 1800}).raise_for_status()


def new_id():
    return str(uuid.uuid4())


# ---------------------------------------------------------------------------------------- arguments

@pytest.mark.parametrize("version", [None, "", "abc", "0.9", "9.2", "10.0", "6.0.1", "-preview"])
def test_bad_api_version_is_invalid_arg(sf, version):
    params = {} if version is None else {"api-version": version}
    assert_error(sf.http.get(sf.url + "/ImageStore", params=params), 400, INVALID)
    sid = new_id()
    r = sf.http.put(sf.url + "/ImageStore/f/$/UploadChunk", params=dict(params, **{"session-id": sid}),
                    headers={"Content-Range": "bytes 0-1/2"}, data=b"ab")
    assert_error(r, 400, INVALID)
    assert sf.session(sid).status_code == 204


@pytest.mark.parametrize("version", ["1.0", "1", "6.0", "6.2", "9.1", "9.1-preview", "7.0-preview.1"])
def test_supported_api_versions(sf, version):
    assert sf.http.get(sf.url + "/ImageStore", params={"api-version": version}).status_code == 204


def test_timeout_is_lenient(sf):
    sid = new_id()
    for i, timeout in enumerate(("abc", "0", "-5", "99999999999", "60")):
        assert sf.chunk("f", sid, i, b"x", 10, timeout=timeout).status_code == 200
        assert sf.session(sid, timeout=timeout).status_code == 200
    assert sf.expected(sid) == [(5, 9)]


@pytest.mark.parametrize("value", [None, "", "not-a-guid", "00000000-0000-0000-0000-000000000000", "1234"])
def test_bad_session_id(sf, value):
    params = dict(API) if value is None else dict(API, **{"session-id": value})
    assert_error(sf.http.get(sf.url + "/ImageStore/$/GetUploadSession", params=params), 400, BAD_ID)
    r = sf.http.put(sf.url + "/ImageStore/f/$/UploadChunk", params=params, headers={"Content-Range": "bytes 0-1/2"}, data=b"ab")
    assert_error(r, 400, BAD_ID)
    assert_error(sf.http.post(sf.url + "/ImageStore/$/CommitUploadSession", params=params), 400, INVALID)
    assert_error(sf.http.delete(sf.url + "/ImageStore/$/DeleteUploadSession", params=params), 400, INVALID)


def test_content_range_rules(sf):
    sid = new_id()
    r = sf.http.put(sf.url + "/ImageStore/f/$/UploadChunk", params=dict(API, **{"session-id": sid}), data=b"ab")
    assert_error(r, 400, INVALID)                               # missing header
    for header in ("bytes abc", "bytes 0-1", "bytes 5-3/10", "bytes -1-3/10", "lines 0-1/10", "bytes */10",
                   "bytes 0-1/%d" % 2 ** 63):
        assert_error(sf.chunk("f", sid, 0, b"ab", 10, content_range=header), 400, RANGE)
    assert sf.session(sid).status_code == 204                   # none of them opened a session
    assert_error(sf.chunk("f", sid, 0, b"abc", 10, content_range="bytes 0-1/10"), 400, INVALID)   # body longer
    assert_error(sf.chunk("f", sid, 0, b"a", 10, content_range="bytes 0-1/10"), 400, INVALID)     # body shorter
    assert sf.session(sid).status_code == 204                   # nothing recorded
    assert sf.chunk("f", sid, 0, b"ab", 10, content_range="0-1/10").status_code == 200           # no "bytes" prefix
    assert sf.chunk("f", sid, 2, b"cd", 10, content_range="bytes 2-3/10").status_code == 200
    assert_error(sf.chunk("f", sid, 9, b"jk", 10, content_range="bytes 9-10/10"), 400, RANGE)     # end == total
    assert_error(sf.chunk("f", sid, 20, b"x", 10, content_range="bytes 20-20/10"), 400, RANGE)
    assert sf.expected(sid) == [(4, 9)]


def test_unknown_operation_or_method(sf):
    assert_error(sf.http.get(sf.url + "/ImageStore/$/NoSuchThing", params=API), 400, INVALID)
    assert_error(sf.http.post(sf.url + "/ImageStore/f", params=API), 400, INVALID)
    assert_error(sf.http.put(sf.url + "/ImageStore", params=API, data=b"x"), 400, INVALID)


@pytest.mark.parametrize("path", ["..", "a/../b", "a\\..\\b", "/abs", "\\abs", "C:\\x", "C:", "a/b:stream",
                                  "a\x00b", "a\x01b", "a\x7fb", "/", ".", "./", "a/" + "n" * 256])
def test_unsafe_paths(sf, path):
    code = "FABRIC_E_PATH_TOO_LONG" if path.endswith("n" * 256) else INVALID
    assert_error(sf.put(path, b"data"), 400, code)
    assert_error(sf.info(path), 400, code)
    assert_error(sf.delete(path), 400, code)
    assert_error(sf.sessions_at(path), 400, code)
    sid = new_id()
    assert_error(sf.chunk(path, sid, 0, b"ab", 2), 400, code)
    assert sf.session(sid).status_code == 204
    assert sf.info().status_code == 204          # nothing landed anywhere in the store


# ---------------------------------------------------------------------------------------- sessions

def test_out_of_order_chunks_and_expected_ranges(sf):
    sid = new_id()
    data = os.urandom(100)
    for start, end in ((50, 59), (0, 9), (90, 99)):
        assert sf.chunk("dir/file.bin", sid, start, data[start:end + 1], 100).status_code == 200
    body = sf.session(sid).json()["UploadSessions"][0]
    assert body["ExpectedRanges"] == [{"StartPosition": "10", "EndPosition": "49"}, {"StartPosition": "60", "EndPosition": "89"}]
    assert body["FileSize"] == "100" and body["SessionId"] == sid and body["StoreRelativePath"] == "dir\\file.bin"
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z", body["ModifiedDate"])
    assert_error(sf.chunk("dir/file.bin", sid, 5, data[5:15], 100), 400, RANGE)       # overlaps received bytes
    assert_error(sf.chunk("dir/file.bin", sid, 50, data[50:60], 100), 400, RANGE)     # a retried chunk that landed
    assert_error(sf.chunk("dir/file.bin", sid, 40, data[40:70], 100), 400, RANGE)     # spans two expected ranges
    assert sf.chunk("dir\\file.bin", sid, 10, data[10:50], 100).status_code == 200    # "\" is a separator too
    assert sf.expected(sid) == [(60, 89)]
    assert_error(sf.commit(sid), 400, INVALID)                                          # still missing bytes
    assert sf.chunk("dir/file.bin", sid, 60, data[60:90], 100).status_code == 200
    assert sf.expected(sid) == []
    assert sf.commit(sid).status_code == 200
    assert sf.stored("dir/file.bin") == data


def test_id_conflict_and_size_mismatch(sf):
    sid = new_id()
    assert sf.chunk("a/one", sid, 0, b"xy", 10).status_code == 200
    assert_error(sf.chunk("a/two", sid, 2, b"xy", 10), 409, "FABRIC_E_UPLOAD_SESSION_ID_CONFLICT")
    assert_error(sf.chunk("a/one", sid, 2, b"xy", 11), 400, INVALID)
    assert sf.expected(sid) == [(2, 9)]


def test_parallel_chunks_give_identical_file(sf, image):
    path, digest = image(24 * 1024 * 1024 + 12345)
    size, chunk = os.path.getsize(path), 1024 * 1024
    sid = new_id()
    before = sf.control("stats").json()

    def send(start):
        with open(path, "rb") as fh:
            fh.seek(start)
            data = fh.read(chunk)
        return SF(sf.url).chunk("images\\disk.img", sid, start, data, size).status_code

    starts = list(range(0, size, chunk))
    starts = starts[1::2] + starts[::2]             # out of order as well
    with ThreadPoolExecutor(8) as pool:
        assert set(pool.map(send, starts)) == {200}
    after = sf.control("stats").json()
    assert after["chunk_bytes"] - before["chunk_bytes"] == size
    assert after["chunk_requests"] - before["chunk_requests"] == len(starts)
    assert after["rejected_chunks"] == before["rejected_chunks"]
    assert sf.expected(sid) == []
    assert sf.commit(sid).status_code == 200
    assert hashlib.sha256(sf.stored("images/disk.img")).hexdigest() == digest
    assert sf.info("images/disk.img").json()["StoreFiles"][0]["FileSize"] == str(size)


class RawChunk:
    """A chunk PUT on a raw socket, so a test can hold its body half-sent."""

    def __init__(self, url, path, sid, start, end, total):
        parts = urlsplit(url)
        self.sock = socket.create_connection((parts.hostname, parts.port))
        self.sock.sendall(("PUT /ImageStore/%s/$/UploadChunk?api-version=6.0&session-id=%s HTTP/1.1\r\nHost: x\r\n"
                           "Content-Range: bytes %d-%d/%d\r\nContent-Length: %d\r\n\r\n"
                           % (quote(path, safe=""), sid, start, end, total, end - start + 1)).encode())

    def status(self):
        reply = b""
        while b"\r\n" not in reply:
            reply += self.sock.recv(4096)
        self.sock.close()
        return int(reply.split()[1])


def wait_for_in_flight(sf, sid, wanted):
    deadline = time.time() + 5
    while time.time() < deadline:
        found = [s for s in sf.control("sessions").json() if s["id"] == sid]
        if found and [(r["start"], r["end"]) for r in found[0]["in_flight"]] == wanted:
            return
        time.sleep(0.01)
    raise AssertionError("in-flight ranges never became %s" % wanted)


def test_chunk_overlapping_one_in_flight_is_refused(sf):
    sid, data = new_id(), os.urandom(200)
    assert sf.chunk("f", sid, 199, data[199:], 200).status_code == 200
    held = RawChunk(sf.url, "f", sid, 0, 99, 200)
    held.sock.sendall(data[:10])
    wait_for_in_flight(sf, sid, [(0, 99)])
    assert_error(sf.chunk("f", sid, 50, data[50:150], 200), 400, RANGE)       # overlaps the chunk in flight
    assert_error(sf.chunk("f", sid, 0, data[0:1], 200), 400, RANGE)
    assert sf.expected(sid) == [(0, 198)]                                      # in flight is not received
    assert sf.chunk("f", sid, 100, data[100:150], 200).status_code == 200      # beside it: fine, in parallel
    held.sock.sendall(data[10:100])
    assert held.status() == 200
    assert sf.expected(sid) == [(150, 198)]

    # a chunk whose body never completes gives its range back and records nothing
    broken = RawChunk(sf.url, "f", sid, 150, 198, 200)
    broken.sock.sendall(data[150:160])
    wait_for_in_flight(sf, sid, [(150, 198)])
    broken.sock.close()
    wait_for_in_flight(sf, sid, [])
    assert sf.expected(sid) == [(150, 198)]
    assert sf.chunk("f", sid, 150, data[150:199], 200).status_code == 200
    assert sf.commit(sid).status_code == 200
    assert sf.stored("f") == data


def test_commit_rules(sf):
    assert_error(sf.commit(new_id()), 400, INVALID)
    old = sf.upload("pkg/app.bin", b"old content")
    v1 = sf.info("pkg/app.bin").json()["StoreFiles"][0]["FileVersion"]
    assert sf.commit(old).status_code == 200                        # idempotent
    data = os.urandom(3000)
    sid = sf.upload("pkg\\app.bin", data)                           # replaces the file at that path
    assert sf.commit(sid).status_code == 200
    assert sf.stored("pkg/app.bin") == data
    v2 = sf.info("pkg/app.bin").json()["StoreFiles"][0]["FileVersion"]
    assert int(v2["VersionNumber"]) > int(v1["VersionNumber"])
    assert (v2["EpochDataLossNumber"], v2["EpochConfigurationNumber"]) == (v1["EpochDataLossNumber"], v1["EpochConfigurationNumber"])
    # committed sessions stay readable by id and by path, expecting nothing
    assert sf.expected(sid) == [] and sf.expected(old) == []
    listed = sf.sessions_at("pkg/app.bin").json()["UploadSessions"]
    assert sorted(s["SessionId"] for s in listed) == sorted([old, sid])
    assert all(s["ExpectedRanges"] == [] for s in listed)
    # a chunk reusing a committed id starts a new session, even for another path and size
    assert sf.chunk("other", sid, 0, b"ab", 5).status_code == 200
    assert sf.expected(sid) == [(2, 4)]
    assert sf.stored("pkg/app.bin") == data
    assert [s["SessionId"] for s in sf.sessions_at("pkg/app.bin").json()["UploadSessions"]] == [old]


def test_commit_onto_folder_is_refused(sf):
    assert sf.put("dir/inside", b"x").status_code == 200
    sid = new_id()
    assert sf.chunk("dir", sid, 0, b"ab", 2).status_code == 200
    assert_error(sf.commit(sid), 400, INVALID)
    assert sf.expected(sid) == []                                     # still open, nothing lost
    assert_error(sf.put("dir", b"y"), 400, INVALID)
    assert_error(sf.put("dir/inside/deeper", b"y"), 400, INVALID)


def test_delete_session(sf, emulator):
    sessions_dir = os.path.join(emulator["data_dir"], "servicefabric", "sessions")
    sid = new_id()
    assert sf.chunk("f", sid, 0, b"abc", 10).status_code == 200
    assert len(os.listdir(sessions_dir)) == 1
    assert sf.delete_session(sid).status_code == 200
    assert os.listdir(sessions_dir) == []                              # its data went with it
    assert sf.session(sid).status_code == 204
    assert sf.sessions_at("f").status_code == 204
    assert_error(sf.delete_session(sid), 404, NOT_FOUND)
    assert sf.chunk("g", sid, 0, b"ab", 4).status_code == 200          # the id may be reused after delete
    assert sf.expected(sid) == [(2, 3)]
    assert [s["path"] for s in sf.control("sessions").json()] == ["g"]
    done = sf.upload("h", b"hello")
    assert sf.delete_session(done).status_code == 200                  # a committed one too; the file stays
    assert sf.stored("h") == b"hello"


def test_get_sessions_by_path(sf):
    assert sf.session(new_id()).status_code == 204
    assert sf.session(new_id()).content == b""
    assert sf.sessions_at("x/y").status_code == 204
    a, b, c = new_id(), new_id(), new_id()
    assert sf.chunk("x/y", a, 0, b"ab", 10).status_code == 200
    assert sf.chunk("x\\y", b, 5, b"ab", 10).status_code == 200
    assert sf.chunk("x/z", c, 0, b"ab", 10).status_code == 200
    r = sf.sessions_at("x\\y")
    assert r.status_code == 200
    sessions = {s["SessionId"]: s for s in r.json()["UploadSessions"]}
    assert set(sessions) == {a, b}
    assert sessions[b]["ExpectedRanges"] == [{"StartPosition": "0", "EndPosition": "4"}, {"StartPosition": "7", "EndPosition": "9"}]
    assert all(s["StoreRelativePath"] == "x\\y" for s in sessions.values())


def test_zero_byte_file(sf):
    sid = new_id()
    assert_error(sf.chunk("empty", sid, 0, b"x", 0, content_range="bytes 0-0/0"), 400, RANGE)
    info = sf.session(sid).json()["UploadSessions"][0]
    assert info["FileSize"] == "0"
    assert info["ExpectedRanges"] == [{"StartPosition": "0", "EndPosition": "0"}]     # the runtime's quirk
    assert_error(sf.commit(sid), 400, INVALID)
    assert sf.put("empty", b"").status_code == 200                                     # the way to store one
    assert sf.stored("empty") == b""
    assert sf.info("empty").json()["StoreFiles"][0]["FileSize"] == "0"


# ---------------------------------------------------------------------------------------- content

def test_whole_file_put_and_content_info(sf):
    assert sf.info().status_code == 204                                   # empty store
    for path, data in (("Store/App/manifest.xml", b"<m/>"), ("Store/App/Code/a.dll", b"a" * 10),
                       ("Store/App/Code/b.dll", b"b" * 20), ("Store/App/Code/sub/c.dll", b"c"), ("Store/App/Data/d", b"d")):
        assert sf.put(path, data).status_code == 200
        assert sf.stored(path) == data
    body = sf.info("Store%sApp" % "\\").json()
    assert [f["StoreRelativePath"] for f in body["StoreFiles"]] == ["Store\\App\\manifest.xml"]
    assert body["StoreFolders"] == [{"StoreRelativePath": "Store\\App\\Code", "FileCount": "3"},
                                    {"StoreRelativePath": "Store\\App\\Data", "FileCount": "1"}]
    assert sf.info().json() == {"StoreFiles": [], "StoreFolders": [{"StoreRelativePath": "Store", "FileCount": "5"}]}
    info = sf.info("Store/App/Code/b.dll").json()
    assert info["StoreFolders"] == []
    (entry,) = info["StoreFiles"]
    assert entry["FileSize"] == "20" and entry["StoreRelativePath"] == "Store\\App\\Code\\b.dll"
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z", entry["ModifiedDate"])
    version = int(entry["FileVersion"]["VersionNumber"])
    assert sf.put("Store/App/Code/b.dll", b"B" * 7).status_code == 200
    entry = sf.info("Store/App/Code/b.dll").json()["StoreFiles"][0]
    assert int(entry["FileVersion"]["VersionNumber"]) > version and entry["FileSize"] == "7"
    missing = sf.info("Store/nothing")
    assert missing.status_code == 404 and missing.content == b""
    assert sf.delete("Store/App/Code/sub/c.dll").status_code == 200
    assert sf.info("Store/App/Code/sub").status_code == 204               # existing, empty folder
    assert sf.delete("Store/App/Code").status_code == 200                 # a folder, recursively
    assert sf.stored("Store/App/Code/a.dll") is None
    assert sf.info("Store/App/Code").status_code == 404
    assert_error(sf.delete("Store/App/Code"), 404, NOT_FOUND)
    assert sf.info("Store/App").json()["StoreFolders"] == [{"StoreRelativePath": "Store\\App\\Data", "FileCount": "1"}]
    stats = sf.control("stats").json()
    assert stats["whole_file_puts"] == 6 and stats["whole_file_bytes"] == 4 + 10 + 20 + 1 + 1 + 7


# ---------------------------------------------------------------------------------------- lifetime

def test_restart_keeps_sessions_and_files(tmp_path):
    data = os.urandom(5000)
    sid = new_id()
    with running_emulator(data_dir=tmp_path) as first:
        sf = SF(first["url"])
        done = sf.upload("kept/file", b"committed before the restart")
        assert sf.chunk("kept/partial", sid, 0, data[:2000], 5000).status_code == 200
        assert sf.chunk("kept/partial", sid, 4000, data[4000:], 5000).status_code == 200
        held = RawChunk(first["url"], "kept/partial", sid, 2000, 3999, 5000)     # stopped in the middle of its body
        held.sock.sendall(data[2000:2500])
        wait_for_in_flight(sf, sid, [(2000, 3999)])
    with running_emulator(data_dir=tmp_path) as second:
        sf = SF(second["url"])
        assert sf.stored("kept/file") == b"committed before the restart"
        assert sf.expected(done) == []
        assert sf.expected(sid) == [(2000, 3999)]
        assert_error(sf.chunk("kept/partial", sid, 0, data[:10], 5000), 400, RANGE)
        assert sf.chunk("kept/partial", sid, 2000, data[2000:4000], 5000).status_code == 200
        assert sf.commit(sid).status_code == 200
        assert sf.stored("kept/partial") == data
        assert sf.info("kept").json()["StoreFolders"] == []
    held.sock.close()


def test_expiry(sf):
    requests.post(sf.url + "/_emulator/config", json={"sf_session_expiry_seconds": 1.0}).raise_for_status()
    idle, busy = new_id(), new_id()
    assert sf.chunk("e/idle", idle, 0, b"ab", 10).status_code == 200
    assert sf.chunk("e/busy", busy, 0, b"ab", 10).status_code == 200
    time.sleep(0.6)
    assert sf.session(idle).status_code == 200                     # reading does not extend it
    assert sf.chunk("e/busy", busy, 2, b"cd", 10).status_code == 200   # an accepted chunk does
    time.sleep(0.6)
    assert sf.session(idle).status_code == 204
    assert sf.sessions_at("e/idle").status_code == 204
    assert_error(sf.commit(idle), 400, INVALID)
    assert sf.expected(busy) == [(4, 9)]
    assert sf.chunk("e/busy", busy, 4, b"efghij", 10).status_code == 200
    assert sf.commit(busy).status_code == 200
    time.sleep(1.1)
    assert sf.session(busy).status_code == 204                     # the committed session expires too
    assert sf.stored("e/busy") == b"abcdefghij"                    # but not its file
    assert sf.control("sessions").json() == []


def test_control_api(sf):
    sid = new_id()
    assert sf.chunk("c/f", sid, 3, b"de", 10).status_code == 200
    (listed,) = sf.control("sessions").json()
    assert listed["id"] == sid and listed["path"] == "c/f" and listed["size"] == 10
    assert listed["received"] == [{"start": 3, "end": 4}] and listed["committed"] is False
    assert listed["expires"].endswith("Z")
    assert sf.control("sessions/%s/expire" % new_id(), "POST").status_code == 404
    assert sf.control("sessions/not-an-id/expire", "POST").status_code == 404
    assert sf.control("sessions/%s/expire" % sid, "POST").status_code == 200
    assert sf.session(sid).status_code == 204
    assert sf.control("content/c/nothing").status_code == 404
    assert sf.control("nothing").status_code == 404
    health = requests.get(sf.url + "/_emulator/health").json()["providers"]["servicefabric"]
    assert health == {"api_versions": "1.0-9.1", "sessions": 0}
    sf.upload("c/g", b"0123456789", chunk=4)
    assert sf.control("stats").json() == {"chunk_requests": 4, "chunk_bytes": 12, "rejected_chunks": 0,
                                          "whole_file_puts": 0, "whole_file_bytes": 0, "commits": 1}
    requests.post(sf.url + "/_emulator/reset").raise_for_status()
    assert sf.control("sessions").json() == []
    assert sf.stored("c/g") is None and sf.info().status_code == 204
    assert set(sf.control("stats").json().values()) == {0}


# ---------------------------------------------------------------------------------------- property

@settings(max_examples=40, deadline=None)
@given(st.data())
def test_expected_ranges_are_the_complement_of_accepted_chunks(emulator, data):
    size = data.draw(st.integers(min_value=1, max_value=3000), label="size")
    cuts = data.draw(st.sets(st.integers(min_value=1, max_value=size - 1), max_size=12) if size > 1 else st.just(set()))
    bounds = [0] + sorted(cuts) + [size]
    pieces = [(bounds[i], bounds[i + 1] - 1) for i in range(len(bounds) - 1)]
    order = data.draw(st.permutations(pieces), label="order")
    chosen = order[:data.draw(st.integers(0, len(pieces)), label="count")]
    sf, sid = SF(emulator["url"]), new_id()
    received = bytearray(size)
    for start, end in chosen:
        assert sf.chunk("prop/file", sid, start, b"z" * (end - start + 1), size).status_code == 200
        received[start:end + 1] = b"\x01" * (end - start + 1)
    if not chosen:
        assert sf.session(sid).status_code == 204
        return
    holes, start = [], None
    for position in range(size + 1):
        hole = position < size and not received[position]
        if hole and start is None:
            start = position
        elif not hole and start is not None:
            holes.append((start, position - 1))
            start = None
    assert sf.expected(sid) == holes
    assert sf.delete_session(sid).status_code == 200
