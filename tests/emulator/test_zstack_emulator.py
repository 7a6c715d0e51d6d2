"""The ZStack part of the emulator: sessions, api-job polling, long jobs, the slice receiver, idle limits, restart."""

import base64
import hashlib
import json
import os
import random
import socket
import time
from concurrent.futures import ThreadPoolExecutor
from urllib.parse import urlsplit

import pytest
import requests

from imagestore_emulator.process import EmulatorProcess
from imagestore_emulator.testing import running_emulator
from imagestore_emulator.zstack import BACKUP_STORAGE_UUID, sha512_hex

SLICE = 256 * 1024
DEFAULT_CONFIG = {"zstack_idle_seconds": 30, "zstack_session_seconds": 7200}


@pytest.fixture(scope="module")
def emulator():
    with running_emulator() as info:
        yield info


@pytest.fixture
def zs(emulator):
    """A ZStack client against a freshly reset emulator, logged in."""
    url = emulator["url"]
    assert requests.post(url + "/_emulator/reset").status_code == 200
    requests.post(url + "/_emulator/config", json=DEFAULT_CONFIG)
    client = ZStack(url, emulator["credentials"]["zstack"])
    client.login()
    yield client
    requests.post(url + "/_emulator/config", json=DEFAULT_CONFIG)


def wait_for(predicate, timeout=5.0, what="condition"):
    deadline = time.time() + timeout
    while time.time() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(0.02)
    raise AssertionError("timed out waiting for " + what)


class ZStack:
    """Just enough of a ZStack REST client to drive the emulator."""

    def __init__(self, url, credentials):
        self.url = url
        self.credentials = credentials
        self.session = None
        self.http = requests.Session()

    def login(self, password=None):
        body = {"logInByAccount": {"accountName": self.credentials["username"],
                                   "password": sha512_hex(password or self.credentials["password"])}}
        rsp = self.http.put(self.url + "/zstack/v1/accounts/login", json=body)
        if rsp.status_code == 200:
            self.session = rsp.json()["inventory"]["uuid"]
        return rsp

    def raw(self, method, path, **kwargs):
        headers = kwargs.pop("headers", {})
        if self.session:
            headers.setdefault("Authorization", "OAuth " + self.session)
        return self.http.request(method, self.url + "/zstack/v1" + path, headers=headers, **kwargs)

    def call(self, method, path, **kwargs):
        """One API call; an async one is polled until it ends. Returns the final response."""
        rsp = self.raw(method, path, **kwargs)
        if rsp.status_code != 202:
            return rsp
        location = rsp.json()["location"]
        polls = 0
        while True:
            rsp = self.http.get(location)
            polls += 1
            if rsp.status_code != 202:
                assert polls >= 2, "an async job must take at least one 202 poll"
                return rsp
            assert rsp.json() == {}
            time.sleep(0.01)

    def query(self, path, **params):
        rsp = self.raw("GET", path, params=params)
        assert rsp.status_code == 200, rsp.text
        return rsp.json()["inventories"]

    def longjob(self, job_uuid):
        return self.query("/longjobs/" + job_uuid)[0]

    def image(self, image_uuid):
        found = self.query("/images/" + image_uuid)
        return found[0] if found else None

    def details(self, image_id, method="GET"):
        body = {"systemTags": [], "userTags": []} if method == "PUT" else None
        rsp = self.raw(method, "/images/upload-job/details/" + image_id, json=body)
        assert rsp.status_code == 200, rsp.text
        return rsp.json()["existingJobDetails"]

    def submit(self, image_id, name="img", **overrides):
        """Submit APIAddImageMsg as a long job; the final api-job response."""
        data = {"name": name, "url": "upload://" + name, "mediaType": "RootVolumeTemplate", "format": "qcow2",
                "platform": "Linux", "backupStorageUuids": [BACKUP_STORAGE_UUID]}
        data.update(overrides)
        body = {"params": {"jobName": "APIAddImageMsg", "jobData": json.dumps(data)}, "systemTags": ["uploadImage::" + image_id]}
        return self.call("POST", "/longjobs", json=body)

    def start_upload(self, image_id, name="img"):
        """Submit, then poll the long job until its jobResult carries the upload URL: (job uuid, image uuid, upload URL)."""
        rsp = self.submit(image_id, name)
        assert rsp.status_code == 200, rsp.text
        job = rsp.json()["inventory"]
        assert job["state"] == "Waiting" and job["jobResult"] is None
        job = wait_for(lambda: (lambda j: j if j["jobResult"] else None)(self.longjob(job["uuid"])), what="jobResult")
        assert job["state"] == "Running"
        image = json.loads(job["jobResult"])["inventory"]
        assert image["status"] == "Downloading" and image["uuid"] == job["targetResourceUuid"]
        url = image["backupStorageRefs"][0]["installPath"]
        assert url == self.url + "/imagestore/upload"
        return job["uuid"], image["uuid"], url


