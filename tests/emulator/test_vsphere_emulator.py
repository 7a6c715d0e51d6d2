"""The vSphere Content Library part of the emulator, driven over HTTP in both API styles (/rest and /api)."""

import hashlib
import http.client
import os
import time
from urllib.parse import quote, urlsplit

import pytest
import requests

from imagestore_emulator.testing import running_emulator

REST = "/rest/com/vmware"


class VSphere:
    """A minimal client of one API style: paths, wrappers and answers differ, the resources do not."""

    def __init__(self, info, style):
        self.url = info["url"]
        self.style = style
        self.creds = info["credentials"]["vsphere"]
        self.http = requests.Session()
        self.http.trust_env = False
        self.token = None

    def login(self, username=None, password=None):
        auth = (username or self.creds["username"], password or self.creds["password"])
        if self.style == "rest":
            r = self.http.post(self.url + REST + "/cis/session", auth=auth)
            if r.status_code == 200:
                self.token = r.json()["value"]
        else:
            r = self.http.post(self.url + "/api/session", auth=auth)
            if r.status_code == 201:
                self.token = r.json()
        return r

    def request(self, method, path, **kwargs):
        headers = kwargs.pop("headers", {})
        if self.token:
            headers.setdefault("vmware-api-session-id", self.token)
        return self.http.request(method, self.url + path, headers=headers, **kwargs)

    def value(self, r, status=None):
        """The result of a successful call, unwrapped."""
        expected = status or 200
        assert r.status_code == expected, (r.status_code, r.text)
        if not r.content:
            return None
        body = r.json()
        return body["value"] if self.style == "rest" else body

    def error(self, r, status, kind):
        """Assert an error answer of this style; return its messages' default texts."""
        assert r.status_code == status, (r.status_code, r.text)
        body = r.json()
        if self.style == "rest":
            assert body["type"] == "com.vmware.vapi.std.errors." + kind
            body = body["value"]
        assert body["error_type"] == kind.upper()
        assert all(set(m) >= {"id", "default_message", "args"} for m in body["messages"])
        return [m["default_message"] for m in body["messages"]]

    def created(self, r):
        return self.value(r, 200 if self.style == "rest" else 201)

    def done(self, r):
        assert r.status_code == (200 if self.style == "rest" else 204), (r.status_code, r.text)

    # resources
    def find_library(self, name):
        if self.style == "rest":
            return self.value(self.request("POST", REST + "/content/library?~action=find", json={"spec": {"name": name}}))
        return self.value(self.request("POST", "/api/content/library?action=find", json={"name": name}))

    def create_item(self, library_id, name, kind="iso", raw=False, client_token=None):
        spec = {"name": name, "library_id": library_id, "type": kind}
        if self.style == "rest":
            body = {"create_spec": spec}
            if client_token:
                body["client_token"] = client_token
            r = self.request("POST", REST + "/content/library/item", json=body)
        else:
            r = self.request("POST", "/api/content/library/item", json=spec, params={"client_token": client_token} if client_token else None)
        return r if raw else self.created(r)

    def find_item(self, library_id, name):
        spec = {"name": name, "library_id": library_id}
        if self.style == "rest":
            return self.value(self.request("POST", REST + "/content/library/item?~action=find", json={"spec": spec}))
        return self.value(self.request("POST", "/api/content/library/item?action=find", json=spec))

    def item(self, item_id):
        if self.style == "rest":
            return self.value(self.request("GET", REST + "/content/library/item/id:" + item_id))
        return self.value(self.request("GET", "/api/content/library/item/" + item_id))

    def item_files(self, item_id):
        if self.style == "rest":
            return self.value(self.request("GET", REST + "/content/library/item/file", params={"library_item_id": item_id}))
        return self.value(self.request("GET", "/api/content/library/item/%s/file" % item_id))

    def item_file(self, item_id, name):
        if self.style == "rest":
            return self.value(self.request("POST", REST + "/content/library/item/file/id:%s?~action=get" % item_id, json={"name": name}))
        return self.value(self.request("GET", "/api/content/library/item/%s/file" % item_id, params={"name": name}))

    def create_session(self, item_id, client_token=None):
        """POST a new update session; returns the raw response."""
        if self.style == "rest":
            body = {"create_spec": {"library_item_id": item_id}}
            if client_token:
                body["client_token"] = client_token
            return self.request("POST", REST + "/content/library/item/update-session", json=body)
        return self.request("POST", "/api/content/library/item/update-session", json={"library_item_id": item_id},
                            params={"client_token": client_token} if client_token else None)

    def session_path(self, session_id):
        if self.style == "rest":
            return REST + "/content/library/item/update-session/id:" + session_id
        return "/api/content/library/item/update-session/" + session_id

    def session(self, session_id):
        return self.value(self.request("GET", self.session_path(session_id)))

    def sessions(self, item_id=None):
        path = REST + "/content/library/item/update-session" if self.style == "rest" else "/api/content/library/item/update-session"
        return self.value(self.request("GET", path, params={"library_item_id": item_id} if item_id else None))

    def action(self, session_id, action, body=None):
        """POST one session action (keep-alive, complete, cancel, fail); returns the raw response."""
        key = "~action" if self.style == "rest" else "action"
        return self.request("POST", "%s?%s=%s" % (self.session_path(session_id), key, action), json=body)

    def file_path(self, session_id):
        if self.style == "rest":
            return REST + "/content/library/item/updatesession/file/id:" + session_id
        return "/api/content/library/item/update-session/%s/file" % session_id

    def add_file(self, session_id, name, size=None, algorithm=None, checksum=None, raw=False):
        spec = {"name": name, "source_type": "PUSH"}
        if size is not None:
            spec["size"] = size
        if checksum is not None:
            spec["checksum_info"] = {"algorithm": algorithm, "checksum": checksum}
        if self.style == "rest":
            r = self.request("POST", self.file_path(session_id) + "?~action=add", json={"file_spec": spec})
        else:
            r = self.request("POST", self.file_path(session_id), json=spec)
        return r if raw else self.created(r)

    def session_file(self, session_id, name):
        if self.style == "rest":
            return self.value(self.request("POST", self.file_path(session_id) + "?~action=get", json={"file_name": name}))
        return self.value(self.request("GET", self.file_path(session_id) + "/" + name))

    def session_files(self, session_id):
        if self.style == "rest":
            return self.value(self.request("GET", REST + "/content/library/item/updatesession/file", params={"update_session_id": session_id}))
        return self.value(self.request("GET", self.file_path(session_id)))

    def remove_file(self, session_id, name):
        if self.style == "rest":
            return self.request("POST", self.file_path(session_id) + "?~action=remove", json={"file_name": name})
        return self.request("DELETE", self.file_path(session_id) + "/" + name)

    def validate(self, session_id):
        key = "~action" if self.style == "rest" else "action"
        return self.value(self.request("POST", "%s?%s=validate" % (self.file_path(session_id), key)))

    def put(self, uri, data, token=None):
        headers = {"Content-Type": "application/octet-stream"}
        if token is not False:
            headers["vmware-api-session-id"] = token or self.token
        return self.http.put(uri, data=data, headers=headers)


