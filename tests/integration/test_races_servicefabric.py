"""Concurrent runs: 8 different images at once, and 2 runs racing for one destination."""

from concurrent.futures import ThreadPoolExecutor

from tests.conftest import AnsibleRunner, make_file

MiB = 1024 * 1024


def test_eight_concurrent_uploads(imagestore_target, imagestore_emulator, tmp_path, collections_path):
    sf = imagestore_target("servicefabric")
    jobs = []
    for i in range(8):
        src = str(tmp_path / ("img-%d.img" % i))
        jobs.append((src, make_file(src, 4 * MiB + i, seed=100 + i), "races/eight/img-%d.img" % i))

    def run(job):
        src, _, path = job
        runner = AnsibleRunner(tmp_path / ("w-%s" % path.rsplit("/", 1)[1]), collections_path)
        return runner.module("image_upload", sf.module_args(src=src, path=path, chunk_size="1MiB"))[0]

    with ThreadPoolExecutor(8) as pool:
        results = list(pool.map(run, jobs))
    for (src, digest, path), result in zip(jobs, results):
        assert result["changed"] and result["sha256"] == digest, result
        assert imagestore_emulator.stored_sha256("servicefabric", path) == digest


def test_two_runs_racing_for_one_destination(imagestore_target, imagestore_emulator, tmp_path, collections_path):
    sf = imagestore_target("servicefabric")
    src = str(tmp_path / "same.img")
    digest = make_file(src, 32 * MiB, seed=200)
    before = imagestore_emulator.stats("servicefabric")["chunk_bytes"]

    def run(i):
        runner = AnsibleRunner(tmp_path / ("r%d" % i), collections_path)
        return runner.module("image_upload", sf.module_args(src=src, path="races/same.img", chunk_size="1MiB"))[0]

    with ThreadPoolExecutor(2) as pool:
        results = list(pool.map(run, range(2)))
    for result in results:
        assert not result.get("failed"), result
    # Both runs found the same session (its id derives from the path and the file's identity) and shared the
    # work: the server accepted every byte once, whoever sent it.
    assert imagestore_emulator.stats("servicefabric")["chunk_bytes"] - before == 32 * MiB
    assert sum(r["bytes_sent"] for r in results) == 32 * MiB     # acknowledged chunks are disjoint
    assert imagestore_emulator.stored_sha256("servicefabric", "races/same.img") == digest
