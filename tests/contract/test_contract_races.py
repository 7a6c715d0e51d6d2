"""Runs at once: eight for eight destinations, two for one destination; and a file that changes under its upload, for
every provider."""

import threading
import time
from concurrent.futures import ThreadPoolExecutor

from ansible_helpers import AnsibleRunner
from fieldkit.procs import wait_until
from fieldkit.proxy import FaultProxy
from kit import MiB


def test_eight_concurrent_uploads_to_different_destinations(contract, profile, store, tmp_path, collections_path):
    uploads = []
    for i in range(8):
        path, digest = contract.image(2 * MiB + 4099 * i, seed=300 + i, name="img-%d.img" % i)
        uploads.append((path, digest, "eight-%d" % i))

    def run(upload):
        path, _, dest = upload              # each run an ansible-playbook of its own, as eight jobs of a workflow
        runner = AnsibleRunner(tmp_path / ("run-" + dest), collections_path)
        return runner.module(profile.module("image_upload"), contract.args(path, dest, chunk_size="1MiB"))

    with ThreadPoolExecutor(8) as pool:
        outcomes = list(pool.map(run, uploads))
    for (path, digest, dest), (result, played) in zip(uploads, outcomes):
        assert result.get("changed") is True and not result.get("failed"), played.output[-3000:]
        assert result["sha256"] == digest and result["bytes_sent"] == result["size"] and result["resumed"] is False
        assert "session_restarts" not in result                    # one session each, never started again
        assert contract.stored(dest, result) == digest
        profile.check_clean(store, dest, result, None, result["size"])
    total = sum(2 * MiB + 4099 * i for i in range(8))
    assert contract.received() == total == sum(result["bytes_sent"] for result, _ in outcomes)     # each byte once


def test_two_runs_for_one_destination_end_with_one_good_copy(contract, profile, store):
    size = 8 * MiB + 9
    src, digest = contract.image(size, seed=51)
    if profile.race_rules:
        profile.inject(store, *profile.race_rules)
    before = profile.stats(store)
    with FaultProxy("127.0.0.1", store.port, chunk=16384) as proxy:
        proxy.set_latency(0.008)            # ~2 MB/s a connection: the transfers last longer than the runs' start-up skew
        with ThreadPoolExecutor(2) as pool:
            runs = [pool.submit(contract.upload, src, "race", endpoint=proxy.url(), chunk_size="1MiB", parallel=2)
                    for _ in range(2)]
            outcomes = [r.result(timeout=300) for r in runs]
    results = [result for result, _ in outcomes]
    for result, run in outcomes:
        assert not result.get("failed"), run.output[-3000:]
        assert result["sha256"] == digest
    changed = [result for result in results if result["changed"]]
    assert changed, results
    for loser in (result for result in results if not result["changed"]):      # it says why it sent nothing
        assert " already holds " in loser["msg"], loser["msg"]
    assert contract.stored("race", results[0]) == digest
    assert contract.open_sessions("race", results[0]) == 0
    if profile.exactly_once:          # the runs shared the work: every byte accepted once, whoever sent it
        assert contract.received() == size == sum(result["bytes_sent"] for result in results), results
    profile.check_race(store, "race", results, before, size)


def test_a_file_changed_during_its_upload_is_not_committed(contract, store, tmp_path):
    original, original_digest = contract.image(4 * MiB, seed=52, name="a.img")
    contract.upload(original, "changing")
    src, _ = contract.image(12 * MiB, seed=53, name="b.img")
    with FaultProxy("127.0.0.1", store.port, chunk=16384) as proxy:
        proxy.set_latency(0.004)
        outcome = {}
        runner = threading.Thread(target=lambda: outcome.update(zip(("result", "run"), contract.upload(
            src, "changing", endpoint=proxy.url(), chunk_size="1MiB", parallel=1))))
        runner.start()
        try:
            wait_until(lambda: proxy.stats()["bytes_up"] >= 3 * MiB, timeout=120, message="the upload did not get going")
            with open(src, "r+b") as fh:           # rewrite in place, same size (as a build writing its output again)
                fh.seek(5 * MiB)
                fh.write(b"changed!" * 1024)
        finally:
            runner.join(300)
    result = outcome["result"]
    assert result.get("failed") and "changed while it was being uploaded" in result["msg"], result.get("msg")
    assert "run again to upload" in result["msg"]
    assert contract.stored("changing") == original_digest          # what the store held before is intact


def test_the_digest_pass_is_bounded_by_timeout(contract, tmp_path):
    big = str(tmp_path / "sparse.img")
    with open(big, "wb") as fh:
        fh.truncate(24 * 1024 * MiB)                                 # 24 GiB of holes: hashing it takes far longer than 3 s
    started = time.monotonic()
    result, run = contract.upload(big, "sparse", check=True, timeout=3)
    took = time.monotonic() - started
    assert result.get("failed") and "timeout of 3 seconds reached while computing the" in result["msg"], result.get("msg")
    assert result["elapsed"] <= 3 + 2.0 and took < 3 + 2 + 15
