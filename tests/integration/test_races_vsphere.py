"""Concurrent vSphere runs: 8 uploads of different items at once, and 2 runs racing for one library item.

An item has at most one ACTIVE update session, and the protocol sends each file whole: two runs cannot share
the work as on Service Fabric. The loser either finds the item already holding the file (``changed: false``),
or uses the winner's session without replacing a file being transferred (``resumed: true``, the same
session); never a second session, nothing left ACTIVE, one complete.
"""

import time
import uuid
from concurrent.futures import ThreadPoolExecutor

import pytest
import requests

from tests.conftest import AnsibleRunner, make_file

MiB = 1024 * 1024


@pytest.fixture
def vsphere(imagestore_target):
    target = imagestore_target("vsphere")
    if not target.emulated:
        pytest.skip("needs the emulator: the assertions read its stats and sessions")
    return target


def stats(target):
    return target.emulator.stats("vsphere")


def sessions_of(target, item_id):
    return [s for s in target.emulator.control("GET", "vsphere/sessions").json() if s["library_item_id"] == item_id]


def item_named(target, name):
    (item,) = [i for i in target.emulator.control("GET", "vsphere/items").json() if i["name"] == name]
    return item


def run_all(jobs, tmp_path, collections_path):
    """Run each (label, module args) in its own ansible-playbook at the same time; return the results in order."""
    def run(job):
        label, module_args = job
        return AnsibleRunner(tmp_path / label, collections_path).module("image_upload", module_args)[0]

    with ThreadPoolExecutor(len(jobs)) as pool:
        return list(pool.map(run, jobs))


def test_eight_concurrent_uploads_of_different_items(vsphere, tmp_path, collections_path):
    prefix = "race8-%s" % uuid.uuid4().hex[:6]
    files = []
    for i in range(8):
        src = str(tmp_path / ("img-%d.iso" % i))
        files.append((src, make_file(src, 4 * MiB + i, seed=300 + i), "%s-%d" % (prefix, i)))
    before = stats(vsphere)
    results = run_all([("w%d" % i, vsphere.module_args(library="images", src=src, item=item))
                       for i, (src, _, item) in enumerate(files)], tmp_path, collections_path)
    for (src, digest, item), result in zip(files, results):
        assert result.get("changed") is True and not result.get("failed"), result
        assert result["sha256"] == digest and result["bytes_sent"] == result["size"] and result["resumed"] is False
        assert vsphere.emulator.stored_sha256("vsphere", result["item_id"], src.rsplit("/", 1)[1]) == digest
        assert sessions_of(vsphere, result["item_id"]) == []
    after = stats(vsphere)
    assert after["sessions_created"] - before["sessions_created"] == 8
    assert after["data_bytes"] - before["data_bytes"] == sum(4 * MiB + i for i in range(8))


def check_race(vsphere, results, item, digest, size, before):
    """Both runs succeeded; one session, one complete, nothing left; a run that changed nothing says why."""
    for result in results:
        assert not result.get("failed"), result
        assert result["sha256"] == digest
    item_model = item_named(vsphere, item)
    assert {r["item_id"] for r in results} == {item_model["id"]}
    assert sum(r["item_created"] for r in results) == 1
    assert item_model["content_version"] == "2", results     # created as 1, completed once
    assert vsphere.emulator.stored_sha256("vsphere", item_model["id"], "same.iso") == digest
    assert sessions_of(vsphere, item_model["id"]) == []        # the DONE session deleted, none ACTIVE
    moved = {k: v - before[k] for k, v in stats(vsphere).items()}
    assert moved["sessions_created"] == 1, moved               # never a second session for the item
    assert size <= moved["data_bytes"] <= 2 * size, moved       # a file is sent whole, at most once by each run
    changed = [r for r in results if r["changed"]]
    assert changed and sum(r["bytes_sent"] for r in results) >= size, results
    # the runs that changed something worked in the one session; when both did, one opened it and the other resumed it
    assert len({r["session_id"] for r in changed}) == 1 and None not in {r["session_id"] for r in changed}, results
    if len(changed) == 2:
        assert sorted(r["resumed"] for r in changed) == [False, True], results
    for loser in (r for r in results if not r["changed"]):     # found the file there, or the session completed under it
        assert loser["session_id"] in (None, changed[0]["session_id"]), results
        assert loser["msg"].startswith("another upload completed ") or " already holds same.iso " in loser["msg"], loser["msg"]


def test_two_runs_racing_for_one_item(vsphere, tmp_path, collections_path):
    src = str(tmp_path / "same.iso")
    size = 32 * MiB
    digest = make_file(src, size, seed=400)
    item = "race2-%s" % uuid.uuid4().hex[:6]
    before = stats(vsphere)
    results = run_all([("r%d" % i, vsphere.module_args(library="images", src=src, item=item)) for i in range(2)],
                      tmp_path, collections_path)
    check_race(vsphere, results, item, digest, size, before)


def test_the_second_run_arrives_while_the_first_ones_put_is_held(vsphere, tmp_path, collections_path):
    """The first run's data PUT is held 2.5 s by a delay rule; the second run starts then and finds the item's ACTIVE
    session with the file added but not yet transferring. Whichever PUT the server takes, the other run waits for it and
    uses it; both finish, with one session and one complete."""
    faults = vsphere.emulator.url + "/_emulator/faults"
    requests.delete(faults).raise_for_status()
    src = str(tmp_path / "same.iso")
    size = 32 * MiB
    digest = make_file(src, size, seed=401)
    item = "race-held-%s" % uuid.uuid4().hex[:6]
    before = stats(vsphere)
    requests.post(faults, json={"provider": "vsphere", "operation": "data_put", "action": "delay", "ms": 2500}).raise_for_status()
    try:
        with ThreadPoolExecutor(2) as pool:
            first = pool.submit(AnsibleRunner(tmp_path / "first", collections_path).module, "image_upload",
                                vsphere.module_args(library="images", src=src, item=item))
            deadline = time.monotonic() + 60
            while not requests.get(faults).json()["fired"]:
                assert time.monotonic() < deadline and not first.done(), "the first run's data PUT never came"
                time.sleep(0.02)
            second = pool.submit(AnsibleRunner(tmp_path / "second", collections_path).module, "image_upload",
                                 vsphere.module_args(library="images", src=src, item=item))
            results = [first.result()[0], second.result()[0]]
    finally:
        requests.delete(faults).raise_for_status()
    check_race(vsphere, results, item, digest, size, before)
