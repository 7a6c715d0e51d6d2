"""The server misbehaves the ways real ones do (faults injected by the store itself), for every provider: each upload
completes byte-identical, within its retry budget, every payload byte accepted once where the protocol allows; or it
fails naming the cause, keeps what it sent, and the next run resumes.

The generic cases (CASES) are the same fault for every store, mapped to its operations by its profile; each provider
adds its own (``profile.extra_faults``: its login, its job submit, its API styles...), run with the same assertions.
"""

import pytest

from ansible_helpers import make_file
from kit import MiB
from profiles import FILE_SIZE

SIZE = 16 * MiB + 5
CHUNK = 2 * MiB
ARGS = dict(chunk_size=CHUNK, parallel=4, request_timeout=2, retries=4, timeout=300)

# case -> (operation kind, rule); kinds are mapped to each store's operation names by its profile; ``after`` counts data
# requests, and is cut to the requests one file takes (vSphere sends a file in one request)
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


def data_requests(profile):
    """How many data requests one upload of the file takes."""
    unit = profile.unit(CHUNK, SIZE)
    return -(-SIZE // unit)


def place(profile, rule):
    """``after`` of a data rule within the requests the file takes ("last": all but the last one go through)."""
    if rule.get("operation") != profile.operations.get("data") or "after" not in rule:
        return rule
    last = data_requests(profile) - 1
    return dict(rule, after=last if rule["after"] == "last" else min(rule["after"], last))


def survive(contract, profile, store, big, rules, **args):
    """Upload through the rules; assert what holds for every case; return (result, fired, counters moved, bytes accepted)."""
    src, digest = big
    profile.inject(store, *[place(profile, rule) for rule in rules])
    before, received = profile.stats(store), contract.received()
    result, run = contract.upload(src, "faults", **dict(ARGS, **args))
    after = profile.stats(store)                                # the run's own counts (reading back may log in too)
    counted = dict((k, v - before.get(k, 0)) for k, v in after.items() if isinstance(v, (int, float)))
    assert result.get("changed") is True and not result.get("failed"), run.output[-3000:]
    assert result["resumed"] is False                           # the session it worked in was its own
    fired = profile.fired(store)
    assert fired, "the fault never fired"
    assert contract.stored("faults", result) == digest
    assert "Traceback (most recent call last)" not in run.output
    profile.check_clean(store, "faults", result, before, SIZE)
    return result, fired, counted, contract.received() - received


def check_expected(result, counted, expect=(), at_least=(), warns=None):
    """Exact values and lower bounds, of a server counter's change or a result key; a warning the run gave."""
    if warns is not None:
        assert any(warns in w for w in result.get("warnings") or []), (warns, result.get("warnings"))
    for key, value in dict(expect).items():
        got = counted[key] if key in counted else result.get(key, 0)
        assert got == (SIZE if value == FILE_SIZE else value), (key, got, value, counted, result)
    for key, value in dict(at_least).items():
        got = counted[key] if key in counted else result.get(key, 0)
        assert got >= value, (key, got, value, counted, result)


@pytest.mark.parametrize("case", sorted(CASES))
def test_the_upload_survives(contract, profile, store, big, case):
    kind, rule = CASES[case]
    operation = profile.operations.get(kind)
    if operation is None:
        pytest.skip("%s has no %s call to fail" % (profile.name, kind))
    result, fired, counted, accepted = survive(contract, profile, store, big, [dict(rule, operation=operation)])
    if case == "session expired mid-upload" and profile.expiry_restarts:
        assert SIZE <= accepted <= SIZE * (1 + len(fired))      # what the ended session had received is sent again
    elif case == "answers slower than request_timeout":
        # the late request may still land after the upload ended (a server cannot be told to drop it): one unit more at most
        assert result["bytes_sent"] == SIZE and SIZE <= accepted <= SIZE + profile.unit(CHUNK, SIZE)
    else:
        assert accepted == SIZE, "bytes accepted: %d, file: %d" % (accepted, SIZE)       # each byte once
        assert result["bytes_sent"] == SIZE                     # and the run knows it sent them all
    check_expected(result, counted, **profile.fault_expect.get(case, {}))


def test_a_provider_specific_fault_is_survived(contract, profile, store, big, extra_fault):
    fault = profile.extra_faults[extra_fault]
    result, fired, counted, accepted = survive(contract, profile, store, big, fault.rules, **fault.args)
    assert len(fired) == fault.fires, fired                   # every rule fired as often as asked
    assert accepted == SIZE == result["bytes_sent"], "bytes accepted: %d, sent: %d, file: %d" % (
        accepted, result["bytes_sent"], SIZE)
    check_expected(result, counted, fault.expect, fault.at_least, fault.warns)
    if fault.spaced:
        operation, seconds = fault.spaced
        times = [f["at"] for f in fired if f["operation"] == operation]
        assert len(times) >= 2 and all(b - a >= seconds - 0.05 for a, b in zip(times, times[1:])), times


def test_an_exhausted_budget_fails_clearly_and_the_next_run_resumes(contract, profile, store, big):
    src, digest = big
    profile.inject(store, place(profile, dict(operation=profile.operations["data"], action="status", status=503, count=0, after=3)))
    args = dict(chunk_size=CHUNK, parallel=1, retries=2, request_timeout=5, timeout=120)
    result, run = contract.upload(src, "exhausted", **dict(args, **profile.keep_args))
    assert result.get("failed") and "HTTP 503" in result["msg"], run.output[-3000:]
    assert result["session_cleanup"] == "kept" and "is kept: run again to resume it" in result["msg"], result["msg"]
    assert contract.stored("exhausted", result) is None                     # nothing incomplete became usable
    assert "Traceback (most recent call last)" not in run.output
    sent_before = contract.received()
    profile.clear_faults(store)
    again, run = contract.upload(src, "exhausted", **args)
    assert again["changed"] and not again.get("failed") and again["resumed"], run.output[-3000:]
    assert again["session_id"] == result["session_id"]
    assert contract.stored("exhausted", again) == digest
    missing = SIZE - sent_before
    if profile.exactly_once:
        assert again["bytes_sent"] == missing
    else:
        assert missing <= again["bytes_sent"] <= missing + profile.unit(CHUNK, SIZE)
