"""The documented way to run an upload in the background and follow it to its end (docs/progress.md), for each
provider, through ansible-playbook: image_upload with async and poll 0, then upload_progress. A finished upload reads
as finished (state done, its destination, its message), with percentages between 0 and 100 printed on the way; a
failed one reads as failed, with its message."""

import re

import pytest

from ansible_helpers import make_file
from cli_helpers import PROFILES, slow_down

MiB = 1024 * 1024




@pytest.fixture(autouse=True)
def progress_dir(tmp_path, ansible):
    ansible.extra_env["IMAGESTORE_PROGRESS_DIR"] = str(tmp_path / "progress")
    return tmp_path / "progress"


def recipe(args, **follow):
    """The recipe of docs/progress.md: start in the background, other work, then follow to the end."""
    return [
        {"name": "start the upload", "imagestore.upload.image_upload": args, "async": 600, "poll": 0},
        {"name": "other work", "ansible.builtin.debug": {"msg": "the upload runs in the background"}},
        {"name": "follow it", "imagestore.upload.upload_progress": dict({"job": "{{ r0 }}", "progress_interval": 1},
                                                                        **follow)},
    ]


def test_follow_an_async_upload_to_its_end(profile, store, tmp_path, ansible, progress_dir):
    src = str(tmp_path / "disk.img")
    digest = make_file(src, 8 * MiB, seed=9)
    slow_down(store, profile.name, 8000 if profile.name == "vsphere" else 1000)
    run = ansible.run(recipe(profile.args(store, src, "async", chunk_size="512KiB", parallel=2)))
    started, _, done = run.results
    assert started["started"] and not started["finished"], started
    assert done["state"] == "done" and done["finished"] and not done.get("failed"), done
    assert done["changed"] and done["bytes_sent"] == 8 * MiB and done["percent"] == 100.0
    assert done["destination"] and done["msg"] and done["ansible_job_id"] == started["ansible_job_id"]
    assert profile.stored_sha256(store, "async", done) == digest
    assert re.search(r"^localhost: done: %s$" % re.escape(done["msg"]), run.output, re.M), run.output[-3000:]
    assert list(progress_dir.iterdir()) == []                       # the follower removes the progress file
    percents = [float(p) for p in re.findall(r"^localhost: .*?(\d+\.\d)% \(", run.output, re.M)]
    assert percents and all(0 <= p <= 100 for p in percents) and any(p < 100 for p in percents), run.output[-3000:]
    assert done["progress"]["state"] == "done" and done["progress"]["destination"] == done["destination"]


def test_a_failed_upload_reads_as_failed_with_its_message(profile, store, tmp_path, ansible):
    src = str(tmp_path / "disk.img")
    make_file(src, 2 * MiB, seed=10)
    profile.inject(store, {"operation": profile.operations["data"], "action": "status", "status": 403, "count": 0})
    run = ansible.run(recipe(profile.args(store, src, "fails", chunk_size="512KiB")))
    started, _, done = run.results
    assert started["started"], started
    assert done["failed"] and done["state"] == "failed" and done["finished"], done
    assert "403" in done["msg"] or "forbidden" in done["msg"].lower() or "unauthorized" in done["msg"].lower(), done["msg"]
    assert re.search(r"^localhost: failed: ", run.output, re.M)
    assert profile.stored_sha256(store, "fails") is None


def test_a_look_without_waiting(tmp_path, ansible):
    profile = PROFILES["servicefabric"]
    store = profile.start(tmp_path)
    try:
        src = str(tmp_path / "disk.img")
        make_file(src, 8 * MiB, seed=11)
        slow_down(store, profile.name, 1200)
        tasks = recipe(profile.args(store, src, "look", chunk_size="512KiB", parallel=1), wait=False)
        tasks.append({"imagestore.upload.upload_progress": {"job": "{{ r0 }}", "timeout": 1, "progress_interval": 0}})
        tasks.append({"imagestore.upload.upload_progress": {"job": "{{ r0 }}", "progress_interval": 0}})
        tasks.append({"imagestore.upload.upload_progress": {"job": {"started": True}}})
        run = ansible.run(tasks)
        _, _, look, timed_out, done, bad = run.results
        assert look["state"] == "running" and not look["finished"] and not look.get("failed") and not look["changed"]
        assert timed_out["failed"] and timed_out["state"] == "running", timed_out
        assert timed_out["msg"].startswith("the upload still runs after 1 seconds (")
        assert done["state"] == "done" and done["bytes_sent"] == 8 * MiB
        assert bad["failed"] and "ansible_job_id" in bad["msg"]
    finally:
        store.stop()
