"""ZStack wire pieces: the streamed multipart body, error mapping, defaults, and the client against a scripted server."""

import email
import json
import os

import pytest
import requests

from ansible_collections.imagestore.upload.plugins.module_utils._errors import ApiError, ImageStoreError
from ansible_collections.imagestore.upload.plugins.module_utils._http import OK, RETRY, HttpClient
from ansible_collections.imagestore.upload.plugins.module_utils._source import Source
from ansible_collections.imagestore.upload.plugins.module_utils._wait import Deadline
from ansible_collections.imagestore.upload.plugins.module_utils._zstack_client import (
    SliceConflict, SliceGridError, ZStackApiError, ZStackClient, classify, describe_error, job_error, parse_error, sha512_hex,
)
from ansible_collections.imagestore.upload.plugins.module_utils._zstack_jobs import image_options, resume_slice_size
from ansible_collections.imagestore.upload.plugins.module_utils._zstack_multipart import MultipartSlice

MiB = 1024 * 1024
SESSION_A = "a" * 32
SESSION_B = "b" * 32


def error(code, details, cause=None):
    return {"error": {"code": code, "description": "desc of " + code, "details": details, "elaboration": None, "cause": cause, "opaque": None}}


@pytest.fixture
def source(tmp_path):
    path = tmp_path / "disk.qcow2"
    path.write_bytes(os.urandom(3 * 65536 + 17))
    return Source(str(path))


# -- the multipart body ---------------------------------------------------------------------------

def test_multipart_slice_streams_one_file_part_with_an_exact_length(source):
    data = open(source.path, "rb").read()
    body = MultipartSlice(source, 65536, 2 * 65536 - 1, "disk.qcow2", "bnd123")
    announced = len(body)
    out = b"".join(b"".join(piece) if not isinstance(piece, bytes) else piece for piece in body)   # file pieces: iterable
    body.close()
    assert len(out) == announced == body.len
    message = email.message_from_bytes(b"Content-Type: " + body.content_type.encode() + b"\r\n\r\n" + out)
    (part,) = message.get_payload()
    assert part.get_filename() == "disk.qcow2" and part.get_payload(decode=True) == data[65536:2 * 65536]


def test_multipart_slice_is_read_by_the_emulators_receiver(source):
    zstack = pytest.importorskip("imagestore_emulator.zstack")
    data = open(source.path, "rb").read()
    body = MultipartSlice(source, 2 * 65536, len(data) - 1, "x.raw", "imagestore-upload-0123")

    import io
    wire = io.BytesIO(b"".join(b"".join(piece) if not isinstance(piece, bytes) else piece for piece in body))

    class Body:
        remaining = body.len

        def read(self, n):
            block = wire.read(n)
            Body.remaining -= len(block)
            return block

    got = []
    length = zstack.MultipartReader(Body(), b"imagestore-upload-0123").copy_file_part(got.append)
    assert length == len(data) - 2 * 65536 and b"".join(bytes(c) for c in got) == data[2 * 65536:]


def test_multipart_slice_opens_the_file_only_when_sent(source):
    body = MultipartSlice(source, 0, 9, "a", "b")
    assert body._body._file is None and body.len > 10
    body.close()


# -- errors, defaults, arithmetic -------------------------------------------------------------------

def response(status, body):
    r = requests.models.Response()
    r.status_code = status
    r._content = json.dumps(body).encode() if isinstance(body, dict) else body
    r.reason = "Reason"
    return r


def test_error_mapping():
    cause = error("IMG.1001", "uploading has been inactive more than 30 sec")["error"]
    body = error("LONG_JOB.1002", "some error interrupt long job[uuid:x]", cause)
    assert parse_error(response(503, body)) == ("LONG_JOB.1002", "some error interrupt long job[uuid:x] (cause: IMG.1001 uploading has been "
                                                                 "inactive more than 30 sec)")
    assert parse_error(response(400, b"missing header 'Authorization'")) == (None, "missing header 'Authorization'")
    assert parse_error(response(404, b"")) == (None, "Reason")
    assert describe_error({"code": "SYS.1003", "description": "A resource can not be found", "details": None}) == "SYS.1003 A resource can not be found"
    assert job_error({"jobResult": json.dumps(body["error"])}).startswith("LONG_JOB.1002 some error")
    assert job_error({"jobResult": json.dumps({"inventory": {}, "success": True})}) is None
    assert job_error({"jobResult": None}) is None


