"""The server misbehaves the ways real ones do (faults injected by the store itself), for every provider: each upload
completes byte-identical, within its retry budget, every payload byte accepted once where the protocol allows; or it
fails naming the cause, keeps what it sent, and the next run resumes."""

import pytest

from ansible_helpers import make_file
from kit import MiB

SIZE = 16 * MiB + 5
CHUNK = "2MiB"

# case -> (operation kind, rule); kinds are mapped to each store's operation names by its profile
CASES = {
    "lost answers to data requests": ("data", dict(action="drop_response", count=2, after=1)),
    "503 storm with Retry-After": ("data", dict(action="status", status=503, retry_after=1, count=3)),
    "500 on data requests": ("data", dict(action="status", status=500, count=2)),
    "connection cut mid-body": ("data", dict(action="close_after_bytes", bytes=MiB // 2, count=2)),
    "answers slower than request_timeout": ("data", dict(action="delay", ms=3500, count=1)),
    "lost answer to the commit": ("commit", dict(action="drop_response", count=1)),
    "503 on session reads": ("read", dict(action="status", status=503, count=2)),
    "session expired mid-upload": ("data", dict(action="expire", count=1, after=3)),
}


@pytest.fixture(scope="module")
def big(tmp_path_factory):
    path = str(tmp_path_factory.mktemp("faults") / "disk.img")
    return path, make_file(path, SIZE, seed=64)


@pytest.mark.parametrize("case", sorted(CASES))
def test_the_upload_survives(contract, profile, store, big, case):
    kind, rule = CASES[case]
    operation = profile.operations.get(kind)
    if operation is None:
        pytest.skip("%s has no %s call to fail" % (profile.name, kind))
    src, digest = big
    profile.inject(store, dict(rule, operation=operation))
    result, run = contract.upload(src, "faults", chunk_size=CHUNK, parallel=4, request_timeout=2, retries=4, timeout=300)
    assert result.get("changed") is True and not result.get("failed"), run.output[-3000:]
    assert profile.fired(store), "the fault never fired"
    assert contract.stored("faults", result) == digest
    assert "Traceback (most recent call last)" not in run.output
    accepted = contract.received()
    if case == "session expired mid-upload" or not profile.exactly_once:
        assert SIZE <= accepted <= SIZE * (1 + len(profile.fired(store)))
    elif case == "answers slower than request_timeout":
        # the late request may still land after the upload ended (a server cannot be told to drop it): at most once more
        assert result["bytes_sent"] == SIZE and SIZE <= accepted <= SIZE + 2 * MiB
    else:
        assert accepted == SIZE, "bytes accepted: %d, file: %d" % (accepted, SIZE)       # each byte once


def test_an_exhausted_budget_fails_clearly_and_the_next_run_resumes(contract, profile, store, big):
    src, digest = big
    profile.inject(store, dict(operation=profile.operations["data"], action="status", status=503, count=0, after=3))
    args = dict(chunk_size=CHUNK, parallel=1, retries=2, request_timeout=5, timeout=120)
    result, run = contract.upload(src, "exhausted", **args)
    assert result.get("failed") and "HTTP 503" in result["msg"], run.output[-3000:]
    assert "run again" in result["msg"] or "kept" in result["msg"], result["msg"]
    assert contract.stored("exhausted", result) is None                     # nothing incomplete became usable
    sent_before = contract.received()
    profile.clear_faults(store)
    again, run = contract.upload(src, "exhausted", **args)
    assert again["changed"] and not again.get("failed"), run.output[-3000:]
    assert contract.stored("exhausted", again) == digest
    if profile.exactly_once:
        assert again["resumed"] and again["bytes_sent"] == SIZE - sent_before
