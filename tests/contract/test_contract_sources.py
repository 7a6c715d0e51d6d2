"""What may be uploaded is decided once, for every provider: regular files and block devices (whole size);
character devices, FIFOs and sockets are refused by name, and nothing stored is touched."""

import pytest

from fieldkit.special import Fifo, UnixSocketFile, loop_device
from kit import MiB


@pytest.fixture
def stored_before(contract):
    src, digest = contract.image(3 * MiB, seed=31, name="original.img")
    result, run = contract.upload(src, "special")
    assert result["changed"], run.output[-2000:]
    return digest


@pytest.mark.parametrize("kind", ["fifo", "char", "socket"])
def test_special_files_are_refused_by_kind_and_nothing_stored_is_touched(contract, tmp_path, stored_before, kind):
    received = contract.received()
    if kind == "char":
        result, _ = contract.upload("/dev/zero", "special")
        expected = "src: /dev/zero is a character device; upload a regular file or a block device"
    elif kind == "fifo":
        with Fifo(str(tmp_path / "pipe"), data=b"x" * 1000, release_after=20) as fifo:
            result, _ = contract.upload(fifo.path, "special")
        expected = "is a FIFO (named pipe); upload a regular file or a block device"
    else:
        with UnixSocketFile(str(tmp_path / "sock")) as sock:
            result, _ = contract.upload(sock.path, "special")
        expected = "is a socket; upload a regular file or a block device"
    assert result["failed"] and expected in result["msg"], result["msg"]
    assert contract.stored("special") == stored_before and contract.received() == received


def test_a_block_device_uploads_its_whole_size(contract, tmp_path):
    backing, digest = contract.image(4 * MiB, seed=32, name="volume.img")
    with loop_device(backing, unavailable=pytest.skip) as device:
        result, run = contract.upload(device.path, "block")
        assert result["changed"] and result["size"] == 4 * MiB and result["bytes_sent"] == 4 * MiB, run.output[-2000:]
        assert contract.stored("block", result) == digest
