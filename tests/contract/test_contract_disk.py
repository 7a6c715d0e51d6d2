"""A store whose disk is full: the run fails at once with the store's own words, keeps what a re-run can resume, and
loses nothing already stored, for every provider."""

import os

import pytest

from fieldkit.fullfs import FullFS, FullFSUnavailable
from kit import MiB

FULL = {"servicefabric": "There is not enough space on the disk", "vsphere": "unable_to_allocate_resource",
        "zstack": "not enough capacity", "toystore": "NO_SPACE: the store's disk is full"}


def test_a_full_disk_is_said_as_such_and_nothing_stored_is_lost(contract, profile, store):
    original, digest = contract.image(2 * MiB, seed=61, name="original.img")
    contract.upload(original, "full")
    src, _ = contract.image(8 * MiB, seed=62)
    profile.inject(store, dict(operation=profile.operations["data"], action="enospc", count=0))
    result, run = contract.upload(src, "full", chunk_size="1MiB", timeout=120)
    assert result.get("failed") and "no room left" in result["msg"], run.output[-3000:]
    assert FULL.get(profile.name, "") in result["msg"]
    assert result["elapsed"] < 30                                   # not retried until a stall: said at once
    assert contract.stored("full") == digest                        # the file stored before is intact


def test_a_really_full_filesystem(contract, profile, tmp_path):
    try:
        os.makedirs(str(tmp_path / "tiny"))
        fs = FullFS(12 * MiB, path=str(tmp_path / "tiny"))
        fs.__enter__()
    except FullFSUnavailable as exc:
        pytest.skip(str(exc))
    try:
        store = profile.start(tmp_path, data_dir=os.path.join(fs.path, "data"))
        try:
            contract.store = store
            src, _ = contract.image(24 * MiB, seed=63)
            result, run = contract.upload(src, "tiny", chunk_size="1MiB", timeout=120)
            assert result.get("failed") and "no room left" in result["msg"], run.output[-3000:]
            assert "Traceback" not in run.output
        finally:
            store.stop()
    finally:
        fs.__exit__(None, None, None)
