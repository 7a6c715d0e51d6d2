"""A TCP proxy on loopback that fails connections the way networks do.

    with FaultProxy("127.0.0.1", emulator_port, seed=7) as proxy:
        proxy.reset(after=(1 << 20, 8 << 20), connections=2)    # RST the next 2 connections at random byte counts
        run_upload(endpoint=proxy.url("http"))
        assert proxy.count("reset") == 2, proxy.describe()

Every accepted connection gets a thread that connects to the target and forwards both directions with
bounded reads (at most ``chunk`` bytes in flight per direction inside the proxy: the kernel's socket
buffers do the rest, so a peer that stops reading makes the other peer's writes block, as a real network
does). Behaviour is chosen per connection when it is accepted (``reset``, ``blackhole``, ``stall_after``
set the rule for new connections; ``pass_through`` clears it) and can be changed for live connections
(``active()`` connections have ``reset()``, ``blackhole()``, ``stall()``; ``stall()`` on the proxy pauses
them all). A fault fires once the connection has forwarded ``after`` bytes in ``direction`` ("up" =
client to server, the default; "down" = server to client): exactly that many bytes reach the other side,
the rest stays unread in the proxy's kernel buffer. Byte counts are per TCP connection, so a client that
keeps a connection alive across requests accumulates them.

Faults:
- reset: both sides are closed with RST (SO_LINGER 0) after the bytes forwarded so far have left the
  proxy's send queue (bounded wait of ``drain`` seconds).
- blackhole: forwarding stops in both directions and both sockets stay open: no FIN, no RST; the server
  never learns the client is gone, the client's writes block once the buffers are full and its reads
  wait. The sockets are closed when the proxy stops, or after ``hold`` seconds (FIN; RST to a peer
  whose bytes are still unread in the proxy's buffer, as Linux does on close).
- stall: forwarding stops for ``seconds``, then continues.
- latency: ``set_latency(seconds)`` sleeps before forwarding each chunk (both directions).

``events()`` lists what happened (``Event(kind, conn, up, down, at, detail)``; kinds: reset, blackhole,
release, stall, connect_failed, peer_reset, error); ``stats()`` counts connections and bytes; ``describe()`` is
text for assertion messages. The proxy's threads are daemons and are joined by ``stop()`` (bounded).
"""

import collections
import fcntl
import random
import select
import socket
import struct
import termios
import threading
import time

from fieldkit import TICK

Event = collections.namedtuple("Event", "kind conn up down at detail")
"""One thing the proxy did: ``kind``, connection id, bytes forwarded up/down so far, seconds since start."""

_Rule = collections.namedtuple("_Rule", "kind after direction seconds hold probability")


class _Plan:
    def __init__(self, kind, after, direction, seconds, hold):
        self.kind, self.after, self.direction, self.seconds, self.hold = kind, after, direction, seconds, hold
        self.fired = False

    def __repr__(self):
        return "%s after %d bytes %s" % (self.kind, self.after, self.direction)


def rst_close(sock):
    """Close ``sock`` with RST instead of FIN (SO_LINGER on, timeout 0); never raises."""
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    except OSError:
        pass
    sock.close()


def _unsent(sock):
    """Bytes in ``sock``'s send queue not yet acknowledged by the peer (Linux TIOCOUTQ), 0 if unknown."""
    try:
        return struct.unpack("i", fcntl.ioctl(sock.fileno(), termios.TIOCOUTQ, b"\0\0\0\0"))[0]
    except (OSError, ValueError):
        return 0


class _Pipe:
    """One direction of a connection: reads ``src``, writes ``dst``, at most one chunk pending."""

    def __init__(self, name, src, dst):
        self.name, self.src, self.dst = name, src, dst
        self.pending = b""
        self.eof = False
        self.count = 0


