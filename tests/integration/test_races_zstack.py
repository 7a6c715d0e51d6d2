"""Concurrent ZStack runs: 8 different images at once, and 2 runs racing for one image (same name, same image_id)."""

from concurrent.futures import ThreadPoolExecutor

import pytest
import requests

from tests.conftest import AnsibleRunner, make_file
from tests.integration.zstack_api import Rest, clean_emulator

MiB = 1024 * 1024


@pytest.fixture
def emu(imagestore_emulator, zs):
    """The emulator, fault rules cleared before and after; the images named in ``emu.names`` removed afterwards."""
    with clean_emulator(imagestore_emulator, zs, "reads the emulator's long jobs and counters") as emulator:
        yield emulator


def jobs_of(emu, image_id):
    return [j for j in emu.control("GET", "zstack/jobs").json()["jobs"] if j["imageId"] == image_id]


def upload(zs, tmp_path, collections_path, workdir, src, name, **extra):
    runner = AnsibleRunner(tmp_path / workdir, collections_path)
    args = dict(src=src, name=name, backup_storage="bs", chunk_size="1MiB")
    args.update(extra)
    return runner.module("image_upload", zs.module_args(**args))


def test_eight_concurrent_uploads(zs, emu, tmp_path, collections_path):
    jobs = []
    for i in range(8):
        src = str(tmp_path / ("race-%d.qcow2" % i))
        jobs.append((src, make_file(src, 4 * MiB + 4099 * i, seed=300 + i), "zr-eight-%d" % i))
        emu.names.append("zr-eight-%d" % i)
    before = emu.stats("zstack")

    def run(job):
        src, _, name = job
        return upload(zs, tmp_path, collections_path, "w-" + name, src, name)[0]

    with ThreadPoolExecutor(8) as pool:
        results = list(pool.map(run, jobs))
    rest = Rest(zs)
    for (src, digest, name), result in zip(jobs, results):
        assert result["changed"] is True and result["resumed"] is False and result["sha256"] == digest, result
        (job,) = jobs_of(emu, result["image_id"])
        (image,) = rest.images(name)
        assert (job["uuid"], job["state"], image["uuid"], image["status"]) == (result["session_id"], "Succeeded", result["image_uuid"], "Ready")
        assert emu.stored_sha256("zstack", image["uuid"]) == digest
    sizes = sum(4 * MiB + 4099 * i for i in range(8))
    assert emu.stats("zstack")["slice_bytes"] - before["slice_bytes"] == sizes == sum(r["bytes_sent"] for r in results)


def test_two_runs_racing_for_one_image(zs, emu, tmp_path, collections_path):
    """Both look for a job, find none, and submit; ZStack (the emulator) refuses the second job for the image_id, and
    that run joins the first one's job. A delay on the submits widens the window in which both have looked."""
    size = 32 * MiB
    src = str(tmp_path / "same.qcow2")
    digest = make_file(src, size, seed=400)
    name = "zr-same"
    emu.names.append(name)
    requests.post(emu.url + "/_emulator/faults", json={"provider": "zstack", "operation": "submit", "action": "delay", "ms": 1500,
                                                       "count": 2})
    before = emu.stats("zstack")

    def run(i):
        return upload(zs, tmp_path, collections_path, "r%d" % i, src, name, parallel=4)

    with ThreadPoolExecutor(2) as pool:
        outcomes = list(pool.map(run, range(2)))
    results = [result for result, _ in outcomes]
    for result, run_ in outcomes:
        assert not result.get("failed"), run_.output
    first, second = sorted(results, key=lambda r: (r["resumed"], not r["changed"]))
    assert first["changed"] is True and first["resumed"] is False
    # the loser joined the same job (or, had it come late, found the image Ready: changed false)
    assert second["session_id"] == first["session_id"] and second["image_uuid"] == first["image_uuid"]
    assert second["resumed"] is True or second["changed"] is False
    if second["resumed"]:
        assert any("was submitted by another run meanwhile; this run joins it" in w for w in second.get("warnings", [])), second
    (job,) = jobs_of(emu, first["image_id"])                  # one job for the image_id
    (image,) = Rest(zs).images(name)                          # one image, Ready
    assert (job["uuid"], job["state"], image["status"]) == (first["session_id"], "Succeeded", "Ready")
    assert emu.stored_sha256("zstack", image["uuid"]) == digest
    # every slice accepted once, whoever sent it; the two runs' accepted slices are disjoint
    assert emu.stats("zstack")["slice_bytes"] - before["slice_bytes"] == size == first["bytes_sent"] + second["bytes_sent"]