@pytest.fixture(scope="module")
def emulator():
    with running_emulator() as info:
        yield info


@pytest.fixture
def fresh(emulator):
    """The shared emulator, reset, with the default settings."""
    requests.post(emulator["url"] + "/_emulator/reset").raise_for_status()
    requests.post(emulator["url"] + "/_emulator/config", json={"vsphere_session_expiry_seconds": 300}).raise_for_status()
    return emulator


def _client(info, style):
    vs = VSphere(info, style)
    vs.login()
    assert vs.token
    return vs


def _new_item(vs, name="disk"):
    (library_id,) = vs.find_library("images")
    return vs.create_item(library_id, name)


def _new_session(vs, item_id):
    return vs.created(vs.create_session(item_id))


def _control(info, method, path, **kwargs):
    return requests.request(method, info["url"] + "/_emulator/vsphere/" + path, **kwargs)


@pytest.mark.parametrize("style", ["rest", "api"])
def test_full_flow(fresh, style):
    vs = _client(fresh, style)
    libraries = vs.find_library("images")
    assert len(libraries) == 1
    assert libraries[0] == requests.get(fresh["url"] + "/_emulator/health").json()["providers"]["vsphere"]["library_id"]
    item_id = vs.create_item(libraries[0], "ubuntu")
    assert vs.find_item(libraries[0], "ubuntu") == [item_id]
    assert vs.item(item_id)["content_version"] == "1"
    session_id = _new_session(vs, item_id)
    model = vs.session(session_id)
    assert model["state"] == "ACTIVE" and model["library_item_id"] == item_id and model["client_progress"] == 0
    assert model["library_item_content_version"] == "1" and model["expiration_time"].endswith("Z")

    data = os.urandom(3 * 1024 * 1024 + 17)
    info = vs.add_file(session_id, "ubuntu.iso", size=len(data), algorithm="SHA1", checksum=hashlib.sha1(data).hexdigest())
    assert info["status"] == "WAITING_FOR_TRANSFER" and info["bytes_transferred"] == 0
    assert info["upload_endpoint"]["uri"] == "%s/cls-data/%s/ubuntu.iso" % (fresh["url"], session_id)
    assert vs.validate(session_id) == {"has_errors": True, "missing_files": ["ubuntu.iso"], "invalid_files": []}

    r = vs.put(info["upload_endpoint"]["uri"], data)
    assert r.status_code == 200, r.text
    got = vs.session_file(session_id, "ubuntu.iso")
    assert got["status"] == "READY" and got["bytes_transferred"] == len(data) and got["size"] == len(data)
    assert [f["name"] for f in vs.session_files(session_id)] == ["ubuntu.iso"]
    assert vs.validate(session_id) == {"has_errors": False, "missing_files": [], "invalid_files": []}
    vs.done(vs.action(session_id, "keep-alive", {"client_progress": 100}))
    vs.done(vs.action(session_id, "complete"))
    assert vs.session(session_id)["state"] == "DONE"

    files = vs.item_files(item_id)
    assert files == [{"name": "ubuntu.iso", "size": len(data), "version": "1", "cached": True,
                      "checksum_info": {"algorithm": "SHA1", "checksum": hashlib.sha1(data).hexdigest()}}]
    assert vs.item_file(item_id, "ubuntu.iso") == files[0]
    item = vs.item(item_id)
    assert item["size"] == len(data) and item["content_version"] == "2" and item["cached"] is True
    back = _control(fresh, "GET", "items/%s/files/ubuntu.iso" % item_id)
    assert back.status_code == 200 and hashlib.sha256(back.content).digest() == hashlib.sha256(data).digest()
    stats = _control(fresh, "GET", "stats").json()
    assert stats["data_puts"] == 1 and stats["data_bytes"] == len(data) and stats["logins"] == 1