class Connection:
    """One proxied connection. ``id`` counts from 1 in accept order; ``up``/``down`` are bytes forwarded;
    ``state`` is open, stalled, held, reset, closed or failed; ``plan`` is the fault chosen at accept.
    ``reset()``, ``blackhole(hold=None)`` and ``stall(seconds)`` act on it within a tick (50 ms)."""

    def __init__(self, proxy, cid, client, plan):
        self.proxy, self.id, self.client, self.plan = proxy, cid, client, plan
        self.server = None
        self.state = "open"
        self.pipes = []
        self._requests = collections.deque()
        self._stall_until = 0.0
        self.thread = None

    @property
    def up(self):
        return self.pipes[0].count if self.pipes else 0

    @property
    def down(self):
        return self.pipes[1].count if self.pipes else 0

    def reset(self):
        self._requests.append(("reset", None, None))

    def blackhole(self, hold=None):
        self._requests.append(("blackhole", None, hold))

    def stall(self, seconds):
        self._requests.append(("stall", seconds, None))

    def __repr__(self):
        return "<connection %d %s up=%d down=%d plan=%r>" % (self.id, self.state, self.up, self.down, self.plan)

    # -- the connection's thread ----------------------------------------------------------------------

    def serve(self):
        proxy = self.proxy
        try:
            try:
                self.server = socket.create_connection(proxy.target, timeout=proxy.connect_timeout)
            except OSError as exc:
                self.state = "failed"
                proxy._event("connect_failed", self, str(exc))
                rst_close(self.client)
                return
            for sock in (self.client, self.server):
                sock.setblocking(False)
                sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            self.pipes = [_Pipe("up", self.client, self.server), _Pipe("down", self.server, self.client)]
            self._forward()
        except Exception as exc:  # a bug in the proxy must not pass silently, nor kill the test process
            proxy._event("error", self, "%s: %s" % (type(exc).__name__, exc))
        finally:
            self.client.close()
            if self.server is not None:
                self.server.close()
            if self.state not in ("reset", "failed"):
                self.state = "closed"

    def _forward(self):
        proxy = self.proxy
        while not proxy._stopping.is_set():
            while self._requests:
                kind, seconds, hold = self._requests.popleft()
                if self._act(kind, seconds, hold):
                    return
            plan = self.plan
            if plan is not None and not plan.fired:
                pipe = self.pipes[0 if plan.direction == "up" else 1]
                if pipe.count >= plan.after and not pipe.pending:
                    plan.fired = True
                    if self._act(plan.kind, plan.seconds, plan.hold):
                        return
            pause = max(self._stall_until, proxy._stall_until) - time.monotonic()
            if pause > 0:
                self.state = "stalled"
                proxy._stopping.wait(min(TICK, pause))
                continue
            self.state = "open"
            poller = select.poll()
            masks = {}
            for pipe in self.pipes:
                if pipe.pending:
                    masks[pipe.dst.fileno()] = masks.get(pipe.dst.fileno(), 0) | select.POLLOUT
                elif not pipe.eof:
                    masks[pipe.src.fileno()] = masks.get(pipe.src.fileno(), 0) | select.POLLIN
            if not masks:
                return  # both directions ended with FIN and everything was delivered
            for fd, mask in masks.items():
                poller.register(fd, mask)
            for fd, ev in poller.poll(TICK * 1000):
                for pipe in self.pipes:
                    try:
                        if pipe.pending and fd == pipe.dst.fileno() and ev & (select.POLLOUT | select.POLLERR | select.POLLHUP):
                            self._write(pipe)
                        elif (not pipe.pending and not pipe.eof and fd == pipe.src.fileno()
                              and ev & (select.POLLIN | select.POLLERR | select.POLLHUP)):
                            self._read(pipe)
                    except (BlockingIOError, InterruptedError):
                        pass
                    except OSError as exc:  # a peer reset or vanished: pass that on to the other peer as RST
                        proxy._event("peer_reset", self, "%s: %s" % (pipe.name, exc))
                        self.state = "reset"
                        rst_close(self.client)
                        rst_close(self.server)
                        return

    def _read(self, pipe):
        limit = self.proxy.chunk
        plan = self.plan
        if plan is not None and not plan.fired and plan.direction == pipe.name:
            limit = min(limit, plan.after - pipe.count)
            if limit <= 0:
                return
        data = pipe.src.recv(limit)
        if not data:
            pipe.eof = True
            try:
                pipe.dst.shutdown(socket.SHUT_WR)
            except OSError:
                pass
            return
        if self.proxy.latency > 0:
            self.proxy._stopping.wait(self.proxy.latency)
        pipe.pending = memoryview(data)

    def _write(self, pipe):
        n = pipe.dst.send(pipe.pending)
        pipe.pending = pipe.pending[n:]
        pipe.count += n
        if not pipe.pending:
            pipe.pending = b""

    def _act(self, kind, seconds, hold):
        """Apply a fault; True when the connection is finished."""
        proxy = self.proxy
        if kind == "stall":
            self._stall_until = time.monotonic() + seconds
            proxy._event("stall", self, "%.3g s" % seconds)
            return False
        if kind == "reset":
            deadline = time.monotonic() + proxy.drain
            while time.monotonic() < deadline and any(_unsent(s) for s in (self.client, self.server)):
                time.sleep(0.005)
            self.state = "reset"
            proxy._event("reset", self, "")
            rst_close(self.client)
            rst_close(self.server)
            return True
        # blackhole: hold both sockets without reading or writing
        self.state = "held"
        proxy._event("blackhole", self, "hold %s" % ("until stop" if hold is None else "%.3g s" % hold))
        until = None if hold is None else time.monotonic() + hold
        while not proxy._stopping.is_set() and (until is None or time.monotonic() < until):
            if self._requests and self._requests[0][0] == "reset":
                self._requests.popleft()
                return self._act("reset", None, None)
            proxy._stopping.wait(TICK if until is None else max(0.0, min(TICK, until - time.monotonic())))
        proxy._event("release", self, "proxy stopped" if proxy._stopping.is_set() else "hold time over")
        return True


