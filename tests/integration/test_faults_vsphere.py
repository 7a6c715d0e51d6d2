"""vSphere Content Library uploads through injected faults (the emulator's /_emulator/faults).

Each fault hits a 64 MiB upload. Expected: the upload completes byte-identical (read-back SHA-256)
within its retry budget, never with two update sessions for the item and never leaving one behind;
the server receives the file once, plus at most one whole re-send per fault that cut a transfer (the
protocol has no ranged PUT). With a rule that never stops firing (count 0) the run fails with a
message naming the cause, and the session is failed, canceled and deleted, or kept ACTIVE on request
(``keep_session_on_failure``) so that the next run resumes it.
"""

import time
import uuid
from concurrent.futures import ThreadPoolExecutor

import pytest
import requests

from tests.conftest import AnsibleRunner, assert_no_traceback, make_file

MiB = 1024 * 1024
SIZE = 64 * MiB
NAME = "disk.iso"


@pytest.fixture(scope="module")
def emu(imagestore_targets):
    target = imagestore_targets["vsphere"]
    if not target.emulated:
        pytest.skip("fault injection needs the emulator (a real vCenter is configured)")
    return target


@pytest.fixture
def faults(emu):
    """Add vSphere fault rules; every rule is cleared before and after the test."""
    url = emu.emulator.url + "/_emulator/faults"
    requests.delete(url).raise_for_status()

    def add(*rules):
        r = requests.post(url, json={"rules": [dict({"provider": "vsphere"}, **rule) for rule in rules]})
        assert r.status_code == 200, r.text

    add.fired = lambda: requests.get(url).json()["fired"]
    add.clear = lambda: requests.delete(url).raise_for_status()
    yield add
    requests.delete(url).raise_for_status()


@pytest.fixture(scope="module")
def runner(tmp_path_factory, collections_path):
    """One ansible-playbook runner for the module: its digest cache reads the 64 MiB source only once."""
    return AnsibleRunner(tmp_path_factory.mktemp("faults-vsphere"), collections_path)


@pytest.fixture(scope="module")
def big(tmp_path_factory):
    path = str(tmp_path_factory.mktemp("faults-src") / NAME)
    return path, make_file(path, SIZE, seed=64)


def args(emu, src, item, **extra):
    return emu.module_args(**dict({"library": "images", "src": src, "item": item, "request_timeout": 2, "retries": 3}, **extra))


def stats(emu):
    return emu.emulator.stats("vsphere")


def sessions_of(emu, item_id):
    """(id, state) of every update session the emulator holds for the item (ended ones too, until deleted)."""
    return [(s["id"], s["state"]) for s in emu.emulator.control("GET", "vsphere/sessions").json()
            if s["library_item_id"] == item_id]


def delta(before, after):
    return {k: after[k] - before[k] for k in after}


class Tally:
    """What the module injected: rules fired and cases tried, and the bytes lost (always 0: each case asserts the
    read-back digest). Printed at the end of the module (``pytest -s`` shows it)."""

    def __init__(self):
        self.cases, self.fired, self.received_twice, self.sent_twice = [], 0, 0, 0

    def record(self, case, fired, received_twice=0, sent_twice=0):
        self.cases.append(case)
        self.fired += fired
        self.received_twice += received_twice
        self.sent_twice += sent_twice


TALLY = Tally()


@pytest.fixture(scope="module", autouse=True)
def tally():
    yield TALLY
    print("\nvSphere fault matrix: %d cases, %d faults fired, bytes lost: 0; extra bytes sent by the client (whole-file "
          "re-sends): %d, extra bytes stored by the server: %d" % (len(TALLY.cases), TALLY.fired, TALLY.sent_twice, TALLY.received_twice))


def unique(prefix):
    return "%s-%s" % (prefix, uuid.uuid4().hex[:8])


def case(*rules, cuts=0, style="api", **expect):
    """Fault rules, how many transfers each firing may cut (each may cost one whole re-send), the API style, and exact
    expectations:
    ``data_bytes``/``logins``/``sessions_created`` (server stats deltas), ``bytes_sent``/``session_restarts`` (result),
    ``spaced`` (operation, seconds): the requests the rule refused came at least that far apart (Retry-After honoured;
    without it the first retry is immediate)."""
    return {"rules": [dict(rule, count=rule.get("count", 1)) for rule in rules], "cuts": cuts, "style": style, "expect": expect}