@pytest.mark.parametrize("style", ["rest", "api"])
def test_second_upload_replaces_the_file_and_bumps_versions(fresh, style):
    vs = _client(fresh, style)
    item_id = _new_item(vs)
    for n, data in enumerate((b"first version", b"second, longer version"), start=1):
        session_id = _new_session(vs, item_id)
        assert vs.session(session_id)["library_item_content_version"] == str(n)
        uri = vs.add_file(session_id, "disk.img", size=len(data), algorithm="SHA256", checksum=hashlib.sha256(data).hexdigest())
        assert vs.put(uri["upload_endpoint"]["uri"], data).status_code == 200
        vs.done(vs.action(session_id, "complete"))
    (info,) = vs.item_files(item_id)
    assert info["version"] == "2" and info["size"] == len(data)
    assert vs.item(item_id)["content_version"] == "3"
    assert _control(fresh, "GET", "items/%s/files/disk.img" % item_id).content == data


@pytest.mark.parametrize("style", ["rest", "api"])
def test_authentication(fresh, style):
    vs = VSphere(fresh, style)
    vs.error(vs.login(password="wrong"), 401, "unauthenticated")
    path = REST + "/content/library" if style == "rest" else "/api/content/library"
    vs.error(vs.request("GET", path), 401, "unauthenticated")
    vs.error(vs.request("GET", path, headers={"vmware-api-session-id": "bogus"}), 401, "unauthenticated")
    vs.login()
    assert vs.value(vs.request("GET", path))
    if style == "rest":
        assert vs.value(vs.request("POST", REST + "/cis/session?~action=get"))["user"] == fresh["credentials"]["vsphere"]["username"]
    else:
        assert vs.value(vs.request("GET", "/api/session"))["user"] == fresh["credentials"]["vsphere"]["username"]
    # every token expires at once (a long upload losing its login); a new login works
    assert _control(fresh, "POST", "api-sessions/expire").json()["dropped"] == 1
    vs.error(vs.request("GET", path), 401, "unauthenticated")
    vs.login()
    logout = vs.request("DELETE", REST + "/cis/session" if style == "rest" else "/api/session")
    vs.done(logout)
    vs.error(vs.request("GET", path), 401, "unauthenticated")
    stats = _control(fresh, "GET", "stats").json()
    assert stats["logins"] == 2 and stats["logouts"] == 1