class FaultProxy:
    """TCP proxy from ``host``:``port`` (0 = a free port, see ``.port``) to ``target_host``:``target_port``.

    ``chunk``: largest read per direction (bytes held in the proxy per direction); ``seed``: seeds the
    generator for random byte counts and probabilities; ``connect_timeout``: for the connection to the
    target; ``drain``: longest wait for the send queues to empty before a reset; ``sockbuf``: if set,
    SO_RCVBUF/SO_SNDBUF of the proxy's sockets (smaller = a blackholed client blocks sooner).
    """

    def __init__(self, target_host, target_port, host="127.0.0.1", port=0, chunk=65536, seed=0,
                 connect_timeout=5.0, drain=1.0, sockbuf=None):
        self.target = (target_host, int(target_port))
        self.host = host
        self.chunk = int(chunk)
        self.connect_timeout = connect_timeout
        self.drain = drain
        self.sockbuf = sockbuf
        self.latency = 0.0
        self._random = random.Random(seed)
        self._lock = threading.Lock()
        self._rule = None
        self._rule_left = None
        self._stall_until = 0.0
        self._stopping = threading.Event()
        self._conns = []
        self._events = []
        self._started = None
        self._accepter = None
        self._listener = socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET, socket.SOCK_STREAM)
        try:
            self._listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            if sockbuf:
                self._listener.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, sockbuf)
                self._listener.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, sockbuf)
            self._listener.bind((host, port))
        except OSError:
            self._listener.close()
            raise
        self.port = self._listener.getsockname()[1]

    def url(self, scheme="http", path=""):
        """``scheme://host:port`` + ``path`` of the proxy (IPv6 hosts in brackets)."""
        host = "[%s]" % self.host if ":" in self.host else self.host
        return "%s://%s:%d%s" % (scheme, host, self.port, path)

    # -- lifecycle --------------------------------------------------------------------------------------

    def start(self):
        self._started = time.monotonic()
        self._listener.listen(128)
        self._listener.settimeout(TICK)
        self._accepter = threading.Thread(target=self._accept_loop, name="fieldkit-proxy-accept", daemon=True)
        self._accepter.start()
        return self

    def stop(self, timeout=5.0):
        """Stop accepting, close every connection (held ones too), join the threads; returns the threads
        still alive after ``timeout`` seconds (none, unless something is badly wrong)."""
        self._stopping.set()
        deadline = time.monotonic() + timeout
        threads = ([self._accepter] if self._accepter else []) + [c.thread for c in self._conns if c.thread]
        for t in threads:
            if t.ident is not None:  # started
                t.join(max(0.0, deadline - time.monotonic()))
        self._listener.close()
        return [t for t in threads if t.is_alive()]

    def __enter__(self):
        return self.start()

    def __exit__(self, *exc):
        self.stop()

    def _accept_loop(self):
        while not self._stopping.is_set():
            try:
                client, _ = self._listener.accept()
            except socket.timeout:
                continue
            except OSError:
                if self._stopping.is_set():
                    return
                time.sleep(TICK)  # e.g. EMFILE: do not spin
                continue
            with self._lock:
                conn = Connection(self, len(self._conns) + 1, client, self._plan())
                conn.thread = threading.Thread(target=conn.serve, name="fieldkit-proxy-%d" % conn.id, daemon=True)
                self._conns.append(conn)
            conn.thread.start()

    def _plan(self):
        rule = self._rule
        if rule is None or self._rule_left == 0:
            return None
        if rule.probability is not None and self._random.random() >= rule.probability:
            return None
        if self._rule_left is not None:
            self._rule_left -= 1
        after = rule.after
        if isinstance(after, (tuple, list)):
            after = self._random.randint(int(after[0]), int(after[1]))
        return _Plan(rule.kind, int(after), rule.direction, rule.seconds, rule.hold)

    def _event(self, kind, conn, detail):
        with self._lock:
            self._events.append(Event(kind, conn.id, conn.up, conn.down,
                                      round(time.monotonic() - (self._started or 0.0), 3), detail))

    # -- behaviour --------------------------------------------------------------------------------------

    def _set(self, kind, after, connections, probability, direction, seconds=None, hold=None):
        if direction not in ("up", "down"):
            raise ValueError("direction is 'up' or 'down', not %r" % (direction,))
        if isinstance(after, (tuple, list)) and not (len(after) == 2 and 0 <= after[0] <= after[1]):
            raise ValueError("after is a byte count or a (low, high) range, not %r" % (after,))
        with self._lock:
            self._rule = _Rule(kind, after, direction, seconds, hold, probability)
            self._rule_left = connections
        return self

    def pass_through(self):
        """New connections are forwarded untouched (live ones keep the plan they were given)."""
        with self._lock:
            self._rule = None
            self._rule_left = None
        return self

    def reset(self, after=0, connections=None, probability=None, direction="up"):
        """New connections are reset after ``after`` bytes (an int, or (low, high): random from the seeded
        generator). ``connections``: at most that many connections are faulted (None: all);
        ``probability``: each new connection is faulted with that chance (None: every one)."""
        return self._set("reset", after, connections, probability, direction)

    def blackhole(self, after=0, connections=None, probability=None, direction="up", hold=None):
        """New connections go silent after ``after`` bytes: nothing forwarded, nothing closed, until the
        proxy stops or ``hold`` seconds pass. Other arguments as for ``reset``."""
        return self._set("blackhole", after, connections, probability, direction, hold=hold)

    def stall_after(self, after, seconds, connections=None, probability=None, direction="up"):
        """New connections stop forwarding for ``seconds`` after ``after`` bytes, then continue."""
        return self._set("stall", after, connections, probability, direction, seconds=seconds)

    def stall(self, seconds):
        """Pause every connection (live and new) for ``seconds`` from now."""
        self._stall_until = time.monotonic() + seconds
        with self._lock:
            self._events.append(Event("stall", 0, 0, 0, round(time.monotonic() - (self._started or 0.0), 3),
                                      "all connections %.3g s" % seconds))
        return self

    def resume(self):
        """End a ``stall()`` of all connections now."""
        self._stall_until = 0.0
        return self

    def set_latency(self, seconds):
        """Sleep ``seconds`` before forwarding each chunk, both directions, every connection."""
        self.latency = float(seconds)
        return self

    # -- observation ------------------------------------------------------------------------------------

    def connections(self):
        """Every connection accepted so far (a copy of the list), in accept order."""
        with self._lock:
            return list(self._conns)

    def active(self):
        """Connections not yet finished (open, stalled or held)."""
        return [c for c in self.connections() if c.state in ("open", "stalled", "held")]

    def events(self, kind=None):
        with self._lock:
            return [e for e in self._events if kind is None or e.kind == kind]

    def count(self, kind):
        return len(self.events(kind))

    def stats(self):
        conns = self.connections()
        return {"connections": len(conns), "active": sum(c.state in ("open", "stalled", "held") for c in conns),
                "bytes_up": sum(c.up for c in conns), "bytes_down": sum(c.down for c in conns),
                "resets": self.count("reset"), "blackholes": self.count("blackhole"), "stalls": self.count("stall")}

    def wait_for(self, kind, count=1, timeout=10.0):
        """Wait until ``count`` events of ``kind`` happened; returns them, raises TimeoutError otherwise."""
        deadline = time.monotonic() + timeout
        while True:
            found = self.events(kind)
            if len(found) >= count:
                return found
            if time.monotonic() >= deadline:
                raise TimeoutError("proxy: %d of %d %s event(s) after %.3g s\n%s"
                                   % (len(found), count, kind, timeout, self.describe()))
            time.sleep(TICK / 5)

    def describe(self):
        """Text for assertion messages: counters, then one line per event."""
        lines = ["proxy %s -> %s:%d %s" % (self.url("tcp"), self.target[0], self.target[1], self.stats())]
        for e in self.events():
            lines.append("  %7.3fs conn %d %s at up=%d down=%d %s" % (e.at, e.conn, e.kind, e.up, e.down, e.detail))
        return "\n".join(lines)
