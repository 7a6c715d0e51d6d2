"""Request bodies read from the file (``_bodies.FileRange``) through the HTTP layer's connections: what the server
receives is exactly the bytes of the range, by sendfile on a regular file and by reads where sendfile cannot tell the
size (a block device, a character device: ``fstat`` reports 0 bytes for them)."""

import hashlib
import os

import pytest

from ansible_collections.imagestore.upload.plugins.module_utils._bodies import FileRange
from ansible_collections.imagestore.upload.plugins.module_utils._http import HttpClient
from ansible_collections.imagestore.upload.plugins.module_utils._servicefabric_client import parse_error

MiB = 1024 * 1024


@pytest.fixture
def receiver(http_server):
    """A server that keeps the body of every PUT; returns (url, bodies)."""
    bodies = []

    def respond(method, path, headers, body):
        bodies.append(body)
        return 200, {}, b""
    return http_server(respond), bodies


def put(url, path, start, end):
    client = HttpClient(url, error_parser=parse_error, backoff=0.01)
    try:
        client.request("PUT", "/put", body=lambda: FileRange(path, start, end), what="PUT the range")
    finally:
        client.close()


def test_a_regular_file_range_arrives_exactly(receiver, tmp_path):
    url, bodies = receiver
    path = str(tmp_path / "f.img")
    data = os.urandom(9 * MiB + 7)            # more than two sendfile segments
    with open(path, "wb") as fh:
        fh.write(data)
    put(url, path, 3, 9 * MiB + 2)
    assert [hashlib.sha256(b).hexdigest() for b in bodies] == [hashlib.sha256(data[3:9 * MiB + 3]).hexdigest()]


def test_a_file_whose_size_fstat_does_not_tell_is_read_not_taken_for_shorter(receiver):
    """/dev/zero: fstat's st_size is 0, as for a block device; socket.sendfile would send nothing and the body would be
    reported as "became shorter while it was being uploaded"."""
    url, bodies = receiver
    put(url, "/dev/zero", 0, 5 * MiB - 1)
    assert [len(b) for b in bodies] == [5 * MiB] and bodies[0] == bytes(5 * MiB)


def test_a_block_device_range_arrives_exactly(receiver, tmp_path):
    # the project's field kit (loop devices): in the checkout, not in the collection as built for Galaxy
    special = pytest.importorskip("fieldkit.special", reason="tests/fieldkit is not shipped with the collection")
    url, bodies = receiver
    backing = str(tmp_path / "volume.img")
    data = os.urandom(6 * MiB)
    with open(backing, "wb") as fh:
        fh.write(data)
    with special.loop_device(backing, unavailable=pytest.skip) as device:
        put(url, device.path, MiB, 6 * MiB - 1)
    assert [hashlib.sha256(b).hexdigest() for b in bodies] == [hashlib.sha256(data[MiB:]).hexdigest()]