@pytest.mark.parametrize("chunk,offset,size,expected", [
    (16 * MiB, 0, 100 * MiB, 16 * MiB),              # nothing fixed yet
    (16 * MiB, 32 * MiB, 100 * MiB, 16 * MiB),       # the chunk size fits the offset grid
    (16 * MiB, 20 * MiB, 100 * MiB, 4 * MiB),        # 5 slices of 4 MiB
    (16 * MiB, 8 * MiB, 100 * MiB, 8 * MiB),         # 2 x 4 MiB or 1 x 8 MiB: the receiver's 400 decides
    (MiB, 100 * MiB, 100 * MiB, MiB),                # complete
    (MiB, 3 * 100000, 10 * MiB, 3 * 100000),         # no power of two from 64 KiB divides it: one slice
])
def test_resume_slice_size_from_the_offset_grid(chunk, offset, size, expected):
    assert resume_slice_size(chunk, offset, size) == expected


@pytest.mark.parametrize("src,params,expected", [
    ("/x/a.qcow2", {}, ("qcow2", "RootVolumeTemplate", "Linux")),
    ("/x/a.ISO", {}, ("iso", "ISO", "Linux")),
    ("/x/a.img", {"platform": "Windows"}, ("raw", "RootVolumeTemplate", "Windows")),
    ("/x/a.raw", {"media_type": "DataVolumeTemplate"}, ("raw", "DataVolumeTemplate", "Linux")),
    ("/x/a.vmdk", {}, ("vmdk", "RootVolumeTemplate", "Linux")),
    ("/x/a.bin", {"format": "QCOW2"}, ("qcow2", "RootVolumeTemplate", "Linux")),
    ("/x/a.bin", {"media_type": "ISO"}, ("iso", "ISO", "Linux")),
])
def test_image_defaults_from_the_extension(src, params, expected):
    options = image_options(src, dict(params, name="n"))
    assert (options["format"], options["media_type"], options["platform"]) == expected


@pytest.mark.parametrize("params,message", [
    ({"name": ""}, "name '' is not a usable ZStack image name: give 1 to 255 printable characters"),
    ({"name": "a\nb"}, "name 'a\\nb' is not a usable ZStack image name: give 1 to 255 printable characters"),
    ({"name": "n", "format": "q c"}, "format 'q c' is not an image format: give qcow2, raw, vmdk, iso or another format ZStack knows"),
])
def test_image_options_refused(params, message):
    with pytest.raises(ImageStoreError) as err:
        image_options("/x/a.qcow2", params)
    assert err.value.message == message


# -- the client against a scripted server ---------------------------------------------------------------

class Server:
    """Answers from a list of (status, body) in order; records (method, path, headers, body)."""

    def __init__(self, answers, http_server):
        self.answers = list(answers)
        self.seen = []
        self.url = http_server(self._respond)

    def _respond(self, method, path, headers, body):
        self.seen.append((method, path, headers, body))
        status, out = self.answers.pop(0)
        return status, {}, json.dumps(out).encode() if isinstance(out, dict) else out


@pytest.fixture
def scripted(http_server):
    def start(answers):
        server = Server(answers, http_server)
        deadline = Deadline(None, sleep=lambda s: None)
        http = HttpClient(server.url, backoff=0.01, error_parser=parse_error, classify=classify, deadline=deadline)
        return server, ZStackClient(http, "admin", "pw", deadline)

    return start


def login_ok(session):
    return 200, {"inventory": {"uuid": session}}


def test_login_sends_the_sha512_and_a_sync_id1001_logs_in_again_once(scripted):
    server, api = scripted([login_ok(SESSION_A), (503, error("ID.1001", "Session expired")), login_ok(SESSION_B),
                            (200, {"inventories": [{"uuid": "i1", "name": "bs"}]})])
    assert api.query("backup-storage") == [{"uuid": "i1", "name": "bs"}]
    login, first, relogin, second = server.seen
    assert json.loads(login[3]) == {"logInByAccount": {"accountName": "admin", "password": sha512_hex("pw")}}
    assert login[1] == relogin[1] == "/zstack/v1/accounts/login" and "Authorization" not in login[2]
    assert first[2]["Authorization"] == "OAuth " + SESSION_A and second[2]["Authorization"] == "OAuth " + SESSION_B


