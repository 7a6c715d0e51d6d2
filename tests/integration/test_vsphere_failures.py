"""What only vSphere shows when things go wrong, on a store of the test's own (the emulator, through the contract suite's
vSphere profile). The faults every store meets (and vSphere's own fault cases: lost answers to session create or
complete, 401 on the data PUT, 503 on login...) are in the contract suite (tests/contract/, profiles.py).

* the API login token dropped while the data PUT is on its way: the client logs in once more and sends the file again;
* a budget that runs out: the run fails naming the cause; the session is failed, canceled and deleted, and the item
  the run created deleted with it (nothing incomplete committed, nothing left ACTIVE);
* ``keep_session_on_failure``: the session stays ACTIVE with its file READY, and the next run resumes it;
* a second run arriving while the first one's PUT is held finds the item's session with the file not yet
  transferring, and waits for it: one session, one complete.
"""

import time
from concurrent.futures import ThreadPoolExecutor

import pytest

from ansible_helpers import AnsibleRunner, make_file
from cli_helpers import PROFILES
from tests.conftest import assert_no_traceback

MiB = 1024 * 1024
SIZE = 8 * MiB + 3
VSPHERE = PROFILES["vsphere"]


@pytest.fixture
def store(tmp_path):
    started = VSPHERE.start(tmp_path)
    yield started
    started.stop()


@pytest.fixture
def src(tmp_path):
    path = str(tmp_path / "disk.img")
    return path, make_file(path, SIZE, seed=64)


def upload(ansible, store, src, dest, **extra):
    return ansible.module(VSPHERE.module("image_upload"), VSPHERE.args(store, src, dest, **extra))


def moved(store, before):
    return dict((k, v - before[k]) for k, v in VSPHERE.stats(store).items())


def sessions(store):
    return store.control("GET", "vsphere/sessions").json()


def items(store):
    return store.control("GET", "vsphere/items").json()


def wait_fired(store, running):
    deadline = time.monotonic() + 60
    while not VSPHERE.fired(store):
        assert time.monotonic() < deadline and not running.done(), "the data PUT never came"
        time.sleep(0.02)


def test_api_login_dropped_mid_upload(ansible, store, src):
    """Every login token is dropped (``api-sessions/expire``) while the data PUT is held 1 s by a delay rule: the PUT is
    refused with 401, the client logs in once more and sends the file again."""
    path, digest = src
    VSPHERE.inject(store, dict(operation="data_put", action="delay", ms=1000))
    before = VSPHERE.stats(store)
    with ThreadPoolExecutor(1) as pool:
        running = pool.submit(upload, ansible, store, path, "token")
        wait_fired(store, running)
        dropped = store.control("POST", "vsphere/api-sessions/expire").json()["dropped"]
        result, run = running.result()
    assert dropped >= 1
    assert result.get("changed") is True and not result.get("failed"), run.output
    assert VSPHERE.stored_sha256(store, "token") == digest
    counted = moved(store, before)
    assert counted["logins"] == 2 and counted["sessions_created"] == 1 and counted["data_bytes"] == SIZE, counted
    assert result["bytes_sent"] == SIZE                 # what the server accepted (the refused PUT is not counted)
    assert [s for s in sessions(store) if s["library_item_id"] == result["item_id"]] == []
    assert_no_traceback(run.output)


STALLED = "the store still reports %d bytes missing; nothing was accepted for " % SIZE
EXHAUSTED = {
    # (rule, retries, least attempts, the message's start, a part of it naming the cause)
    "500 on every data PUT": (dict(operation="data_put", action="status", status=500, count=0), 1, 3, STALLED,
                              "(last error: upload of disk.img failed: HTTP 500 internal_server_error: injected fault: HTTP 500); "),
    "503 on every file add": (dict(operation="file_add", action="status", status=503, count=0), 2, 6, STALLED,
                              "(last error: add disk.img to update session {session} failed after 3 attempts: HTTP 503 "
                              "service_unavailable: injected fault: HTTP 503); "),
    "503 on every login": (dict(operation="login", action="status", status=503, retry_after=0, count=0), 2, 3,
                           "log in to {endpoint} failed after 3 attempts: HTTP 503 service_unavailable: injected fault: HTTP 503", ""),
}


