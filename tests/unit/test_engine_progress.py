"""What the engine tells its reporter (the command line's progress bar, the module's progress file), for each unit of
transfer, against the in-memory store; and Deadline.interrupt (Ctrl-C at the command line)."""

import threading

import pytest

from ansible_collections.imagestore.upload.plugins.module_utils._engine import Engine
from ansible_collections.imagestore.upload.plugins.module_utils._errors import DeadlineExceeded, ImageStoreError
from ansible_collections.imagestore.upload.plugins.module_utils._protocol import FILE, KEPT, RANGE, SLICE, Context
from ansible_collections.imagestore.upload.plugins.module_utils._source import READ_BLOCK
from ansible_collections.imagestore.upload.plugins.module_utils._bodies import SEGMENT
from ansible_collections.imagestore.upload.plugins.module_utils._wait import Deadline

try:        # ansible-test units loads the tests as part of the collection
    from ansible_collections.imagestore.upload.tests.unit.memstore import FakeClock, MemProtocol, MemStore, data, read_body, write
except ImportError:        # pytest from the checkout
    from memstore import FakeClock, MemProtocol, MemStore, data, read_body, write

UNITS = [dict(unit=RANGE), dict(unit=SLICE, grid=64 * 1024), dict(unit=FILE, scope="upload")]
IDS = ["range", "slice", "file"]


class Recorder:
    def __init__(self):
        self.lock = threading.Lock()
        self.events = []

    def phase(self, text):
        self.events.append(("phase", text))

    def start(self, total_bytes, done_bytes=0):
        self.events.append(("start", total_bytes, done_bytes))

    def held(self, n):
        self.events.append(("held", n))

    def advance(self, n):
        with self.lock:
            self.events.append(("advance", n))

    def finish(self, result):
        self.events.append(("finish", result["changed"]))

    def of(self, kind):
        return [e[1] for e in self.events if e[0] == kind]


class ReadsThenFails(MemProtocol):
    """A store whose first request for each listed unit reads the whole body, then the connection is reset."""

    def __init__(self, ctx, store, cut=(), **kw):
        super(ReadsThenFails, self).__init__(ctx, store, **kw)
        self.cut = set(cut)

    def send(self, session, f, start, end):
        if (f.name, start) in self.cut:
            self.cut.discard((f.name, start))
            read_body(f.source.body(start, end))          # the whole body goes out, then the answer is lost
            raise ImageStoreError("connection reset while sending", retryable=True)
        return super(ReadsThenFails, self).send(session, f, start, end)


def run(tmp_path, src, reporter, store=None, cls=MemProtocol, timeout=None, clock=None, protocol_kw=None, **params):
    clock = clock or FakeClock()
    store = store or MemStore()
    store.clock = clock
    base = dict(src=src, chunk_size=64 * 1024, parallel=3, force=False, digest_cache=False, request_timeout=10)
    base.update(params)
    deadline = Deadline(timeout, clock=clock.clock, sleep=clock.sleep)
    protocol = cls(Context(base, None, deadline, warn=lambda m: None), store, **(protocol_kw or {}))
    return Engine(protocol, reporter=reporter).upload(), store, protocol


@pytest.mark.parametrize("kw", UNITS, ids=IDS)
def test_the_bytes_reported_add_up_to_the_bytes_sent(tmp_path, kw):
    payload = data(300 * 1024 + 5)
    src = write(tmp_path / "a.img", payload)
    rec = Recorder()
    result = run(tmp_path, src, rec, protocol_kw=kw)[0]
    assert rec.of("start") == [len(payload)] and rec.of("held") == []
    assert sum(rec.of("advance")) == result["bytes_sent"] == len(payload)
    assert all(n > 0 for n in rec.of("advance"))
    phases = rec.of("phase")
    assert phases[:2] == ["looking at the source", "looking at the store"] and "committing" in phases
    assert rec.events[-1] == ("finish", True)


def test_a_whole_file_unit_reports_its_bytes_as_they_are_read(tmp_path):
    """vSphere sends a file of several GiB in one request: the progress moves while it goes out, not at its end."""
    size = 3 * READ_BLOCK + 100
    src = write(tmp_path / "big.iso", data(size))
    rec = Recorder()
    run(tmp_path, src, rec, protocol_kw=dict(unit=FILE, scope="upload"))
    step = rec.of("advance")[0]
    assert step in (SEGMENT, READ_BLOCK)                 # by sendfile segment, or by read block where sendfile is out
    assert rec.of("advance") == [step] * (size // step) + [size % step]


@pytest.mark.parametrize("kw", UNITS[:2], ids=IDS[:2])
def test_a_resume_reports_what_the_store_holds_as_held(tmp_path, kw):
    payload = data(256 * 1024)
    src = write(tmp_path / "a.img", payload)
    store = MemStore()
    store.fail_units = {("a.img", 128 * 1024): 1000}
    with pytest.raises(ImageStoreError):
        run(tmp_path, src, Recorder(), store=store, timeout=30, protocol_kw=kw)
    got = store.bytes_received
    store.fail_units = {}
    rec = Recorder()
    result = run(tmp_path, src, rec, store=store, protocol_kw=kw)[0]
    assert result["resumed"] and rec.of("held") == [got] and 0 < got < len(payload)
    assert sum(rec.of("advance")) == result["bytes_sent"] == len(payload) - got


def test_a_failed_request_takes_back_what_it_had_counted(tmp_path):
    payload = data(256 * 1024)
    src = write(tmp_path / "a.img", payload)
    rec = Recorder()
    result = run(tmp_path, src, rec, cls=ReadsThenFails, protocol_kw=dict(unit=RANGE, cut=[("a.img", 64 * 1024)]))[0]
    assert -64 * 1024 in rec.of("advance")
    assert sum(rec.of("advance")) == result["bytes_sent"] == len(payload)


def test_interrupt_stops_the_run_as_a_deadline_and_keeps_the_session(tmp_path):
    payload = data(512 * 1024)
    src = write(tmp_path / "a.img", payload)
    clock = FakeClock()
    deadline_box = []

    class Interrupting(Recorder):
        def advance(self, n):
            super(Interrupting, self).advance(n)
            if sum(self.of("advance")) >= 128 * 1024 and not deadline_box[0].interrupted:
                deadline_box[0].interrupt("interrupted (Ctrl-C)")

    class Proto(MemProtocol):
        def __init__(self, ctx, store, **kw):
            super(Proto, self).__init__(ctx, store, **kw)
            deadline_box.append(ctx.deadline)

    with pytest.raises(DeadlineExceeded) as err:
        run(tmp_path, src, Interrupting(), cls=Proto, clock=clock, parallel=1, protocol_kw=dict(unit=RANGE))
    assert err.value.message.startswith("interrupted (Ctrl-C) while ")
    assert err.value.details["session_cleanup"] == KEPT and "run again to resume it" in err.value.message
    assert err.value.retryable


def test_interrupt_without_a_limit_and_grace_afterwards():
    clock = FakeClock()
    deadline = Deadline(None, clock=clock.clock, sleep=clock.sleep)
    assert not deadline.expired()
    deadline.interrupt("interrupted")
    assert deadline.expired()
    with pytest.raises(DeadlineExceeded) as err:
        deadline.check("sending x")
    assert err.value.message == "interrupted while sending x"
    deadline.grace(5)
    assert not deadline.expired() and deadline.remaining() == 5