CASES = {
    "data PUT cut mid-body": case(dict(operation="data_put", action="close_after_bytes", bytes=8 * MiB), cuts=1,
                                  data_bytes=SIZE, sessions_created=1),
    "lost answer to the data PUT (the bytes landed)": case(dict(operation="data_put", action="drop_response"),
                                                           data_bytes=SIZE, bytes_sent=SIZE),
    "503 storm with Retry-After on session and file calls": case(
        dict(operation="session_create", action="status", status=503, retry_after=1),
        dict(operation="file_add", action="status", status=503, retry_after=1, count=2),
        dict(operation="session_complete", action="status", status=503, retry_after=0),
        data_bytes=SIZE, bytes_sent=SIZE, sessions_created=1, spaced=("file_add", 1.0)),
    "500 on the data PUT": case(dict(operation="data_put", action="status", status=500),
                                data_bytes=SIZE, bytes_sent=SIZE),
    "slow data PUT past request_timeout": case(dict(operation="data_put", action="delay", ms=2500), cuts=1, sessions_created=1),
    "slow session reads past request_timeout": case(dict(operation="session_get", action="delay", ms=2500),
                                                    data_bytes=SIZE, bytes_sent=SIZE),
    "lost answer to session_complete (it is DONE)": case(dict(operation="session_complete", action="drop_response"),
                                                         data_bytes=SIZE, bytes_sent=SIZE),
    "lost answer to session create": case(dict(operation="session_create", action="drop_response"),
                                          sessions_created=1, data_bytes=SIZE),
    "lost answer to session create on /rest (client_token in the body)": case(
        dict(operation="session_create", action="drop_response"), style="rest", sessions_created=1, data_bytes=SIZE),
    "update session idle-expired mid-upload": case(dict(operation="data_put", action="expire"), cuts=1,
                                                   session_restarts=1, sessions_created=2, data_bytes=SIZE),
    "401 on the data PUT: log in again once": case(dict(operation="data_put", action="status", status=401),
                                                   logins=2, data_bytes=SIZE),
    "503 on login": case(dict(operation="login", action="status", status=503, retry_after=1, count=2),
                         logins=1, data_bytes=SIZE, spaced=("login", 1.0)),
}


@pytest.mark.parametrize("name", list(CASES))
def test_upload_survives(runner, emu, faults, big, name):
    spec = CASES[name]
    src, digest = big
    item = unique("fault")
    faults(*spec["rules"])
    before = stats(emu)
    result, run = runner.module("image_upload", args(emu, src, item, api_style=spec["style"]))
    assert result.get("changed") is True and not result.get("failed"), run.output
    assert result["api_style"] == spec["style"]
    fired = faults.fired()
    assert len(fired) == sum(rule["count"] for rule in spec["rules"]), fired       # every rule fired as often as asked
    item_id = result["item_id"]
    assert emu.emulator.stored_sha256("vsphere", item_id, NAME) == digest
    moved = delta(before, stats(emu))
    # every byte arrived; whole-file re-sends only for the transfers a fault cut
    assert SIZE <= moved["data_bytes"] <= SIZE * (1 + spec["cuts"] * len(fired)), moved
    assert moved["sessions_created"] == 1 + result.get("session_restarts", 0), moved     # never two sessions at once
    assert sessions_of(emu, item_id) == []                         # the DONE session deleted, nothing left behind
    expect = dict(spec["expect"])
    if "spaced" in expect:
        operation, seconds = expect.pop("spaced")
        times = [f["at"] for f in fired if f["operation"] == operation]
        assert len(times) >= 2 and all(b - a >= seconds - 0.05 for a, b in zip(times, times[1:])), times
    for key, value in expect.items():
        got = moved[key] if key in moved else result.get(key, 0)
        assert got == value, (key, got, value, moved, result)
    if "session_restarts" in expect:
        assert any("ended during the upload (ERROR: session expired" in w for w in result["warnings"]), result
    assert_no_traceback(run.output)
    TALLY.record(name, len(fired), moved["data_bytes"] - SIZE, result["bytes_sent"] - SIZE)


def test_api_login_dropped_mid_upload(runner, emu, faults, big):
    """Every login token is dropped (``api-sessions/expire``) while the data PUT is on its way (held 1 s by a delay
    rule): the PUT is refused with 401, the client logs in once more and sends the file again."""
    src, digest = big
    faults(dict(operation="data_put", action="delay", ms=1000))
    before = stats(emu)
    with ThreadPoolExecutor(1) as pool:
        running = pool.submit(runner.module, "image_upload", args(emu, src, unique("token")))
        deadline = time.monotonic() + 60
        while not faults.fired():
            assert time.monotonic() < deadline and not running.done(), "the data PUT never came"
            time.sleep(0.02)
        dropped = emu.emulator.control("POST", "vsphere/api-sessions/expire").json()["dropped"]
        result, run = running.result()
    assert dropped >= 1
    assert result.get("changed") is True and not result.get("failed"), run.output
    assert emu.emulator.stored_sha256("vsphere", result["item_id"], NAME) == digest
    moved = delta(before, stats(emu))
    assert moved["logins"] == 2 and moved["sessions_created"] == 1 and moved["data_bytes"] == SIZE, moved
    assert result["bytes_sent"] == SIZE                 # what the server accepted (the refused PUT is not counted)
    assert sessions_of(emu, result["item_id"]) == []
    TALLY.record("API login token dropped mid-upload", len(faults.fired()) + 1, 0, SIZE)


