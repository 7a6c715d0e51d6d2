"""Build and run govmomi's vCenter simulator (vcsim) as a real peer for the vSphere tests.

The peer is ``main.go`` beside this file, built in GOPATH mode against Debian's
``golang-github-vmware-govmomi-dev`` (govmomi 0.24.2 under ``/usr/share/gocode``) with ``golang-go``::

    binary = build_vcsim(out_dir)          # None when Go or the sources are missing: see unavailable_reason()
    process, info = start_vcsim(binary)    # info: url, scheme, datastore_id, datastore_name, username, password, pid
    ...
    stop_vcsim(process)

Binaries are cached in ``out_dir`` by the SHA-256 of ``main.go``; the Go build cache lives there too
(``GOCACHE``), so a missing or read-only HOME does not matter.
"""

import hashlib
import json
import os
import select
import shutil
import subprocess
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
MAIN_GO = os.path.join(HERE, "main.go")
DEFAULT_GOPATH = "/usr/share/gocode"
GOVMOMI = "src/github.com/vmware/govmomi"
BUILD_TIMEOUT = 600


def _go():
    return shutil.which("go") or next((p for p in ("/usr/lib/go/bin/go", "/usr/local/go/bin/go") if os.access(p, os.X_OK)), None)


def unavailable_reason(gopath=DEFAULT_GOPATH):
    """Why vcsim cannot be built here (a sentence), or None when it can."""
    if _go() is None:
        return "the Go toolchain is not installed (apt-get install golang-go)"
    for package in ("simulator", "vapi/simulator"):
        if not os.path.isdir(os.path.join(gopath, GOVMOMI, package)):
            return "govmomi sources are missing under %s (apt-get install golang-github-vmware-govmomi-dev)" % os.path.join(gopath, GOVMOMI)
    return None


def build_env(out_dir, gopath=DEFAULT_GOPATH):
    """The environment of ``go build`` in GOPATH mode, with its build cache under ``out_dir``."""
    env = dict(os.environ)
    env.pop("GOFLAGS", None)          # e.g. -mod=mod is refused outside module mode
    env.update({
        "GOPATH": gopath,
        "GO111MODULE": "off",
        "CGO_ENABLED": "0",           # no C compiler needed; a static binary
        "GOCACHE": env.get("GOCACHE") or os.path.join(out_dir, "gocache"),
    })
    return env


def build_vcsim(out_dir, gopath=DEFAULT_GOPATH):
    """Return the path of a vcsim binary built from ``main.go`` (cached), or None when it cannot be built.

    Raises ``RuntimeError`` with the compiler's output when Go and the sources are there but the
    build fails.
    """
    if unavailable_reason(gopath) is not None:
        return None
    os.makedirs(out_dir, exist_ok=True)
    with open(MAIN_GO, "rb") as fh:
        digest = hashlib.sha256(fh.read()).hexdigest()[:16]
    binary = os.path.join(out_dir, "vcsim-peer-%s" % digest)
    if os.access(binary, os.X_OK):
        return binary
    tmp = tempfile.mkdtemp(prefix=".build-", dir=out_dir)   # go build will not overwrite a file it did not make
    try:
        output = os.path.join(tmp, "vcsim-peer")
        proc = subprocess.run([_go(), "build", "-o", output, MAIN_GO], cwd=HERE, env=build_env(out_dir, gopath),
                              stdout=subprocess.PIPE, stderr=subprocess.STDOUT, timeout=BUILD_TIMEOUT)
        if proc.returncode != 0:
            raise RuntimeError("go build of %s failed:\n%s" % (MAIN_GO, proc.stdout.decode("utf-8", "replace")))
        os.replace(output, binary)    # atomic: parallel builders each install a complete binary
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return binary


def start_vcsim(binary, timeout=30, log_path=None):
    """Start the simulator; return ``(process, info)`` once it has printed its start line.

    ``info`` is the start line: ``url`` (``https://127.0.0.1:PORT``, no ``/sdk``; the certificate is
    self-signed, so clients must not verify it), ``scheme``, ``datastore_id`` (the moref value a
    library's storage backing needs), ``datastore_name``, ``username``, ``password`` and ``pid``.
    vcsim's log goes to ``log_path`` (default: discarded).
    """
    log = open(log_path, "ab") if log_path else subprocess.DEVNULL
    try:
        process = subprocess.Popen([binary], stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=log)
    finally:
        if log_path:
            log.close()
    deadline = time.monotonic() + timeout
    line = b""
    while not line.endswith(b"\n"):
        left = deadline - time.monotonic()
        ready, _, _ = select.select([process.stdout], [], [], max(left, 0))
        if not ready:
            stop_vcsim(process)
            raise RuntimeError("vcsim printed no start line within %s s" % timeout)
        byte = os.read(process.stdout.fileno(), 1)
        if not byte:
            code = process.wait()
            raise RuntimeError("vcsim exited (%s) before printing its start line%s" % (
                code, "; see %s" % log_path if log_path else ""))
        line += byte
    return process, json.loads(line.decode("utf-8"))


def stop_vcsim(process, timeout=10):
    """Stop the simulator (closing its stdin, then SIGTERM, then SIGKILL) and reap it."""
    if process.poll() is None:
        try:
            process.stdin.close()
            process.wait(timeout / 2)
        except (OSError, subprocess.TimeoutExpired):
            process.terminate()
            try:
                process.wait(timeout / 2)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()
    for stream in (process.stdin, process.stdout):
        if stream and not stream.closed:
            stream.close()
    return process.returncode