def test_an_async_call_whose_api_job_says_id1001_is_submitted_again(scripted):
    location = {"location": "http://elsewhere:8080/zstack/v1/api-jobs/j1"}
    server, api = scripted([login_ok(SESSION_A), (202, location), (503, error("ID.1001", "Session expired")), login_ok(SESSION_B),
                            (202, location), (202, {}), (200, {"inventory": {"uuid": "job1", "state": "Waiting"}})])
    job = api.submit_add_image("id1", {"name": "n"})
    assert job["uuid"] == "job1"
    paths = [seen[:2] for seen in server.seen]
    assert paths == [("PUT", "/zstack/v1/accounts/login"), ("POST", "/zstack/v1/longjobs"), ("GET", "/zstack/v1/api-jobs/j1"),
                     ("PUT", "/zstack/v1/accounts/login"), ("POST", "/zstack/v1/longjobs"), ("GET", "/zstack/v1/api-jobs/j1"),
                     ("GET", "/zstack/v1/api-jobs/j1")]
    assert json.loads(server.seen[4][3])["systemTags"] == ["uploadImage::id1"]


def test_a_second_id1001_is_an_error_and_other_api_errors_are_not_retried(scripted):
    server, api = scripted([login_ok(SESSION_A), (503, error("ID.1001", "Session expired")), login_ok(SESSION_B),
                            (503, error("ID.1001", "Session expired")), (503, error("SYS.1003", "no such image"))])
    with pytest.raises(ZStackApiError) as err:
        api.get_image("x")
    assert err.value.message == "get image x failed: ID.1001 Session expired"
    with pytest.raises(ZStackApiError) as err:
        api.get_image("y")
    assert err.value.code == "SYS.1003" and len(server.seen) == 5


def test_a_503_without_an_error_code_is_retried_by_the_http_layer(scripted):
    server, api = scripted([login_ok(SESSION_A), (503, b"Service Unavailable"), (200, {"inventories": []})])
    assert api.query("images") == [] and len(server.seen) == 3


def test_wrong_password(scripted):
    server, api = scripted([(503, error("ID.1000", "wrong account name or password"))])
    with pytest.raises(ImageStoreError) as err:
        api.tokens.current()
    assert err.value.message == ("login to ZStack at %s as admin failed (ID.1000 wrong account name or password): check username and "
                                 "password" % server.url)
    assert err.value.status is None and err.value.code == "ID.1000"     # the 503 is RestServer's envelope, not an outage


def test_upload_job_details_falls_back_to_put_on_405_and_remembers_it(scripted):
    details = {"existingJobDetails": [{"longJobUuid": "j", "longJobState": "Suspended", "imageUuid": "i",
                                       "imageUploadUrl": "http://bs:8001/imagestore/upload", "offset": 4.52984832E8}]}
    server, api = scripted([login_ok(SESSION_A), (405, b"The method[GET] is not allowed"), (200, details), (200, {"existingJobDetails": []})])
    assert api.upload_job_details("md5/x") == details["existingJobDetails"]
    assert api.upload_job_details("other") == []
    calls = [(seen[0], seen[1], seen[3]) for seen in server.seen[1:]]
    assert calls == [("GET", "/zstack/v1/images/upload-job/details/md5%2Fx", b""),
                     ("PUT", "/zstack/v1/images/upload-job/details/md5%2Fx", b'{"systemTags": [], "userTags": []}'),
                     ("PUT", "/zstack/v1/images/upload-job/details/other", b'{"systemTags": [], "userTags": []}')]


def test_no_details_api_is_a_clear_error(scripted):
    server, api = scripted([login_ok(SESSION_A), (404, b"no api mapping to /zstack/v1/images/upload-job/details/x")])
    with pytest.raises(ApiError) as err:
        api.upload_job_details("x")
    assert "ZStack 4.1.0 added it" in err.value.message


def test_the_session_uuid_never_reaches_a_message(scripted):
    server, api = scripted([login_ok(SESSION_A), (400, ("no such session /zstack/v1/accounts/sessions/%s" % SESSION_A).encode())])
    api.tokens.current()
    with pytest.raises(ImageStoreError) as err:
        api.logout()
    assert SESSION_A not in err.value.message and "<session>" in err.value.message
    assert err.value.message.startswith("log out of ZStack failed: HTTP 400")


