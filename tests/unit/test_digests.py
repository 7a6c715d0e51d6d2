"""Digests of the upload engine: one read for several digests, background digests, and a file identity that no
in-place rewrite can keep."""

import hashlib
import os
import time

import pytest
from ansible_collections.imagestore.upload.plugins.module_utils._digest_cache import DigestCache
from ansible_collections.imagestore.upload.plugins.module_utils._errors import SourceChangedError
from ansible_collections.imagestore.upload.plugins.module_utils._hashing import ThreadedHasher
from ansible_collections.imagestore.upload.plugins.module_utils._source import Source


def write(path, data):
    with open(path, "wb") as fh:
        fh.write(data)
    return str(path)


def test_several_digests_in_one_read_equal_hashlib(tmp_path):
    data = os.urandom(9 * 1024 * 1024 + 17)       # more than two read blocks, not a multiple of one
    path = write(tmp_path / "f.img", data)
    got = Source(path).digests(("md5", "sha256", "sha1"))
    assert got == {"md5": hashlib.md5(data).hexdigest(), "sha256": hashlib.sha256(data).hexdigest(),
                   "sha1": hashlib.sha1(data).hexdigest()}


def test_background_digests_equal_hashlib_and_fill_the_cache(tmp_path):
    data = os.urandom(5 * 1024 * 1024)
    path = write(tmp_path / "f.img", data)
    cache = DigestCache(str(tmp_path / "cache.json"))
    source = Source(path, cache)
    assert source.cached_digests(("sha256",)) == {}
    running = source.digests_in_background(("sha256",))
    assert running.result() == {"sha256": hashlib.sha256(data).hexdigest()}
    cache.flush()
    # the next run knows it without reading the file
    assert Source(path, cache).cached_digests(("sha256",)) == {"sha256": hashlib.sha256(data).hexdigest()}


def test_background_digests_report_a_file_changed_during_the_run(tmp_path):
    path = write(tmp_path / "f.img", os.urandom(1024 * 1024))
    source = Source(path)
    time.sleep(0.01)
    write(path, os.urandom(1024 * 1024))               # same size, rewritten after the run began
    with pytest.raises(SourceChangedError, match="changed while it was being uploaded"):
        source.digests_in_background(("sha256",)).result()


def test_an_in_place_rewrite_that_restores_mtime_is_still_a_new_file(tmp_path):
    """touch -r / rsync --inplace -t keep size and mtime; the ctime still moves, so the digest cache never mistakes the
    new content for the old (session ids and records are keyed on that digest)."""
    path = write(tmp_path / "disk.img", b"a" * 4096)
    cache = DigestCache(str(tmp_path / "cache.json"))
    old = Source(path, cache)
    old_digest = old.digest()
    assert Source(path, cache).cached_digests(("sha256",)) == {"sha256": old_digest}      # unchanged file: known
    st = os.stat(path)
    time.sleep(0.01)
    with open(path, "r+b") as fh:
        fh.write(b"b" * 4096)
    os.utime(path, ns=(st.st_atime_ns, st.st_mtime_ns))
    assert os.stat(path).st_mtime_ns == st.st_mtime_ns and os.stat(path).st_size == st.st_size
    new = Source(path, cache)
    assert new.identity != old.identity
    assert new.cached_digests(("sha256",)) == {}
    assert new.digest() == hashlib.sha256(b"b" * 4096).hexdigest() != old_digest


def test_threaded_hasher_gives_the_digest_of_everything_fed_in_order():
    blocks = [os.urandom(n) for n in (1, 4096, 3 * 1024 * 1024, 0, 17)]
    threaded = ThreadedHasher(hashlib.sha1())
    for b in blocks:
        threaded.update(b)
    assert threaded.hexdigest() == hashlib.sha1(b"".join(blocks)).hexdigest()
    assert threaded.hexdigest() == hashlib.sha1(b"".join(blocks)).hexdigest()      # asked twice, same answer
    with pytest.raises(ValueError):
        threaded.update(b"late")
    unused = ThreadedHasher(hashlib.sha1())
    unused.close()
    unused.close()
