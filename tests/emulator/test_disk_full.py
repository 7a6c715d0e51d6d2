"""A full disk is answered as each real API answers it, in its own format, never by closing the connection
(issue 12 G). The ``enospc`` fault always runs; a real full filesystem (a 16 MiB tmpfs) runs where this
machine lets the tests mount one."""

import os
import subprocess
import uuid

import pytest
import requests

from field_helpers import (VS, ZS, faults, multipart_slice, new_id, sf_chunk, sf_commit, sf_put, sf_sessions, sf_stored,
                           zs_slice_headers)
from imagestore_emulator.process import EmulatorProcess
from imagestore_emulator.testing import running_emulator

DISK_FULL = {"Error": {"Code": "0x80070070", "Message": "There is not enough space on the disk."}}
MiB = 1024 * 1024


@pytest.fixture(scope="module")
def emulator():
    with running_emulator() as info:
        yield info


@pytest.fixture(autouse=True)
def no_faults(emulator):
    requests.delete(emulator["url"] + "/_emulator/faults")
    yield
    requests.delete(emulator["url"] + "/_emulator/faults")


def assert_sf_disk_full(r):
    assert (r.status_code, r.reason) == (500, "0x80070070") and r.json() == DISK_FULL


def test_service_fabric_chunk_put_and_commit_on_a_full_disk(emulator):
    url = emulator["url"]
    faults(url, {"provider": "servicefabric", "operation": "chunk", "action": "enospc", "bytes": 1000})
    sid, data = new_id(), os.urandom(4096)
    assert_sf_disk_full(sf_chunk(url, "full/a.bin", sid, 0, data, len(data)))
    session = next(s for s in sf_sessions(url) if s["id"] == sid)
    assert session["received"] == [] and session["in_flight"] == []           # nothing half-recorded
    assert sf_chunk(url, "full/a.bin", sid, 0, data, len(data)).status_code == 200     # room again: it lands
    faults(url, {"provider": "servicefabric", "operation": "commit", "action": "enospc"})
    assert_sf_disk_full(sf_commit(url, sid))
    assert sf_stored(url, "full/a.bin") is None
    assert sf_commit(url, sid).status_code == 200 and sf_stored(url, "full/a.bin") == data
    faults(url, {"provider": "servicefabric", "operation": "put_file", "action": "enospc"})
    assert_sf_disk_full(sf_put(url, "full/a.bin", b"other"))
    assert sf_stored(url, "full/a.bin") == data                          # the stored file is untouched
    assert os.listdir(os.path.join(emulator["data_dir"], "servicefabric", "tmp")) == []


def test_vsphere_data_transfer_on_a_full_disk(emulator):
    url = emulator["url"]
    vs = VS(url, emulator["credentials"]["vsphere"])
    session_id, added = vs.new_file("disk.iso", size=4096)
    faults(url, {"provider": "vsphere", "operation": "data_put", "action": "enospc", "bytes": 1024})
    r = vs.http.put(added.json()["upload_endpoint"]["uri"], data=b"d" * 4096)
    assert r.status_code == 500
    body = r.json()
    assert body["type"] == "com.vmware.vapi.std.errors.unable_to_allocate_resource"
    assert body["error_type"] == "UNABLE_TO_ALLOCATE_RESOURCE"
    assert "insufficient disk space on datastore 'datastore1'" in body["messages"][0]["default_message"]
    f = vs.file(session_id, "disk.iso")
    assert f["status"] == "ERROR" and "No space left on device" in f["error_message"]["default_message"]


def test_zstack_slice_on_a_full_disk_and_the_api_goes_on(emulator):
    url = emulator["url"]
    zs = ZS(url, emulator["credentials"]["zstack"])
    image_uuid, job_uuid = zs.start_upload("full-" + new_id()[:8])
    data = os.urandom(8192)
    body, content_type = multipart_slice(data)
    headers = zs_slice_headers(image_uuid, len(data), 0, len(data), 0, len(body), content_type, data)
    faults(url, {"provider": "zstack", "operation": "slice", "action": "enospc"})
    r = requests.post(url + "/imagestore/upload", data=body, headers=headers)
    assert r.status_code == 500 and r.json()["error"]["code"] == "SYS.1006"
    assert r.json()["error"]["details"].startswith("the backup storage[uuid:%s, name:bs] has not enough capacity"
                                                   % zs.backup_storage())
    assert zs.job(job_uuid)["receivedSlices"] == [] and zs.job(job_uuid)["inFlightSlices"] == []
    assert zs.images().status_code == 200
    assert requests.post(url + "/imagestore/upload", data=body, headers=headers).status_code == 200