def test_data_endpoint_needs_the_session_header(fresh):
    vs = _client(fresh, "rest")
    session_id = _new_session(vs, _new_item(vs))
    uri = vs.add_file(session_id, "a.bin", size=3)["upload_endpoint"]["uri"]
    assert vs.put(uri, b"abc", token=False).status_code == 401
    assert vs.put(uri, b"abc", token="bogus").status_code == 401
    assert vs.session_file(session_id, "a.bin")["status"] == "WAITING_FOR_TRANSFER"
    assert vs.put(uri, b"abc").status_code == 200


@pytest.mark.parametrize("style", ["rest", "api"])
def test_one_active_session_per_item_and_client_token(fresh, style):
    vs = _client(fresh, style)
    item_id = _new_item(vs)
    first = vs.created(vs.create_session(item_id, client_token="token-1"))
    assert vs.created(vs.create_session(item_id, client_token="token-1")) == first
    vs.error(vs.create_session(item_id), 400, "resource_busy")
    vs.error(vs.create_session(item_id, client_token="token-2"), 400, "resource_busy")
    assert vs.sessions(item_id) == [first]
    vs.error(vs.create_session("no-such-item"), 404, "not_found")
    # after the first one ends, a new one may start
    vs.done(vs.action(first, "cancel"))
    second = _new_session(vs, item_id)
    assert second != first and sorted(vs.sessions(item_id)) == sorted([first, second])
    # item names are unique within a library; client_token makes item creation idempotent
    (library_id,) = vs.find_library("images")
    vs.error(vs.create_item(library_id, "disk", raw=True), 400, "already_exists")
    again = vs.create_item(library_id, "other", client_token="item-token")
    assert vs.create_item(library_id, "other", client_token="item-token") == again


@pytest.mark.parametrize("style", ["rest", "api"])
def test_checksum_mismatch_is_an_error_until_the_file_is_added_again(fresh, style):
    vs = _client(fresh, style)
    session_id = _new_session(vs, _new_item(vs))
    data = b"x" * 1000
    uri = vs.add_file(session_id, "a.img", size=len(data), algorithm="MD5", checksum="0" * 32)["upload_endpoint"]["uri"]
    r = vs.put(uri, data)
    messages = vs.error(r, 400, "invalid_argument")
    assert "checksum mismatch" in messages[0] and hashlib.md5(data).hexdigest() in messages[0] and "0" * 32 in messages[0]
    info = vs.session_file(session_id, "a.img")
    assert info["status"] == "ERROR" and "checksum mismatch" in info["error_message"]["default_message"]
    result = vs.validate(session_id)
    assert result["has_errors"] and result["invalid_files"][0]["name"] == "a.img"
    vs.error(vs.action(session_id, "complete"), 400, "invalid_argument")
    # re-adding the name resets the file; the right bytes then pass
    info = vs.add_file(session_id, "a.img", size=len(data), algorithm="SHA512", checksum=hashlib.sha512(data).hexdigest())
    assert info["status"] == "WAITING_FOR_TRANSFER" and "error_message" not in info
    assert vs.put(uri, data).status_code == 200
    vs.done(vs.action(session_id, "complete"))


