"""The vSphere wire client against a scripted local server: both API styles from one table of routes, error mapping
(including vcsim's bare and empty answers), the style probe, UTF-8 credentials, re-login on 401, no session token to
another origin; the keep-alive thread (without real time) and the pure helpers of the formats module."""

import base64
import json
import time

import pytest

from ansible_collections.imagestore.upload.plugins.module_utils._errors import ApiError, BadInput, ImageStoreError, LocalFileError
from ansible_collections.imagestore.upload.plugins.module_utils._http import HttpClient
from ansible_collections.imagestore.upload.plugins.module_utils._protocol import LocalFile
from ansible_collections.imagestore.upload.plugins.module_utils._vsphere_client import ROUTES, ContentLibraryClient, parse_error
from ansible_collections.imagestore.upload.plugins.module_utils._vsphere_formats import (
    check_file_name, item_type, ovf_references, parse_time, same_content,
)
from ansible_collections.imagestore.upload.plugins.module_utils._vsphere_sessions import KeepAlive
from ansible_collections.imagestore.upload.plugins.module_utils._wait import Deadline

REST_NOT_FOUND = {"type": "com.vmware.vapi.std.errors.not_found",
                  "value": {"error_type": "NOT_FOUND", "messages": [{"id": "x", "default_message": "library 42 not found", "args": []}]}}
API_NOT_FOUND = {"error_type": "NOT_FOUND", "messages": [{"id": "x", "default_message": "library 42 not found", "args": []}]}


class Seen:
    """One request the scripted server received."""

    def __init__(self, method, path, headers, body):
        self.method = method
        self.path = path
        self.headers = headers
        self.body = body


class Script:
    """Answers by (method, path without query): a list of (status, body[, content type[, headers]]) used in order, the last
    repeating."""

    def __init__(self, routes):
        self.routes = {k: list(v) for k, v in routes.items()}
        self.seen = []
        self.url = None


@pytest.fixture
def server(http_server):
    def start(routes):
        script = Script(routes)

        def respond(method, path, headers, body):
            script.seen.append(Seen(method, path, headers, body))
            answers = script.routes.get((method, path.split("?")[0])) or [(404, b"404 page not found\n", "text/plain; charset=utf-8")]
            answer = answers.pop(0) if len(answers) > 1 else answers[0]
            status, out = answer[0], answer[1]
            headers = {"Content-Type": answer[2] if len(answer) > 2 else "application/json"}
            headers.update(answer[3] if len(answer) > 3 else {})
            return status, headers, json.dumps(out).encode() if not isinstance(out, bytes) else out

        script.url = http_server(respond)
        return script

    return start


def client(url, style="auto", user="admin", password="secret"):
    http = HttpClient(url, retries=1, backoff=0.01, error_parser=parse_error)
    return ContentLibraryClient(http, user, password, style)


REST_LOGIN = ("POST", "/rest/com/vmware/cis/session")
API_LOGIN = ("POST", "/api/session")


# -- the style probe and login --------------------------------------------------------------

def test_auto_prefers_api(server):
    script = server({API_LOGIN: [(201, "tok-api")], ("GET", "/api/content/library/lib-1"): [(200, {"id": "lib-1"})]})
    api = client(script.url)
    assert api.library_get("lib-1") == {"id": "lib-1"}
    assert api.style == "api"
    assert script.seen[-1].headers["vmware-api-session-id"] == "tok-api"


def test_auto_falls_back_to_rest_where_api_is_not_served(server):
    """vcsim: /api answers 404 text; /rest answers JSON as text/plain, empty lists as {"value": null}."""
    script = server({REST_LOGIN: [(200, b'{"value":"tok-rest"}\n', "text/plain; charset=utf-8")],
                     ("POST", "/rest/com/vmware/content/library"): [(200, b'{"value":null}\n', "text/plain; charset=utf-8")]})
    api = client(script.url)
    assert api.library_find("images") == []
    assert api.style == "rest"
    assert [(r.method, r.path) for r in script.seen] == [("POST", "/api/session"), ("POST", "/rest/com/vmware/cis/session"),
                                                         ("POST", "/rest/com/vmware/content/library?~action=find")]
    assert json.loads(script.seen[-1].body) == {"spec": {"name": "images"}}
    assert script.seen[1].headers["vmware-use-header-authn"] == "true"


def test_forced_api_style_on_a_server_without_it(server):
    script = server({})
    with pytest.raises(ImageStoreError) as err:
        client(script.url, style="api").login()
    assert err.value.message == ("api_style api: %s does not serve the /api endpoints (POST /api/session answered HTTP 404); it is "
                                 "older than vCenter 7.0 or a simulator: use api_style rest or auto" % script.url)


