"""Kill the processes of a run, the Ansible module included, and wait (bounded) for conditions.

    run = new_run_marker()                                   # "FIELDKIT_RUN=<random hex>"
    playbook = subprocess.Popen([...], env=dict(os.environ, **marker_env(run)))
    wait_until(lambda: find(marker="AnsiballZ_image_upload.py", env=run), 30)
    report = kill_matching(marker="AnsiballZ_image_upload.py", env=run)   # module, its children, its session
    assert report.killed and not report.survivors, report

Ansible runs a module in a session of its own, so SIGKILL of ``ansible-playbook`` leaves the module
running. ``kill_matching`` finds processes by a command-line substring (``marker``), by an environment
entry ``NAME=VALUE`` read from ``/proc/PID/environ`` (``env``), and/or as descendants of a process
(``under``); all given filters must hold. It then freezes (SIGSTOP) the matches, their descendants and
(``scope``, default "session") the members of their process groups and sessions, re-reading the process
table until nothing new turns up (so no child escapes by forking or by being re-parented when its
parent dies), SIGKILLs them all and waits until they are gone (a zombie counts as gone). It never
signals itself, its ancestors, or its own process group or session. A command-line marker alone could
match the runs of other tests on the same machine, so ``kill_matching`` wants ``env`` or ``under`` too.

Linux only (reads /proc).
"""

import collections
import os
import signal
import time
import uuid

from fieldkit import TICK

Proc = collections.namedtuple("Proc", "pid ppid pgid sid starttime state cmdline")
"""One process as /proc shows it; ``starttime`` (clock ticks after boot) tells a reused pid apart."""


def wait_until(condition, timeout, interval=TICK, message=None):
    """Call ``condition()`` every ``interval`` seconds until it returns something true, and return that.
    After ``timeout`` seconds raise TimeoutError with ``message`` (a string, or a callable giving one)
    and the last value."""
    deadline = time.monotonic() + timeout
    while True:
        value = condition()
        if value:
            return value
        if time.monotonic() >= deadline:
            text = message() if callable(message) else message
            raise TimeoutError("%s (not true after %.3g s; last value %r)"
                               % (text or getattr(condition, "__name__", "condition"), timeout, value))
        time.sleep(interval)


def new_run_marker(name="FIELDKIT_RUN"):
    """A fresh ``NAME=VALUE`` to put into a run's environment (see ``marker_env``) and find it by."""
    return "%s=%s" % (name, uuid.uuid4().hex)


def marker_env(run_marker):
    """``{"NAME": "VALUE"}`` for ``run_marker`` ("NAME=VALUE"), to merge into a subprocess environment."""
    name, _, value = run_marker.partition("=")
    return {name: value}


def read_proc(pid):
    """Proc for ``pid``, or None when it does not exist (any more)."""
    try:
        with open("/proc/%d/stat" % pid, "rb") as fh:
            stat = fh.read().decode("utf-8", "replace")
        with open("/proc/%d/cmdline" % pid, "rb") as fh:
            cmdline = fh.read().rstrip(b"\0").replace(b"\0", b" ").decode("utf-8", "replace")
    except (FileNotFoundError, ProcessLookupError, PermissionError):
        return None
    fields = stat[stat.rindex(")") + 2:].split()   # the command name may hold spaces and parentheses
    return Proc(pid, int(fields[1]), int(fields[2]), int(fields[3]), int(fields[19]), fields[0], cmdline)


def processes():
    """{pid: Proc} of every process."""
    table = {}
    for name in os.listdir("/proc"):
        if name.isdigit():
            proc = read_proc(int(name))
            if proc is not None:
                table[proc.pid] = proc
    return table


def environ(pid):
    """The environment ``pid`` was started with, as a set of "NAME=VALUE" strings (empty if unreadable)."""
    try:
        with open("/proc/%d/environ" % pid, "rb") as fh:
            return set(fh.read().decode("utf-8", "replace").split("\0")) - {""}
    except OSError:
        return set()


def descendants(pid, table=None):
    """Pids of every descendant of ``pid`` (by parent pid, as the table is now)."""
    table = processes() if table is None else table
    children = collections.defaultdict(list)
    for p in table.values():
        children[p.ppid].append(p.pid)
    found, todo = set(), [pid]
    while todo:
        for child in children.get(todo.pop(), ()):
            if child not in found:
                found.add(child)
                todo.append(child)
    return found


def _protected(table):
    """Pids never to signal: this process, its ancestors, pid 1 and kernel threads' parent (pid 2)."""
    pids, pid = {1, 2}, os.getpid()
    while pid and pid not in pids:
        pids.add(pid)
        pid = table[pid].ppid if pid in table else 0
    return pids