@pytest.mark.parametrize("name", list(EXHAUSTED))
def test_exhausted_budget_fails_naming_the_cause_and_cleans_up(ansible, store, src, name):
    """A rule that never stops firing: the run fails with a message naming the cause (a transfer that never gets through
    is given up after the stall time, 30 s, the last error named); the session is failed, canceled and deleted and the item
    the run created deleted: nothing incomplete committed, nothing left ACTIVE."""
    rule, retries, attempts, start, cause = EXHAUSTED[name]
    path, _ = src
    VSPHERE.inject(store, rule)
    before = VSPHERE.stats(store)
    result, run = upload(ansible, store, path, "exhausted", request_timeout=2, retries=retries)
    assert result.get("failed") is True, run.output
    fired = VSPHERE.fired(store)
    assert len(fired) >= attempts
    session_id, item_id = result.get("session_id"), result.get("item_id")
    start, cause = start.format(endpoint=store.url), cause.format(session=session_id)
    if session_id is None:                                           # failed before anything was created
        assert result["msg"] == start and VSPHERE.stats(store)["sessions_created"] == before["sessions_created"]
        assert len(fired) == attempts
    else:
        assert result["msg"].startswith(start) and cause in result["msg"], result["msg"]
        assert result["msg"].endswith("upload session %s was removed with what it had received; the library item %s created "
                                      "by this run was deleted" % (session_id, item_id)), result["msg"]
        assert result["session_cleanup"] == "removed"
        assert all(s["id"] != session_id for s in sessions(store))
    assert all(i["name"] != "contract-exhausted" for i in items(store))   # no empty item left
    assert_no_traceback(run.output)


def test_exhausted_budget_keeps_the_session_on_request_and_the_next_run_resumes(ansible, store, src):
    """500 on every complete with ``keep_session_on_failure``: the session stays ACTIVE with the file READY; the next run
    resumes it, sends nothing again and completes it."""
    path, digest = src
    VSPHERE.inject(store, dict(operation="session_complete", action="status", status=500, count=0))
    before = VSPHERE.stats(store)
    failed, run = upload(ansible, store, path, "kept", request_timeout=2, retries=1, keep_session_on_failure=True)
    assert failed.get("failed") is True, run.output
    session_id = failed["session_id"]
    assert failed["msg"] == ("complete update session %s failed after 2 attempts: HTTP 500 internal_server_error: injected fault: "
                             "HTTP 500; upload session %s is kept: run again to resume it, or remove it with "
                             "imagestore.upload.upload_session_absent" % (session_id, session_id))
    assert failed["session_cleanup"] == "kept"
    (kept,) = [s for s in sessions(store) if s["id"] == session_id]
    assert kept["state"] == "ACTIVE" and [(f["name"], f["status"]) for f in kept["files"]] == [("disk.img", "READY")]
    assert VSPHERE.stored_sha256(store, "kept") is None                 # nothing committed

    VSPHERE.clear_faults(store)
    resumed, run = upload(ansible, store, path, "kept")
    assert resumed["changed"] is True and resumed["resumed"] is True and resumed["session_id"] == session_id, run.output
    assert resumed["bytes_sent"] == 0 and resumed["item_id"] == failed["item_id"]
    assert resumed["msg"] == "resumed and sent the missing 0 bytes of disk.img to item 'contract-kept' of library 'images'"
    assert VSPHERE.stored_sha256(store, "kept") == digest
    counted = moved(store, before)
    assert counted["data_bytes"] == SIZE and counted["sessions_created"] == 1, counted
    assert [s for s in sessions(store) if s["library_item_id"] == resumed["item_id"]] == []


def test_the_second_run_arrives_while_the_first_ones_put_is_held(store, src, tmp_path, collections_path):
    """The first run's data PUT is held 2.5 s by a delay rule; the second run starts then and finds the item's ACTIVE
    session with the file added but not yet transferring. Whichever PUT the server takes, the other run waits for it and
    uses it; both finish, with one session and one complete."""
    path, digest = src
    VSPHERE.inject(store, dict(operation="data_put", action="delay", ms=2500))
    before = VSPHERE.stats(store)

    def run(label):
        return upload(AnsibleRunner(tmp_path / label, collections_path), store, path, "held")[0]

    with ThreadPoolExecutor(2) as pool:
        first = pool.submit(run, "first")
        wait_fired(store, first)
        second = pool.submit(run, "second")
        results = [first.result(), second.result()]
    for result in results:
        assert not result.get("failed"), result
        assert result["sha256"] == digest
    assert VSPHERE.stored_sha256(store, "held") == digest
    VSPHERE.check_race(store, "held", results, before, SIZE)
