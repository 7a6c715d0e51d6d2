"""FaultProxy forwards faithfully and fails connections exactly as asked: the server side (a SilentServer
that counts what arrives and how each connection ended) and the client side both show it."""

import errno
import random
import socket
import threading
import time
import zlib

import pytest

from fieldkit.procs import wait_until
from fieldkit.proxy import FaultProxy, rst_close
from fieldkit.silent import RefusedPort, SilentServer

MiB = 1 << 20


def payload(size, seed=0):
    block = random.Random(seed).randbytes(MiB)
    return (block * (size // MiB + 1))[:size]


def connect(proxy, timeout=5.0):
    return socket.create_connection(("127.0.0.1", proxy.port), timeout=timeout)


def send_and_close(proxy, data):
    """Send ``data`` through the proxy and close; returns how the client saw it end."""
    try:
        with connect(proxy) as c:
            c.sendall(data)
            c.shutdown(socket.SHUT_WR)
            return "eof" if c.recv(1) == b"" else "data"
    except OSError as exc:   # ECONNRESET, EPIPE, or ENOTCONN when the reset came before shutdown()
        if exc.errno in (errno.ECONNRESET, errno.EPIPE, errno.ENOTCONN):
            return "reset"
        raise


def wait_peer(server, index, end=None, received=None, timeout=5.0):
    def ready():
        peers = server.peers()
        if len(peers) <= index:
            return None
        p = peers[index]
        return p if (end is None or p.end == end) and (received is None or p.received == received) else None
    return wait_until(ready, timeout, message=lambda: "server peers: %r" % server.peers())


class Echo:
    """Echo server for the server-to-client direction: sends back what it reads."""

    def __init__(self):
        self.sock = socket.create_server(("127.0.0.1", 0))
        self.sock.settimeout(0.05)
        self.port = self.sock.getsockname()[1]
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self.run, daemon=True)

    def run(self):
        while not self.stop.is_set():
            try:
                c, _ = self.sock.accept()
            except socket.timeout:
                continue
            c.settimeout(5)
            try:
                for block in iter(lambda: c.recv(65536), b""):
                    c.sendall(block)
            except OSError:
                pass
            finally:
                c.close()

    def __enter__(self):
        self.thread.start()
        return self

    def __exit__(self, *exc):
        self.stop.set()
        self.thread.join(5)
        self.sock.close()


@pytest.fixture
def sink():
    with SilentServer("discard") as server:
        yield server


def test_pass_through_forwards_every_byte_and_counts(sink):
    data = payload(3 * MiB + 17)
    with FaultProxy("127.0.0.1", sink.port) as proxy:
        assert send_and_close(proxy, data) == "eof"
        peer = wait_peer(sink, 0, end="eof")
        assert (peer.received, peer.crc32) == (len(data), zlib.crc32(data))
        wait_until(lambda: not proxy.active(), 5)
        assert proxy.stats() == {"connections": 1, "active": 0, "bytes_up": len(data), "bytes_down": 0,
                                 "resets": 0, "blackholes": 0, "stalls": 0}
        assert proxy.url("https", "/a") == "https://127.0.0.1:%d/a" % proxy.port


def test_pass_through_both_directions_with_echo():
    data = payload(2 * MiB, seed=1)
    with Echo() as echo, FaultProxy("127.0.0.1", echo.port) as proxy:
        with connect(proxy) as c:
            got = bytearray()
            t = threading.Thread(target=lambda: (c.sendall(data), c.shutdown(socket.SHUT_WR)), daemon=True)
            t.start()
            for block in iter(lambda: c.recv(65536), b""):
                got += block
            t.join(5)
        assert bytes(got) == data
        wait_until(lambda: proxy.stats()["active"] == 0, 5)
        assert (proxy.stats()["bytes_up"], proxy.stats()["bytes_down"]) == (len(data), len(data))


def test_reset_at_a_fixed_count_for_the_first_connection_only(sink):
    data = payload(4 * MiB)
    with FaultProxy("127.0.0.1", sink.port) as proxy:
        proxy.reset(after=100000, connections=1)
        assert send_and_close(proxy, data) == "reset"
        peer = wait_peer(sink, 0, end="reset")
        assert peer.received == 100000 and peer.crc32 == zlib.crc32(data[:100000])
        assert send_and_close(proxy, data) == "eof"       # the rule was for one connection
        assert wait_peer(sink, 1, end="eof").received == len(data)
        [event] = proxy.events("reset")
        assert (event.conn, event.up) == (1, 100000), proxy.describe()


def test_reset_at_random_counts_is_reproducible_from_the_seed(sink):
    def run(seed):
        with FaultProxy("127.0.0.1", sink.port, seed=seed) as proxy:
            proxy.reset(after=(1000, 500000), connections=3)
            ends = [send_and_close(proxy, payload(MiB)) for _ in range(4)]
            return ends, [e.up for e in proxy.events("reset")]
    ends, counts = run(5)
    assert ends == ["reset", "reset", "reset", "eof"]
    rng = random.Random(5)
    assert counts == [rng.randint(1000, 500000) for _ in range(3)]
    assert [wait_peer(sink, i, end="reset").received for i in range(3)] == counts   # exactly those bytes arrived
    assert run(5)[1] == counts and run(6)[1] != counts


def test_reset_with_a_probability(sink):
    with FaultProxy("127.0.0.1", sink.port, seed=3) as proxy:
        proxy.reset(after=10, probability=0.5)
        ends = [send_and_close(proxy, b"y" * 1000) for _ in range(10)]
    rng = random.Random(3)
    expected = ["reset" if rng.random() < 0.5 else "eof" for _ in range(10)]
    assert ends == expected and "reset" in ends and "eof" in ends


def test_blackhole_keeps_both_sides_open_until_the_proxy_stops(sink):
    with FaultProxy("127.0.0.1", sink.port, sockbuf=65536) as proxy:
        proxy.blackhole(after=50000)
        c = connect(proxy, timeout=0.15)
        try:
            sent = 0
            with pytest.raises(socket.timeout):        # the client's writes block: nobody reads any more
                while sent < 512 * MiB:
                    sent += c.send(b"z" * 65536)
            with pytest.raises(socket.timeout):        # and its reads wait: no FIN, no RST
                c.recv(1)
            peer = wait_peer(sink, 0, received=50000)
            assert (peer.end, peer.received) == ("open", 50000)   # the server never learns
            assert proxy.active()[0].state == "held"
            assert proxy.stop() == []
            assert wait_peer(sink, 0, end="eof").received == 50000   # released on stop
            assert [e.kind for e in proxy.events()] == ["blackhole", "release"]
        finally:
            c.close()


def test_blackhole_hold_time_releases_by_itself(sink):
    with FaultProxy("127.0.0.1", sink.port) as proxy:
        proxy.blackhole(after=0, hold=0.2)
        with connect(proxy) as c:
            c.sendall(b"a" * 1000)
            start = time.monotonic()
            with pytest.raises(ConnectionResetError):   # closed when the hold time is over (RST: 1000 bytes unread)
                c.recv(1)
            assert 0.15 < time.monotonic() - start < 3
        assert wait_peer(sink, 0, end="eof").received == 0
        assert proxy.events("release")[0].detail == "hold time over"


def test_stall_after_a_count_pauses_then_continues(sink):
    with FaultProxy("127.0.0.1", sink.port) as proxy:
        proxy.stall_after(after=10000, seconds=0.25)
        with connect(proxy) as c:
            start = time.monotonic()
            c.sendall(b"s" * 30000)
            peer = wait_peer(sink, 0, received=10000)
            time.sleep(0.1)
            assert peer.received == 10000
            wait_peer(sink, 0, received=30000)
            assert 0.22 < time.monotonic() - start < 3
        assert proxy.events("stall")[0].up == 10000


def test_stall_of_all_connections_and_resume(sink):
    with FaultProxy("127.0.0.1", sink.port) as proxy:
        with connect(proxy) as c:
            c.sendall(b"1" * 1000)
            wait_peer(sink, 0, received=1000)
            proxy.stall(30)
            c.sendall(b"2" * 1000)
            time.sleep(0.1)
            assert sink.peers()[0].received == 1000
            assert proxy.active()[0].state == "stalled"
            proxy.resume()
            wait_peer(sink, 0, received=2000, timeout=2)


def test_latency_per_chunk():
    with Echo() as echo, FaultProxy("127.0.0.1", echo.port) as proxy:
        proxy.set_latency(0.05)
        with connect(proxy) as c:
            start = time.monotonic()
            c.sendall(b"ping")
            assert c.recv(4) == b"ping"
            assert 0.1 <= time.monotonic() - start < 2    # one chunk up, one chunk down


def test_live_connection_can_be_reset_and_a_peer_reset_is_passed_on(sink):
    with FaultProxy("127.0.0.1", sink.port) as proxy:
        with connect(proxy) as c:
            c.sendall(b"q" * 5000)
            wait_peer(sink, 0, received=5000)
            proxy.active()[0].reset()
            with pytest.raises(ConnectionResetError):
                c.recv(1)
        wait_peer(sink, 0, end="reset")
        c = connect(proxy)
        c.sendall(b"r" * 10)
        wait_peer(sink, 1, received=10)
        rst_close(c)                     # the client resets: the server gets RST too
        wait_peer(sink, 1, end="reset")
        assert [e.kind for e in proxy.events()] == ["reset", "peer_reset"]


def test_unreachable_target_resets_the_client():
    with RefusedPort() as refused, FaultProxy("127.0.0.1", refused.port) as proxy:
        with connect(proxy) as c:
            with pytest.raises(ConnectionResetError):
                c.recv(1)
        wait_until(lambda: proxy.events("connect_failed"), 5)


def test_parallel_uploads_are_forwarded_intact(sink):
    size, count = 16 * MiB, 8
    blobs = [payload(size, seed=i) for i in range(count)]
    results = [None] * count
    with FaultProxy("127.0.0.1", sink.port) as proxy:
        def upload(i):
            results[i] = send_and_close(proxy, blobs[i])
        threads = [threading.Thread(target=upload, args=(i,), daemon=True) for i in range(count)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(30)
        assert results == ["eof"] * count
        wait_until(lambda: all(p.end == "eof" for p in sink.peers()), 10)
        assert sorted(p.crc32 for p in sink.peers()) == sorted(zlib.crc32(b) for b in blobs)
        assert proxy.stats()["bytes_up"] == size * count
        assert proxy.stop() == []


def test_bad_arguments_are_refused():
    with FaultProxy("127.0.0.1", 9) as proxy:
        with pytest.raises(ValueError, match="direction is 'up' or 'down'"):
            proxy.reset(direction="sideways")
        with pytest.raises(ValueError, match="byte count or a \\(low, high\\) range"):
            proxy.reset(after=(5, 1))
