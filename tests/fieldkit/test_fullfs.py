"""FullFS runs out of space where it says, and leaves nothing mounted."""

import errno
import os

import pytest

from fieldkit.fullfs import FullFS, FullFSUnavailable

MiB = 1 << 20


def mounted(fs):
    try:
        return fs.mount()
    except FullFSUnavailable as exc:
        pytest.skip(str(exc))


def write(path, size):
    """Write ``size`` bytes; returns how many were written before ENOSPC (which it expects)."""
    done = 0
    with pytest.raises(OSError) as info:
        with open(path, "wb") as fh:
            while done < size:
                done += fh.write(b"\xa5" * min(65536, size - done))
                fh.flush()
                os.fsync(fh.fileno())
    assert info.value.errno == errno.ENOSPC
    return done


@pytest.mark.parametrize("method", ["tmpfs", "ext4"])
def test_writing_past_the_size_gives_enospc(method):
    with mounted(FullFS(MiB, method=method)) as fs:
        path = fs.path
        assert os.path.ismount(path) and fs.method == method
        assert 0.5 * MiB < fs.free() <= MiB
        written = write(os.path.join(path, "big"), 2 * MiB)
        assert 0.5 * MiB < written <= MiB
    assert not os.path.ismount(path) and not os.path.exists(path)


def test_fill_leaves_the_space_asked_for():
    with mounted(FullFS(2 * MiB)) as fs:
        assert fs.fill(leave=256 * 1024) == 256 * 1024
        with open(os.path.join(fs.path, "fits"), "wb") as fh:
            fh.write(b"x" * 200 * 1024)
        write(os.path.join(fs.path, "does-not-fit"), 100 * 1024)
        fs.unfill()
        assert fs.free() > 1.5 * MiB


def test_unmounted_on_error_even_when_busy(tmp_path):
    mountpoint = tmp_path / "data"
    mountpoint.mkdir()
    with pytest.raises(RuntimeError, match="the test failed"):
        with mounted(FullFS(MiB, path=str(mountpoint))):
            busy = open(mountpoint / "open-file", "wb")   # a server still holding a file open
            raise RuntimeError("the test failed")
    busy.close()
    assert not os.path.ismount(mountpoint) and mountpoint.is_dir()   # a given directory is kept


def test_bad_arguments():
    with pytest.raises(ValueError, match="method is auto, tmpfs or ext4"):
        FullFS(MiB, method="zfs")
    with pytest.raises(ValueError, match="an ext4 image needs at least 262144 bytes"):
        FullFS(4096, method="ext4")


def test_unavailable_says_why_for_each_way_and_leaves_nothing(tmp_path):
    missing = str(tmp_path / "no-such-dir")
    with pytest.raises(FullFSUnavailable) as info:
        FullFS(MiB, path=missing).mount()
    text = str(info.value)
    assert text.startswith("no small filesystem could be mounted (tmpfs: `mount -t tmpfs"), text
    assert "; ext4: `mount -o loop" in text and "does not exist" in text, text
    assert not os.path.exists(missing)
