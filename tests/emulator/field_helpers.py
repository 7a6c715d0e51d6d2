"""Helpers of the field-behaviour tests (hostile input, stalled bodies, full disks, Service Fabric gateway):
raw HTTP over a socket (half bodies, bodies that stall, resets), and small per-provider request helpers."""

import hashlib
import json
import socket
import struct
import time
import uuid
from urllib.parse import urlsplit

import requests

from imagestore_emulator.zstack import sha512_hex

SF_API = {"api-version": "6.0"}


def wait_for(predicate, timeout=10.0, what="condition", interval=0.05):
    deadline = time.time() + timeout
    while time.time() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(interval)
    raise AssertionError("timed out waiting for " + what)


class RawRequest:
    """One HTTP/1.1 request written by hand: head and part of a body, then the test decides (stall, reset, finish)."""

    def __init__(self, url, method, target, headers, body_part=b""):
        parts = urlsplit(url)
        self.sock = socket.create_connection((parts.hostname, parts.port), timeout=30)
        lines = ["%s %s HTTP/1.1" % (method, target), "Host: %s:%d" % (parts.hostname, parts.port)]
        lines += ["%s: %s" % kv for kv in headers.items()]
        self.sock.sendall(("\r\n".join(lines) + "\r\n\r\n").encode("latin-1") + body_part)

    def send(self, data):
        self.sock.sendall(data)

    def response(self, timeout=30):
        """(status, reason, headers, body) of the answer; None when the server closed without one."""
        self.sock.settimeout(timeout)
        data = b""
        try:
            while b"\r\n\r\n" not in data:
                block = self.sock.recv(65536)
                if not block:
                    return None
                data += block
            head, _, body = data.partition(b"\r\n\r\n")
            lines = head.decode("latin-1").split("\r\n")
            _, status, reason = (lines[0].split(" ", 2) + [""])[:3]
            headers = {k.strip().lower(): v.strip() for k, _, v in (line.partition(":") for line in lines[1:])}
            length = int(headers.get("content-length", "0"))
            while len(body) < length:
                block = self.sock.recv(65536)
                if not block:
                    break
                body += block
            return int(status), reason, headers, body
        except (ConnectionResetError, socket.timeout):
            return None

    def closed_by_server(self, timeout=30):
        """True when the server closed the connection (EOF or reset) within ``timeout``."""
        self.sock.settimeout(timeout)
        try:
            return self.sock.recv(1) == b""
        except ConnectionResetError:
            return True
        except socket.timeout:
            return False

    def reset(self):
        """Close with RST instead of FIN (SO_LINGER 0), as a proxy that drops the connection does."""
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        self.sock.close()

    def close(self):
        self.sock.close()


def sf_chunk_head(path, sid, start, end, total):
    target = "/ImageStore/%s/$/UploadChunk?api-version=6.0&session-id=%s" % (path, sid)
    return target, {"Content-Range": "bytes %d-%d/%d" % (start, end, total), "Content-Length": str(end - start + 1)}


def sf_sessions(url):
    return requests.get(url + "/_emulator/servicefabric/sessions").json()


def sf_chunk(url, path, sid, start, data, total, **params):
    return requests.put("%s/ImageStore/%s/$/UploadChunk" % (url, path), params=dict(SF_API, **{"session-id": sid}, **params),
                        headers={"Content-Range": "bytes %d-%d/%d" % (start, start + len(data) - 1, total)}, data=data)


def sf_commit(url, sid, **params):
    return requests.post(url + "/ImageStore/$/CommitUploadSession", params=dict(SF_API, **{"session-id": sid}, **params))


def sf_put(url, path, data, **params):
    return requests.put("%s/ImageStore/%s" % (url, path), params=dict(SF_API, **params), data=data)


def sf_stored(url, path):
    r = requests.get(url + "/_emulator/servicefabric/content/" + path)
    return r.content if r.status_code == 200 else None


def sf_file_info(url, path):
    r = requests.get("%s/ImageStore/%s" % (url, path), params={"api-version": "6.2"})
    assert r.status_code == 200, r.text
    return r.json()["StoreFiles"][0]


def fabric_error(response):
    return response.json()["Error"]["Code"]


def faults(url, *rules, seed=None):
    body = {"rules": list(rules)}
    if seed is not None:
        body["seed"] = seed
    r = requests.post(url + "/_emulator/faults", json=body)
    assert r.status_code == 200, r.text
    return r.json()


