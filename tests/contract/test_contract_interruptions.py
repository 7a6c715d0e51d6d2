"""Interrupted uploads resume, from this host or from a copy of the file on another one, for every provider.

The module process itself is killed (Ansible runs it in a session of its own: killing ansible-playbook
would leave it running), in the middle of a transfer slowed by a proxy; the re-run runs from a copy of
the file (a new inode, no digest cache), as on another host or in a fresh AWX container.
"""

import os
import threading
import time

from fieldkit.procs import kill_matching, marker_env, new_run_marker, wait_until
from fieldkit.proxy import FaultProxy
from kit import MiB


def test_resume_after_the_module_process_is_killed_from_a_copy_of_the_file(contract, profile, store):
    size, chunk = 12 * MiB + 77, MiB
    src, digest = contract.image(size, seed=11)
    run_marker = new_run_marker()
    with FaultProxy("127.0.0.1", store.port, chunk=16384) as proxy:
        proxy.set_latency(0.004)                         # ~4 MB/s: the kill lands mid-transfer
        outcome = {}

        def first_run():
            outcome["result"], outcome["run"] = contract.upload(src, "killed", endpoint=proxy.url(), chunk_size="1MiB",
                                                                parallel=2, env=marker_env(run_marker))
        runner = threading.Thread(target=first_run)
        runner.start()
        try:
            wait_until(lambda: proxy.stats()["bytes_up"] >= size // 3, timeout=120,
                       message="the first run did not get a third of the file across")
            report = kill_matching(marker="AnsiballZ_image_upload", env=run_marker, scope="tree")
            assert report.killed and not report.survivors, report
        finally:
            runner.join(120)
    assert outcome["result"].get("failed"), outcome["run"].output[-2000:]
    received = contract.received()
    assert 0 < received < size
    copy = contract.copy(src)
    os.utime(copy, (time.time() + 10, time.time() + 10))
    result, run = contract.upload(copy, "killed", chunk_size="1MiB")
    assert result["changed"] and result["resumed"], run.output[-3000:]
    missing = size - received
    print("resume from a copy (%s): %d of %d bytes held by the store, %d missing, %d sent"
          % (profile.name, received, size, missing, result["bytes_sent"]))
    assert missing <= result["bytes_sent"] <= missing + profile.unit(chunk, size) + chunk, (result["bytes_sent"], missing)
    assert contract.stored("killed", result) == digest
    assert contract.open_sessions("killed", result) == 0


def test_the_store_killed_mid_upload_and_restarted_keeps_what_it_received(contract, profile, store):
    size = 16 * MiB + 11
    src, digest = contract.image(size, seed=12)
    with FaultProxy("127.0.0.1", store.port, chunk=16384) as proxy:
        proxy.set_latency(0.003)
        outcome = {}
        runner = threading.Thread(target=lambda: outcome.update(zip(("result", "run"), contract.upload(
            src, "restarted", endpoint=proxy.url(), chunk_size="1MiB", parallel=2, retries=1, timeout=60))))
        runner.start()
        try:
            wait_until(lambda: contract.received() >= size // 3, timeout=120, message="the upload did not get going")
            store.process.kill()                                # a crash: no chance to tidy up
        finally:
            runner.join(120)
    failed = outcome["result"]
    assert failed.get("failed") and failed.get("session_id"), outcome["run"].output[-2000:]
    assert "Traceback (most recent call last)" not in outcome["run"].output
    said = {"kept": "is kept: run again to resume it", "incomplete": "could not be removed and may still exist"}
    assert "upload session %s %s" % (failed["session_id"], said[failed["session_cleanup"]]) in failed["msg"], failed["msg"]
    store.process.restart()
    held = profile.check_crashed(store, "restarted", failed)          # the session outlived the crash, nothing committed
    base = contract.received()
    result, run = contract.upload(src, "restarted", chunk_size="1MiB")
    assert result["changed"] and result["resumed"] and result["session_id"] == failed["session_id"], (run.output[-3000:], failed)
    assert result["bytes_sent"] < size or not profile.exactly_once
    assert result["bytes_sent"] == contract.received() - base          # what it says it sent is what the store took
    if held is not None:
        assert result["bytes_sent"] == size - held                    # only what the store did not keep was sent
    assert contract.stored("restarted", result) == digest
    profile.check_clean(store, "restarted", result, None, size)
    store.process.kill()
    store.process.restart()
    assert contract.stored("restarted", result) == digest            # committed content survives a crash
    base = contract.received()
    again, run = contract.upload(src, "restarted")
    assert again["changed"] is False and again["bytes_sent"] == 0, run.output[-3000:]
    assert contract.received() == base and " already holds " in again["msg"]
    assert again["compared"] != "size" and "notes" not in again, again     # the store still vouches for it by digest
