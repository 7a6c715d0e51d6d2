"""ZStack uploads through injected faults: each 64 MiB upload (4 MiB slices, 4 in parallel) completes byte-identical
within its retry budget, or fails naming the cause and leaves a job the next run resumes. Never two long jobs for one
image_id, never an incomplete image Ready, never a slice accepted twice (the emulator counts accepted slice bytes)."""


import re

import pytest
import requests

from tests.conftest import assert_no_traceback
from tests.integration.zstack_api import Rest, clean_emulator

MiB = 1024 * 1024
SIZE = 64 * MiB
SLICE = 4 * MiB
TOTALS = {"cases": 0, "fired": 0, "lost": 0}


@pytest.fixture
def emu(imagestore_emulator, zs):
    """Fault rules cleared before and after; the images the test names in ``emu.names`` removed afterwards."""
    with clean_emulator(imagestore_emulator, zs, "injects faults into the emulator") as emulator:
        yield emulator
        TOTALS["fired"] += len(fired(emulator))


@pytest.fixture(scope="module", autouse=True)
def report():
    yield
    print("\nzstack fault matrix: %(cases)d cases, %(fired)d faults fired, %(lost)d bytes lost" % TOTALS)


@pytest.fixture(scope="module")
def big(tmp_path_factory):
    from tests.conftest import make_file
    path = str(tmp_path_factory.mktemp("zfaults") / "disk.qcow2")
    return path, make_file(path, SIZE, seed=164)


def inject(emu, *rules):
    r = requests.post(emu.url + "/_emulator/faults", json={"rules": [dict({"provider": "zstack"}, **rule) for rule in rules]})
    assert r.status_code == 200, r.text


def fired(emu):
    return requests.get(emu.url + "/_emulator/faults").json()["fired"]


def jobs_of(emu, image_id):
    return [j for j in emu.control("GET", "zstack/jobs").json()["jobs"] if j["imageId"] == image_id]


def upload_args(zs, src, name, **extra):
    args = dict(src=src, name=name, image_id=name, backup_storage="bs", chunk_size="4MiB", parallel=4, request_timeout=2, retries=4)
    args.update(extra)
    return zs.module_args(**args)


def check_stored(emu, zs, name, digest):
    """One long job for the image_id, Succeeded; one image of that name, Ready, holding exactly the file."""
    (job,) = jobs_of(emu, name)
    (image,) = Rest(zs).images(name)
    assert (job["state"], image["status"], image["actualSize"]) == ("Succeeded", "Ready", SIZE)
    assert job["imageUuid"] == image["uuid"]
    stored = emu.stored_sha256("zstack", image["uuid"])
    TOTALS["lost"] += stored != digest
    assert stored == digest
    return job, image


def nothing_ready(emu, zs, name):
    """After a failure: no image of that name is Ready, and none has content to read back."""
    for image in Rest(zs).images(name):
        assert image["status"] != "Ready" and emu.stored_sha256("zstack", image["uuid"]) is None


# case -> (rules, how many fire)
CASES = {
    "lost answers to slices": ([dict(operation="slice", action="drop_response", count=3, after=2)], 3),
    # the retry of the last slice is held back (1 s) so that it arrives once the image is Ready
    "lost answer to the last slice": ([dict(operation="slice", action="drop_response", count=1, after=15),
                                       dict(operation="slice", action="delay", ms=1000, count=1, after=15)], 2),
    "503 storm with Retry-After on polls": ([dict(operation="poll", action="status", status=503, retry_after=1, count=3)], 3),
    "503 storm with Retry-After on slices": ([dict(operation="slice", action="status", status=503, retry_after=1, count=3, after=1)], 3),
    "500 on slices": ([dict(operation="slice", action="status", status=500, count=2, after=3)], 2),
    "connection cut mid-slice": ([dict(operation="slice", action="close_after_bytes", bytes=MiB, count=2, after=1)], 2),
    "slow answers past request_timeout": ([dict(operation="slice", action="delay", ms=2500, count=1, after=2)], 1),
    "lost answer to the long-job submit": ([dict(operation="submit", action="drop_response", count=1)], 1),
    "session expired mid-upload": ([dict(operation="details", action="expire", count=1, after=2)], 1),
    "session expired at the submit": ([dict(operation="submit", action="expire", count=1)], 1),
    "job idle-suspended mid-upload": ([dict(operation="slice", action="expire", count=1, after=5)], 1),
    "503 on login": ([dict(operation="login", action="status", status=503, count=2)], 2),
}


