"""The emulator killed with SIGKILL in the middle of a ZStack upload and started again on the same data: the re-run
resumes the same long job, sends only what the receiver had not recorded, and the image is byte-identical; a Ready
image survives a restart."""

import hashlib

import pytest
import requests

from tests.conftest import assert_no_traceback, kill_mid_upload

MiB = 1024 * 1024


@pytest.fixture
def own_emulator(private_emulator):
    return private_emulator("--latency-ms", "40")


def args(emu, src, name):
    creds = emu.credentials["zstack"]
    return {"provider": "zstack", "endpoint": emu.url, "username": creds["username"], "password": creds["password"], "src": src,
            "name": name, "backup_storage": "bs", "chunk_size": "1MiB", "parallel": 2, "retries": 1}


def jobs(emu):
    return emu.control("GET", "zstack/jobs").json()["jobs"]


def stored_image(emu, image_uuid):
    """The image as the ZStack API shows it."""
    url = emu.url + "/zstack/v1"
    creds = emu.credentials["zstack"]
    login = requests.put(url + "/accounts/login", json={"logInByAccount": {
        "accountName": creds["username"], "password": hashlib.sha512(creds["password"].encode()).hexdigest()}})
    auth = {"Authorization": "OAuth " + login.json()["inventory"]["uuid"]}
    found = requests.get(url + "/images/" + image_uuid, headers=auth).json()["inventories"]
    return found[0] if found else None


def test_sigkill_mid_upload_then_resume(ansible, own_emulator, image):
    size = 64 * MiB
    src, digest = image(size, seed=131, name="restart.qcow2")
    emu = own_emulator
    first = kill_mid_upload(ansible, emu, args(emu, src, "zr-restart"), ("zstack", "slice_bytes"), 8 * MiB)[0]
    assert first["failed"] is True and "connect" in first["msg"], first

    emu.restart()
    (job,) = jobs(emu)
    received = len(job["receivedSlices"]) * MiB                 # what the receiver recorded before it died
    assert job["state"] in ("Running", "Suspended") and 8 * MiB <= received < size, job
    assert job["offset"] <= received
    result, run = ansible.module("image_upload", args(emu, src, "zr-restart"))
    assert result["changed"] and result["resumed"], run.output
    assert (result["session_id"], result["image_uuid"]) == (job["uuid"], job["imageUuid"])
    assert result["bytes_sent"] == size - received == emu.stats("zstack")["slice_bytes"]     # only the rest was sent
    (done,) = jobs(emu)
    assert done["state"] == "Succeeded" and stored_image(emu, job["imageUuid"])["status"] == "Ready"
    assert emu.stored_sha256("zstack", job["imageUuid"]) == digest
    assert_no_traceback(run.output)


def test_a_ready_image_survives_sigkill(ansible, own_emulator, image):
    src, digest = image(3 * MiB + 7, seed=132, name="kept.qcow2")
    result, run = ansible.module("image_upload", args(own_emulator, src, "zr-kept"))
    assert result["changed"] and result["status"] == "Ready", run.output
    own_emulator.kill()
    own_emulator.restart()
    kept = stored_image(own_emulator, result["image_uuid"])
    assert (kept["status"], kept["actualSize"], kept["md5Sum"]) == ("Ready", 3 * MiB + 7, result["md5"])
    assert own_emulator.stored_sha256("zstack", result["image_uuid"]) == digest
    again, run = ansible.module("image_upload", args(own_emulator, src, "zr-kept"))
    assert again["changed"] is False and again["bytes_sent"] == 0 and again["image_uuid"] == result["image_uuid"], run.output
    assert own_emulator.stats("zstack")["slice_requests"] == 0
