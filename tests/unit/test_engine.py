"""The engine's steps and edges against an in-memory store, for each unit of transfer, in milliseconds."""

import hashlib
import os

import pytest

from ansible_collections.imagestore.upload.plugins.module_utils._engine import Engine
from ansible_collections.imagestore.upload.plugins.module_utils._errors import (
    BadInput, DeadlineExceeded, LocalFileError, TransferError, VerificationError,
)
from ansible_collections.imagestore.upload.plugins.module_utils._protocol import (
    DONE, FILE, KEPT, RANGE, REMOVED, SLICE, Context, Session,
)
from ansible_collections.imagestore.upload.plugins.module_utils._sessions import SessionOps
from ansible_collections.imagestore.upload.plugins.module_utils._wait import Deadline

try:        # ansible-test units loads the tests as part of the collection
    from ansible_collections.imagestore.upload.tests.unit.memstore import FakeClock, MemProtocol, MemStore, data, write
except ImportError:        # pytest from the checkout
    from memstore import FakeClock, MemProtocol, MemStore, data, write

UNITS = [dict(unit=RANGE), dict(unit=SLICE, grid=64 * 1024), dict(unit=FILE, scope="upload")]
IDS = ["range", "slice", "file"]


def sha(data):
    return hashlib.sha256(data).hexdigest()


@pytest.fixture
def clock():
    return FakeClock()


class Harness:
    def __init__(self, tmp_path, clock, **protocol_kw):
        self.tmp = tmp_path
        self.clock = clock
        self.store = MemStore()
        self.store.clock = clock
        self.kw = protocol_kw
        self.warnings = []

    def protocol(self, check_mode=False, timeout=None, **params):
        base = dict(src=None, chunk_size=32 * 1024, parallel=3, force=False, digest_cache=False, request_timeout=10)
        base.update(params)
        deadline = Deadline(timeout, clock=self.clock.clock, sleep=self.clock.sleep)
        ctx = Context(base, None, deadline, check_mode=check_mode, warn=self.warnings.append)
        self.last = MemProtocol(ctx, self.store, **self.kw)
        return self.last

    def upload(self, src, **kw):
        return Engine(self.protocol(src=src, **kw)).upload()


@pytest.mark.parametrize("kw", UNITS, ids=IDS)
def test_upload_then_rerun_is_unchanged(tmp_path, clock, kw):
    h = Harness(tmp_path, clock, **kw)
    payload = data(200 * 1024 + 17)
    src = write(tmp_path / "disk.img", payload)
    first = h.upload(src)
    assert first["changed"] and first["bytes_sent"] == len(payload) and not first["resumed"]
    assert h.store.stored_bytes("disk.img") == payload
    assert first["sha256"] == sha(payload)
    second = h.upload(src)
    assert not second["changed"] and second["bytes_sent"] == 0 and second["compared"] == "sha256"
    assert "nothing sent" in second["msg"]


@pytest.mark.parametrize("kw", UNITS, ids=IDS)
def test_same_size_edit_is_uploaded(tmp_path, clock, kw):
    h = Harness(tmp_path, clock, **kw)
    src = write(tmp_path / "a.img", data(100000, 1))
    h.upload(src)
    edited = data(100000, 2)
    write(tmp_path / "a.img", edited)
    result = h.upload(src)
    assert result["changed"] and h.store.stored_bytes("a.img") == edited


@pytest.mark.parametrize("kw", UNITS, ids=IDS)
def test_check_mode_sends_nothing_and_says_what_it_would(tmp_path, clock, kw):
    h = Harness(tmp_path, clock, **kw)
    src = write(tmp_path / "a.img", data(70000))
    result = Engine(h.protocol(check_mode=True, src=src)).upload()
    assert result["changed"] and result["would_send"] == 70000 and h.store.sends == 0 and not h.store.files
    assert result["msg"].startswith("would send 70000 of 70000 bytes")


@pytest.mark.parametrize("kw", UNITS[:2], ids=IDS[:2])
def test_resume_sends_only_what_is_missing(tmp_path, clock, kw):
    h = Harness(tmp_path, clock, **kw)
    payload = data(256 * 1024)
    src = write(tmp_path / "a.img", payload)
    h.store.fail_units = {("a.img", 128 * 1024): 1000}     # the first run cannot send this unit
    h.store.refuse_all = False
    with pytest.raises(Exception):
        Engine(h.protocol(src=src, timeout=30)).upload()
    assert h.last.aborted[-1][1] is True                    # kept for a re-run
    got = h.store.bytes_received
    h.store.fail_units = {}
    check = Engine(h.protocol(check_mode=True, src=src)).upload()
    assert check["resumed"] and check["would_send"] == len(payload) - got
    result = h.upload(src)
    assert result["resumed"] and result["bytes_sent"] == len(payload) - got
    assert h.store.stored_bytes("a.img") == payload


