"""Each special file is what it claims, reads as it should, and is gone after the context."""

import os
import random
import subprocess
import threading
import time

import pytest

from fieldkit.special import (Fifo, LoopDevice, SpecialUnavailable, UnixSocketFile, block_size, char_device,
                              file_kind)


def read_all(path, limit=1 << 24):
    with open(path, "rb") as fh:
        return fh.read(limit)


def test_fifo_with_a_writer_delivers_the_data_then_eof(tmp_path):
    data = random.Random(1).randbytes(300000)   # more than a pipe buffer: the writer must wait for reads
    with Fifo(tmp_path / "src.fifo", data=[data[:100000], data[100000:]]) as fifo:
        assert file_kind(fifo.path) == "FIFO"
        assert read_all(fifo.path) == data
    assert fifo.written == len(data) and fifo.error is None
    assert file_kind(fifo.path) == "missing"


def test_fifo_reader_that_closes_early_stops_the_writer(tmp_path):
    with Fifo(tmp_path / "src.fifo", data=b"x" * (4 << 20)) as fifo:
        with open(fifo.path, "rb") as fh:
            assert fh.read(10) == b"x" * 10
        assert fifo.wait(5)
    assert isinstance(fifo.error, BrokenPipeError) and fifo.written < 4 << 20


def test_fifo_without_a_writer_blocks_a_reader_until_released(tmp_path):
    got = []
    with Fifo(tmp_path / "src.fifo", release_after=0.15) as fifo:
        start = time.monotonic()
        t = threading.Thread(target=lambda: got.append(read_all(fifo.path)), daemon=True)
        t.start()
        t.join(5)
        assert got == [b""] and 0.12 < time.monotonic() - start < 3


def test_fifo_writer_gives_up_without_a_reader(tmp_path):
    start = time.monotonic()
    with Fifo(tmp_path / "src.fifo", data=b"abc", timeout=0.2) as fifo:
        pass
    assert fifo.error == "no reader" and time.monotonic() - start < 2


def test_unix_socket_file(tmp_path):
    with UnixSocketFile(tmp_path / "s.sock") as sock:
        assert file_kind(sock.path) == "socket"
        with pytest.raises(OSError):   # ENXIO: a socket cannot be opened as a file
            open(sock.path, "rb")
    assert file_kind(sock.path) == "missing"
    with pytest.raises(ValueError, match="at most 107 bytes"):
        UnixSocketFile("/tmp/" + "x" * 120)


def test_character_devices():
    assert file_kind(char_device("zero")) == "character device"
    with open(char_device("zero"), "rb") as fh:
        assert fh.read(5) == b"\0" * 5
    assert read_all(char_device("null")) == b""
    assert os.stat(char_device("zero")).st_size == 0   # what a naive size check sees


def test_loop_device_shows_the_file(tmp_path):
    image = tmp_path / "disk.img"
    data = random.Random(2).randbytes(3 << 20)
    image.write_bytes(data)
    try:
        with LoopDevice(image) as dev:
            assert file_kind(dev.path) == "block device"
            assert os.stat(dev.path).st_size == 0            # st_size of a block device says nothing
            assert block_size(dev.path) == len(data)
            assert read_all(dev.path) == data
            with pytest.raises(OSError):                     # read-only by default
                with open(dev.path, "r+b") as fh:
                    fh.write(b"no")
            path = dev.path
    except SpecialUnavailable as exc:
        pytest.skip(str(exc))
    listed = subprocess.run(["losetup", "--list", "--noheadings", "--output", "NAME,BACK-FILE"],
                            stdout=subprocess.PIPE, timeout=10).stdout.decode()
    assert str(image) not in listed, (path, listed)


def test_loop_device_unavailable_says_why(tmp_path):
    with pytest.raises(SpecialUnavailable, match="`losetup --find --show --read-only .*` failed"):
        with LoopDevice(tmp_path / "missing.img"):
            pass
