"""Service Fabric uploads through injected faults: each completes byte-identical within its retry
budget, or fails naming the cause and leaves a session the next run resumes. Never an incomplete
file committed, never a chunk counted twice."""

import pytest
import requests

from tests.conftest import assert_no_traceback

MiB = 1024 * 1024
SIZE = 64 * MiB


@pytest.fixture
def emu(imagestore_emulator):
    requests.delete(imagestore_emulator.url + "/_emulator/faults")
    yield imagestore_emulator
    requests.delete(imagestore_emulator.url + "/_emulator/faults")


@pytest.fixture(scope="module")
def big(tmp_path_factory):
    from tests.conftest import make_file
    path = str(tmp_path_factory.mktemp("faults") / "disk.img")
    return path, make_file(path, SIZE, seed=64)


def inject(emu, **rule):
    r = requests.post(emu.url + "/_emulator/faults", json=dict({"provider": "servicefabric"}, **rule))
    assert r.status_code == 200, r.text


def fired(emu):
    return requests.get(emu.url + "/_emulator/faults").json()["fired"]


CASES = {
    "lost answers to chunks": dict(operation="chunk", action="drop_response", count=3, after=2),
    "503 storm with Retry-After": dict(operation="chunk", action="status", status=503, retry_after=1, count=3),
    "500 on chunks": dict(operation="chunk", action="status", status=500, count=2),
    "connection cut mid-body": dict(operation="chunk", action="close_after_bytes", bytes=MiB, count=2),
    "slow answers past request_timeout": dict(operation="chunk", action="delay", ms=2500, count=1),
    "lost answer to the commit": dict(operation="commit", action="drop_response", count=1),
    "503 on session reads": dict(operation="get", action="status", status=503, count=2),
    "session expired mid-upload": dict(operation="chunk", action="expire", count=1, after=3),
}


@pytest.mark.parametrize("case", sorted(CASES))
def test_upload_survives(ansible, imagestore_target, emu, big, case):
    src, digest = big
    path = "faults/%s.img" % case.replace(" ", "-")
    inject(emu, **CASES[case])
    before = emu.stats("servicefabric")["chunk_bytes"]
    result, run = ansible.module("image_upload", imagestore_target("servicefabric").module_args(
        src=src, path=path, chunk_size="4MiB", parallel=4, request_timeout=2, retries=4))
    assert result.get("changed") is True, run.output
    assert fired(emu), "the fault never fired"
    assert emu.stored_sha256("servicefabric", path) == digest
    accepted = emu.stats("servicefabric")["chunk_bytes"] - before
    if case == "session expired mid-upload":
        assert accepted >= SIZE                 # the expired part was sent again, into a fresh session
    else:
        assert accepted == SIZE                 # every byte accepted exactly once
    assert_no_traceback(run.output)


def test_exhausted_budget_fails_clearly_and_the_next_run_resumes(ansible, imagestore_target, emu, big):
    src, digest = big
    path = "faults/exhausted.img"
    args = imagestore_target("servicefabric").module_args(src=src, path=path, chunk_size="4MiB", parallel=1, retries=2)
    inject(emu, operation="chunk", action="status", status=503, count=0, after=5)
    result, run = ansible.module("image_upload", args)
    assert result["failed"] is True
    assert "failed after 3 attempts: HTTP 503 FABRIC_E_NOT_READY: injected fault: HTTP 503" in result["msg"], result["msg"]
    assert result["msg"].startswith("upload bytes ")
    assert emu.stored_sha256("servicefabric", path) is None          # nothing incomplete was committed
    assert_no_traceback(run.output)

    requests.delete(emu.url + "/_emulator/faults")
    before = emu.stats("servicefabric")["chunk_bytes"]
    again, run = ansible.module("image_upload", args)
    assert again["changed"] and again["resumed"], run.output
    assert again["bytes_sent"] == SIZE - 5 * 4 * MiB
    assert emu.stats("servicefabric")["chunk_bytes"] - before == SIZE - 5 * 4 * MiB
    assert emu.stored_sha256("servicefabric", path) == digest