def test_no_automation_api_at_all(server):
    script = server({})
    with pytest.raises(ImageStoreError) as err:
        client(script.url).login()
    assert "does not serve the vSphere Automation API (POST /api/session and POST /rest/com/vmware/cis/session answered HTTP 404)" \
        in err.value.message


@pytest.mark.parametrize("style,login", [("api", API_LOGIN), ("rest", REST_LOGIN)])
def test_wrong_password_message_has_no_secret(server, style, login):
    body = API_NOT_FOUND if style == "api" else REST_NOT_FOUND
    script = server({login: [(401, dict(body, error_type="UNAUTHENTICATED"))]})
    with pytest.raises(ApiError) as err:
        client(script.url, style=style, password="Very-Secret").login()
    assert err.value.message == "login to %s as admin failed: wrong user name or password (HTTP 401 from POST %s)" % (script.url, login[1])
    assert "Very-Secret" not in err.value.message


def test_missing_credentials(server):
    script = server({})
    with pytest.raises(BadInput) as err:
        client(script.url, password=None).login()
    assert "provider vsphere needs username and password" in err.value.message and script.seen == []


def test_a_401_logs_in_again_once(server):
    script = server({API_LOGIN: [(201, "tok-1"), (201, "tok-2")],
                     ("GET", "/api/content/library/item/it-1"): [(401, {"error_type": "UNAUTHENTICATED", "messages": []}),
                                                                 (200, {"id": "it-1"})]})
    api = client(script.url)
    assert api.item_get("it-1") == {"id": "it-1"}
    tokens = [r.headers.get("vmware-api-session-id") for r in script.seen if r.path.startswith("/api/content")]
    assert tokens == ["tok-1", "tok-2"] and api.logins == 2


def test_a_second_401_is_an_error(server):
    script = server({API_LOGIN: [(201, "tok")], ("GET", "/api/content/library/item/it-1"): [(401, b"", "text/plain")]})
    with pytest.raises(ApiError) as err:
        client(script.url).item_get("it-1")
    assert err.value.status == 401 and err.value.message == "get library item it-1 failed: HTTP 401: Unauthorized"


# -- error mapping ----------------------------------------------------------------------------

@pytest.mark.parametrize("style,body,ctype,expected", [
    ("rest", REST_NOT_FOUND, "application/json", "HTTP 400 not_found: library 42 not found"),
    ("api", API_NOT_FOUND, "application/json", "HTTP 400 not_found: library 42 not found"),
    ("rest", {"type": "com.vmware.vapi.std.errors.already_exists", "value": {}}, "text/plain", "HTTP 400 already_exists"),
    ("rest", b"404 page not found\n", "text/plain", "HTTP 400: 404 page not found"),
    ("rest", b"", "text/plain", "HTTP 400: Bad Request"),
])
def test_error_bodies_of_both_styles_and_of_vcsim(server, style, body, ctype, expected):
    login = API_LOGIN if style == "api" else REST_LOGIN
    token = "tok" if style == "api" else {"value": "tok"}
    path = "/api/content/library/item" if style == "api" else "/rest/com/vmware/content/library/item"
    script = server({login: [(201 if style == "api" else 200, token)], ("POST", path): [(400, body, ctype)]})
    with pytest.raises(ApiError) as err:
        client(script.url, style=style).item_create("lib", "disk", "iso")
    assert str(err.value) == "create library item disk failed: " + expected


def test_rest_and_api_request_shapes(server):
    """The same call in both styles: wrapped body and client_token in it (/rest), bare body and client_token in the query (/api)."""
    script = server({REST_LOGIN: [(200, {"value": "t"})], API_LOGIN: [(201, "t")],
                     ("POST", "/rest/com/vmware/content/library/item/update-session"): [(200, {"value": "s-1"})],
                     ("POST", "/api/content/library/item/update-session"): [(201, "s-2")]})
    assert client(script.url, style="rest").session_create("it-1", client_token="ct") == "s-1"
    assert client(script.url, style="api").session_create("it-1", client_token="ct") == "s-2"
    rest, api = [r for r in script.seen if "update-session" in r.path]
    assert json.loads(rest.body) == {"client_token": "ct", "create_spec": {"library_item_id": "it-1"}}
    assert api.path == "/api/content/library/item/update-session?client_token=ct" and json.loads(api.body) == {"library_item_id": "it-1"}


def test_validate_with_an_empty_answer_means_no_errors(server):
    script = server({REST_LOGIN: [(200, {"value": "t"})],
                     ("POST", "/rest/com/vmware/content/library/item/updatesession/file/id:s-1"): [(200, b"", "text/plain")]})
    assert client(script.url, style="rest").file_validate("s-1") == {"has_errors": False, "missing_files": [], "invalid_files": []}