def send_slice(url, image_uuid, data, index, slice_size=SLICE, total=None, md5="hex", headers=None, body=None):
    """POST one slice of ``data`` as the console does (multipart/form-data, X-IMAGE-* / X-SLICE-* headers)."""
    total = len(data) if total is None else total
    offset = index * slice_size
    chunk = data[offset:offset + slice_size] if body is None else body
    size = len(data[offset:offset + slice_size])
    sent = {"X-IMAGE-UUID": image_uuid, "X-IMAGE-SIZE": str(total), "X-SLICE-OFFSET": str(offset),
            "X-SLICE-SIZE": str(size), "X-SLICE-INDEX": str(index)}
    digest = hashlib.md5(chunk).digest()
    if md5 == "hex":
        sent["X-SLICE-MD5"] = digest.hex()
    elif md5 == "base64":
        sent["Content-MD5"] = base64.b64encode(digest).decode()
    sent.update(headers or {})
    return requests.post(url, files={"file": ("image.qcow2", chunk, "application/octet-stream")}, headers=sent)


def job_view(zs, job_uuid):
    jobs = requests.get(zs.url + "/_emulator/zstack/jobs").json()["jobs"]
    return next(job for job in jobs if job["uuid"] == job_uuid)


def stats(zs):
    return requests.get(zs.url + "/_emulator/zstack/stats").json()


def wait_ready(zs, image_uuid):
    return wait_for(lambda: (lambda i: i if i and i["status"] == "Ready" else None)(zs.image(image_uuid)), what="image Ready")


def error_of(rsp, status=503):
    assert rsp.status_code == status, rsp.text
    return rsp.json()["error"]["code"]


def test_login_good_and_bad_password(zs):
    assert len(zs.session) == 32 and int(zs.session, 16) >= 0
    assert error_of(zs.login(password="wrong")) == "ID.1000"
    assert error_of(zs.http.put(zs.url + "/zstack/v1/accounts/login",
                                json={"logInByAccount": {"accountName": "nobody", "password": sha512_hex("password")}})) == "ID.1000"
    assert zs.query("/backup-storage", q="name=bs")[0]["uuid"] == BACKUP_STORAGE_UUID
    assert zs.http.get(zs.url + "/zstack/v1/images").status_code == 400            # no Authorization header
    assert stats(zs)["logins"] == 1

    # an unknown session: a sync query fails with 503, an async call through its api-job
    rsp = zs.raw("GET", "/images", headers={"Authorization": "OAuth " + "0" * 32})
    assert error_of(rsp) == "ID.1001"
    assert requests.post(zs.url + "/_emulator/zstack/sessions/expire").json() == {"expired": 1}
    assert error_of(zs.raw("GET", "/images")) == "ID.1001"
    assert error_of(zs.submit("abc")) == "ID.1001"
    assert zs.login().status_code == 200
    assert zs.query("/images") == []

    # logout drops the session
    assert zs.raw("DELETE", "/accounts/sessions/" + zs.session).status_code == 200
    assert error_of(zs.raw("GET", "/longjobs")) == "ID.1001"
    assert stats(zs)["logouts"] == 1


def test_session_expires_after_idle_seconds(zs):
    requests.post(zs.url + "/_emulator/config", json={"zstack_session_seconds": 0.3})
    zs.login()
    for _ in range(4):                       # every call renews the session
        time.sleep(0.15)
        assert zs.raw("GET", "/images").status_code == 200
    time.sleep(0.4)
    assert error_of(zs.raw("GET", "/images")) == "ID.1001"