@pytest.mark.parametrize("case", sorted(CASES))
def test_upload_survives(ansible, zs, emu, big, case):
    src, digest = big
    name = "zf-" + case.replace(" ", "-").replace("'", "")
    emu.names.append(name)
    rules, count = CASES[case]
    inject(emu, *rules)
    before = emu.stats("zstack")
    result, run = ansible.module("image_upload", upload_args(zs, src, name))
    TOTALS["cases"] += 1
    assert result.get("changed") is True and result["status"] == "Ready", run.output
    assert len(fired(emu)) == count, fired(emu)
    after = emu.stats("zstack")
    job, image = check_stored(emu, zs, name, digest)
    assert (result["session_id"], result["image_uuid"], result["resumed"]) == (job["uuid"], image["uuid"], False)
    accepted = after["slice_bytes"] - before["slice_bytes"]
    assert accepted == SIZE                                     # every byte accepted exactly once
    assert result["bytes_sent"] == SIZE                         # and this run knows it sent them all
    assert after["logouts"] - before["logouts"] == 1
    if case.startswith("session expired"):
        assert after["logins"] - before["logins"] == 2          # logged in again once, the call repeated
    elif case == "job idle-suspended mid-upload":
        assert result["chunks_replanned"] >= 1 and job["receivedSlices"] == list(range(16))
    assert_no_traceback(run.output)


KEPT = "; upload session {job} is kept: run again to resume it, or remove it with imagestore.upload.upload_session_absent"

EXHAUSTED = {
    # case -> (rule, message of the failed run (<N>: a number that varies), bytes the job holds afterwards)
    # every slice refused: the transfer loop sends the others, then waits for the refused ones until nothing was accepted
    # for the stall time (30 s), and keeps the job
    "503 on every slice": (
        dict(operation="slice", action="status", status=503, count=0, after=5),
        "the store still reports %d bytes missing; nothing was accepted for <N> seconds (last error: send slice <N> (bytes <N>-<N>) "
        "of image {image} failed after 3 attempts: HTTP 503 SYS.1010: injected fault: HTTP 503)" % (SIZE - 5 * SLICE) + KEPT,
        5 * SLICE),
    "the job suspended on every slice": (
        dict(operation="slice", action="expire", count=0, after=2),
        "upload job {job} was suspended again after 3 resumes while its slices were being sent (LONG_JOB.1002 some error interrupt "
        "long job[uuid:{job}], analysis the cause to fix it and resume long job if you want to continue. (cause: IMG.1001 uploading "
        "has been inactive more than {idle} sec))" + KEPT,
        2 * SLICE),
    "503 on every login": (
        dict(operation="login", action="status", status=503, count=0),
        "login to ZStack at {endpoint} as {user} failed after 3 attempts: HTTP 503 SYS.1010: injected fault: HTTP 503",
        None),
}


@pytest.mark.parametrize("case", sorted(EXHAUSTED))
def test_exhausted_budget_fails_clearly_and_the_next_run_resumes(ansible, zs, emu, big, case):
    src, digest = big
    name = "zf-exhausted-" + case.replace(" ", "-")
    emu.names.append(name)
    rule, message, kept = EXHAUSTED[case]
    args = upload_args(zs, src, name, parallel=1, retries=2)
    inject(emu, rule)
    result, run = ansible.module("image_upload", args)
    TOTALS["cases"] += 1
    assert result["failed"] is True, run.output
    jobs = jobs_of(emu, name)
    job = jobs[0] if jobs else {"uuid": None, "imageUuid": None}
    idle = float(emu.configure()["zstack_idle_seconds"])
    expected = message.format(image=job["imageUuid"], job=job["uuid"], endpoint=zs.endpoint, idle=idle, user=zs.options["username"])
    assert re.fullmatch(re.escape(expected).replace(re.escape("<N>"), r"\d+"), result["msg"]), result["msg"]
    assert_no_traceback(run.output)
    TOTALS["fired"] += len(fired(emu))
    requests.delete(emu.url + "/_emulator/faults")
    nothing_ready(emu, zs, name)
    if kept is None:
        assert jobs == []                                       # nothing was submitted
    else:
        (job,) = jobs
        assert job["state"] in ("Running", "Suspended") and job["offset"] == kept

    before = emu.stats("zstack")
    again, run = ansible.module("image_upload", args)
    assert again["changed"] is True and again["resumed"] is (kept is not None), run.output
    assert again["bytes_sent"] == emu.stats("zstack")["slice_bytes"] - before["slice_bytes"] == SIZE - (kept or 0)
    done, _ = check_stored(emu, zs, name, digest)
    assert done["uuid"] == again["session_id"] and (kept is None or done["uuid"] == job["uuid"])
