"""The Service Fabric version index on disk: a journal appended per stored or deleted file, compacted into
content.json; every FileVersion answered before a crash (SIGKILL) is the one answered after the restart."""

import json
import os

from imagestore_emulator import servicefabric_store
from imagestore_emulator.process import EmulatorProcess
from imagestore_emulator.testing import running_emulator

from test_servicefabric_emulator import SF


def versions(sf, folder):
    """{store-relative path: VersionNumber} of the files directly in ``folder``."""
    rsp = sf.info(folder)
    assert rsp.status_code == 200, rsp.text
    return {f["StoreRelativePath"]: int(f["FileVersion"]["VersionNumber"]) for f in rsp.json()["StoreFiles"]}


def fill(sf):
    """Whole-file PUTs, a replacement, a session commit and a deletion: the index operations there are."""
    for i in range(5):
        assert sf.put("idx/f%d" % i, b"x" * i).status_code == 200
    assert sf.put("idx/f1", b"replaced").status_code == 200
    sf.upload("idx/chunked", os.urandom(3000))
    assert sf.put("idx/sub/a", b"a").status_code == 200
    assert sf.delete("idx/f3").status_code == 200
    assert sf.delete("idx/sub").status_code == 200
    return versions(sf, "idx")


def test_versions_survive_a_sigkill(tmp_path):
    emu = EmulatorProcess(tmp_path).start()
    try:
        sf = SF(emu.url)
        before = fill(sf)
        assert sorted(before) == ["idx\\chunked", "idx\\f0", "idx\\f1", "idx\\f2", "idx\\f4"]
        assert before["idx\\f1"] > before["idx\\f4"]                 # a replacement takes the next version
        emu.kill()
        emu.restart()
        sf = SF(emu.url)
        assert versions(sf, "idx") == before
        assert sf.info("idx/sub").status_code == 404
        assert sf.put("idx/f0", b"after").status_code == 200
        assert versions(sf, "idx")["idx\\f0"] > max(before.values())  # numbering goes on after the restart
    finally:
        emu.stop()


def test_the_journal_is_compacted_and_a_torn_last_line_is_ignored(tmp_path, monkeypatch):
    monkeypatch.setattr(servicefabric_store, "JOURNAL_MIN_COMPACT", 4)
    data_dir = tmp_path / "data"
    journal = data_dir / "servicefabric" / "content.journal"
    with running_emulator(data_dir=data_dir) as first:
        sf = SF(first["url"])
        for i in range(10):
            assert sf.put("c/f%d" % i, b"%d" % i).status_code == 200
        before = versions(sf, "c")
        lines = journal.read_bytes().splitlines()
        assert len(lines) < 10                                       # folded into content.json on the way
        index = json.loads((data_dir / "servicefabric" / "content.json").read_text())
        assert all(index["files"].get(p) == v for p, v in ((p.replace("\\", "/"), v) for p, v in before.items())
                   if p.replace("\\", "/") not in {json.loads(line)["set"] for line in lines})
    with open(journal, "ab") as fh:
        fh.write(b'{"set":"c/f0","v":99')                             # a write cut short by a crash
    with running_emulator(data_dir=data_dir) as second:
        sf = SF(second["url"])
        assert versions(sf, "c") == before
        assert sf.put("c/new", b"n").status_code == 200
        assert versions(sf, "c")["c\\new"] == max(before.values()) + 1
        # replayed into content.json at start: the torn line is gone, the new record is whole
        assert journal.read_bytes() == b'{"set":"c/new","v":%d}\n' % (max(before.values()) + 1)
    with running_emulator(data_dir=data_dir) as third:
        assert versions(SF(third["url"]), "c")["c\\new"] == max(before.values()) + 1


def test_many_files_keep_their_versions_across_compactions(tmp_path):
    files = servicefabric_store.JOURNAL_MIN_COMPACT + 100         # one compaction on the way, a journal after it
    data_dir = tmp_path / "data"
    with running_emulator(data_dir=data_dir) as first:
        sf = SF(first["url"])
        for i in range(files):
            assert sf.put("m/f%04d" % i, b"").status_code == 200
        before = versions(sf, "m")
    assert len(before) == files and sorted(before.values()) == list(range(1, files + 1))
    with running_emulator(data_dir=data_dir) as second:
        assert versions(SF(second["url"]), "m") == before
