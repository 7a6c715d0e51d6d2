"""imagestore-upload end to end against the emulator, for each provider: upload and read back, the re-run that changes
nothing, --json, exit codes (bad input 2, timeout and Ctrl-C 3 and their resume, verification 4), the progress bar
on a pseudo-terminal and the periodic lines without one."""

import re
import signal
import time

import pytest

from ansible_helpers import make_file
from cli_helpers import (
    PROFILES, clear_faults, cli_args, environment, finish, run, run_on_pty, slow_down, start,
)

MiB = 1024 * 1024
PROVIDERS = sorted(PROFILES)




@pytest.fixture
def env(tmp_path):
    return environment(tmp_path)


def upload_argv(profile, store, tmp_path, src, dest, **extra):
    return ["upload"] + cli_args(profile.args(store, src, dest, **extra), str(tmp_path / "password"))


def test_upload_then_rerun_changes_nothing(profile, store, tmp_path, env):
    src = str(tmp_path / "disk.img")
    digest = make_file(src, 3 * MiB + 11, seed=1)
    argv = upload_argv(profile, store, tmp_path, src, "cli", chunk_size="1MiB")
    first = run(argv, env)
    assert first.rc == 0, first.stderr
    assert profile.stored_sha256(store, "cli") == digest
    assert re.search(r"\b%d bytes\b" % (3 * MiB + 11), first.stdout), first.stdout
    again = run(argv + ["--json"], env)
    assert again.rc == 0, again.stderr
    result = again.json
    assert result["changed"] is False and result["bytes_sent"] == 0 and result["destination"]
    assert "Traceback" not in first.stderr + again.stderr


def test_json_is_the_module_result(profile, store, tmp_path, env):
    src = str(tmp_path / "disk.img")
    make_file(src, MiB, seed=2)
    done = run(upload_argv(profile, store, tmp_path, src, "json") + ["--json", "--quiet"], env)
    assert done.rc == 0 and done.stderr == ""
    result = done.json
    assert result["changed"] is True and result["size"] == MiB and result["bytes_sent"] == MiB
    assert isinstance(result["msg"], str) and isinstance(result["elapsed"], float) and result["destination"]
    check = run(upload_argv(profile, store, tmp_path, src, "json-check") + ["--json", "--check"], env)
    assert check.rc == 0 and check.json["changed"] is True and profile.stored_sha256(store, "json-check") is None


@pytest.mark.parametrize("extra, message", [
    (dict(chunk_size="1"), "chunk_size 1 is out of range"),
    (dict(parallel=0), "parallel must be between 1 and 64"),
])
def test_bad_input_exits_2(profile, store, tmp_path, env, extra, message):
    src = str(tmp_path / "disk.img")
    make_file(src, 1000)
    bad = run(upload_argv(profile, store, tmp_path, src, "bad", **extra) + ["--json"], env)
    assert bad.rc == 2 and message in bad.stderr and bad.json["failed"] is True and message in bad.json["msg"]


def test_a_missing_source_exits_2(profile, store, tmp_path, env):
    missing = run(upload_argv(profile, store, tmp_path, str(tmp_path / "nothing.img"), "missing"), env)
    assert missing.rc == 2 and "src: %s does not exist" % (tmp_path / "nothing.img") in missing.stderr


def test_bad_usage_exits_2(profile, store, tmp_path, env):
    foreign = {"servicefabric": ["--item", "x"], "vsphere": ["--path", "x"], "zstack": ["--library", "x"]}[profile.name]
    src = str(tmp_path / "disk.img")
    make_file(src, 1000)
    wrong = run(upload_argv(profile, store, tmp_path, src, "foreign") + foreign, env)
    assert wrong.rc == 2 and "belongs to provider" in wrong.stderr
    in_argv = run(upload_argv(profile, store, tmp_path, src, "pw") + ["--password", "secret-on-the-command-line"], env)
    assert in_argv.rc == 2 and "never taken on the command line" in in_argv.stderr
    assert "secret-on-the-command-line" not in in_argv.stderr + in_argv.stdout
    unknown = run(["upload", "--no-such-option"], env)
    assert unknown.rc == 2 and "unrecognized arguments: --no-such-option" in unknown.stderr


def test_a_timeout_exits_3_and_the_rerun_resumes(profile, store, tmp_path, env):
    src = str(tmp_path / "disk.img")
    digest = make_file(src, 4 * MiB, seed=3)
    argv = upload_argv(profile, store, tmp_path, src, "slow", chunk_size="256KiB", parallel=1)
    slow_down(store, profile.name, 6000 if profile.name == "vsphere" else 1500)    # vSphere: one request for the file
    timed_out = run(argv + ["--timeout", "3"], env)
    assert timed_out.rc == 3 and "timeout of 3 seconds" in timed_out.stderr, (timed_out.rc, timed_out.stderr)
    assert "Traceback" not in timed_out.stderr
    clear_faults(store)
    again = run(argv + ["--json"], env)
    assert again.rc == 0, again.stderr
    assert again.json["changed"] is True and profile.stored_sha256(store, "slow") == digest
    assert again.json["resumed"] is True or profile.name == "vsphere"