def test_async_envelope_and_routing(zs):
    image_id = hashlib.md5(b"envelope").hexdigest()
    body = {"params": {"jobName": "APIAddImageMsg", "jobData": json.dumps(
        {"name": "e", "url": "upload://e", "format": "raw", "backupStorageUuids": [BACKUP_STORAGE_UUID]})},
        "systemTags": ["uploadImage::" + image_id]}
    rsp = zs.raw("POST", "/longjobs", json=body)
    assert rsp.status_code == 202
    location = rsp.json()["location"]
    assert location.startswith(zs.url + "/zstack/v1/api-jobs/")
    first = requests.get(location)
    assert (first.status_code, first.json()) == (202, {})
    second = requests.get(location)
    assert second.status_code == 200
    job = second.json()["inventory"]
    assert job["jobName"] == "APIAddImageMsg" and job["state"] == "Waiting" and json.loads(job["jobData"])["mediaType"] == "RootVolumeTemplate"
    assert requests.get(location).status_code == 200            # the result stays readable
    assert requests.get(zs.url + "/zstack/v1/api-jobs/" + "f" * 32).status_code == 404
    assert requests.delete(location).status_code == 405
    assert zs.raw("GET", "/no-such-api").status_code == 404
    assert zs.raw("POST", "/images/" + "a" * 32).status_code == 405
    assert zs.raw("PUT", "/longjobs/%s/actions" % job["uuid"], json={"noSuchAction": {}}).status_code == 400
    assert stats(zs)["polls"] >= 4


def test_add_image_validation(zs):
    assert error_of(zs.submit("v1", mediaType="Kernel")) == "SYS.1007"
    assert error_of(zs.submit("v2", url="http://example.com/x.qcow2")) == "SYS.1007"
    assert error_of(zs.submit("v3", name="n" * 256)) == "SYS.1007"
    assert error_of(zs.submit("v4", format="vhdx")) == "SYS.1007"
    assert error_of(zs.submit("v5", platform="BeOS")) == "SYS.1007"
    assert error_of(zs.submit("v6", backupStorageUuids=[])) == "SYS.1007"
    assert error_of(zs.submit("v7", backupStorageUuids=["0" * 32])) == "SYS.1003"
    assert error_of(zs.submit("v\x01")) == "SYS.1007"
    iso = zs.submit("v8", mediaType="ISO", format="qcow2")
    assert iso.status_code == 200 and json.loads(iso.json()["inventory"]["jobData"])["format"] == "iso"
    assert iso.json()["inventory"]["state"] == "Waiting"       # a job waits STAGE_SECONDS (50 ms), then runs
    assert [job["uuid"] for job in zs.query("/longjobs")] == [iso.json()["inventory"]["uuid"]]
    # one non-final job per imageId
    assert error_of(zs.submit("v8")) == "SYS.1007"


