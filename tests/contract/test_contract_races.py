"""Two runs at once for one destination, and a file that changes under its upload, for every provider."""

import threading
import time
from concurrent.futures import ThreadPoolExecutor

from fieldkit.procs import wait_until
from fieldkit.proxy import FaultProxy
from kit import MiB


def test_two_runs_for_one_destination_end_with_one_good_copy(contract, store):
    src, digest = contract.image(8 * MiB + 9, seed=51)
    with FaultProxy("127.0.0.1", store.port, chunk=65536) as proxy:
        proxy.set_latency(0.002)
        with ThreadPoolExecutor(2) as pool:
            runs = [pool.submit(contract.upload, src, "race", endpoint=proxy.url(), chunk_size="1MiB", parallel=2)
                    for _ in range(2)]
            results = [r.result(timeout=300) for r in runs]
    for result, run in results:
        assert not result.get("failed"), run.output[-3000:]
    assert any(result["changed"] for result, _ in results)
    assert contract.stored("race", results[0][0]) == digest
    assert contract.open_sessions("race", results[0][0]) == 0


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