def test_ctrl_c_exits_3_keeps_what_was_sent_and_the_rerun_resumes(profile, store, tmp_path, env):
    src = str(tmp_path / "disk.img")
    size = 6 * MiB
    digest = make_file(src, size, seed=4)
    argv = upload_argv(profile, store, tmp_path, src, "ctrlc", chunk_size="512KiB", parallel=2)
    slow_down(store, profile.name, 20000 if profile.name == "vsphere" else 400)     # vSphere: one request for the file
    proc = start(argv + ["--progress-interval", "1"], env)
    deadline = time.monotonic() + 60
    while profile.received(store) < MiB and (profile.name != "vsphere" or time.monotonic() < deadline - 57):
        assert time.monotonic() < deadline and proc.poll() is None, "the upload did not get going"
        time.sleep(0.05)
    proc.send_signal(signal.SIGINT)
    stopped = finish(proc)
    assert stopped.rc == 3, (stopped.rc, stopped.stderr)
    if profile.name == "vsphere":          # a cut whole-file transfer is worth nothing: the session goes (the policy)
        assert "interrupted (Ctrl-C)" in stopped.stderr and "was removed with what it had received" in stopped.stderr, \
            stopped.stderr
    else:
        assert "interrupted" in stopped.stderr and ("run the same command again" in stopped.stderr or
                                                    "run again to resume it" in stopped.stderr), stopped.stderr
    assert "Traceback" not in stopped.stderr
    clear_faults(store)
    again = run(argv + ["--json"], env)
    assert again.rc == 0, again.stderr
    assert profile.stored_sha256(store, "ctrlc") == digest
    if profile.name != "vsphere":              # a whole file is sent again: nothing of it is kept
        assert again.json["resumed"] is True and again.json["bytes_sent"] < size


def test_verification_failure_exits_4(profile, store, tmp_path, env):
    src = str(tmp_path / "disk.img")
    make_file(src, MiB, seed=5)
    wrong = "sha256:" + "0" * 64
    failed = run(upload_argv(profile, store, tmp_path, src, "verify", checksum=wrong, chunk_size="256KiB"), env)
    assert failed.rc == 4 and "not the declared" in failed.stderr, (failed.rc, failed.stderr)
    assert profile.stored_sha256(store, "verify") is None


@pytest.mark.parametrize("columns", [100, None], ids=["sized", "unsized"])
def test_progress_bar_on_a_terminal(profile, store, tmp_path, env, columns):
    src = str(tmp_path / "disk.img")
    digest = make_file(src, 4 * MiB, seed=6)
    slow_down(store, profile.name, 2500 if profile.name == "vsphere" else 300)     # vSphere: one request for the file
    rc, screen = run_on_pty(upload_argv(profile, store, tmp_path, src, "bar", chunk_size="256KiB", parallel=2), env,
                            columns=columns)
    assert rc == 0, screen[-2000:]
    frames = [f for f in re.split(r"[\r\n]", screen) if "%" in f and "|" in f]
    assert len(frames) >= 3, screen[-2000:]
    assert any(re.search(r"\d+\.\d KiB/s|\d+\.\d MiB/s", f) and re.search(r"\d+s left", f) for f in frames), frames
    percents = [float(m.group(1)) for m in (re.search(r"(\d+\.\d)%", f) for f in frames) if m]
    assert percents[-1] == 100.0 and all(0 <= p <= 100 for p in percents) and min(percents) < 100
    assert "4.0 MiB of 4.0 MiB" in screen and profile.stored_sha256(store, "bar") == digest
    assert re.search(r"\b4194304 bytes\b", screen)


def test_periodic_lines_without_a_terminal(profile, store, tmp_path, env):
    src = str(tmp_path / "disk.img")
    make_file(src, 4 * MiB, seed=7)
    slow_down(store, profile.name, 2500 if profile.name == "vsphere" else 300)     # vSphere: one request for the file
    done = run(upload_argv(profile, store, tmp_path, src, "lines", chunk_size="256KiB", parallel=2) +
               ["--progress-interval", "1"], env)
    assert done.rc == 0, done.stderr
    lines = re.findall(r"^imagestore-upload: (\d+\.\d)% \((.+?) of 4\.0 MiB\)(.*)$", done.stderr, re.M)
    assert len(lines) >= 2, done.stderr
    percents = [float(p) for p, _, _ in lines]
    assert percents == sorted(percents) and 0 <= percents[0] and percents[-1] <= 100
    assert any(re.search(r" at \d+\.\d (KiB|MiB)/s, \d+s left", rest) for _, _, rest in lines), lines
    assert "\x1b" not in done.stderr and "\r" not in done.stderr         # plain lines for logs
    assert "imagestore-upload: committing" in done.stderr or profile.name == "vsphere"