def test_file_unit_resumes_whole_files_of_one_session(tmp_path, clock):
    h = Harness(tmp_path, clock, unit=FILE, scope="upload")
    folder = tmp_path / "pkg"
    folder.mkdir()
    parts = [write(folder / n, data(5000 + i, i)) for i, n in enumerate(["a", "b", "c"])]
    h.store.fail_units = {("b", 0): 1000}
    with pytest.raises(Exception):
        Engine(h.protocol(src=str(folder), timeout=20)).upload()
    h.store.fail_units = {}
    result = h.upload(str(folder))
    assert result["resumed"] and result["bytes_sent"] == os.path.getsize(parts[1])
    assert [h.store.stored_bytes(n) for n in "abc"] == [open(p, "rb").read() for p in parts]


@pytest.mark.parametrize("kw", UNITS, ids=IDS)
def test_a_lost_session_is_started_again(tmp_path, clock, kw):
    h = Harness(tmp_path, clock, **kw)
    payload = data(300 * 1024)
    src = write(tmp_path / "a.img", payload)
    h.store.lose_session_after_sends = 0 if kw["unit"] == FILE else 2
    result = h.upload(src)
    assert result["session_restarts"] == 1 and h.store.stored_bytes("a.img") == payload
    assert any("ended during the upload" in w for w in h.warnings)


def test_conflicts_replan_and_retryable_failures_are_sent_again(tmp_path, clock):
    h = Harness(tmp_path, clock, unit=RANGE)
    payload = data(256 * 1024)
    src = write(tmp_path / "a.img", payload)
    h.store.conflict_units = {("a.img", 0), ("a.img", 64 * 1024)}
    h.store.fail_units = {("a.img", 32 * 1024): 2}
    result = h.upload(src)
    assert result["chunks_replanned"] == 2 and h.store.stored_bytes("a.img") == payload


def test_a_store_that_never_accepts_fails_after_the_stall_time_with_backoff(tmp_path, clock):
    h = Harness(tmp_path, clock, unit=RANGE)
    src = write(tmp_path / "a.img", data(100000))
    h.store.refuse_all = True
    with pytest.raises(TransferError) as err:
        h.upload(src)
    assert "nothing was accepted for 3" in err.value.message and "is kept: run again to resume it" in err.value.message
    assert max(clock.slept) <= 10.0 and len(clock.slept) >= 4            # backoff, not a busy loop
    assert err.value.details["session_cleanup"] == KEPT


def test_the_deadline_bounds_the_transfer_and_keeps_the_session(tmp_path, clock):
    h = Harness(tmp_path, clock, unit=RANGE)
    src = write(tmp_path / "a.img", data(1024 * 1024))
    h.store.advance_per_send = 1.0
    with pytest.raises(DeadlineExceeded) as err:
        Engine(h.protocol(src=src, timeout=5, parallel=1)).upload()
    assert "timeout of 5 seconds reached while sending %s" % src in err.value.message
    assert err.value.details["session_cleanup"] == KEPT and "run again to resume" in err.value.message
    assert 0 < h.store.bytes_received < 1024 * 1024


def test_a_failed_verification_removes_the_session(tmp_path, clock):
    h = Harness(tmp_path, clock, unit=RANGE)
    src = write(tmp_path / "a.img", data(50000))
    h.store.corrupt_on_commit = True
    with pytest.raises(VerificationError) as err:
        h.upload(src)
    assert err.value.details["session_cleanup"] == REMOVED and "was removed" in err.value.message


def test_a_declared_checksum_is_verified_before_the_commit(tmp_path, clock):
    h = Harness(tmp_path, clock, unit=RANGE)
    src = write(tmp_path / "a.img", data(50000))
    with pytest.raises(VerificationError) as err:
        h.upload(src, checksum="sha256:" + "0" * 64)
    assert "not the declared" in err.value.message and h.store.commits == 0 and not h.store.files
    good = h.upload(src, checksum="sha256:" + sha(data(50000)))
    assert good["changed"] and h.store.commits == 1


def test_a_declared_checksum_is_checked_for_a_file_sent_whole_too(tmp_path, clock):
    h = Harness(tmp_path, clock, unit=RANGE, whole_file_max=1024 * 1024)
    src = write(tmp_path / "small.img", data(5000))
    with pytest.raises(VerificationError, match="not the declared"):
        h.upload(src, checksum="sha256:" + "0" * 64)
    assert h.store.puts == 0 and not h.store.files
    assert h.upload(src, checksum="sha256:" + sha(data(5000)))["changed"] and h.store.puts == 1


