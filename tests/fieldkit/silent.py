"""Servers that never answer, and a port that refuses connections.

    with SilentServer("discard") as server:          # accepts, reads and discards, never answers
        run_upload(endpoint=server.url("https"), timeout=5)
    with RefusedPort() as refused:                    # connect() fails at once with ECONNREFUSED
        run_upload(endpoint=refused.url("http"))

``SilentServer(mode)`` listens on 127.0.0.1 (port 0 = a free one, see ``.port``); one daemon thread
serves every connection, joined on exit, which closes every socket. Modes:

- ``discard``: accept, read and throw away everything, never send a byte. ``peers()`` tells, per
  connection, how many bytes arrived and how it ended (open / eof / reset): a client that gave up with
  FIN or RST is seen; one behind a blackhole is not.
- ``hold``: accept and never read: the client's writes block once the socket buffers are full.
- ``close``: accept and close at once (FIN, or RST when the client had already sent data, as Linux does
  when unread data is discarded).
- ``reset``: accept and close with RST.
- ``backlog``: listen but never accept: the kernel completes up to ``backlog + 1`` handshakes, then
  further connects hang in SYN-SENT until the client's connect timeout.
"""

import selectors
import socket
import threading
import time
import zlib

from fieldkit import TICK
from fieldkit.proxy import rst_close

MODES = ("discard", "hold", "close", "reset", "backlog")


class Peer:
    """One accepted connection: ``id`` (from 1), ``received`` bytes, ``crc32`` of them, ``end``
    ("open", "eof" or "reset"; in modes other than discard it stays "open" or is the server's close)."""

    def __init__(self, pid, sock):
        self.id, self.sock = pid, sock
        self.received = 0
        self.crc32 = 0
        self.end = "open"

    def __repr__(self):
        return "<peer %d %s received=%d>" % (self.id, self.end, self.received)


class SilentServer:
    def __init__(self, mode="discard", host="127.0.0.1", port=0, backlog=1, chunk=65536):
        if mode not in MODES:
            raise ValueError("mode is one of %s, not %r" % (", ".join(MODES), mode))
        self.mode, self.host, self.chunk = mode, host, chunk
        self._peers = []
        self._lock = threading.Lock()
        self._stopping = threading.Event()
        self._thread = None
        self._sock = socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET, socket.SOCK_STREAM)
        try:
            self._sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            self._sock.bind((host, port))
            self._sock.listen(backlog if mode == "backlog" else 128)
        except OSError:
            self._sock.close()
            raise
        self.port = self._sock.getsockname()[1]

    def url(self, scheme="http", path=""):
        host = "[%s]" % self.host if ":" in self.host else self.host
        return "%s://%s:%d%s" % (scheme, host, self.port, path)

    def start(self):
        if self.mode != "backlog":
            self._thread = threading.Thread(target=self._serve, name="fieldkit-silent-" + self.mode, daemon=True)
            self._thread.start()
        return self

    def stop(self, timeout=5.0):
        """Close everything; returns True when the server thread ended within ``timeout``."""
        self._stopping.set()
        if self._thread is not None:
            self._thread.join(timeout)
        self._sock.close()
        with self._lock:
            for peer in self._peers:
                peer.sock.close()
        return self._thread is None or not self._thread.is_alive()

    def __enter__(self):
        return self.start()

    def __exit__(self, *exc):
        self.stop()

    def peers(self):
        """The accepted connections so far (a copy of the list)."""
        with self._lock:
            return list(self._peers)

    @property
    def accepted(self):
        return len(self.peers())

    def wait_accepted(self, count=1, timeout=10.0):
        """Wait until ``count`` connections were accepted; returns the peers, raises TimeoutError."""
        deadline = time.monotonic() + timeout
        while self.accepted < count:
            if time.monotonic() >= deadline:
                raise TimeoutError("silent server: %d of %d connections after %.3g s" % (self.accepted, count, timeout))
            time.sleep(TICK / 5)
        return self.peers()

    def _serve(self):
        sel = selectors.DefaultSelector()
        self._sock.setblocking(False)
        sel.register(self._sock, selectors.EVENT_READ, None)
        try:
            while not self._stopping.is_set():
                for key, _ in sel.select(TICK):
                    if key.data is None:
                        self._accept(sel)
                    else:
                        self._discard(sel, key.data)
        finally:
            sel.close()

    def _accept(self, sel):
        try:
            sock, _ = self._sock.accept()
        except (BlockingIOError, InterruptedError):
            return
        except OSError:
            time.sleep(TICK)  # e.g. EMFILE: do not spin
            return
        with self._lock:
            peer = Peer(len(self._peers) + 1, sock)
            self._peers.append(peer)
        if self.mode == "close":
            peer.end = "closed by server"
            sock.close()
        elif self.mode == "reset":
            peer.end = "reset by server"
            rst_close(sock)
        elif self.mode == "discard":
            sock.setblocking(False)
            sel.register(sock, selectors.EVENT_READ, peer)

    def _discard(self, sel, peer):
        try:
            data = peer.sock.recv(self.chunk)
        except (BlockingIOError, InterruptedError):
            return
        except OSError:
            data, peer.end = None, "reset"
        if data:
            peer.received += len(data)
            peer.crc32 = zlib.crc32(data, peer.crc32)
            return
        if data is not None:
            peer.end = "eof"
        sel.unregister(peer.sock)
        peer.sock.close()


class RefusedPort:
    """A port on ``host`` where connections are refused: a socket is bound to it but does not listen, so
    the kernel answers every SYN with RST and nobody else can take the port while this object lives."""

    def __init__(self, host="127.0.0.1"):
        self.host = host
        self._sock = socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET, socket.SOCK_STREAM)
        try:
            self._sock.bind((host, 0))
        except OSError:
            self._sock.close()
            raise
        self.port = self._sock.getsockname()[1]

    def url(self, scheme="http", path=""):
        host = "[%s]" % self.host if ":" in self.host else self.host
        return "%s://%s:%d%s" % (scheme, host, self.port, path)

    def close(self):
        self._sock.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()
