"""The HTTP layer against a scripted local server: retries, Retry-After, error mapping."""

import json
import time

import pytest

from ansible_collections.imagestore.upload.plugins.module_utils._http import ApiError, HttpClient, TransportError
from ansible_collections.imagestore.upload.plugins.module_utils._errors import ApiError as FabricApiError
from ansible_collections.imagestore.upload.plugins.module_utils._servicefabric_client import ServiceFabricClient, parse_error


class Script:
    """Answers requests from a list of (status, headers, body) in order; the last one repeats."""

    def __init__(self, answers):
        self.answers = list(answers)
        self.seen = []
        self.times = []


@pytest.fixture
def scripted(http_server):
    def start(answers):
        script = Script(answers)

        def respond(method, path, headers, body):
            script.seen.append((method, path, body))
            script.times.append(time.monotonic())
            status, extra, out = script.answers.pop(0) if len(script.answers) > 1 else script.answers[0]
            if status == "drop":
                return None
            return status, extra, json.dumps(out).encode() if isinstance(out, (dict, list)) else (out or b"")

        return http_server(respond), script

    return start


def client(url, **kw):
    kw.setdefault("backoff", 0.01)
    return HttpClient(url, error_parser=parse_error, **kw)


def test_retries_5xx_then_succeeds(scripted):
    url, script = scripted([(500, {}, {"Error": {"Code": "E_FAIL", "Message": "x"}}), (502, {}, b""), (200, {}, b"ok")])
    r = client(url).request("GET", "/x")
    assert r.status_code == 200 and len(script.seen) == 3


def test_503_retry_after_is_honoured(scripted):
    url, script = scripted([(503, {"Retry-After": "1"}, {"Error": {"Code": "FABRIC_E_NOT_READY"}}), (200, {}, b"")])
    client(url).request("GET", "/x")
    assert script.times[1] - script.times[0] >= 0.95


def test_retry_budget_is_bounded_and_the_error_names_the_cause(scripted):
    url, script = scripted([(503, {}, {"Error": {"Code": "FABRIC_E_NOT_PRIMARY", "Message": "failover"}})])
    with pytest.raises(ApiError) as err:
        client(url, retries=2).request("GET", "/ImageStore/x", what="get content")
    assert len(script.seen) == 3
    assert "get content failed after 3 attempts" in str(err.value)
    assert "FABRIC_E_NOT_PRIMARY" in str(err.value) and err.value.status == 503


def test_4xx_is_not_retried_and_carries_code_and_message(scripted):
    url, script = scripted([(400, {}, {"Error": {"Code": "E_INVALIDARG", "Message": "bad size"}})])
    with pytest.raises(ApiError) as err:
        client(url).request("POST", "/c", what="commit")
    assert len(script.seen) == 1
    assert (err.value.status, err.value.code) == (400, "E_INVALIDARG")
    assert str(err.value) == "commit failed: HTTP 400 E_INVALIDARG: bad size"


def test_non_idempotent_500_is_not_repeated(scripted):
    url, script = scripted([(500, {}, b"")])
    with pytest.raises(ApiError):
        client(url).request("POST", "/c", idempotent=False)
    assert len(script.seen) == 1


def test_dropped_connection_is_retried_with_a_fresh_body(scripted):
    url, script = scripted([("drop", {}, b""), (200, {}, b"")])
    bodies = iter([b"first", b"second"])
    client(url).request("PUT", "/x", body=lambda: next(bodies))
    assert script.seen[-1][2] == b"second"


def test_connection_refused_message():
    with pytest.raises(TransportError) as err:
        client("http://127.0.0.1:9", retries=1).request("GET", "/x", what="get upload session")
    assert str(err.value) == ("get upload session failed after 2 attempts: cannot connect to http://127.0.0.1:9: "
                              "connection refused (is the endpoint right and the service running?)")


def test_range_not_satisfiable_carries_its_code(scripted):
    """The protocol turns it into a Conflict (tests/unit/test_servicefabric_protocol.py); the client says what it was."""
    url = scripted([(400, {}, {"Error": {"Code": "FABRIC_E_UPLOAD_SESSION_RANGE_NOT_SATISFIABLE", "Message": "r"}})])[0]
    api = ServiceFabricClient(client(url))
    with pytest.raises(FabricApiError) as err:
        api.upload_chunk("a/b", "4a2340e8-d8d8-497c-95fe-cdaa1052f33b", 0, 3, 4, b"abcd")
    assert err.value.code == "FABRIC_E_UPLOAD_SESSION_RANGE_NOT_SATISFIABLE" and err.value.status == 400


def test_204_means_no_session_and_numbers_are_strings(scripted):
    url = scripted([(204, {}, b""), (200, {}, {"UploadSessions": [{
        "StoreRelativePath": "SwaggerTest\\Common.dll", "SessionId": "4a2340e8-d8d8-497c-95fe-cdaa1052f33b",
        "FileSize": "2097152", "ModifiedDate": "2017-09-28T17:06:37.260Z",
        "ExpectedRanges": [{"StartPosition": "0", "EndPosition": "402128"},
                           {"StartPosition": "730105", "EndPosition": "2097151"}]}]})])[0]
    api = ServiceFabricClient(client(url))
    assert api.get_session("4a2340e8-d8d8-497c-95fe-cdaa1052f33b") is None
    s = api.get_session("4a2340e8-d8d8-497c-95fe-cdaa1052f33b")
    assert s["size"] == 2097152 and s["path"] == "SwaggerTest/Common.dll"
    assert s["missing"] == [(0, 402128), (730105, 2097151)]


def test_paths_are_percent_encoded_with_separators(scripted):
    url, script = scripted([(404, {}, b"")])
    assert ServiceFabricClient(client(url)).content("apps/My App/v1.0") is None
    path = script.seen[0][1]
    assert path.startswith("/ImageStore/apps%2FMy%20App%2Fv1.0?") and "api-version=6.2" in path


def test_delete_content_and_whole_file_put(scripted):
    url, script = scripted([(200, {}, b""), (404, {}, {"Error": {"Code": "FABRIC_E_FILE_NOT_FOUND", "Message": "gone"}}),
                            (200, {}, b"")])
    api = ServiceFabricClient(client(url))
    assert api.delete_content("apps/App") is True
    assert api.delete_content("apps/App") is False
    api.put_file("apps/App/_.dir", b"", 0)
    assert [(seen[0], seen[1].split("?")[0]) for seen in script.seen] == [
        ("DELETE", "/ImageStore/apps%2FApp"), ("DELETE", "/ImageStore/apps%2FApp"), ("PUT", "/ImageStore/apps%2FApp%2F_.dir")]


@pytest.mark.parametrize("a,b", [("https://vc.example.com:443/cls-data/x", "https://VC.example.com"),
                                 ("http://127.0.0.1:80/a", "http://127.0.0.1/b")])
def test_default_ports_name_the_same_origin(a, b):
    from ansible_collections.imagestore.upload.plugins.module_utils._http import origin
    assert origin(a) == origin(b)


def test_other_ports_and_hosts_are_other_origins():
    from ansible_collections.imagestore.upload.plugins.module_utils._http import origin
    assert origin("https://vc.example.com:8443/") != origin("https://vc.example.com/")
    assert origin("http://127.0.0.1:8080/") != origin("http://127.0.0.2:8080/")
