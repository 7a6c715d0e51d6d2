"""SilentServer and RefusedPort do what their names say, in bounded time."""

import socket
import time
import zlib

import pytest

from fieldkit.silent import RefusedPort, SilentServer


def connect(port, timeout=2.0):
    return socket.create_connection(("127.0.0.1", port), timeout=timeout)


def test_discard_reads_everything_and_never_answers():
    data = bytes(range(256)) * 4096  # 1 MiB
    with SilentServer("discard") as server:
        with connect(server.port) as c:
            c.sendall(data)
            c.settimeout(0.1)
            with pytest.raises(socket.timeout):
                c.recv(1)
            peer = server.wait_accepted(1)[0]
            deadline = time.monotonic() + 5
            while peer.received < len(data) and time.monotonic() < deadline:
                time.sleep(0.01)
            assert peer.end == "open"
        deadline = time.monotonic() + 5
        while peer.end == "open" and time.monotonic() < deadline:
            time.sleep(0.01)
        assert (peer.received, peer.crc32, peer.end) == (len(data), zlib.crc32(data), "eof")


def test_discard_sees_a_client_reset():
    from fieldkit.proxy import rst_close
    with SilentServer("discard") as server:
        c = connect(server.port)
        c.sendall(b"x" * 1000)
        peer = server.wait_accepted(1)[0]
        rst_close(c)
        deadline = time.monotonic() + 5
        while peer.end == "open" and time.monotonic() < deadline:
            time.sleep(0.01)
        assert peer.end == "reset"


def test_hold_never_reads_so_writes_block():
    with SilentServer("hold") as server:
        with connect(server.port, timeout=0.15) as c:
            c.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 65536)
            sent = 0
            with pytest.raises(socket.timeout):
                while sent < 256 << 20:   # far more than any socket buffers; bounded anyway
                    sent += c.send(b"\0" * 65536)
            assert 0 < sent < 256 << 20
        assert [p.received for p in server.peers()] == [0]


def test_close_answers_nothing_and_closes():
    with SilentServer("close") as server:
        with connect(server.port) as c:
            assert c.recv(1) == b""
        assert server.accepted == 1


def test_reset_closes_with_rst():
    with SilentServer("reset") as server:
        # the RST can reach the client while its connect is still completing (the server resets at once after
        # accept): then connect raises it, else the first recv does
        with pytest.raises(ConnectionResetError):
            with connect(server.port) as c:
                server.wait_accepted(1)
                c.recv(1)
        server.wait_accepted(1)


def test_backlog_never_accepts_and_connects_hang():
    with SilentServer("backlog", backlog=0) as server:
        held, outcome = [], None
        try:
            for _ in range(8):   # the kernel completes backlog + 1 handshakes, then drops SYNs
                held.append(connect(server.port, timeout=0.15))
        except socket.timeout:
            outcome = "timeout"
        finally:
            for c in held:
                c.close()
        assert outcome == "timeout" and 1 <= len(held) <= 3, len(held)
        assert server.accepted == 0


def test_refused_port_refuses_at_once():
    with RefusedPort() as refused:
        start = time.monotonic()
        with pytest.raises(ConnectionRefusedError):
            connect(refused.port)
        assert time.monotonic() - start < 0.5
        assert refused.url("https", "/x") == "https://127.0.0.1:%d/x" % refused.port


def test_unknown_mode_is_refused():
    with pytest.raises(ValueError, match="mode is one of discard, hold, close, reset, backlog"):
        SilentServer("sulk")
