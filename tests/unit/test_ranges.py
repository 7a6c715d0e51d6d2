"""Range arithmetic and planning of the upload engine, as properties."""

import os
import threading

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from ansible_collections.imagestore.upload.plugins.module_utils._errors import Conflict, TransferError
from ansible_collections.imagestore.upload.plugins.module_utils._ranges import complement, normalize, plan, total
from ansible_collections.imagestore.upload.plugins.module_utils._transfer import Transfer, Unit
from ansible_collections.imagestore.upload.plugins.module_utils._wait import Deadline


def covered(ranges):
    out = set()
    for s, e in ranges:
        out.update(range(s, e + 1))
    return out


sizes = st.integers(min_value=1, max_value=400)


@st.composite
def size_and_ranges(draw):
    size = draw(sizes)
    pairs = draw(st.lists(st.tuples(st.integers(0, size - 1), st.integers(0, size - 1)), max_size=12))
    return size, [(min(a, b), max(a, b)) for a, b in pairs]


@given(size_and_ranges())
def test_complement_is_exactly_the_bytes_not_received(data):
    size, received = data
    gaps = complement(received, size)
    assert covered(gaps) == set(range(size)) - covered(received)
    # ascending, disjoint, not touching (as ExpectedRanges are)
    for (s1, e1), (s2, e2) in zip(gaps, gaps[1:]):
        assert e1 + 1 < s2
    assert total(gaps) == size - len(covered(received))


@given(size_and_ranges(), st.integers(min_value=1, max_value=64))
def test_plan_covers_exactly_the_missing_bytes_in_bounded_chunks(data, chunk):
    size, received = data
    missing = complement(received, size)
    chunks = plan(missing, chunk)
    assert all(e - s + 1 <= chunk for s, e in chunks)
    assert sum(e - s + 1 for s, e in chunks) == total(missing)       # no byte twice
    assert covered(chunks) == covered(missing)                        # every missing byte, nothing else


@given(sizes, st.integers(min_value=1, max_value=64), st.data())
def test_grid_plan_sends_whole_slices_covering_the_missing_suffix(size, grid, data):
    offset = data.draw(st.integers(0, size - 1)) // grid * grid       # ZStack: a slice-aligned offset
    chunks = plan([(offset, size - 1)], 10 ** 9, grid=grid, size=size)
    assert covered(chunks) == set(range(offset, size))
    assert all(chunk[0] % grid == 0 for chunk in chunks)
    assert all(e - s + 1 == grid for s, e in chunks[:-1])


@given(size_and_ranges())
def test_normalize_merges_touching_and_overlapping_ranges(data):
    ranges = data[1]
    merged = normalize(ranges)
    assert covered(merged) == covered(ranges)
    for (s1, e1), (s2, e2) in zip(merged, merged[1:]):
        assert e1 + 1 < s2


class FakeServer:
    """A Service-Fabric-like server in memory: ranges must fall inside one expected range."""

    def __init__(self, content, lose_responses=0):
        self.size = len(content)
        self.content = content
        self.received = []
        self.data = bytearray(self.size)
        self.lock = threading.Lock()
        self.lose = lose_responses
        self.unacknowledged = 0

    def missing(self):
        with self.lock:
            return complement(self.received, self.size)

    def send(self, unit):
        body = self.content[unit.start:unit.end + 1]
        with self.lock:
            if not any(s <= unit.start and unit.end <= e for s, e in complement(self.received, self.size)):
                raise Conflict("range not satisfiable")
            self.data[unit.start:unit.end + 1] = body
            self.received.append((unit.start, unit.end))
            if self.lose > 0:
                self.lose -= 1
                self.unacknowledged += len(body)
                raise Conflict("response lost; retried chunk was rejected")
        return len(body)


class Clock:
    def __init__(self):
        self.now = 0.0

    def clock(self):
        return self.now

    def sleep(self, seconds):
        self.now += seconds


def transfer(server, chunk, parallel, send=None):
    clock = Clock()
    return Transfer(lambda: [Unit("f", s, e) for s, e in plan(server.missing(), chunk)], send or server.send, parallel,
                    Deadline(None, clock=clock.clock, sleep=clock.sleep), stall_seconds=30)


@given(st.lists(st.tuples(st.integers(0, 999), st.integers(0, 999)), max_size=6),
       st.integers(1, 300), st.integers(1, 8), st.integers(0, 3))
@settings(max_examples=60, deadline=None)
def test_transfer_completes_any_partial_state_byte_exact(pre, chunk, parallel, lost):
    content = os.urandom(1000)
    server = FakeServer(content, lose_responses=lost)
    for a, b in pre:
        s, e = min(a, b), max(a, b)
        if any(s0 <= s and e <= e0 for s0, e0 in server.missing()):
            server.received.append((s, e))          # another client sent these bytes earlier
            server.data[s:e + 1] = content[s:e + 1]
    before = total(server.missing())
    t = transfer(server, chunk, parallel)
    t.run()
    assert bytes(server.data) == content
    assert server.missing() == []
    # bytes_sent counts acknowledged chunks once each; a chunk whose answer was lost landed all the same
    assert t.bytes_sent + server.unacknowledged == before


def test_transfer_gives_up_when_the_server_never_accepts():
    def refuse(unit):
        raise Conflict("nope")
    with pytest.raises(TransferError, match="still reports 1000 bytes missing"):
        transfer(FakeServer(os.urandom(1000)), 100, 2, send=refuse).run()


def test_transfer_stops_on_a_fatal_error_without_sending_the_rest():
    calls = []

    def send(unit):
        calls.append(unit.start)
        raise RuntimeError("boom")
    with pytest.raises(RuntimeError, match="boom"):
        transfer(FakeServer(os.urandom(1000)), 10, 2, send=send).run()
    assert len(calls) <= 2