def test_file_get_answering_the_session_falls_back_to_the_list(server):
    """vcsim answers ?~action=get with the session model; the file is then looked up in the list."""
    script = server({REST_LOGIN: [(200, {"value": "t"})],
                     ("POST", "/rest/com/vmware/content/library/item/updatesession/file/id:s-1"): [(200, {"value": {"id": "s-1"}})],
                     ("GET", "/rest/com/vmware/content/library/item/updatesession/file"): [
                         (200, {"value": [{"name": "a.iso", "status": "WAITING_FOR_TRANSFER"}]})]})
    api = client(script.url, style="rest")
    assert api.file_get("s-1", "a.iso") == {"name": "a.iso", "status": "WAITING_FOR_TRANSFER"}
    assert api.file_get("s-1", "b.iso") is None


# -- keep-alive ---------------------------------------------------------------------------------

class RecordingApi:
    def __init__(self):
        self.calls = []

    def ping(self):
        self.calls.append("ping")

    def session_keep_alive(self, session_id, client_progress=None):
        self.calls.append(("keep-alive", session_id, client_progress))


class Waits:
    """The keep-alive's ``wait``: records each pause, stops the thread after ``rounds`` of them."""

    def __init__(self, rounds):
        self.pauses = []
        self.rounds = rounds

    def __call__(self, seconds):
        self.pauses.append(seconds)
        return len(self.pauses) > self.rounds


def test_keep_alive_pings_both_sessions_and_progress_only_grows():
    api, waits = RecordingApi(), Waits(5)
    values = iter([10, 5, 40, 40, 100])
    keep_alive = KeepAlive(api, "s-1", 20.0, lambda: next(values, 100), Deadline(None), start_progress=7, wait=waits).start()
    keep_alive._thread.join(5)
    progress = [c[2] for c in api.calls if c != "ping"]
    assert api.calls.count("ping") == 5 and progress == [10, None, 40, None, 100]
    assert waits.pauses == [20.0] * 6 and not keep_alive._thread.is_alive()


def test_keep_alive_waits_no_longer_than_the_deadline_and_stops_there():
    now = [100.0]
    deadline = Deadline(30, clock=lambda: now[0])

    def wait(seconds):
        pauses.append(seconds)
        now[0] += seconds
        return False
    pauses, api = [], RecordingApi()
    keep_alive = KeepAlive(api, "s-1", 20.0, lambda: 0, deadline, wait=wait).start()
    keep_alive._thread.join(5)
    assert pauses == [20.0, 10.0] and api.calls.count("ping") == 1 and not keep_alive._thread.is_alive()


def test_keep_alive_errors_are_counted_not_raised():
    class Failing(RecordingApi):
        def ping(self):
            raise ImageStoreError("keep the API session alive failed: HTTP 503")
    keep_alive = KeepAlive(Failing(), "s-1", 60, lambda: 50, Deadline(None))
    keep_alive.ping()
    assert keep_alive.errors == ["keep the API session alive failed: HTTP 503"] and keep_alive.pings == 0


def test_keep_alive_interval_is_a_third_of_the_expiry_at_most_a_minute():
    now = 1_800_000_000.0
    expires = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(now + 300)) + ".000Z"
    assert KeepAlive.interval_for({"expiration_time": expires}, now=now) == 60.0
    expires = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(now + 30)) + ".123456789Z"
    assert KeepAlive.interval_for({"expiration_time": expires}, now=now) == pytest.approx(10.04, abs=0.01)
    assert KeepAlive.interval_for({}, now=now) == 60.0


# -- pure helpers ------------------------------------------------------------------------------

def test_parse_time_accepts_milliseconds_and_nanoseconds():
    assert parse_time("1970-01-01T00:01:00.500Z") == 60.5
    assert parse_time("2026-11-23T19:12:11.447460275Z") == pytest.approx(1795461131.447, abs=0.001)
    assert parse_time("yesterday") is None


class _Src:
    def __init__(self, size):
        self.size, self.path, self.declared = size, "/x", {}


def test_same_content_uses_the_checksum_where_reported_else_the_size():
    f = LocalFile("x.iso", _Src(10))
    digests = {"sha1": "a" * 40, "sha256": "b" * 64}
    asked = []

    def digest(algorithm):
        asked.append(algorithm)
        return digests[algorithm]
    assert same_content({"size": 10, "checksum_info": {"algorithm": "SHA1", "checksum": "A" * 40}}, f, digest)
    assert not same_content({"size": 10, "checksum_info": {"algorithm": "SHA1", "checksum": "c" * 40}}, f, digest)
    assert same_content({"size": 10, "checksum_info": {"algorithm": "SHA256", "checksum": "b" * 64}}, f, digest)
    assert asked == ["sha1", "sha1", "sha256"]
    assert same_content({"size": 10}, f, digest)                          # vcsim: no checksum, size decides
    assert not same_content({"size": "11"}, f, digest) and not same_content(None, f, digest)