def test_size_mismatch(fresh):
    vs = _client(fresh, "rest")
    session_id = _new_session(vs, _new_item(vs))
    uri = vs.add_file(session_id, "a.img", size=10)["upload_endpoint"]["uri"]
    (message,) = vs.error(vs.put(uri, b"x" * 7), 400, "invalid_argument")
    assert "size mismatch" in message and "expected 10 bytes, received 7" in message
    info = vs.session_file(session_id, "a.img")
    assert info["status"] == "ERROR" and "expected 10 bytes, received 7" in info["error_message"]["default_message"]


@pytest.mark.parametrize("style", ["rest", "api"])
def test_complete_names_missing_files(fresh, style):
    vs = _client(fresh, style)
    session_id = _new_session(vs, _new_item(vs))
    uri = vs.add_file(session_id, "disk.vmdk", size=4)["upload_endpoint"]["uri"]
    vs.add_file(session_id, "disk.ovf")
    assert vs.put(uri, b"vmdk").status_code == 200
    messages = vs.error(vs.action(session_id, "complete"), 400, "invalid_argument")
    assert messages == ["file disk.ovf has not been received"]
    assert vs.session(session_id)["state"] == "ACTIVE"
    # a file may be removed from the session; then complete succeeds
    vs.done(vs.remove_file(session_id, "disk.ovf"))
    vs.done(vs.action(session_id, "complete"))
    assert [f["name"] for f in vs.item_files(vs.session(session_id)["library_item_id"])] == ["disk.vmdk"]


def test_keep_alive_extends_expiry_and_records_progress(fresh):
    vs = _client(fresh, "rest")
    requests.post(fresh["url"] + "/_emulator/config", json={"vsphere_session_expiry_seconds": 1.5}).raise_for_status()
    session_id = _new_session(vs, _new_item(vs))
    before = vs.session(session_id)["expiration_time"]
    for progress in (10, 40, 70):
        time.sleep(0.6)
        vs.done(vs.action(session_id, "keep-alive", {"client_progress": progress}))
    model = vs.session(session_id)
    assert model["state"] == "ACTIVE" and model["client_progress"] == 70 and model["expiration_time"] > before
    vs.error(vs.action(session_id, "keep-alive", {"client_progress": 20}), 400, "invalid_argument")
    vs.error(vs.action(session_id, "keep-alive", {"client_progress": 101}), 400, "invalid_argument")


def test_idle_sessions_expire_then_disappear(fresh):
    vs = _client(fresh, "api")
    requests.post(fresh["url"] + "/_emulator/config", json={"vsphere_session_expiry_seconds": 1}).raise_for_status()
    item_id = _new_item(vs)
    session_id = _new_session(vs, item_id)
    uri = vs.add_file(session_id, "a.img", size=2)["upload_endpoint"]["uri"]
    time.sleep(1.2)
    model = vs.session(session_id)
    assert model["state"] == "ERROR" and "session expired" in model["error_message"]["default_message"]
    vs.error(vs.put(uri, b"ab"), 400, "not_allowed_in_current_state")
    vs.error(vs.action(session_id, "keep-alive"), 400, "not_allowed_in_current_state")
    assert vs.created(vs.create_session(item_id)) != session_id     # an expired session no longer holds the item
    time.sleep(1.1)
    vs.error(vs.request("GET", vs.session_path(session_id)), 404, "not_found")


def test_control_expire_and_session_listing(fresh):
    vs = _client(fresh, "rest")
    session_id = _new_session(vs, _new_item(vs))
    vs.add_file(session_id, "a.img", size=2)
    listed = _control(fresh, "GET", "sessions").json()
    assert [(s["id"], s["state"], s["files"][0]["bytes_transferred"]) for s in listed] == [(session_id, "ACTIVE", 0)]
    assert _control(fresh, "POST", "sessions/%s/expire" % session_id).json()["state"] == "ERROR"
    assert "session expired" in vs.session(session_id)["error_message"]["default_message"]
    assert _control(fresh, "POST", "sessions/nope/expire").status_code == 404