def test_source_checks(tmp_path, clock):
    h = Harness(tmp_path, clock, unit=RANGE)
    with pytest.raises(LocalFileError, match="does not exist"):
        h.upload(str(tmp_path / "nope"))
    fifo = tmp_path / "fifo"
    os.mkfifo(str(fifo))
    with pytest.raises(LocalFileError, match=r"is a FIFO \(named pipe\); upload a regular file or a block device"):
        h.upload(str(fifo))
    with pytest.raises(LocalFileError, match="is a character device"):
        h.upload("/dev/zero")
    folder = tmp_path / "pkg"
    folder.mkdir()
    with pytest.raises(BadInput, match="checksum applies to one file"):
        h.upload(str(folder), checksum="sha256:" + "0" * 64)


def test_empty_files_refused_or_put_whole(tmp_path, clock):
    refuse = Harness(tmp_path, clock, unit=RANGE, empty_files="refuse")
    src = write(tmp_path / "empty", b"")
    with pytest.raises(LocalFileError, match="is empty"):
        refuse.upload(src)
    whole = Harness(tmp_path, clock, unit=RANGE, empty_files="whole", whole_file_max=1024)
    result = whole.upload(src)
    assert result["changed"] and whole.store.files["empty"][0] == b"" and whole.store.puts == 1


def test_small_files_go_whole_and_big_ones_by_session(tmp_path, clock):
    h = Harness(tmp_path, clock, unit=RANGE, whole_file_max=4096)
    folder = tmp_path / "pkg"
    folder.mkdir()
    for i in range(20):
        write(folder / ("small%02d" % i), data(1000 + i, i))
    write(folder / "big", data(100000, 99))
    result = h.upload(str(folder))
    assert h.store.puts == 20 and h.store.commits == 1 and result["bytes_sent"] == result["size"]
    again = h.upload(str(folder))
    assert not again["changed"] and h.store.puts == 20


def test_absent_removes_and_is_idempotent(tmp_path, clock):
    h = Harness(tmp_path, clock, unit=RANGE)
    h.upload(write(tmp_path / "a.img", data(1000)))
    check = Engine(h.protocol(check_mode=True, state="absent")).absent()
    assert check["changed"] and h.store.files
    gone = Engine(h.protocol(state="absent")).absent()
    assert gone["changed"] and not h.store.files and gone["diff"]["before"]["present"] == ["a.img"]
    again = Engine(h.protocol(state="absent")).absent()
    assert not again["changed"] and "holds nothing" in again["msg"]


def test_session_modules_select_commit_and_remove(tmp_path, clock):
    h = Harness(tmp_path, clock, unit=RANGE)
    with pytest.raises(BadInput, match="by session_id, or by path; give one of them"):
        SessionOps(h.protocol()).info()
    src = write(tmp_path / "a.img", data(100000))
    h.store.fail_units = {("a.img", 0): 1000}
    with pytest.raises(Exception):
        Engine(h.protocol(src=src, timeout=10)).upload()
    sid = sorted(h.store.sessions)[0]
    info = SessionOps(h.protocol(session_id=sid)).info()["sessions"][0]
    assert info["state"] == "active" and info["missing_ranges"][0]["start"] == 0 and 0 < info["progress"] < 100
    with pytest.raises(Exception, match="cannot be committed: 32768 bytes are missing"):
        SessionOps(h.protocol(session_id=sid)).commit()
    check = SessionOps(h.protocol(check_mode=True, path="x")).absent()
    assert check["changed"] and check["msg"].startswith("would remove 1") and sid in h.store.sessions
    removed = SessionOps(h.protocol(path="x")).absent()
    assert removed["deleted"] == [sid] and not h.store.sessions
    assert not SessionOps(h.protocol(path="x")).absent()["changed"]


def test_a_session_open_session_joined_counts_as_resumed_and_is_left_to_its_owner(tmp_path, clock):
    """open_session may join a concurrent run's session (found, not owned): the result says resumed, and a failure
    leaves that session to the run that opened it."""
    h = Harness(tmp_path, clock, unit=RANGE)
    payload = data(100 * 1024)
    src = write(tmp_path / "a.img", payload)
    p = h.protocol(src=src)
    opened = p.open_session

    def join(dest, key, files):
        session = opened(dest, key, files)
        session.found, session.owned = True, False
        return session

    p.open_session = join
    result = Engine(p).upload()
    assert result["resumed"] is True and h.store.stored_bytes("a.img") == payload
    write(tmp_path / "a.img", data(100 * 1024, 3))
    h.store.refuse_all = True
    p = h.protocol(src=src)
    p.open_session = join
    with pytest.raises(TransferError) as err:
        Engine(p).upload()
    assert err.value.details["session_cleanup"] == "left" and not p.aborted


