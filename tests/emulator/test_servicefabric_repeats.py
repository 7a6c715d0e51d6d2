"""The counter of whole-file bodies sent twice: a body is a repeat when it is byte for byte the file the previous
whole-file PUT stored at that path, and that file is still there (compared without hashing every body)."""

import os

import requests

from imagestore_emulator.testing import running_emulator

from test_servicefabric_emulator import SF


def repeats(sf, path):
    counters = requests.get(sf.url + "/_emulator/servicefabric/received").json()["paths"][path]
    return counters["file_bodies"], counters["repeat_file_bodies"], counters["repeat_file_bytes"]


def test_only_the_same_bytes_over_a_file_a_put_stored_count_as_sent_twice():
    with running_emulator() as emu:
        sf = SF(emu["url"])
        data = os.urandom(3 * 1024 * 1024 + 5)           # more than one comparison block
        assert sf.put("r/a", data).status_code == 200
        assert sf.put("r/a", data).status_code == 200
        assert repeats(sf, "r/a") == (2, 1, len(data))
        other = data[:-1] + bytes([data[-1] ^ 1])          # same size, last byte differs
        assert sf.put("r/a", other).status_code == 200
        assert repeats(sf, "r/a") == (3, 1, len(data))
        sf.upload("r/a", other, chunk=1024 * 1024)         # replaced by a session: not a PUT's file any more
        assert sf.put("r/a", other).status_code == 200
        assert repeats(sf, "r/a") == (4, 1, len(data))
        assert sf.delete("r/a").status_code == 200
        assert sf.put("r/a", other).status_code == 200     # deleted in between: stored again, not sent twice
        assert repeats(sf, "r/a") == (5, 1, len(data))
        assert sf.put("r/a", other).status_code == 200
        assert repeats(sf, "r/a") == (6, 2, len(data) + len(other))
        assert sf.stored("r/a") == other