@pytest.mark.parametrize("style", ["rest", "api"])
def test_state_rules(fresh, style):
    vs = _client(fresh, style)
    item_id = _new_item(vs)
    session_id = _new_session(vs, item_id)
    vs.error(vs.request("DELETE", vs.session_path(session_id)), 400, "not_allowed_in_current_state")
    vs.done(vs.action(session_id, "complete"))                     # an empty session may complete
    vs.error(vs.action(session_id, "cancel"), 400, "not_allowed_in_current_state")
    vs.error(vs.action(session_id, "complete"), 400, "not_allowed_in_current_state")
    vs.error(vs.add_file(session_id, "late.img", raw=True), 400, "not_allowed_in_current_state")
    vs.done(vs.request("DELETE", vs.session_path(session_id)))
    vs.error(vs.request("GET", vs.session_path(session_id)), 404, "not_found")

    failed = _new_session(vs, item_id)
    uri = vs.add_file(failed, "a.img")["upload_endpoint"]["uri"]
    assert vs.put(uri, b"data").status_code == 200
    vs.done(vs.action(failed, "fail", {"client_error_message": "disk full on the client"}))
    model = vs.session(failed)
    assert model["state"] == "ERROR" and model["error_message"]["default_message"] == "disk full on the client"
    assert vs.session_file(failed, "a.img")["status"] == "ERROR"       # received content is dropped
    canceled = _new_session(vs, item_id)
    vs.done(vs.action(canceled, "cancel"))
    assert vs.session(canceled)["state"] == "CANCELED"
    assert vs.item_files(item_id) == []

    patched = _new_session(vs, item_id)
    behaviour = [{"type": "SELF_SIGNED_CERTIFICATE", "ignored": True}]
    body = {"update_spec": {"warning_behavior": behaviour}} if style == "rest" else {"warning_behavior": behaviour}
    vs.done(vs.request("PATCH", vs.session_path(patched), json=body))
    assert vs.session(patched)["warning_behavior"] == behaviour
    bad = {"update_spec": {"client_progress": 5}} if style == "rest" else {"client_progress": 5}
    vs.error(vs.request("PATCH", vs.session_path(patched), json=bad), 400, "invalid_argument")


@pytest.mark.parametrize("name", ["../evil", "a/b", "..", "nul\x00byte", "tab\tname", "/abs", "back\\slash"])
def test_bad_file_names_are_refused(fresh, name):
    vs = _client(fresh, "rest")
    session_id = _new_session(vs, _new_item(vs))
    vs.error(vs.add_file(session_id, name, raw=True), 400, "invalid_argument")
    assert vs.session_files(session_id) == []


def test_bad_names_in_data_urls_are_refused(fresh):
    vs = _client(fresh, "api")
    session_id = _new_session(vs, _new_item(vs))
    for tail in ("..%2Fx", "a%00b", "%2Fetc%2Fpasswd"):
        r = vs.http.put("%s/cls-data/%s/%s" % (fresh["url"], session_id, tail), data=b"x", headers={"vmware-api-session-id": vs.token})
        vs.error(r, 400, "invalid_argument")
        r = vs.request("GET", "/api/content/library/item/update-session/%s/file/%s" % (session_id, tail))
        vs.error(r, 400, "invalid_argument")


def _raw_put(uri, token, size):
    """Open a PUT with Content-Length ``size`` and return the connection, headers sent, body not."""
    parts = urlsplit(uri)
    conn = http.client.HTTPConnection(parts.hostname, parts.port, timeout=10)
    conn.putrequest("PUT", parts.path)
    conn.putheader("Content-Length", str(size))
    conn.putheader("vmware-api-session-id", token)
    conn.endheaders()
    return conn


def _wait_for(predicate, timeout=5.0):
    deadline = time.time() + timeout
    while time.time() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(0.02)
    raise AssertionError("condition not reached")