def test_files_of_one_session_report_their_own_bytes(tmp_path, clock):
    h = Harness(tmp_path, clock, unit=FILE, scope="upload")
    folder = tmp_path / "pkg"
    folder.mkdir()
    parts = [write(folder / n, data(5000 + i, i)) for i, n in enumerate(["a", "b", "c"])]
    h.store.fail_units = {("b", 0): 1000}
    with pytest.raises(Exception):
        Engine(h.protocol(src=str(folder), timeout=20)).upload()
    h.store.fail_units = {}
    result = h.upload(str(folder))
    assert [(f["name"], f["bytes_sent"]) for f in result["files"]] == [("a", 0), ("b", os.path.getsize(parts[1])), ("c", 0)]
    assert result["bytes_sent"] == os.path.getsize(parts[1]) and all(f["resumed"] for f in result["files"])


def test_a_joined_session_counts_as_resumed_and_is_left_to_its_owner(tmp_path, clock):
    h = Harness(tmp_path, clock, unit=FILE, scope="upload")
    src = write(tmp_path / "a.img", data(4000))
    h.store.fail_units = {("a.img", 0): 1000}
    with pytest.raises(Exception):
        Engine(h.protocol(src=src, timeout=5)).upload()      # a concurrent run's session, still ACTIVE
    h.store.join_on_open = True
    with pytest.raises(Exception) as err:
        Engine(h.protocol(src=src, timeout=5)).upload()
    assert err.value.details["session_cleanup"] == "left" and "belongs to a concurrent run" in err.value.message
    assert len(h.store.sessions) == 1
    h.store.fail_units = {}
    result = h.upload(src)
    assert result["resumed"] is True and h.store.stored_bytes("a.img") == data(4000)


def test_a_failure_carries_the_destination_keys_and_the_cleanup_note(tmp_path, clock):
    h = Harness(tmp_path, clock, unit=RANGE)
    src = write(tmp_path / "a.img", data(50000))
    h.store.corrupt_on_commit = True
    h.store.abort_note = "the folder this run made was removed"
    with pytest.raises(VerificationError) as err:
        h.upload(src, path="p")
    assert err.value.message.endswith("was removed with what it had received; the folder this run made was removed")
    assert err.value.details["destination"] == {"prefix": "p"} and err.value.details["session_cleanup"] == REMOVED


def test_a_whole_file_attempt_longer_than_the_stall_time_is_tried_again(tmp_path, clock):
    """Each attempt of the file takes 100 s before the connection breaks (a big file); the stall time (30 s) alone would end
    the transfer after the first attempt: it is given up only after STALL_ROUNDS rounds without an accepted byte."""
    h = Harness(tmp_path, clock, unit=FILE, scope="upload")
    src = write(tmp_path / "big.iso", data(10000))
    h.store.advance_per_send = 100.0
    h.store.fail_units = {("big.iso", 0): 2}
    result = h.upload(src)
    assert result["bytes_sent"] == 10000 and h.store.sends == 3
    h.store.files.clear()
    h.store.fail_units = {("big.iso", 0): 1000}
    with pytest.raises(TransferError, match="nothing was accepted for 3"):
        h.upload(src)
    assert h.store.sends == 3 + 3


def test_an_upload_a_concurrent_run_completed_meanwhile_is_verified_and_unchanged(tmp_path, clock):
    h = Harness(tmp_path, clock, unit=FILE, scope="upload")
    payload = data(6000)
    src = write(tmp_path / "a.img", payload)
    h.store.completed_meanwhile = True
    result = h.upload(src)
    assert result["changed"] is False and result["bytes_sent"] == 0 and h.store.commits == 0 and h.store.sends == 0
    assert result["msg"] == "memstore: already holds a.img: a concurrent run uploaded it meanwhile; nothing sent"
    assert h.store.stored_bytes("a.img") == payload


def test_what_a_concurrent_run_completed_is_verified(tmp_path, clock):
    h = Harness(tmp_path, clock, unit=FILE, scope="upload")
    src = write(tmp_path / "a.img", data(6000))
    protocol = h.protocol(src=src)

    def other_content(dest, key, files):
        h.store.files["a.img"] = (b"X" * 6000, 99)
        return Session(None, DONE)
    protocol.find_session = other_content
    with pytest.raises(VerificationError):
        Engine(protocol).upload()