@pytest.mark.parametrize("status,body,outcome", [
    (200, b"", "accepted"),
    (406, error("SYS.1006", "slice 1 is already present"), "present"),
    (409, dict(error("SYS.1006", "slice 1 is being received by another request"), serverOffset=65536), SliceConflict),
    (416, dict(error("SYS.1007", "Content-Range disagrees"), serverOffset=0), SliceConflict),
    (400, error("SYS.1006", "image is Downloading and its upload job is Suspended"), SliceConflict),
    (400, error("SYS.1007", "X-SLICE-OFFSET 65536 is not X-SLICE-INDEX 1 times the slice size 32768"), SliceGridError),
    (400, error("SYS.1007", "X-IMAGE-SIZE 5 differs from the 6 bytes the first slice declared"), ApiError),
    (404, error("SYS.1003", "image[uuid:i] not found"), ApiError),
])
def test_slice_answers(scripted, source, status, body, outcome):
    server, api = scripted([(status, body)])
    data = open(source.path, "rb").read()
    if isinstance(outcome, str):
        assert api.send_slice(server.url + "/imagestore/upload", "i", source.size, 1, 65536, 131071, source, "d.qcow2") == outcome
    else:
        with pytest.raises(outcome) as err:
            api.send_slice(server.url + "/imagestore/upload", "i", source.size, 1, 65536, 131071, source, "d.qcow2")
        if outcome is SliceGridError:
            assert err.value.slice_size == 32768
        if status == 409:
            assert err.value.server_offset == 65536 and err.value.status == 409
    method, path, headers, sent = server.seen[0]
    assert (method, path) == ("POST", "/imagestore/upload")
    assert {k: headers[k] for k in ("X-IMAGE-UUID", "X-IMAGE-SIZE", "X-SLICE-OFFSET", "X-SLICE-SIZE", "X-SLICE-INDEX",
                                    "Content-Range")} == {
        "X-IMAGE-UUID": "i", "X-IMAGE-SIZE": str(source.size), "X-SLICE-OFFSET": "65536", "X-SLICE-SIZE": "65536", "X-SLICE-INDEX": "1",
        "Content-Range": "bytes 65536-131071/%d" % source.size}
    assert "X-SLICE-MD5" not in headers           # optional for the receiver; md5Sum after Ready covers every byte
    assert int(headers["Content-Length"]) == len(sent) and "Authorization" not in headers
    (part,) = email.message_from_bytes(b"Content-Type: " + headers["Content-Type"].encode() + b"\r\n\r\n" + sent).get_payload()
    assert part.get_payload(decode=True) == data[65536:131072]


def test_a_transient_503_is_retried_and_an_api_503_is_not(scripted):
    """SYS.1010 (not ready) and any 503 with Retry-After: the call never ran, retried; SYS.1007: the API's answer."""
    server, api = scripted([login_ok(SESSION_A), (503, error("SYS.1010", "not ready")), (200, {"inventories": [{"uuid": "i"}]}),
                            (503, error("SYS.1007", "bad"))] + [(503, error("SYS.1010", "not ready"))] * 6)
    assert api.query("images") == [{"uuid": "i"}] and len(server.seen) == 3
    with pytest.raises(ZStackApiError) as err:
        api.query("images")
    assert err.value.code == "SYS.1007" and len(server.seen) == 4
    with pytest.raises(ApiError) as err:
        api.query("images")
    assert err.value.message == "query images failed after 6 attempts: HTTP 503 SYS.1010: not ready" and len(server.seen) == 10


def test_a_406_answering_a_retried_slice_counts_as_sent(scripted, source):
    server, api = scripted([(500, b"boom"), (406, error("SYS.1006", "slice 1 is already present"))])
    assert api.send_slice(server.url + "/imagestore/upload", "i", source.size, 1, 65536, 131071, source, "d.qcow2") == "accepted"


def test_classify_tells_the_http_layer_which_503_is_an_answer():
    def answer(status, body, headers=None):
        r = response(status, body)
        r.headers.update(headers or {})
        return r

    assert classify(answer(503, error("SYS.1007", "bad"))) == OK                     # the API's answer: the client reads it
    assert classify(answer(503, error("ID.1001", "expired"))) == OK
    for code in ("SYS.1009", "SYS.1010", "SYS.1011", "SYS.1012"):
        assert classify(answer(503, error(code, "the call never ran"))) == RETRY
    assert classify(answer(503, error("SYS.1007", "busy"), {"Retry-After": "1"})) == RETRY
    assert classify(answer(503, b"Service Unavailable")) is None                      # an outage: the default rule (retried)
    assert classify(answer(500, error("SYS.1000", "internal"))) is None


def test_a_request_that_never_ran_is_repeated_even_when_it_is_a_post(scripted):
    """SYS.1010 on a submit: the call did not run, so repeating the POST cannot make two jobs."""
    server, api = scripted([login_ok(SESSION_A), (503, error("SYS.1010", "not ready")),
                            (200, {"inventory": {"uuid": "job1", "state": "Waiting"}})])
    assert api.submit_add_image("id1", {"name": "n"})["uuid"] == "job1"
    assert [seen[:2] for seen in server.seen[1:]] == [("POST", "/zstack/v1/longjobs")] * 2