@pytest.mark.parametrize("name,kind", [("a.iso", "iso"), ("A.ISO", "iso"), ("x.ovf", "ovf"), ("x.ova", "ovf"), ("disk.img", "file")])
def test_item_type_from_the_extension(name, kind):
    assert item_type("/srv/" + name) == kind


@pytest.mark.parametrize("name", ["../x", "a/b", "a\\b", "..", "", "a\nb"])
def test_file_names_must_be_plain(name):
    with pytest.raises(BadInput):
        check_file_name(name)


def test_ovf_references(tmp_path):
    ovf = tmp_path / "a.ovf"
    ovf.write_text('<Envelope xmlns="http://schemas.dmtf.org/ovf/envelope/1" xmlns:ovf="http://schemas.dmtf.org/ovf/envelope/1">'
                   '<References><File ovf:href="a-1.vmdk" ovf:id="f1"/><File ovf:href="a-2.iso" ovf:id="f2"/></References>'
                   '<DiskSection/></Envelope>')
    assert ovf_references(str(ovf)) == ["a-1.vmdk", "a-2.iso"]
    bad = tmp_path / "bad.ovf"
    bad.write_text("<Envelope>")
    with pytest.raises(LocalFileError) as err:
        ovf_references(str(bad))
    assert err.value.message.startswith("src %s is not a readable OVF descriptor: " % bad)


# -- the table of routes, credentials and origins ---------------------------------------------------------

def test_every_operation_has_a_route_in_both_styles():
    assert all(set(styles) == {"api", "rest"} for styles in ROUTES.values())
    assert ROUTES["file_get"]["rest"].name_field == "file_name" and ROUTES["file_add"]["rest"].wrap == "file_spec"


def test_a_password_beyond_latin_1_logs_in_as_utf_8(server):
    password = "pässwörd-密码-🔑"
    script = server({API_LOGIN: [(201, "tok")], ("GET", "/api/content/library/lib-1"): [(200, {"id": "lib-1"})]})
    assert client(script.url, password=password).library_get("lib-1") == {"id": "lib-1"}
    scheme, token = script.seen[0].headers["Authorization"].split(" ", 1)
    assert scheme == "Basic" and base64.b64decode(token).decode("utf-8") == "admin:" + password


def test_an_api_call_redirected_elsewhere_fails_and_sends_nothing_there(server):
    elsewhere = server({})
    target = elsewhere.url + "/api/content/library/lib-1"
    script = server({API_LOGIN: [(201, "tok-api")], ("GET", "/api/content/library/lib-1"): [(302, b"", "text/plain", {"Location": target})]})
    with pytest.raises(ApiError) as err:
        client(script.url).library_get("lib-1")
    assert err.value.status == 302 and err.value.message == (
        "get library lib-1 failed: the server redirects it (HTTP 302) to %s, which is not followed; give the endpoint the "
        "server expects" % elsewhere.url)
    assert elsewhere.seen == [] and script.seen[-1].headers["vmware-api-session-id"] == "tok-api"


def test_an_upload_address_on_another_origin_is_refused_without_sending_anything_there(server):
    elsewhere = server({("PUT", "/cls-data/s-1/a.iso"): [(200, b"")]})
    script = server({API_LOGIN: [(201, "tok-api")]})
    api = client(script.url)
    api.login()
    with pytest.raises(ApiError) as err:
        api.put(elsewhere.url + "/cls-data/s-1/a.iso", "a.iso", lambda: b"abc", 3)
    assert err.value.message == (
        "upload of a.iso: the server gave an upload address on %s, another address than the endpoint %s; the session token is "
        "never sent to another address, so nothing was sent. If %s is the vCenter's own name, give it as endpoint"
        % (elsewhere.url, script.url, elsewhere.url))
    assert elsewhere.seen == []


def test_the_upload_goes_to_the_endpoints_own_origin_with_the_token(server):
    script = server({API_LOGIN: [(201, "tok-api")], ("PUT", "/cls-data/s-1/a.iso"): [(200, b"")]})
    api = client(script.url)
    api.put(script.url + "/cls-data/s-1/a.iso", "a.iso", lambda: b"abc", 3)
    put = script.seen[-1]
    assert put.body == b"abc" and put.headers["vmware-api-session-id"] == "tok-api"
    assert put.headers["Content-Type"] == "application/octet-stream"