def test_progress_is_visible_during_the_transfer_and_a_broken_transfer_is_an_error(fresh):
    vs = _client(fresh, "rest")
    session_id = _new_session(vs, _new_item(vs))
    data = os.urandom(2 * 1024 * 1024)
    uri = vs.add_file(session_id, "big.img", size=len(data), algorithm="SHA1", checksum=hashlib.sha1(data).hexdigest())["upload_endpoint"]["uri"]

    conn = _raw_put(uri, vs.token, len(data))
    conn.send(data[:1024 * 1024])
    info = _wait_for(lambda: (lambda i: i if i["bytes_transferred"] == 1024 * 1024 else None)(vs.session_file(session_id, "big.img")))
    assert info["status"] == "TRANSFERRING"
    vs.error(vs.put(uri, data), 400, "resource_busy")                  # one transfer per file at a time
    vs.error(vs.action(session_id, "complete"), 400, "not_allowed_in_current_state")
    conn.send(data[1024 * 1024:])
    assert conn.getresponse().status == 200
    conn.close()
    assert vs.session_file(session_id, "big.img")["status"] == "READY"

    # a connection that breaks mid-body leaves the file in ERROR; re-adding it resets it
    vs.add_file(session_id, "big.img", size=len(data), algorithm="SHA1", checksum=hashlib.sha1(data).hexdigest())
    conn = _raw_put(uri, vs.token, len(data))
    conn.send(data[:128 * 1024])
    _wait_for(lambda: vs.session_file(session_id, "big.img")["bytes_transferred"] == 128 * 1024)
    conn.sock.close()
    info = _wait_for(lambda: (lambda i: i if i["status"] == "ERROR" else None)(vs.session_file(session_id, "big.img")))
    assert "broke after 131072 bytes" in info["error_message"]["default_message"]
    assert not [n for n in os.listdir(os.path.join(fresh["data_dir"], "vsphere", "sessions", session_id)) if n.endswith(".part")]
    assert vs.add_file(session_id, "big.img", size=len(data))["status"] == "WAITING_FOR_TRANSFER"
    assert vs.put(uri, data).status_code == 200
    vs.done(vs.action(session_id, "complete"))
    assert _control(fresh, "GET", "stats").json()["data_bytes"] == 2 * len(data) + 128 * 1024


def test_libraries_and_items(fresh):
    vs = _client(fresh, "api")
    datastores = vs.value(vs.request("GET", "/api/vcenter/datastore"))
    library_id = vs.created(vs.request("POST", "/api/content/local-library", json={
        "name": "isos", "type": "LOCAL", "storage_backings": [{"type": "DATASTORE", "datastore_id": datastores[0]["datastore"]}]}))
    assert vs.value(vs.request("GET", "/api/content/library/" + library_id))["name"] == "isos"
    assert len(vs.value(vs.request("GET", "/api/content/library"))) == 2
    vs.error(vs.request("POST", "/api/content/local-library", json={"name": "ISOS", "storage_backings": [
        {"type": "DATASTORE", "datastore_id": datastores[0]["datastore"]}]}), 400, "already_exists")
    vs.error(vs.request("POST", "/api/content/local-library", json={"name": "x", "storage_backings": [
        {"type": "DATASTORE", "datastore_id": "datastore-404"}]}), 400, "invalid_argument")
    rest = _client(fresh, "rest")
    assert rest.find_library("ISOS") == [library_id]
    item_id = rest.create_item(library_id, "tools")
    assert rest.value(rest.request("GET", REST + "/content/library/item", params={"library_id": library_id})) == [item_id]
    session_id = _new_session(rest, item_id)
    rest.error(rest.request("DELETE", REST + "/content/library/item/id:" + item_id), 400, "resource_busy")
    rest.done(rest.action(session_id, "cancel"))
    rest.done(rest.request("DELETE", REST + "/content/library/item/id:" + item_id))
    rest.error(rest.request("GET", REST + "/content/library/item/id:" + item_id), 404, "not_found")
    rest.error(rest.request("GET", rest.session_path(session_id)), 404, "not_found")
    listed = _control(fresh, "GET", "items").json()
    assert listed == []


