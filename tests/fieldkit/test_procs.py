"""procs kills whole process trees, sessions included, and nothing else; wait_until is bounded."""

import os
import subprocess
import sys
import time

import pytest

from fieldkit.procs import (find, kill, kill_matching, marker_env, new_run_marker, processes, read_proc,
                            wait_until)

# A child that starts a grandchild in a session of its own (as Ansible starts a module), then sleeps.
PARENT = """
import subprocess, sys, time
g = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(30)"], start_new_session=True)
print(g.pid, flush=True)
time.sleep(30)  # %s
"""
# A child that starts a grandchild in its own session and exits at once: the grandchild is re-parented.
DETACH = """
import subprocess, sys
g = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(30)"], start_new_session=True)
print(g.pid, flush=True)
"""


def alive(pid):
    p = read_proc(pid)
    return p is not None and p.state != "Z"


@pytest.fixture
def run():
    """A run marker; whatever still carries it after the test is killed."""
    marker = new_run_marker()
    yield marker
    kill_matching(env=marker, timeout=5)


def start(code, run, **kwargs):
    proc = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE,
                            env=dict(os.environ, **marker_env(run)), **kwargs)
    grandchild = int(proc.stdout.readline())   # the child prints at once; it sleeps 30 s at most anyway
    return proc, grandchild


def test_kill_by_marker_takes_the_setsid_grandchild_too(run):
    token = run.split("=")[1]
    child, grandchild = start(PARENT % token, run)
    try:
        assert read_proc(grandchild).sid == grandchild != read_proc(child.pid).sid
        report = kill_matching(marker=token, under=os.getpid())
        assert [p.pid for p in report.matched] == [child.pid]
        assert {p.pid for p in report.killed} == {child.pid, grandchild}, report
        assert report.survivors == [] and report.seconds < 5
        assert not alive(grandchild) and not alive(child.pid)
        assert child.wait(5) == -9
    finally:
        child.kill()
        child.wait(5)


def test_kill_by_environment_finds_a_re_parented_process(run):
    child, grandchild = start(DETACH, run)
    child.wait(10)
    wait_until(lambda: read_proc(grandchild).ppid != child.pid, 5)    # orphaned: no parent link left
    assert [p.pid for p in find(env=run)] == [grandchild]
    report = kill_matching(env=run)
    assert [p.pid for p in report.killed] == [grandchild] and not report.survivors, report
    wait_until(lambda: not alive(grandchild), 5)
    assert "killed 1 process(es) from 1 match(es)" in str(report)


# Like Ansible's worker: leaves our session (setsid), then runs a "module" that has a child of its own.
WORKER = """
import os, subprocess, sys, time
os.setsid()
m = subprocess.Popen([sys.executable, "-c", "import subprocess, time; subprocess.Popen(['sleep', '29']); time.sleep(30)  # mod" + "ule"])
print(m.pid, flush=True)
time.sleep(30)
"""


@pytest.mark.parametrize("scope", ["tree", "session"])
def test_scope_tree_spares_the_session_leader_scope_session_does_not(run, scope):
    worker, module = start(WORKER, run)
    try:
        wait_until(lambda: find(marker="sleep 29", env=run), 5)
        report = kill_matching(marker="# module", env=run, scope=scope)
        roles = {worker.pid: "worker", module: "module"}
        killed = sorted(roles.get(p.pid, p.cmdline) for p in report.killed)
        assert [p.pid for p in report.matched] == [module] and not report.survivors, report
        if scope == "tree":
            assert killed == ["module", "sleep 29"] and alive(worker.pid), report
        else:
            assert killed == ["module", "sleep 29", "worker"] and worker.wait(5) == -9, report
    finally:
        worker.kill()
        worker.wait(5)


def test_never_kills_its_own_process_group_or_session(run):
    bystander = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(30)"])   # our group, no marker
    target = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(30)"], env=dict(os.environ, **marker_env(run)))
    try:
        me = processes()[os.getpid()]
        assert read_proc(target.pid).pgid == me.pgid
        report = kill_matching(env=run)
        assert [p.pid for p in report.killed] == [target.pid], report
        assert target.wait(5) == -9
        assert alive(bystander.pid) and alive(os.getpid())
    finally:
        for p in (bystander, target):
            p.kill()
            p.wait(5)


def test_kill_of_nothing_and_refusals():
    assert kill([], timeout=1).killed == []
    assert kill([os.getpid(), os.getppid(), 1]).killed == []          # never itself, its ancestors, init
    with pytest.raises(ValueError, match="a command-line marker alone may match other runs"):
        kill_matching(marker="AnsiballZ_image_upload.py")
    with pytest.raises(ValueError, match="needs marker, env or under"):
        find()


def test_wait_until_returns_the_value_or_times_out_in_time():
    box = []
    assert wait_until(lambda: box.append(1) or len(box) >= 3 and box, 5, interval=0.01) == [1, 1, 1]
    start = time.monotonic()
    with pytest.raises(TimeoutError, match=r"the thing \(not true after 0.1 s; last value 0\)"):
        wait_until(lambda: 0, 0.1, message=lambda: "the thing")
    assert 0.1 <= time.monotonic() - start < 1


ANSIBLE_PLAYBOOK = os.path.join(os.path.dirname(sys.executable), "ansible-playbook")


@pytest.mark.skipif(not os.path.exists(ANSIBLE_PLAYBOOK), reason="ansible-playbook is not installed next to python")
def test_kill_the_ansible_module_process(tmp_path, run):
    play = tmp_path / "play.yml"
    play.write_text("- hosts: localhost\n  gather_facts: false\n  connection: local\n"
                    "  tasks:\n    - ansible.builtin.command: sleep 29.5\n")
    env = dict(os.environ, ANSIBLE_HOME=str(tmp_path / "home"), ANSIBLE_LOCAL_TEMP=str(tmp_path / "tmp"),
               ANSIBLE_NOCOLOR="1", ANSIBLE_LOCALHOST_WARNING="false", **marker_env(run))
    playbook = subprocess.Popen([ANSIBLE_PLAYBOOK, "-i", "localhost,", "-e", "ansible_python_interpreter=" + sys.executable,
                                 str(play)], stdout=subprocess.PIPE, stderr=subprocess.STDOUT, env=env)
    try:
        module = wait_until(lambda: find(marker="AnsiballZ_command.py", env=run), 60,
                            message="the command module did not start")
        wait_until(lambda: find(marker="sleep 29.5", env=run), 10)
        worker = read_proc(module[0].sid)         # Ansible's worker runs the module in a session of its own
        assert worker.ppid == playbook.pid and worker.sid != read_proc(playbook.pid).sid
        report = kill_matching(marker="AnsiballZ_command.py", env=run)
        assert not report.survivors, report
        assert {"sleep 29.5", "AnsiballZ_command.py", "ansible-playbook"} <= {
            word for p in report.killed for word in ("sleep 29.5", "AnsiballZ_command.py", "ansible-playbook")
            if word in p.cmdline}, report
        assert worker.pid in [p.pid for p in report.killed] and playbook.pid not in [p.pid for p in report.killed]
        assert find(marker="sleep 29.5", env=run) == [] and find(marker="AnsiballZ", env=run) == []
        out, _ = playbook.communicate(timeout=30)   # ansible-playbook itself lives on and reports the loss
        assert playbook.returncode == 1 and b"A worker was found in a dead state" in out, out.decode()[-3000:]
    finally:
        playbook.kill()
        playbook.wait(10)
