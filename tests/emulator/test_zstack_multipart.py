"""The ZStack receiver's multipart reader: one reused buffer, pieces handed to the sink as views. Whatever the
way the body arrives (any read sizes, a delimiter split across reads or across the buffer's end), the sink gets
exactly the file part's bytes, and a slice sent without an MD5 is not digested."""

import hashlib
import io

from hypothesis import given, settings
from hypothesis import strategies as st

from imagestore_emulator import zstack_multipart
from imagestore_emulator.zstack_multipart import MultipartError, MultipartReader, SliceSink

BOUNDARY = b"b0und4ry"


class Body:
    """A request body that answers readinto() with at most the next of ``pieces`` bytes (as a socket does)."""

    def __init__(self, data, pieces):
        self._data = data
        self._pieces = list(pieces) or [len(data)]
        self._pos = 0
        self.remaining = len(data)

    def readinto(self, view):
        size = max(1, self._pieces[self._pos % len(self._pieces)] if self._pieces else len(view))
        n = min(len(view), size, self.remaining)
        view[:n] = self._data[self._pos:self._pos + n]
        self._pos += n
        self.remaining -= n
        return n


def document(content, field=b"", preamble=b""):
    out = preamble + b"--" + BOUNDARY + b"\r\n"
    if field:
        out += b'Content-Disposition: form-data; name="note"\r\n\r\n' + field + b"\r\n--" + BOUNDARY + b"\r\n"
    out += (b'Content-Disposition: form-data; name="file"; filename="image.raw"\r\n'
            b"Content-Type: application/octet-stream\r\n\r\n" + content + b"\r\n--" + BOUNDARY + b"--\r\n")
    return out


def received(data, pieces):
    got = []
    length = MultipartReader(Body(data, pieces), BOUNDARY).copy_file_part(lambda view: got.append(bytes(view)))
    return length, b"".join(got)


@settings(max_examples=200, deadline=None)
@given(content=st.binary(max_size=600).map(lambda b: b.replace(b"\r\n--" + BOUNDARY, b"x")) | st.just(b"\r\n--b0und4r" * 20),
       field=st.binary(max_size=40).filter(lambda b: b"\r\n--" not in b and b"\r" not in b),
       pieces=st.lists(st.integers(min_value=1, max_value=97), max_size=8),
       buffer=st.sampled_from([128, 256, 4096]))
def test_the_file_part_arrives_whole_however_the_body_is_cut(content, field, pieces, buffer):
    old = MultipartReader.BUFFER
    MultipartReader.BUFFER = buffer       # small buffers: the delimiter straddles its end, leftovers move to the front
    try:
        assert received(document(content, field, preamble=b"ignored\r\n"), pieces) == (len(content), content)
    finally:
        MultipartReader.BUFFER = old


def test_a_large_part_in_the_real_buffer():
    content = bytes(range(256)) * (3 * MultipartReader.BUFFER // 256 + 77)
    assert received(document(content), [65536, 1000, 3]) == (len(content), content)


def test_a_body_without_a_closing_boundary_is_an_error():
    data = document(b"abc")[:-len(b"\r\n--" + BOUNDARY + b"--\r\n")]
    try:
        received(data, [])
    except MultipartError as exc:
        assert str(exc) == "the multipart body ends before its closing boundary"
    else:
        raise AssertionError("no error")


def test_a_slice_sink_digests_only_when_asked():
    checked, plain = io.BytesIO(), io.BytesIO()
    with_md5, without = SliceSink(checked, 5), SliceSink(plain, 5, digest=False)
    for sink in (with_md5, without):
        sink(memoryview(b"abc"))
        sink(memoryview(b"defg"))          # past the limit: counted, not written
    assert checked.getvalue() == plain.getvalue() == b"abcde"
    assert with_md5.length == without.length == 7
    assert with_md5.md5.hexdigest() == hashlib.md5(b"abcdefg").hexdigest() and without.md5 is None
    assert zstack_multipart.SliceSink is SliceSink