STALLED = "the store still reports %d bytes missing; nothing was accepted for " % SIZE
EXHAUSTED = {
    # (rule, retries, least attempts, the message's start, a part of it naming the cause)
    "500 on every data PUT": (dict(operation="data_put", action="status", status=500, count=0), 1, 3, STALLED,
                              "(last error: upload of disk.iso failed: HTTP 500 internal_server_error: injected fault: HTTP 500); "),
    "503 on every file add": (dict(operation="file_add", action="status", status=503, count=0), 2, 6, STALLED,
                              "(last error: add disk.iso to update session {session} failed after 3 attempts: HTTP 503 "
                              "service_unavailable: injected fault: HTTP 503); "),
    "503 on every login": (dict(operation="login", action="status", status=503, retry_after=0, count=0), 2, 3,
                           "log in to {endpoint} failed after 3 attempts: HTTP 503 service_unavailable: injected fault: HTTP 503", ""),
}


@pytest.mark.parametrize("name", list(EXHAUSTED))
def test_exhausted_budget_fails_naming_the_cause_and_cleans_up(runner, emu, faults, big, name):
    """A rule that never stops firing: the run fails with a message naming the cause (a transfer that never gets through
    is given up after the stall time, 30 s, the last error named); the session is failed, canceled and deleted and the
    item the run created deleted: nothing incomplete committed, nothing left ACTIVE."""
    rule, retries, attempts, start, cause = EXHAUSTED[name]
    src, _ = big
    item = unique("exhausted")
    faults(rule)
    before = stats(emu)
    result, run = runner.module("image_upload", args(emu, src, item, retries=retries))
    assert result.get("failed") is True, run.output
    assert len(faults.fired()) >= attempts
    session_id, item_id = result.get("session_id"), result.get("item_id")
    start, cause = start.format(endpoint=emu.endpoint), cause.format(session=session_id)
    if session_id is None:                                           # failed before anything was created
        assert result["msg"] == start and stats(emu)["sessions_created"] == before["sessions_created"]
        assert len(faults.fired()) == attempts
    else:
        assert result["msg"].startswith(start) and cause in result["msg"], result["msg"]
        assert result["msg"].endswith("upload session %s was removed with what it had received; the library item %s created "
                                      "by this run was deleted" % (session_id, item_id)), result["msg"]
        assert result["session_cleanup"] == "removed"
        assert all(s["id"] != session_id for s in emu.emulator.control("GET", "vsphere/sessions").json())
    assert all(i["name"] != item for i in emu.emulator.control("GET", "vsphere/items").json())   # no empty item left
    assert_no_traceback(run.output)
    TALLY.record(name, len(faults.fired()))


def test_exhausted_budget_keeps_the_session_on_request_and_the_next_run_resumes(runner, emu, faults, big):
    """500 on every complete with ``keep_session_on_failure``: the session stays ACTIVE with the file READY; the next run
    resumes it, sends nothing again and completes it."""
    src, digest = big
    item = unique("kept")
    faults(dict(operation="session_complete", action="status", status=500, count=0))
    before = stats(emu)
    failed, run = runner.module("image_upload", args(emu, src, item, retries=1, keep_session_on_failure=True))
    assert failed.get("failed") is True, run.output
    session_id = failed["session_id"]
    assert failed["msg"] == ("complete update session %s failed after 2 attempts: HTTP 500 internal_server_error: injected fault: "
                             "HTTP 500; upload session %s is kept: run again to resume it, or remove it with "
                             "imagestore.upload.upload_session_absent" % (session_id, session_id))
    assert failed["session_cleanup"] == "kept"
    (kept,) = [s for s in emu.emulator.control("GET", "vsphere/sessions").json() if s["id"] == session_id]
    assert kept["state"] == "ACTIVE" and [(f["name"], f["status"]) for f in kept["files"]] == [(NAME, "READY")]
    assert emu.emulator.stored_sha256("vsphere", failed["item_id"], NAME) is None      # nothing committed
    TALLY.record("500 on every complete, session kept", len(faults.fired()))

    faults.clear()
    resumed, run = runner.module("image_upload", args(emu, src, item))
    assert resumed["changed"] is True and resumed["resumed"] is True and resumed["session_id"] == session_id, run.output
    assert resumed["bytes_sent"] == 0 and resumed["item_id"] == failed["item_id"]
    assert resumed["msg"] == "resumed and sent the missing 0 bytes of %s to item %r of library 'images'" % (NAME, item)
    assert emu.emulator.stored_sha256("vsphere", resumed["item_id"], NAME) == digest
    moved = delta(before, stats(emu))
    assert moved["data_bytes"] == SIZE and moved["sessions_created"] == 1, moved
    assert sessions_of(emu, resumed["item_id"]) == []
