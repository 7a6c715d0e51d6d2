"""The emulator killed with SIGKILL while a vSphere data PUT is in flight, then started again on the same data
dir: the re-run resumes the item's ACTIVE update session and the result is byte-identical; a completed item
file survives a restart."""


import pytest

from tests.conftest import assert_no_traceback, kill_mid_upload

MiB = 1024 * 1024
SIZE = 128 * MiB           # the emulator takes about 0.3 s for it: time to see the PUT going and kill the server


@pytest.fixture
def own_emulator(private_emulator):
    return private_emulator("--latency-ms", "40")


def args(emu, src, item, **extra):
    creds = emu.credentials["vsphere"]
    return dict({"provider": "vsphere", "endpoint": emu.url, "username": creds["username"], "password": creds["password"],
                 "library": "images", "item": item, "src": src, "retries": 1}, **extra)


def sessions(emu):
    return emu.control("GET", "vsphere/sessions").json()


def test_sigkill_mid_put_then_the_rerun_resumes_the_session(ansible, own_emulator, image):
    src, digest = image(SIZE, seed=41, name="big.iso")
    emu = own_emulator
    failed, run = kill_mid_upload(ansible, emu, args(emu, src, "restart"), ("vsphere", "data_bytes"), 16 * MiB, poll=0.005)
    assert failed["failed"] is True, run.output
    session_id = failed["session_id"]
    # the client could neither finish nor clean up: it says so, and names the cause
    refused = "cannot connect to %s: connection refused (is the endpoint right and the service running?)" % emu.url
    assert failed["msg"] == ("get update session {0} failed after 2 attempts: {1}; upload session {0} could not be removed and "
                             "may still exist: remove it with imagestore.upload.upload_session_absent".format(session_id, refused)), \
        failed["msg"]
    assert failed["session_cleanup"] == "incomplete"
    assert failed["cleanup_error"] == ("update session {0} could not be cleaned up (failed: fail update session {0} failed after 2 "
                                       "attempts: {1}); it may still be ACTIVE".format(session_id, refused))
    assert_no_traceback(run.output)

    emu.restart()
    (left,) = sessions(emu)
    assert left["id"] == session_id and left["state"] == "ACTIVE"
    (f,) = left["files"]
    assert f["status"] == "ERROR" and f["bytes_transferred"] == 0, f        # the PUT was in flight: its bytes are gone
    assert "interrupted (server restart)" in f["error_message"]["default_message"]
    assert emu.stored_sha256("vsphere", failed["item_id"], "big.iso") is None

    result, run = ansible.module("image_upload", args(emu, src, "restart"))
    assert result["changed"] is True and result["resumed"] is True and result["session_id"] == session_id, run.output
    assert result["item_id"] == failed["item_id"] and result["item_created"] is False
    assert result["bytes_sent"] == SIZE                      # the unit of resume is the file: sent again whole
    assert emu.stats("vsphere")["data_bytes"] == SIZE        # counted since the restart
    assert emu.stored_sha256("vsphere", result["item_id"], "big.iso") == digest
    assert sessions(emu) == []
    assert_no_traceback(run.output)


def test_a_completed_item_file_survives_sigkill(ansible, own_emulator, image):
    src, digest = image(3 * MiB + 3, seed=42, name="kept.iso")
    result, run = ansible.module("image_upload", args(own_emulator, src, "kept"))
    assert result["changed"] is True, run.output
    own_emulator.kill()
    own_emulator.restart()
    assert own_emulator.stored_sha256("vsphere", result["item_id"], "kept.iso") == digest
    again, run = ansible.module("image_upload", args(own_emulator, src, "kept"))
    assert again["changed"] is False and again["bytes_sent"] == 0 and again["item_id"] == result["item_id"], run.output
    assert again["compared"] == "sha1" and "(compared by sha1)" in again["msg"]
