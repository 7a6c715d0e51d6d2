"""The digest cache: read once per run, written once (merged with other runs), and a large file hashed by one
process at a time, the others taking its result (the forks of one play)."""

import json
import os
import subprocess
import sys

from ansible_collections.imagestore.upload.plugins.module_utils._digest_cache import DigestCache
from ansible_collections.imagestore.upload.plugins.module_utils._source import Source

MiB = 1024 * 1024


def test_read_once_written_once_and_merged_with_other_runs(tmp_path, monkeypatch):
    path = str(tmp_path / "digests.json")
    files = []
    for i in range(50):
        f = tmp_path / ("f%d" % i)
        f.write_bytes(b"%d" % i * 1000)
        files.append(str(f))
    loads = []
    original = DigestCache._load
    monkeypatch.setattr(DigestCache, "_load", lambda self: loads.append(1) or original(self))
    cache = DigestCache(path)
    for f in files:
        Source(f, cache).digests(("sha256",))
    assert len(loads) == 1 and not os.path.exists(path)            # one read, nothing written before the flush
    other = DigestCache(path)                                        # another run wrote meanwhile
    other.put("/elsewhere/x", (1, 2, 3, 4, 5), {"sha256": "ab"})
    other.flush()
    cache.flush()
    data = json.load(open(path))
    assert len(data) == 51 and data["/elsewhere/x"][1] == {"sha256": "ab"}
    again = DigestCache(path)
    source = Source(files[7], again)
    assert source.cached_digests(("sha256",)) and source.from_cache == {"sha256"}


def test_a_rewritten_file_is_read_again(tmp_path):
    cache = DigestCache(str(tmp_path / "digests.json"))
    f = tmp_path / "f"
    f.write_bytes(b"a" * 100)
    Source(str(f), cache).digests(("sha256",))
    cache.flush()
    f.write_bytes(b"b" * 100)
    fresh = Source(str(f), DigestCache(str(tmp_path / "digests.json")))
    assert fresh.cached_digests(("sha256",)) == {}


def test_two_processes_hashing_one_large_file_hash_it_once(tmp_path):
    big = tmp_path / "big.img"
    with open(str(big), "wb") as fh:
        for i in range((_digest_cache_share() // MiB) + 8):
            fh.write(bytes([i % 256]) * MiB)
    cache = str(tmp_path / "digests.json")
    script = ("import sys; from ansible_collections.imagestore.upload.plugins.module_utils._source import Source; "
              "from ansible_collections.imagestore.upload.plugins.module_utils._digest_cache import DigestCache; "
              "s = Source(sys.argv[1], DigestCache(sys.argv[2])); s.digests(('sha256', 'md5')); "
              "print('cached' if s.from_cache else 'computed')")
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(p for p in sys.path if p))       # the collection, as this process has it
    procs = [subprocess.Popen([sys.executable, "-c", script, str(big), cache], stdout=subprocess.PIPE, env=env)
             for dummy in range(3)]
    outcomes = sorted(p.communicate(timeout=120)[0].decode().strip() for p in procs)
    assert outcomes == ["cached", "cached", "computed"], outcomes


def _digest_cache_share():
    from ansible_collections.imagestore.upload.plugins.module_utils._source import SHARE_ABOVE
    return SHARE_ABOVE