def test_enospc_on_a_request_that_writes_nothing_changes_nothing(emulator):
    url = emulator["url"]
    faults(url, {"provider": "servicefabric", "operation": "content", "action": "enospc"})
    assert requests.get(url + "/ImageStore", params={"api-version": "6.0"}).status_code in (200, 204)
    assert requests.get(url + "/_emulator/faults").json()["fired"][0]["action"] == "enospc"


# ------------------------------------------------------------------------ a real full filesystem

@pytest.fixture
def tiny_fs(tmp_path):
    """A 16 MiB tmpfs, or a skip that says why there is none."""
    mount_point = tmp_path / "tiny"
    mount_point.mkdir()
    try:
        done = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=16m", "tmpfs", str(mount_point)],
                              capture_output=True, text=True, timeout=20)
    except (OSError, subprocess.TimeoutExpired) as exc:
        pytest.skip("cannot mount a tmpfs here (%s): the fault-based tests above cover the answers" % exc)
    if done.returncode != 0:
        pytest.skip("mount -t tmpfs is not permitted here (%s): the fault-based tests above cover the answers"
                    % (done.stderr.strip() or done.returncode))
    try:
        yield mount_point
    finally:
        subprocess.run(["umount", "-l", str(mount_point)], capture_output=True, timeout=20)


def test_real_full_filesystem(tiny_fs):
    data_dir = tiny_fs / "data"
    data_dir.mkdir()
    emulator = EmulatorProcess(str(data_dir)).start()
    try:
        url = emulator.url
        sid, data = str(uuid.uuid4()), os.urandom(20 * MiB)
        assert_sf_disk_full(sf_chunk(url, "big.bin", sid, 0, data, len(data)))
        assert next(s for s in sf_sessions(url) if s["id"] == sid)["in_flight"] == []
        vs = VS(url, emulator.credentials["vsphere"])
        session_id, added = vs.new_file("big.iso", size=len(data))
        r = vs.http.put(added.json()["upload_endpoint"]["uri"], data=data)
        assert r.status_code == 500 and r.json()["error_type"] == "UNABLE_TO_ALLOCATE_RESOURCE"
        assert vs.file(session_id, "big.iso")["status"] == "ERROR"
        zs = ZS(url, emulator.credentials["zstack"])
        image_uuid, job_uuid = zs.start_upload("tmpfs")
        body, content_type = multipart_slice(data)
        r = requests.post(url + "/imagestore/upload", data=body,
                          headers=zs_slice_headers(image_uuid, len(data), 0, len(data), 0, len(body), content_type, data))
        assert r.status_code == 500 and r.json()["error"]["code"] == "SYS.1006"
        assert zs.job(job_uuid)["receivedSlices"] == []
        # now no byte left at all: even the bookkeeping cannot be written
        with open(tiny_fs / "filler", "wb") as fh:
            try:
                while True:
                    fh.write(b"\0" * MiB)
                    fh.flush()
            except OSError:
                pass
        assert_sf_disk_full(sf_put(url, "small.txt", b"x" * 100))
        library = vs.library()
        rest = vs.http.post(url + "/rest/com/vmware/content/library/item",
                            json={"create_spec": {"name": "full", "library_id": library, "type": "iso"}})
        assert rest.status_code == 400 and rest.json()["type"] == "com.vmware.vapi.std.errors.unable_to_allocate_resource"
        api = vs.http.post(url + "/api/content/library/item", json={"name": "full", "library_id": library, "type": "iso"})
        assert api.status_code == 500 and api.json()["error_type"] == "UNABLE_TO_ALLOCATE_RESOURCE"
        assert zs.images().status_code == 200          # ZStack's API answers: its database is not the image store
    finally:
        emulator.stop()
    with open(data_dir / "emulator.stderr.log", encoding="utf-8", errors="replace") as fh:
        assert "Traceback" not in fh.read()
