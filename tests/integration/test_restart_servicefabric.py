"""The emulator killed with SIGKILL mid-upload and started again on the same data: the re-run
resumes and the result is byte-identical; committed data survives the restart."""


import pytest

from tests.conftest import assert_no_traceback, kill_mid_upload

MiB = 1024 * 1024


@pytest.fixture
def own_emulator(private_emulator):
    return private_emulator("--latency-ms", "40")


def args(emu, src, path):
    return {"provider": "servicefabric", "endpoint": emu.url, "src": src, "path": path, "chunk_size": "1MiB",
            "parallel": 2, "retries": 1}


def test_sigkill_mid_upload_then_resume(ansible, own_emulator, image):
    src, digest = image(64 * MiB, seed=31)
    emu = own_emulator
    first = kill_mid_upload(ansible, emu, args(emu, src, "restart/disk.img"), ("servicefabric", "chunk_bytes"), 8 * MiB)[0]
    assert first["failed"] is True and "connect" in first["msg"], first

    emu.restart()
    sessions = emu.control("GET", "servicefabric/sessions").json()
    received = sum(r["end"] - r["start"] + 1 for s in sessions for r in s["received"])
    assert 8 * MiB <= received < 64 * MiB
    result, run = ansible.module("image_upload", args(emu, src, "restart/disk.img"))
    assert result["changed"] and result["resumed"], run.output
    assert result["bytes_sent"] == 64 * MiB - received
    assert emu.stored_sha256("servicefabric", "restart/disk.img") == digest
    assert_no_traceback(run.output)


def test_committed_data_survives_sigkill(ansible, own_emulator, image):
    src, digest = image(3 * MiB, seed=32)
    result, run = ansible.module("image_upload", args(own_emulator, src, "restart/kept.img"))
    assert result["changed"], run.output
    own_emulator.kill()
    own_emulator.restart()
    assert own_emulator.stored_sha256("servicefabric", "restart/kept.img") == digest
    again, _ = ansible.module("image_upload", args(own_emulator, src, "restart/kept.img"))
    assert again["changed"] is False
