"""Running imagestore-upload (the command line) against a store of the contract profiles, with or without a terminal."""

import fcntl
import importlib.util
import json
import os
import pty
import select
import struct
import subprocess
import sys
import termios
import time


ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
def load_profiles():
    spec = importlib.util.spec_from_file_location("contract_profiles", os.path.join(ROOT, "tests", "contract", "profiles.py"))
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.PROVIDER_PROFILES


PROFILES = load_profiles()


def command():
    script = os.path.join(os.path.dirname(sys.executable), "imagestore-upload")
    return [script] if os.path.exists(script) else [sys.executable, "-m", "imagestore_cli"]


def cli_args(module_args, password_file=None):
    """Module arguments as command-line flags; the password goes to a file (never on the command line)."""
    argv = []
    for key, value in module_args.items():
        if key == "password":
            assert password_file, "a password needs password_file"
            with open(password_file, "w") as fh:
                fh.write(value + "\n")
            argv += ["--password-file", password_file]
            continue
        name = "--" + key.replace("_", "-")
        if isinstance(value, bool):
            argv.append(name if value else "--no-" + key.replace("_", "-"))
        else:
            argv += [name, str(value)]
    return argv


def environment(tmp_path):
    env = dict(os.environ)
    for name in list(env):
        if name.startswith("IMAGESTORE_"):
            del env[name]
    env["IMAGESTORE_DIGEST_CACHE"] = str(tmp_path / "digests.json")
    env["PYTHONPATH"] = os.pathsep.join(p for p in (ROOT, env.get("PYTHONPATH")) if p)
    return env


class Result:
    def __init__(self, rc, stdout, stderr):
        self.rc = rc
        self.stdout = stdout
        self.stderr = stderr

    @property
    def json(self):
        return json.loads(self.stdout)


def run(argv, env, timeout=120):
    proc = subprocess.run(command() + argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env, timeout=timeout,
                          stdin=subprocess.DEVNULL)
    return Result(proc.returncode, proc.stdout.decode("utf-8", "replace"), proc.stderr.decode("utf-8", "replace"))


def start(argv, env):
    return subprocess.Popen(command() + argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env,
                            stdin=subprocess.DEVNULL)


def finish(proc, timeout=120):
    out, err = proc.communicate(timeout=timeout)
    return Result(proc.returncode, out.decode("utf-8", "replace"), err.decode("utf-8", "replace"))


def run_on_pty(argv, env, timeout=120, columns=None):
    """Run with stdin, stdout and stderr on a pseudo-terminal (sized ``columns`` wide, or left unsized); return
    (exit code, everything the terminal received)."""
    master, slave = pty.openpty()
    if columns:
        fcntl.ioctl(slave, termios.TIOCSWINSZ, struct.pack("HHHH", 30, columns, 0, 0))
    proc = subprocess.Popen(command() + argv, stdin=slave, stdout=slave, stderr=slave, env=env, close_fds=True)
    os.close(slave)
    chunks = []
    deadline = time.monotonic() + timeout
    try:
        while time.monotonic() < deadline:
            ready, _, _ = select.select([master], [], [], 0.5)
            if ready:
                try:
                    data = os.read(master, 65536)
                except OSError:          # EIO: the child closed the terminal
                    break
                if not data:
                    break
                chunks.append(data)
            elif proc.poll() is not None:
                break
        rc = proc.wait(timeout=max(1, deadline - time.monotonic()))
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        os.close(master)
    return rc, b"".join(chunks).decode("utf-8", "replace")


def slow_down(store, provider, ms, count=0):
    """Delay each request that carries bytes by ``ms`` (the upload then takes long enough to watch)."""
    profile = PROFILES[provider]
    profile.inject(store, {"operation": profile.operations["data"], "action": "delay", "ms": ms, "count": count})


def clear_faults(store):
    store.profile.clear_faults(store)
