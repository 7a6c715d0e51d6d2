"""Progress lines of image_upload in playbooks (its action plugin follows the module's progress file): in
ansible-playbook's output, with module_defaults and the action group, delegate_to localhost from a remote host, check
mode, progress_interval 0, async left alone, and as ansible-runner events (what AWX shows)."""

import json
import os
import re
import sys

import ansible_runner
import pytest

from ansible_helpers import make_file
from cli_helpers import PROFILES, slow_down

MiB = 1024 * 1024
LINE = r"^localhost: (?:\S.*?: )?(\d+\.\d)% \((.+?) of (.+?)\)"




@pytest.fixture
def progress_dir(tmp_path, ansible):
    folder = tmp_path / "progress"
    ansible.extra_env["IMAGESTORE_PROGRESS_DIR"] = str(folder)
    return folder


def slow_upload(profile, store, tmp_path, dest, size=6 * MiB, **extra):
    src = str(tmp_path / ("%s.img" % dest))
    digest = make_file(src, size, seed=len(dest))
    slow_down(store, profile.name, 2500 if profile.name == "vsphere" else 300)
    args = profile.args(store, src, dest, chunk_size="512KiB", parallel=2, **extra)
    return args, digest


def test_progress_lines_while_the_upload_runs(profile, store, tmp_path, ansible, progress_dir):
    args, digest = slow_upload(profile, store, tmp_path, "lines", progress_interval=1)
    result, run = ansible.module("image_upload", args)
    assert result["changed"] and not result.get("failed"), run.output[-3000:]
    assert profile.stored_sha256(store, "lines", result) == digest
    assert list(progress_dir.iterdir()) == []              # the action plugin removes its progress file
    percents = [float(m.group(1)) for m in re.finditer(LINE, run.output, re.M)]
    assert len(percents) >= 2, run.output[-3000:]
    assert percents == sorted(percents) and all(0 <= p <= 100 for p in percents) and percents[0] < 100
    assert re.search(r"^localhost: .*% \(.*\) at \d+\.\d (KiB|MiB)/s, \d+s left", run.output, re.M), run.output[-3000:]


def test_no_lines_with_progress_interval_0_nor_for_a_short_upload(profile, store, tmp_path, ansible, progress_dir):
    args, _ = slow_upload(profile, store, tmp_path, "quiet", progress_interval=0)
    result, run = ansible.module("image_upload", args)
    assert result["changed"] and not re.search(r"^localhost: ", run.output, re.M), run.output[-3000:]
    src = str(tmp_path / "short.img")
    make_file(src, 1000)
    result, run = ansible.module("image_upload", profile.args(store, src, "short"))     # default interval: 30 s
    assert result["changed"] and not re.search(r"^localhost: ", run.output, re.M)
    assert not progress_dir.exists() or list(progress_dir.iterdir()) == []


def test_module_defaults_check_mode_and_delegation(tmp_path, ansible, progress_dir):
    profile = PROFILES["servicefabric"]
    store = profile.start(tmp_path)
    try:
        args, digest = slow_upload(profile, store, tmp_path, "defaults")
        connection = dict((k, args.pop(k)) for k in ("provider", "endpoint"))
        task = {"name": "upload", "imagestore.upload.image_upload": dict(args)}
        inventory = tmp_path / "hosts"        # a remote host (never contacted): its tasks are delegated to localhost
        inventory.write_text("store1 ansible_connection=ssh ansible_host=192.0.2.1\n"
                             "localhost ansible_connection=local ansible_python_interpreter=%s\n" % sys.executable)
        play = [{"hosts": "store1", "gather_facts": False,
                 "module_defaults": {"group/imagestore.upload.upload": connection,
                                     "imagestore.upload.image_upload": {"progress_interval": 1}},
                 "tasks": [dict(task, check_mode=True, register="checked", delegate_to="localhost"),
                           dict(task, register="uploaded", delegate_to="localhost"),
                           {"ansible.builtin.copy": {"content": "{{ [checked, uploaded] | to_json }}",
                                                     "dest": str(tmp_path / "out.json")}, "delegate_to": "localhost"}]}]
        playbook = tmp_path / "play.yml"
        playbook.write_text(json.dumps(play))
        import subprocess
        proc = subprocess.run([os.path.join(os.path.dirname(sys.executable), "ansible-playbook"), "-i", str(inventory), str(playbook)],
                              stdout=subprocess.PIPE, stderr=subprocess.STDOUT, env=ansible.env(), cwd=str(tmp_path))
        output = proc.stdout.decode()
        assert proc.returncode == 0, output[-3000:]
        checked, uploaded = json.loads((tmp_path / "out.json").read_text())
        assert checked["changed"] and checked["would_send"] == 6 * MiB and uploaded["bytes_sent"] == 6 * MiB
        assert profile.stored_sha256(store, "defaults") == digest
        assert len(re.findall(r"^store1: path contract/defaults/disk.img: \d+\.\d% ", output, re.M)) >= 2, output[-3000:]
    finally:
        store.stop()


def test_async_is_left_to_run_and_returns_its_progress_file(tmp_path, ansible, progress_dir):
    profile = PROFILES["servicefabric"]
    store = profile.start(tmp_path)
    try:
        args, _ = slow_upload(profile, store, tmp_path, "async")
        run = ansible.run([{"imagestore.upload.image_upload": args, "async": 600, "poll": 0},
                           {"ansible.builtin.async_status": {"jid": "{{ r0.ansible_job_id }}"},
                            "until": "r1.finished", "retries": 120, "delay": 1}])
        started, finished = run.results
        assert started["started"] and not started["finished"] and started["progress_file"].startswith(str(progress_dir))
        assert finished["finished"] and finished["changed"] and finished["bytes_sent"] == 6 * MiB
        assert json.load(open(started["progress_file"]))["state"] == "done"
    finally:
        store.stop()


def test_ansible_runner_events_carry_the_lines(tmp_path, collections_path):
    profile = PROFILES["servicefabric"]
    store = profile.start(tmp_path)
    try:
        args, digest = slow_upload(profile, store, tmp_path, "runner", progress_interval=1)
        private = tmp_path / "runner"
        (private / "project").mkdir(parents=True)
        play = [{"hosts": "localhost", "gather_facts": False, "connection": "local",
                 "vars": {"ansible_python_interpreter": sys.executable},
                 "tasks": [{"name": "upload", "imagestore.upload.image_upload": args}]}]
        (private / "project" / "play.yml").write_text(json.dumps(play))
        env = {"ANSIBLE_COLLECTIONS_PATH": collections_path, "ANSIBLE_COLLECTIONS_SCAN_SYS_PATH": "false",
               "IMAGESTORE_DIGEST_CACHE": str(tmp_path / "digests.json"), "IMAGESTORE_PROGRESS_DIR": str(tmp_path / "pd")}
        r = ansible_runner.run(private_data_dir=str(private), playbook="play.yml", envvars=env, quiet=True)
        assert r.status == "successful", r.stdout.read()
        lines = [e["stdout"] for e in r.events if re.match(r"localhost: path contract/runner/disk.img: \d+\.\d% ", e.get("stdout", ""))]
        assert len(lines) >= 2, [e.get("stdout") for e in r.events]
        assert profile.stored_sha256(store, "runner") == digest
    finally:
        store.stop()