def test_full_flow_four_parallel_slices(zs):
    data = os.urandom(9 * SLICE + 12345)
    image_id = hashlib.md5(data).hexdigest()
    assert zs.details(image_id) == []
    job_uuid, image_uuid, url = zs.start_upload(image_id)
    count = -(-len(data) // SLICE)
    with ThreadPoolExecutor(4) as pool:
        results = list(pool.map(lambda i: send_slice(url, image_uuid, data, i, md5="hex" if i % 2 else "base64"), range(count)))
    assert [r.status_code for r in results] == [200] * count and all(r.content == b"" for r in results)
    image = wait_ready(zs, image_uuid)
    assert image["md5Sum"] == hashlib.md5(data).hexdigest()
    assert image["size"] == image["actualSize"] == len(data)
    assert image["backupStorageRefs"][0]["status"] == "Ready"
    job = zs.longjob(job_uuid)
    assert job["state"] == "Succeeded" and json.loads(job["jobResult"])["inventory"]["status"] == "Ready"
    content = requests.get(zs.url + "/_emulator/zstack/images/%s/content" % image_uuid)
    assert content.status_code == 200 and hashlib.sha256(content.content).digest() == hashlib.sha256(data).digest()
    assert zs.details(image_id) == []
    counters = stats(zs)
    assert counters["slice_requests"] == count and counters["slice_bytes"] == len(data) and counters["rejected_slices"] == 0
    assert zs.query("/backup-storage/" + BACKUP_STORAGE_UUID)[0]["availableCapacity"] < zs.query("/backup-storage")[0]["totalCapacity"]


def test_upload_job_details_by_get_and_put_and_offset_out_of_order(zs):
    data = os.urandom(5 * SLICE)
    image_id = hashlib.md5(data).hexdigest()
    job_uuid, image_uuid, url = zs.start_upload(image_id)
    by_get, by_put = zs.details(image_id), zs.details(image_id, "PUT")
    assert by_get == by_put == [{"longJobUuid": job_uuid, "longJobState": "Running", "imageUuid": image_uuid, "imageUploadUrl": url, "offset": 0}]
    for index in (2, 1):
        assert send_slice(url, image_uuid, data, index).status_code == 200
    assert zs.details(image_id)[0]["offset"] == 0
    assert send_slice(url, image_uuid, data, 0).status_code == 200
    offset = zs.details(image_id)[0]["offset"]
    assert isinstance(offset, int) and offset == 3 * SLICE
    assert job_view(zs, job_uuid)["receivedSlices"] == [0, 1, 2]
    assert send_slice(url, image_uuid, data, 4).status_code == 200
    assert zs.details(image_id)[0]["offset"] == 3 * SLICE
    assert send_slice(url, image_uuid, data, 3).status_code == 200
    assert wait_ready(zs, image_uuid)["md5Sum"] == image_id


def test_slice_rejections(zs):
    data = os.urandom(3 * SLICE + 100)
    job_uuid, image_uuid, url = zs.start_upload("rejections")
    assert send_slice(url, "0" * 32, data, 0).status_code == 404
    assert send_slice(url, image_uuid, data, 0).status_code == 200
    duplicate = send_slice(url, image_uuid, data, 0)
    assert error_of(duplicate, 406)
    # slice size fixed by the first slice: a shorter middle slice, an unaligned offset
    assert error_of(send_slice(url, image_uuid, data, 1, body=data[SLICE:SLICE + 1000],
                               headers={"X-SLICE-SIZE": "1000"}), 400) == "SYS.1007"
    assert send_slice(url, image_uuid, data, 1, headers={"X-SLICE-OFFSET": str(SLICE + 1)}).status_code == 400
    assert send_slice(url, image_uuid, data, 1, total=len(data) + 1).status_code == 400         # X-IMAGE-SIZE changed
    # MD5 mismatch: 400 and nothing recorded
    assert error_of(send_slice(url, image_uuid, data, 1, headers={"X-SLICE-MD5": "0" * 32}), 400) == "SYS.1007"
    assert job_view(zs, job_uuid)["receivedSlices"] == [0]
    # the body is shorter than X-SLICE-SIZE
    assert send_slice(url, image_uuid, data, 1, body=data[SLICE:2 * SLICE - 1], md5=None).status_code == 400
    # Content-Range disagreeing with the slice headers
    conflict = send_slice(url, image_uuid, data, 1, headers={"Content-Range": "bytes 0-%d/%d" % (SLICE - 1, len(data))})
    assert conflict.status_code == 416 and conflict.json()["serverOffset"] == SLICE
    agreeing = send_slice(url, image_uuid, data, 1, headers={"Content-Range": "bytes %d-%d/%d" % (SLICE, 2 * SLICE - 1, len(data))})
    assert agreeing.status_code == 200
    assert requests.post(url, data=b"not multipart", headers={"X-IMAGE-UUID": image_uuid, "X-IMAGE-SIZE": str(len(data))}).status_code == 400
    assert requests.get(url).status_code == 405
    assert job_view(zs, job_uuid)["receivedSlices"] == [0, 1]
    assert stats(zs)["rejected_slices"] == 9
    # the short last slice, then the rest
    assert send_slice(url, image_uuid, data, 3).status_code == 200
    assert send_slice(url, image_uuid, data, 2).status_code == 200
    assert wait_ready(zs, image_uuid)["md5Sum"] == hashlib.md5(data).hexdigest()
    assert send_slice(url, image_uuid, data, 2).status_code == 400           # the upload is over


def test_short_last_slice_first_fixes_the_slice_size(zs):
    data = os.urandom(2 * SLICE + 10)
    job_uuid, image_uuid, url = zs.start_upload("last-first")
    assert send_slice(url, image_uuid, data, 2).status_code == 200
    assert job_view(zs, job_uuid)["sliceSize"] == SLICE
    assert send_slice(url, image_uuid, data, 0, slice_size=SLICE // 2).status_code == 400
    for index in (1, 0):
        assert send_slice(url, image_uuid, data, index).status_code == 200
    assert wait_ready(zs, image_uuid)["md5Sum"] == hashlib.md5(data).hexdigest()


def open_slow_slice(url, image_uuid, data, index):
    """Send the headers and half of a slice over a raw socket; return (socket, the rest of the request)."""
    chunk = data[index * SLICE:(index + 1) * SLICE]
    body = (b"--b0undary\r\nContent-Disposition: form-data; name=\"file\"; filename=\"x\"\r\n\r\n" + chunk + b"\r\n--b0undary--\r\n")
    head = ("POST /imagestore/upload HTTP/1.1\r\nHost: %s\r\nContent-Type: multipart/form-data; boundary=b0undary\r\n"
            "Content-Length: %d\r\nX-IMAGE-UUID: %s\r\nX-IMAGE-SIZE: %d\r\nX-SLICE-OFFSET: %d\r\nX-SLICE-SIZE: %d\r\n"
            "X-SLICE-INDEX: %d\r\n\r\n" % (urlsplit(url).netloc, len(body), image_uuid, len(data), index * SLICE, len(chunk), index))
    sock = socket.create_connection((urlsplit(url).hostname, urlsplit(url).port))
    sock.sendall(head.encode() + body[:len(body) // 2])
    return sock, body[len(body) // 2:]


def test_slice_in_flight_holds_its_index_and_keeps_the_job_alive(zs):
    data = os.urandom(2 * SLICE)
    requests.post(zs.url + "/_emulator/config", json={"zstack_idle_seconds": 0.3})
    job_uuid, image_uuid, url = zs.start_upload("slow")
    sock, rest = open_slow_slice(url, image_uuid, data, 0)
    with sock:
        wait_for(lambda: job_view(zs, job_uuid)["inFlightSlices"] == [0], what="slice 0 in flight")
        time.sleep(0.5)                                         # longer than the idle limit, but bytes are flowing
        assert job_view(zs, job_uuid)["state"] == "Running"
        duplicate = send_slice(url, image_uuid, data, 0)
        assert duplicate.status_code == 409 and duplicate.json()["serverOffset"] == 0
        sock.sendall(rest)
        assert sock.recv(4096).startswith(b"HTTP/1.1 200")
    # a client that goes away mid-slice leaves nothing recorded, and the slice can be sent again
    sock, rest = open_slow_slice(url, image_uuid, data, 1)
    wait_for(lambda: job_view(zs, job_uuid)["inFlightSlices"] == [1], what="slice 1 in flight")
    sock.close()
    wait_for(lambda: job_view(zs, job_uuid)["inFlightSlices"] == [], what="slice 1 released")
    assert job_view(zs, job_uuid)["receivedSlices"] == [0]
    assert send_slice(url, image_uuid, data, 1).status_code == 200
    assert wait_ready(zs, image_uuid)["md5Sum"] == hashlib.md5(data).hexdigest()
    assert requests.get(zs.url + "/_emulator/zstack/images/%s/content" % image_uuid).content == data


def test_whole_file_in_one_request(zs):
    data = os.urandom(100000)
    job_uuid, image_uuid, url = zs.start_upload("whole")
    assert requests.get(zs.url + "/_emulator/zstack/images/%s/content" % image_uuid).status_code == 404     # not uploaded yet
    rsp = requests.post(url, files={"file": ("whole.raw", data)}, data={"note": "form fields are ignored"},
                        headers={"X-IMAGE-UUID": image_uuid, "X-IMAGE-SIZE": str(len(data))})
    assert rsp.status_code == 200
    assert wait_ready(zs, image_uuid)["md5Sum"] == hashlib.md5(data).hexdigest()


def test_idle_suspend_resume_and_finish(zs):
    data = os.urandom(2 * SLICE)
    image_id = hashlib.md5(data).hexdigest()
    requests.post(zs.url + "/_emulator/config", json={"zstack_idle_seconds": 0.4})
    job_uuid, image_uuid, url = zs.start_upload(image_id)
    assert send_slice(url, image_uuid, data, 0).status_code == 200
    time.sleep(0.6)
    details = zs.details(image_id)
    assert details[0]["longJobState"] == "Suspended" and details[0]["offset"] == SLICE
    job = zs.longjob(job_uuid)
    error = json.loads(job["jobResult"])
    assert error["code"] == "LONG_JOB.1002" and error["cause"]["code"] == "IMG.1001"
    assert zs.image(image_uuid)["status"] == "Downloading"
    assert send_slice(url, image_uuid, data, 1).status_code == 400       # suspended: resume first
    resumed = zs.call("PUT", "/longjobs/%s/actions" % job_uuid, json={"resumeLongJob": {}})
    assert resumed.status_code == 200 and resumed.json()["inventory"]["state"] == "Running"
    assert error_of(zs.call("PUT", "/longjobs/%s/actions" % job_uuid, json={"resumeLongJob": {}})) == "SYS.1007"
    assert send_slice(url, image_uuid, data, 1).status_code == 200
    assert wait_ready(zs, image_uuid)["md5Sum"] == image_id
    assert zs.longjob(job_uuid)["state"] == "Succeeded"


def test_no_byte_within_the_idle_limit_fails_the_job(zs):
    requests.post(zs.url + "/_emulator/config", json={"zstack_idle_seconds": 0.3})
    job_uuid, image_uuid, url = zs.start_upload("early-idle")
    time.sleep(0.5)
    job = zs.longjob(job_uuid)
    assert job["state"] == "Failed"
    error = json.loads(job["jobResult"])
    assert error["code"] == "SYS.1006" and error["details"] == "upload session expired"
    assert zs.image(image_uuid) is None
    assert zs.details("early-idle") == []
    assert send_slice(url, image_uuid, os.urandom(10), 0).status_code == 404
    assert zs.submit("early-idle").status_code == 200                     # a final job frees the imageId


def test_control_suspend(zs):
    job_uuid, image_uuid, url = zs.start_upload("control")
    suspended = requests.post(zs.url + "/_emulator/zstack/jobs/%s/suspend" % job_uuid)
    assert suspended.status_code == 200 and suspended.json()["state"] == "Suspended"
    assert requests.post(zs.url + "/_emulator/zstack/jobs/%s/suspend" % job_uuid).status_code == 409
    assert zs.longjob(job_uuid)["state"] == "Suspended"
    view = job_view(zs, job_uuid)
    assert view["imageId"] == "control" and view["imageUuid"] == image_uuid and view["offset"] == 0


def test_cancel_delete_and_expunge(zs):
    data = os.urandom(SLICE + 1)
    job_uuid, image_uuid, url = zs.start_upload("to-cancel")
    assert send_slice(url, image_uuid, data, 0).status_code == 200
    assert error_of(zs.call("DELETE", "/longjobs/" + job_uuid)) == "SYS.1007"          # not final yet
    assert zs.call("PUT", "/longjobs/%s/actions" % job_uuid, json={"cancelLongJob": {}}).status_code == 200
    job = zs.longjob(job_uuid)
    assert job["state"] == "Canceled" and json.loads(job["jobResult"])["code"] == "LONG_JOB.1000"
    assert zs.image(image_uuid) is None
    assert zs.call("DELETE", "/longjobs/" + job_uuid).status_code == 200
    assert zs.query("/longjobs/" + job_uuid) == []

    job_uuid, image_uuid, url = zs.start_upload("to-delete")
    assert send_slice(url, image_uuid, data, 0).status_code == 200
    assert send_slice(url, image_uuid, data, 1).status_code == 200
    wait_ready(zs, image_uuid)
    assert error_of(zs.call("PUT", "/longjobs/%s/actions" % job_uuid, json={"cancelLongJob": {}})) == "SYS.1007"
    hashed = zs.call("PUT", "/images/%s/actions" % image_uuid,
                     json={"calculateImageHash": {"backupStorageUuid": BACKUP_STORAGE_UUID, "algorithm": "MD5"}})
    assert hashed.status_code == 200 and hashed.json()["inventory"]["md5Sum"] == hashlib.md5(data).hexdigest()
    expunge = {"expungeImage": {"backupStorageUuids": [BACKUP_STORAGE_UUID]}}
    assert error_of(zs.call("PUT", "/images/%s/actions" % image_uuid, json=expunge)) == "SYS.1007"     # not deleted yet
    assert zs.call("DELETE", "/images/%s?deleteMode=Permissive" % image_uuid).status_code == 200
    assert zs.image(image_uuid)["status"] == "Deleted"
    assert zs.call("PUT", "/images/%s/actions" % image_uuid, json=expunge).status_code == 200
    assert zs.image(image_uuid) is None
    assert requests.get(zs.url + "/_emulator/zstack/images/%s/content" % image_uuid).status_code == 404
    assert error_of(zs.call("DELETE", "/images/" + image_uuid)) == "SYS.1003"


def test_queries(zs):
    zs.start_upload("q1", name="alpha")
    zs.start_upload("q2", name="beta")
    assert [i["name"] for i in zs.query("/images", q="name=alpha")] == ["alpha"]
    assert [i["name"] for i in zs.query("/images", q="name!=alpha")] == ["beta"]
    assert sorted(i["name"] for i in zs.query("/images", q=["status=Downloading", "name?=alpha,beta"])) == ["alpha", "beta"]
    assert len(zs.query("/images", q="backupStorageRefs.backupStorageUuid=" + BACKUP_STORAGE_UUID)) == 2
    assert zs.query("/images", q="name~=al%")[0]["name"] == "alpha"
    assert zs.query("/backup-storage", q="name=nope") == []
    storage = zs.query("/backup-storage/" + BACKUP_STORAGE_UUID)[0]
    assert (storage["type"], storage["status"], storage["state"]) == ("ImageStoreBackupStorage", "Connected", "Enabled")
    assert error_of(zs.raw("GET", "/images", params={"q": "nosuchfield=1"})) == "SYS.1007"
    assert zs.raw("GET", "/images", params={"q": "nooperator"}).status_code == 400


def test_state_survives_a_restart(tmp_path):
    data = os.urandom(4 * SLICE)
    image_id = hashlib.md5(data).hexdigest()
    with running_emulator(data_dir=tmp_path) as info:
        zs = ZStack(info["url"], info["credentials"]["zstack"])
        zs.login()
        job_uuid, image_uuid, url = zs.start_upload(image_id)
        for index in (0, 1, 3):
            assert send_slice(url, image_uuid, data, index).status_code == 200
    with running_emulator(data_dir=tmp_path) as info:
        zs = ZStack(info["url"], info["credentials"]["zstack"])
        zs.login()
        details = zs.details(image_id)
        assert [(d["longJobUuid"], d["imageUuid"], d["offset"]) for d in details] == [(job_uuid, image_uuid, 2 * SLICE)]
        assert job_view(zs, job_uuid)["receivedSlices"] == [0, 1, 3]
        assert details[0]["imageUploadUrl"] == info["url"] + "/imagestore/upload" != url     # a new port, the URL follows
        assert send_slice(details[0]["imageUploadUrl"], image_uuid, data, 2).status_code == 200
        assert wait_ready(zs, image_uuid)["md5Sum"] == image_id
        content = requests.get(info["url"] + "/_emulator/zstack/images/%s/content" % image_uuid).content
        assert hashlib.sha256(content).digest() == hashlib.sha256(data).digest()


# ----------------------------------------------------- incremental whole-image MD5

def prefix_digest(emulator, job_uuid):
    """How many bytes of the job's data file the receiver digested while the upload goes on (0 when it has no digest),
    once no thread is digesting."""
    zstack = next(p for p in emulator["server"].app.providers if p.name == "zstack")

    def settled():
        digest = zstack._digests.get(job_uuid)
        return (digest.offset if digest else 0,) if digest is None or not digest.lock.locked() else None
    return wait_for(settled, what="the prefix digest to settle")[0]


def test_md5_of_slices_out_of_order_and_in_parallel(emulator, zs):
    data = os.urandom(11 * SLICE + 777)
    job_uuid, image_uuid, url = zs.start_upload("md5-order")
    for index in (11, 6):                                       # the short last slice, a middle one: no prefix yet
        assert send_slice(url, image_uuid, data, index).status_code == 200
    assert prefix_digest(emulator, job_uuid) == 0
    assert send_slice(url, image_uuid, data, 0).status_code == 200
    assert prefix_digest(emulator, job_uuid) == SLICE          # digested while the upload goes on
    rest = [1, 2, 3, 4, 5, 7, 8, 9, 10]
    random.shuffle(rest)
    with ThreadPoolExecutor(4) as pool:
        assert [r.status_code for r in pool.map(lambda i: send_slice(url, image_uuid, data, i), rest)] == [200] * len(rest)
    assert wait_ready(zs, image_uuid)["md5Sum"] == hashlib.md5(data).hexdigest()
    assert zs.longjob(job_uuid)["state"] == "Succeeded"


def test_md5_when_a_slice_was_rejected_for_its_md5(emulator, zs):
    data = os.urandom(4 * SLICE)
    job_uuid, image_uuid, url = zs.start_upload("md5-rejected")
    assert send_slice(url, image_uuid, data, 0).status_code == 200
    # slice 1 arrives damaged (its bytes land in the data file), then slice 2 is fine: neither may be digested
    damaged = bytes(b ^ 0xFF for b in data[SLICE:2 * SLICE])
    claimed = {"X-SLICE-MD5": hashlib.md5(data[SLICE:2 * SLICE]).hexdigest()}
    assert error_of(send_slice(url, image_uuid, data, 1, body=damaged, headers=claimed), 400) == "SYS.1007"
    assert send_slice(url, image_uuid, data, 2).status_code == 200
    assert prefix_digest(emulator, job_uuid) == SLICE
    assert send_slice(url, image_uuid, data, 1).status_code == 200
    assert prefix_digest(emulator, job_uuid) == 3 * SLICE
    assert send_slice(url, image_uuid, data, 3).status_code == 200
    assert wait_ready(zs, image_uuid)["md5Sum"] == hashlib.md5(data).hexdigest()


def test_md5_of_a_job_uuid_used_again_after_a_cancel(emulator, zs):
    """The digest belongs to one job: a cancelled, deleted job's uuid submitted again starts from nothing."""
    old, new = os.urandom(3 * SLICE), os.urandom(3 * SLICE)
    job_uuid = "ab" * 16

    def start():
        body = {"params": {"jobName": "APIAddImageMsg", "resourceUuid": job_uuid, "jobData": json.dumps(
            {"name": "again", "url": "upload://again", "format": "raw", "backupStorageUuids": [BACKUP_STORAGE_UUID]})},
            "systemTags": ["uploadImage::md5-again"]}
        assert zs.call("POST", "/longjobs", json=body).status_code == 200
        return wait_for(lambda: (lambda j: j["jobResult"] and j["targetResourceUuid"])(zs.longjob(job_uuid)), what="tracking")
    image_uuid = start()
    url = zs.url + "/imagestore/upload"
    for index in (0, 1):
        assert send_slice(url, image_uuid, old, index).status_code == 200
    assert prefix_digest(emulator, job_uuid) == 2 * SLICE
    assert zs.call("PUT", "/longjobs/%s/actions" % job_uuid, json={"cancelLongJob": {}}).status_code == 200
    assert zs.call("DELETE", "/longjobs/" + job_uuid).status_code == 200
    assert prefix_digest(emulator, job_uuid) == 0
    image_uuid = start()
    for index in (2, 1, 0):
        assert send_slice(url, image_uuid, new, index).status_code == 200
    assert wait_ready(zs, image_uuid)["md5Sum"] == hashlib.md5(new).hexdigest()


def test_md5_after_a_restart_mid_upload(tmp_path):
    data = os.urandom(6 * SLICE + 5)
    emu = EmulatorProcess(tmp_path).start()
    try:
        zs = ZStack(emu.url, emu.credentials["zstack"])
        zs.login()
        job_uuid, image_uuid, url = zs.start_upload("md5-restart")
        for index in (0, 1, 2, 5):
            assert send_slice(url, image_uuid, data, index).status_code == 200
        emu.restart()
        zs = ZStack(emu.url, emu.credentials["zstack"])
        zs.login()
        url = zs.details("md5-restart")[0]["imageUploadUrl"]
        for index in (4, 3, 6):
            assert send_slice(url, image_uuid, data, index).status_code == 200
        assert wait_ready(zs, image_uuid)["md5Sum"] == hashlib.md5(data).hexdigest()
    finally:
        emu.stop()