def find(marker=None, env=None, under=None, table=None):
    """Processes (not this one nor its ancestors) whose command line contains ``marker``, whose initial
    environment holds the entry ``env`` ("NAME=VALUE") and that descend from pid ``under``; None = any."""
    if marker is None and env is None and under is None:
        raise ValueError("find() needs marker, env or under")
    table = processes() if table is None else table
    protected = _protected(table)
    below = descendants(under, table) if under is not None else None
    return [p for pid, p in sorted(table.items())
            if pid not in protected and p.state != "Z"
            and (marker is None or marker in p.cmdline)
            and (below is None or pid in below)
            and (env is None or env in environ(pid))]


class KillReport:
    """What ``kill`` did: ``matched`` (the roots), ``killed`` (every process signalled), ``survivors``
    (still alive after the wait: should be empty), ``seconds``. ``str()`` lists them for messages."""

    def __init__(self, matched, killed, survivors, seconds):
        self.matched, self.killed, self.survivors, self.seconds = matched, killed, survivors, seconds

    def __str__(self):
        lines = ["killed %d process(es) from %d match(es) in %.3f s; %d survivor(s)"
                 % (len(self.killed), len(self.matched), self.seconds, len(self.survivors))]
        for title, procs in (("killed", self.killed), ("survivor", self.survivors)):
            for p in procs:
                lines.append("  %s pid=%d ppid=%d pgid=%d sid=%d %s" % (title, p.pid, p.ppid, p.pgid, p.sid, p.cmdline[:200]))
        return "\n".join(lines)

    __repr__ = __str__


def _signal(proc, sig):
    """Send ``sig`` to ``proc`` unless its pid now names another process; False when it is gone."""
    current = read_proc(proc.pid)
    if current is None or current.starttime != proc.starttime:
        return False
    try:
        os.kill(proc.pid, sig)
        return True
    except ProcessLookupError:
        return False


SCOPES = ("tree", "group", "session")


def kill(roots, timeout=10.0, scope="session"):
    """SIGKILL ``roots`` (Procs or pids) and, by ``scope``: "tree" their descendants; "group" also the
    members of their process groups; "session" (default) also the members of their sessions (see the
    module text). Waits up to ``timeout`` seconds for all of them to be gone. Returns a KillReport.

    Ansible's worker process (forked by ansible-playbook) calls setsid() and runs the module in its
    session: scope "session" kills the worker too (ansible-playbook then reports "A worker was found in
    a dead state"); scope "tree" kills the module and its children only (Ansible reports a module
    failure and goes on)."""
    if scope not in SCOPES:
        raise ValueError("scope is one of %s, not %r" % (", ".join(SCOPES), scope))
    start = time.monotonic()
    table = processes()
    me = table.get(os.getpid())
    mine = {0, 1} | ({me.pgid, me.sid} if me else set())
    protected = _protected(table)
    roots = [r if isinstance(r, Proc) else table.get(r) for r in roots]
    roots = [r for r in roots if r is not None and r.pid not in protected]
    frozen = {}
    for _ in range(50):   # freeze until the set of processes to kill stops growing
        table = processes()
        targets = {r.pid for r in roots if r.pid in table}
        groups = set()
        while True:
            before = len(targets)
            for pid in list(targets):
                targets |= descendants(pid, table)
                ids = {"tree": (), "group": (table[pid].pgid,), "session": (table[pid].pgid, table[pid].sid)}[scope]
                groups |= {g for g in ids if g not in mine}
            targets |= {p.pid for p in table.values() if p.pgid in groups or p.sid in groups}
            targets -= protected
            if len(targets) == before:
                break
        new = [table[pid] for pid in sorted(targets - set(frozen)) if table[pid].state != "Z"]
        if not new:
            break
        for p in new:
            if _signal(p, signal.SIGSTOP):
                frozen[p.pid] = p
    killed = [p for p in frozen.values() if _signal(p, signal.SIGKILL)]

    def alive():
        out = []
        for p in frozen.values():
            now = read_proc(p.pid)
            if now is not None and now.starttime == p.starttime and now.state != "Z":
                out.append(p)
        return out
    deadline = time.monotonic() + timeout
    survivors = alive()
    while survivors and time.monotonic() < deadline:
        time.sleep(TICK / 5)
        survivors = alive()
    return KillReport(roots, sorted(killed), survivors, time.monotonic() - start)


def kill_matching(marker=None, env=None, under=None, timeout=10.0, scope="session"):
    """``kill(find(marker, env, under), timeout, scope)``. A command-line marker alone is refused (it may
    match other test runs on this machine): give ``env`` ("NAME=VALUE" set for this run) or ``under`` (a pid)."""
    if env is None and under is None:
        raise ValueError("a command-line marker alone may match other runs on this machine: "
                         "give env= (NAME=VALUE set for this run) or under= (the pid of the run)")
    return kill(find(marker, env, under), timeout, scope)