def test_restart_keeps_sessions_items_and_logins(tmp_path):
    data = os.urandom(100000)
    with running_emulator(data_dir=tmp_path) as info:
        vs = _client(info, "rest")
        library_id = vs.find_library("images")[0]
        item_id = _new_item(vs)
        session_id = _new_session(vs, item_id)
        uri = vs.add_file(session_id, "a.img", size=len(data), algorithm="SHA1", checksum=hashlib.sha1(data).hexdigest())
        assert vs.put(uri["upload_endpoint"]["uri"], data).status_code == 200
        vs.add_file(session_id, "b.img", size=3)
        token = vs.token
    with running_emulator(data_dir=tmp_path) as info:
        vs = VSphere(info, "rest")
        vs.token = token
        assert vs.find_library("images") == [library_id]
        assert [(f["name"], f["status"]) for f in vs.session_files(session_id)] == [("a.img", "READY"), ("b.img", "WAITING_FOR_TRANSFER")]
        uri = vs.session_file(session_id, "b.img")["upload_endpoint"]["uri"]
        assert uri.startswith(info["url"])                              # the new port
        vs.done(vs.remove_file(session_id, "b.img"))
        vs.done(vs.action(session_id, "complete"))
    with running_emulator(data_dir=tmp_path) as info:
        back = _control(info, "GET", "items/%s/files/a.img" % item_id)
        assert back.status_code == 200 and back.content == data
        assert _control(info, "GET", "items/%s/files/b.img" % item_id).status_code == 404


def test_reset_reseeds_the_same_library(fresh):
    vs = _client(fresh, "rest")
    library_id = vs.find_library("images")[0]
    _new_session(vs, _new_item(vs))
    requests.post(fresh["url"] + "/_emulator/reset").raise_for_status()
    vs.login()
    assert vs.find_library("images") == [library_id]
    assert vs.sessions() == [] and _control(fresh, "GET", "items").json() == []


def test_odd_but_legal_file_names_round_trip(fresh):
    vs = _client(fresh, "api")
    item_id = _new_item(vs)
    session_id = _new_session(vs, item_id)
    name = "disk (1) 50% #2.img"
    info = vs.add_file(session_id, name, size=5)
    assert info["upload_endpoint"]["uri"].endswith("/disk%20%281%29%2050%25%20%232.img")
    assert vs.put(info["upload_endpoint"]["uri"], b"12345").status_code == 200
    assert vs.request("GET", "/api/content/library/item/update-session/%s/file/%s" % (session_id, quote(name, safe=""))).json()["status"] == "READY"
    vs.done(vs.action(session_id, "complete"))
    assert _control(fresh, "GET", "items/%s/files/%s" % (item_id, quote(name, safe=""))).content == b"12345"


def test_a_transfer_cut_by_a_restart_is_an_error_afterwards(tmp_path):
    data = os.urandom(512 * 1024)
    with running_emulator(data_dir=tmp_path) as info:
        vs = _client(info, "rest")
        session_id = _new_session(vs, _new_item(vs))
        uri = vs.add_file(session_id, "a.img", size=len(data))["upload_endpoint"]["uri"]
        conn = _raw_put(uri, vs.token, len(data))
        conn.send(data[:256 * 1024])
        _wait_for(lambda: vs.session_file(session_id, "a.img")["bytes_transferred"] == 256 * 1024)
        token = vs.token
    try:
        with running_emulator(data_dir=tmp_path) as info:
            vs = VSphere(info, "rest")
            vs.token = token
            got = vs.session_file(session_id, "a.img")
            assert got["status"] == "ERROR" and got["bytes_transferred"] == 0 and "interrupted" in got["error_message"]["default_message"]
            folder = os.path.join(info["data_dir"], "vsphere", "sessions", session_id)
            assert not os.path.isdir(folder) or not os.listdir(folder)
            vs.add_file(session_id, "a.img", size=len(data))
            assert vs.put(uri.replace(urlsplit(uri).netloc, urlsplit(info["url"]).netloc), data).status_code == 200
            vs.done(vs.action(session_id, "complete"))
    finally:
        conn.close()
