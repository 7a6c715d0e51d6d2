"""The progress meter, its words, the progress file a module run keeps, and the follower that prints it."""

import json
import os

from ansible_collections.imagestore.upload.plugins.module_utils import _progress
from ansible_collections.imagestore.upload.plugins.module_utils._progress import (
    Meter, ProgressFile, describe, file_reporter, human_bytes, human_duration, read_record,
)
from ansible_collections.imagestore.upload.plugins.plugin_utils._follow import Follower, progress_line

MiB = 1024 * 1024


class Clock:
    def __init__(self, now=100.0):
        self.now = now

    def __call__(self):
        return self.now


def test_words():
    assert [human_bytes(n) for n in (0, 512, 1536, 440 * MiB, 3 * 1024 * MiB)] == \
        ["0 B", "512 B", "1.5 KiB", "440.0 MiB", "3.00 GiB"]
    assert [human_duration(s) for s in (7, 65, 7380)] == ["7s", "1m 05s", "2h 03m"]


def test_meter_rate_eta_and_held_bytes():
    clock = Clock()
    meter = Meter(clock=clock, window=20)
    meter.start(100 * MiB)
    meter.held(40 * MiB)                  # a resume: done, not sent by this run
    assert meter.snapshot()["rate"] is None and meter.snapshot()["percent"] == 40.0
    for dummy in range(10):
        clock.now += 1
        meter.advance(2 * MiB)
    snap = meter.snapshot()
    assert snap["percent"] == 60.0 and snap["rate"] == 2 * MiB and snap["eta"] == 20.0
    meter.advance(-MiB)                    # a failed request takes back what it had counted
    assert meter.snapshot()["done"] == 59 * MiB


def test_meter_rate_follows_the_last_seconds():
    clock = Clock()
    meter = Meter(clock=clock, window=10)
    meter.start(1000 * MiB)
    for dummy in range(30):
        clock.now += 1
        meter.advance(10 * MiB)
    for dummy in range(30):
        clock.now += 1
        meter.advance(1 * MiB)
    assert abs(meter.snapshot()["rate"] - MiB) < 0.2 * MiB


def test_describe():
    record = {"state": "running", "phase": "uploading to x", "percent": 42.04, "done": 420 * MiB, "size": 1000 * MiB,
              "rate": 85 * MiB, "eta": 7, "started": 0}
    assert describe(record, 10) == "42.0% (420.0 MiB of 1000.0 MiB) at 85.0 MiB/s, 7s left"
    assert describe(dict(record, phase="committing", percent=100.0, eta=0), 10).endswith(", committing")
    assert describe({"state": "running", "phase": "computing the digests of /d", "percent": None, "started": 0}, 65) == \
        "computing the digests of /d (for 1m 05s)"
    assert describe({"state": "done", "result": {"msg": "uploaded 5 bytes"}}) == "done: uploaded 5 bytes"
    line = progress_line("web1", dict(record, destination={"path": "images/a.vhd"}), 10)
    assert line.startswith("web1: path images/a.vhd: 42.0% ")


def test_progress_file_is_replaced_atomically_at_most_once_a_second(tmp_path):
    path = str(tmp_path / "p.json")
    clock = Clock()
    reporter = ProgressFile(path, "servicefabric", "http://h:1", {"path": "a"}, secrets=["pw1"], clock=clock,
                            wall=lambda: 1000.0)
    assert read_record(path)["phase"] == "starting" and read_record(path)["pid"] == os.getpid()
    reporter.phase("uploading to a")
    reporter.start(10 * MiB)
    reporter.advance(MiB)
    assert read_record(path)["done"] == 0          # written less than a second ago: not again
    clock.now += 1.5
    reporter.advance(MiB)
    record = read_record(path)
    assert record["done"] == 2 * MiB and record["percent"] == 20.0 and record["state"] == "running"
    reporter.finish({"changed": True, "msg": "uploaded with pw1", "destination": {"path": "a"}, "diff": {"x": 1}})
    record = read_record(path)
    assert record["state"] == "done" and record["percent"] == 100.0 and record["result"]["msg"] == "uploaded with ********"
    assert "diff" not in record["result"]
    assert os.listdir(str(tmp_path)) == ["p.json"]                  # no temporary file left


def test_failure_and_an_unwritable_place(tmp_path):
    path = str(tmp_path / "p.json")
    reporter = ProgressFile(path, "zstack", "http://h", {})
    reporter.finish({"failed": True, "msg": "the store said no"})
    assert read_record(path)["state"] == "failed" and read_record(path)["result"]["msg"] == "the store said no"
    broken = ProgressFile(str(tmp_path / "missing" / "p.json"), "zstack", "http://h", {})
    broken.phase("x")
    broken.finish({"changed": False, "msg": "m"})      # never raises
    assert broken.broken


def test_file_reporter_only_when_the_environment_names_a_file(tmp_path, monkeypatch):
    class Cls:
        required = ("library", "item")
    monkeypatch.delenv(_progress.PROGRESS_FILE_ENV, raising=False)
    assert file_reporter({"provider": "vsphere"}, Cls) is None
    path = str(tmp_path / "p.json")
    monkeypatch.setenv(_progress.PROGRESS_FILE_ENV, path)
    file_reporter({"provider": "vsphere", "endpoint": "https://vc", "library": "images", "item": "x", "password": "p"}, Cls)
    record = json.load(open(path))
    assert record["destination"] == {"library": "images", "item": "x"} and record["endpoint"] == "https://vc"


def test_follower_lines(tmp_path):
    path = str(tmp_path / "p.json")
    said = []
    follower = Follower(path, 30, said.append, "h1", clock=lambda: 112.0)
    follower.started = 100.0
    follower.tick()
    assert said == ["h1: starting (for 12s)"]
    reporter = ProgressFile(path, "servicefabric", "http://h", {"path": "a"})
    reporter.start(4 * MiB)
    follower.tick()
    assert said[-1].startswith("h1: path a: 0.0% (0 B of 4.0 MiB)")
    reporter.finish({"changed": True, "msg": "done"})
    follower.tick()                                     # the outcome is the task's to show
    assert len(said) == 2


def test_a_state_that_came_too_soon_is_written_a_second_later(tmp_path):
    """A whole file sent in one slow request: its bytes are read at once, then nothing happens for a while."""
    import time
    path = str(tmp_path / "p.json")
    reporter = ProgressFile(path, "vsphere", "https://vc", {})
    reporter.start(8 * MiB)
    reporter.advance(4 * MiB)                              # within a second of the last write: not written now
    assert read_record(path)["done"] == 0
    deadline = time.monotonic() + 5
    while read_record(path)["done"] != 4 * MiB:
        assert time.monotonic() < deadline, "never written"
        time.sleep(0.05)
    reporter.finish({"changed": True, "msg": "m"})
    assert read_record(path)["state"] == "done"