def new_id():
    return str(uuid.uuid4())


class VS:
    """Just enough vSphere (/api style) to get a file upload URL."""

    def __init__(self, url, credentials):
        self.url = url
        self.http = requests.Session()
        r = self.http.post(url + "/api/session", auth=(credentials["username"], credentials["password"]))
        assert r.status_code == 201, r.text
        self.http.headers["vmware-api-session-id"] = r.json()
        self.token = r.json()

    def library(self):
        return self.http.get(self.url + "/api/content/library").json()[0]

    def new_file(self, name, size=None, item_name=None):
        """(session id, upload URI) of a new update session with one PUSH file."""
        item = self.http.post(self.url + "/api/content/library/item",
                              json={"name": item_name or "item-" + new_id()[:8], "library_id": self.library(), "type": "iso"})
        assert item.status_code == 201, item.text
        session = self.http.post(self.url + "/api/content/library/item/update-session", json={"library_item_id": item.json()})
        assert session.status_code == 201, session.text
        spec = {"name": name, "source_type": "PUSH"}
        if size is not None:
            spec["size"] = size
        added = self.http.post("%s/api/content/library/item/update-session/%s/file" % (self.url, session.json()), json=spec)
        return session.json(), added

    def file(self, session_id, name):
        return self.http.get("%s/api/content/library/item/update-session/%s/file/%s" % (self.url, session_id, name)).json()


class ZS:
    """Just enough ZStack to get an upload job into Running and send slices."""

    def __init__(self, url, credentials):
        self.url = url
        self.http = requests.Session()
        body = {"logInByAccount": {"accountName": credentials["username"], "password": sha512_hex(credentials["password"])}}
        r = self.http.put(url + "/zstack/v1/accounts/login", json=body)
        assert r.status_code == 200, r.text
        self.http.headers["Authorization"] = "OAuth " + r.json()["inventory"]["uuid"]

    def _async(self, method, path, **kwargs):
        r = self.http.request(method, self.url + "/zstack/v1" + path, **kwargs)
        assert r.status_code == 202, r.text
        location = r.json()["location"]
        while True:
            r = self.http.get(location)
            if r.status_code != 202:
                return r
            time.sleep(0.01)

    def start_upload(self, name="img"):
        """The image uuid of a new upload job, once it runs (its image exists, Downloading)."""
        data = {"name": name, "url": "upload://" + name, "format": "raw", "backupStorageUuids": [self.backup_storage()]}
        r = self._async("POST", "/longjobs", json={"params": {"jobName": "APIAddImageMsg", "jobData": json.dumps(data)},
                                                  "systemTags": ["uploadImage::" + name]})
        assert r.status_code == 200, r.text
        job_uuid = r.json()["inventory"]["uuid"]
        return wait_for(lambda: self.job(job_uuid)["imageUuid"] if self.job(job_uuid)["state"] == "Running" else None,
                        what="the job to run"), job_uuid

    def backup_storage(self):
        return requests.get(self.url + "/_emulator/health").json()["providers"]["zstack"]["backup_storage_uuid"]

    def job(self, job_uuid):
        jobs = requests.get(self.url + "/_emulator/zstack/jobs").json()["jobs"]
        return next(j for j in jobs if j["uuid"] == job_uuid)

    def images(self):
        return self.http.get(self.url + "/zstack/v1/images")


def multipart_slice(data, boundary="field-test-boundary"):
    """(body bytes, Content-Type) of one slice, as the web console sends it."""
    head = ('--%s\r\nContent-Disposition: form-data; name="file"; filename="blob"\r\n'
            'Content-Type: application/octet-stream\r\n\r\n' % boundary).encode()
    return head + data + ("\r\n--%s--\r\n" % boundary).encode(), "multipart/form-data; boundary=" + boundary


def zs_slice_headers(image_uuid, total, offset, size, index, body_len, content_type, data):
    return {"X-IMAGE-UUID": image_uuid, "X-IMAGE-SIZE": str(total), "X-SLICE-OFFSET": str(offset),
            "X-SLICE-SIZE": str(size), "X-SLICE-INDEX": str(index), "Content-Type": content_type,
            "Content-Length": str(body_len), "X-SLICE-MD5": hashlib.md5(data).hexdigest()}
