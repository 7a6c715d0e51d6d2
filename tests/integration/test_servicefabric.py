"""The four modules with provider servicefabric, run through ansible-playbook against the emulator.

Outcomes are read back from the emulator's control API: stored bytes (by SHA-256) and the
counters of accepted chunk bytes, which tell exactly what a run sent.
"""

import pytest

from tests.conftest import assert_no_traceback, make_file

MiB = 1024 * 1024


@pytest.fixture
def sf(imagestore_target):
    return imagestore_target("servicefabric")


@pytest.fixture
def emu(imagestore_emulator):
    return imagestore_emulator


def chunk_bytes(emu):
    return emu.stats("servicefabric")["chunk_bytes"]


def stored_bytes(emu):
    """Payload bytes the store accepted, by chunks and by whole-file PUTs."""
    stats = emu.stats("servicefabric")
    return stats["chunk_bytes"] + stats["whole_file_bytes"]


def test_upload_is_byte_identical_then_unchanged(ansible, sf, emu, image):
    src, digest = image(8 * MiB + 12345)
    before = chunk_bytes(emu)
    args = sf.module_args(src=src, path="it/upload/disk.img", chunk_size="1MiB", parallel=4)
    first, run = ansible.module("image_upload", args)
    assert first["changed"] is True, run.output
    assert first["bytes_sent"] == 8 * MiB + 12345 and first["size"] == 8 * MiB + 12345
    assert first["sha256"] == digest and first["resumed"] is False
    assert first["destination"] == {"path": "it/upload/disk.img"}
    assert emu.stored_sha256("servicefabric", "it/upload/disk.img") == digest
    assert chunk_bytes(emu) - before == 8 * MiB + 12345

    second, _ = ansible.module("image_upload", args)
    assert second["changed"] is False and second["bytes_sent"] == 0
    assert second["sha256"] == digest
    assert chunk_bytes(emu) - before == 8 * MiB + 12345           # nothing more was sent


def test_resume_sends_only_what_is_missing(ansible, sf, emu, image, imagestore_partial_upload):
    src, digest = image(6 * MiB + 7, seed=2)
    partial = imagestore_partial_upload("servicefabric", src, path="it/resume/disk.img", fraction=0.5)
    assert partial.bytes_sent == (6 * MiB + 7) // 2
    before = chunk_bytes(emu)
    result, run = ansible.module("image_upload", sf.module_args(src=src, path="it/resume/disk.img", chunk_size="1MiB"))
    assert result["changed"] and result["resumed"], run.output
    assert result["session_id"] == partial.session_id
    assert result["bytes_sent"] == 6 * MiB + 7 - partial.bytes_sent
    assert chunk_bytes(emu) - before == result["bytes_sent"]
    assert emu.stored_sha256("servicefabric", "it/resume/disk.img") == digest


def test_a_different_file_of_the_same_size_does_not_resume_a_foreign_session(ansible, sf, emu, image,
                                                                             imagestore_partial_upload):
    old, _ = image(2 * MiB, seed=3, name="old.img")
    new, digest = image(2 * MiB, seed=4, name="new.img")
    imagestore_partial_upload("servicefabric", old, path="it/foreign/disk.img", fraction=0.5)
    result, _ = ansible.module("image_upload", sf.module_args(src=new, path="it/foreign/disk.img", chunk_size="1MiB"))
    assert result["changed"] and not result["resumed"] and result["bytes_sent"] == 2 * MiB
    assert emu.stored_sha256("servicefabric", "it/foreign/disk.img") == digest


def test_check_mode_sends_nothing_and_diff_shows_the_change(ansible, sf, emu, image):
    src, _ = image(3 * MiB, seed=5)
    before = chunk_bytes(emu)
    result, run = ansible.module("image_upload", sf.module_args(src=src, path="it/check/disk.img"), check=True, diff=True)
    assert result["changed"] is True and result["bytes_sent"] == 0 and result["would_send"] == 3 * MiB
    assert result["diff"] == {"before": {"path": "it/check/disk.img", "size": None},
                              "after": {"path": "it/check/disk.img", "size": 3 * MiB}}
    assert "+" in run.output or "size" in run.output
    assert chunk_bytes(emu) == before
    assert emu.stored_sha256("servicefabric", "it/check/disk.img") is None


def test_force_uploads_again(ansible, sf, emu, image):
    src, digest = image(MiB, seed=6)
    args = sf.module_args(src=src, path="it/force/disk.img")
    ansible.module("image_upload", args)
    before = stored_bytes(emu)
    result, _ = ansible.module("image_upload", dict(args, force=True))
    assert result["changed"] and result["bytes_sent"] == MiB
    assert stored_bytes(emu) - before == MiB                     # a file up to chunk_size goes by one whole-file PUT


def test_a_same_size_edit_is_uploaded_and_a_file_without_record_once(ansible, sf, emu, image):
    """The store keeps no digest: the collection's record in the store says what it holds (issue: same-size edits)."""
    a, _ = image(MiB, seed=7, name="a.img")
    b, digest_b = image(MiB, seed=8, name="b.img")
    ansible.module("image_upload", sf.module_args(src=a, path="it/samesize/disk.img"))
    result, _ = ansible.module("image_upload", sf.module_args(src=b, path="it/samesize/disk.img"))
    assert result["changed"] is True and result["compared"] == "sha256"
    assert emu.stored_sha256("servicefabric", "it/samesize/disk.img") == digest_b
    import requests
    requests.put(emu.url + "/ImageStore/it%2Fsamesize%2Fother.img", params={"api-version": "6.0"},
                 data=open(b, "rb").read()).raise_for_status()            # the same bytes, put there by another tool
    other, _ = ansible.module("image_upload", sf.module_args(src=b, path="it/samesize/other.img"))
    assert other["changed"] is True and other["compared"] == "record"
    assert "has no record of this collection" in other["msg"] and other["notes"]
    again, _ = ansible.module("image_upload", sf.module_args(src=b, path="it/samesize/other.img"))
    assert again["changed"] is False


def test_empty_file_goes_by_whole_file_put(ansible, sf, emu, tmp_path):
    src = tmp_path / "empty.bin"
    src.write_bytes(b"")
    result, run = ansible.module("image_upload", sf.module_args(src=str(src), path="it/empty/empty.bin"))
    assert result["changed"] and result["session_id"] is None, run.output
    assert emu.stored_bytes("servicefabric", "it/empty/empty.bin") == b""
    again, _ = ansible.module("image_upload", sf.module_args(src=str(src), path="it/empty/empty.bin"))
    assert again["changed"] is False


def test_application_package_folder(ansible, sf, emu, tmp_path):
    pkg = tmp_path / "CalcApp"
    (pkg / "Code").mkdir(parents=True)
    digests = {
        "ApplicationManifest.xml": make_file(str(pkg / "ApplicationManifest.xml"), 2000, seed=9),
        "Code/Calc.exe": make_file(str(pkg / "Code" / "Calc.exe"), 3 * MiB + 1, seed=10),
    }
    (pkg / "Code" / "empty.cfg").write_bytes(b"")
    args = sf.module_args(src=str(pkg), path="it/pkg/CalcApp", chunk_size="1MiB")
    result, run = ansible.module("image_upload", args)
    assert result["changed"], run.output
    for rel, digest in digests.items():
        assert emu.stored_sha256("servicefabric", "it/pkg/CalcApp/" + rel) == digest
    assert emu.stored_bytes("servicefabric", "it/pkg/CalcApp/Code/empty.cfg") == b""
    assert emu.stored_bytes("servicefabric", "it/pkg/CalcApp/Code/_.dir") == b""
    assert emu.stored_bytes("servicefabric", "it/pkg/CalcApp/_.dir") == b""
    assert result["markers"] == ["it/pkg/CalcApp/Code/_.dir", "it/pkg/CalcApp/_.dir"]
    again, _ = ansible.module("image_upload", args)
    assert again["changed"] is False and again["bytes_sent"] == 0


def test_info_by_path_and_by_id(ansible, sf, image, imagestore_partial_upload):
    src, _ = image(4 * MiB, seed=11)
    partial = imagestore_partial_upload("servicefabric", src, path="it/info/disk.img", fraction=0.25)
    by_path, run = ansible.module("upload_session_info", sf.module_args(path="it/info/disk.img"))
    assert by_path["changed"] is False, run.output
    (s,) = by_path["sessions"]
    assert s["id"] == partial.session_id and s["provider"] == "servicefabric" and s["state"] == "active"
    assert s["size"] == 4 * MiB and s["bytes_received"] == MiB and s["progress"] == 25.0
    assert s["missing_ranges"] == [{"start": MiB, "end": 4 * MiB - 1}]
    assert s["raw"]["FileSize"] == str(4 * MiB)
    by_id, _ = ansible.module("upload_session_info", sf.module_args(session_id=partial.session_id))
    assert by_id["sessions"] == by_path["sessions"]
    none, _ = ansible.module("upload_session_info", sf.module_args(path="it/info/none.img"))
    assert none["sessions"] == []


def test_commit_is_idempotent_and_refuses_incomplete_sessions(ansible, sf, emu, image, imagestore_partial_upload):
    src, digest = image(2 * MiB, seed=12)
    half = imagestore_partial_upload("servicefabric", src, path="it/commit/half.img", fraction=0.5)
    failed, run = ansible.module("upload_session_commit", sf.module_args(session_id=half.session_id))
    assert failed["failed"] and failed["missing_ranges"] == [{"start": MiB, "end": 2 * MiB - 1}]
    assert failed["msg"] == ("upload session %s cannot be committed: %d bytes are missing (ranges %d-%d); run "
                             "image_upload again to send them" % (half.session_id, MiB, MiB, 2 * MiB - 1))
    assert_no_traceback(run.output)

    full = imagestore_partial_upload("servicefabric", src, path="it/commit/full.img", fraction=1.0)
    checked, _ = ansible.module("upload_session_commit", sf.module_args(session_id=full.session_id), check=True)
    assert checked["changed"] and emu.stored_sha256("servicefabric", "it/commit/full.img") is None
    first, _ = ansible.module("upload_session_commit", sf.module_args(session_id=full.session_id))
    assert first["changed"] is True and first["path"] == "it/commit/full.img"
    assert emu.stored_sha256("servicefabric", "it/commit/full.img") == digest
    second, _ = ansible.module("upload_session_commit", sf.module_args(session_id=full.session_id))
    assert second["changed"] is False


def test_absent_is_idempotent(ansible, sf, image, imagestore_partial_upload):
    src, _ = image(MiB, seed=13)
    partial = imagestore_partial_upload("servicefabric", src, path="it/absent/disk.img", fraction=0.5)
    checked, _ = ansible.module("upload_session_absent", sf.module_args(session_id=partial.session_id), check=True)
    assert checked["changed"] and checked["deleted"] == [partial.session_id]
    first, _ = ansible.module("upload_session_absent", sf.module_args(session_id=partial.session_id))
    assert first["changed"] and first["deleted"] == [partial.session_id]
    info, _ = ansible.module("upload_session_info", sf.module_args(session_id=partial.session_id))
    assert info["sessions"] == []
    second, _ = ansible.module("upload_session_absent", sf.module_args(session_id=partial.session_id))
    assert second["changed"] is False and second["deleted"] == []


def test_a_new_upload_removes_this_collections_session_of_other_content(ansible, sf, image, imagestore_partial_upload):
    a, _ = image(MiB, seed=14, name="a.img")
    b, _ = image(MiB, seed=15, name="b.img")
    first = imagestore_partial_upload("servicefabric", a, path="it/absentpath/disk.img", fraction=0.5)
    second = imagestore_partial_upload("servicefabric", b, path="it/absentpath/disk.img", fraction=0.5)
    info, _ = ansible.module("upload_session_info", sf.module_args(path="it/absentpath/disk.img"))
    assert [s["id"] for s in info["sessions"]] == [second.session_id] != [first.session_id]
    result, _ = ansible.module("upload_session_absent", sf.module_args(path="it/absentpath/disk.img"))
    assert result["changed"] and result["deleted"] == [second.session_id]
    info, _ = ansible.module("upload_session_info", sf.module_args(path="it/absentpath/disk.img"))
    assert info["sessions"] == []


@pytest.mark.parametrize("module,extra,message", [
    ("image_upload", {"src": "/nonexistent/disk.img", "path": "it/x.img"},
     "src: /nonexistent/disk.img does not exist on the host running the module"),
    ("upload_session_info", {"session_id": "not-a-guid"},
     "session_id 'not-a-guid' is not a valid upload session id: Service Fabric session ids are GUIDs such as "
     "'4a2340e8-d8d8-497c-95fe-cdaa1052f33b'"),
    ("image_upload", {"src": "/etc/hostname", "path": "../outside"},
     "path '../outside' contains a '..' segment; give a path inside the image store"),
    ("image_upload", {"src": "/etc/hostname", "path": "it/x", "parallel": 0}, "parallel must be between 1 and 64, got 0"),
    ("image_upload", {"src": "/etc/hostname"}, "provider servicefabric uploads with src, path: path is missing"),
    ("image_upload", {"src": "/etc/hostname", "library": "images", "item": "x"},
     "options item, library: item belongs to provider vsphere; library belongs to provider vsphere; provider servicefabric "
     "takes compress, path"),
    ("upload_session_commit", {"session_id": "4a2340e8-d8d8-497c-95fe-cdaa1052f33b"},
     "no upload session for session_id 4a2340e8-d8d8-497c-95fe-cdaa1052f33b on %(endpoint)s (it was committed and "
     "forgotten, removed, or it expired)"),
])
def test_bad_input_fails_clearly(ansible, sf, module, extra, message):
    result, run = ansible.module(module, sf.module_args(**extra))
    assert result["failed"] is True
    assert result["msg"] == message % {"endpoint": sf.endpoint}
    assert_no_traceback(run.output)


def test_unreachable_endpoint_fails_clearly(ansible, image):
    src, _ = image(1000)
    result, run = ansible.module("image_upload", {"provider": "servicefabric", "endpoint": "http://127.0.0.1:9",
                                                  "src": src, "path": "x/y", "retries": 1})
    assert result["failed"] is True
    assert result["msg"] == ("get image store content of x/y failed after 2 attempts: cannot connect to "
                             "http://127.0.0.1:9: connection refused (is the endpoint right and the service running?)")
    assert result["elapsed"] < 5
    assert_no_traceback(run.output)


def test_module_defaults_set_the_connection_once(ansible, sf, emu, image):
    src, digest = image(MiB, seed=16)
    run = ansible.run([{
        "module_defaults": {"group/imagestore.upload.upload": {"provider": "servicefabric", "endpoint": sf.endpoint}},
        "imagestore.upload.image_upload": {"src": src, "path": "it/defaults/disk.img"},
    }])
    assert run.results[0]["changed"], run.output
    assert emu.stored_sha256("servicefabric", "it/defaults/disk.img") == digest


def test_environment_variables_set_the_connection(ansible, sf, emu, image):
    src, digest = image(MiB, seed=17)
    result, run = ansible.module("image_upload", {"src": src, "path": "it/env/disk.img"},
                                 env={"IMAGESTORE_PROVIDER": "servicefabric", "IMAGESTORE_ENDPOINT": sf.endpoint})
    assert result["changed"], run.output
    assert emu.stored_sha256("servicefabric", "it/env/disk.img") == digest


@pytest.mark.slow
def test_200_mib_parallel_4_then_resume_of_half(ansible, sf, emu, image, imagestore_partial_upload):
    """The issue's acceptance: 200 MiB, parallel 4, byte-identical; re-run unchanged; half-done resumed."""
    src, digest = image(200 * MiB, seed=18)
    before = chunk_bytes(emu)
    first, run = ansible.module("image_upload", sf.module_args(src=src, path="it/big/disk.img", parallel=4))
    assert first["changed"] and first["bytes_sent"] == 200 * MiB, run.output
    assert emu.stored_sha256("servicefabric", "it/big/disk.img") == digest
    second, _ = ansible.module("image_upload", sf.module_args(src=src, path="it/big/disk.img", parallel=4))
    assert second["changed"] is False and chunk_bytes(emu) - before == 200 * MiB

    partial = imagestore_partial_upload("servicefabric", src, path="it/big/resumed.img", fraction=0.5,
                                        chunk_size=16 * MiB)
    before = chunk_bytes(emu)
    resumed, _ = ansible.module("image_upload", sf.module_args(src=src, path="it/big/resumed.img", parallel=4))
    assert resumed["resumed"] and resumed["bytes_sent"] == 200 * MiB - partial.bytes_sent
    assert chunk_bytes(emu) - before == 200 * MiB - partial.bytes_sent
    assert emu.stored_sha256("servicefabric", "it/big/resumed.img") == digest



def test_a_run_stopped_before_its_commit_is_finished_without_sending_again(ansible, sf, emu, image,
                                                                          imagestore_partial_upload):
    src, digest = image(2 * MiB, seed=19)
    imagestore_partial_upload("servicefabric", src, path="it/precommit/disk.img", fraction=1.0)
    before = chunk_bytes(emu)
    result, run = ansible.module("image_upload", sf.module_args(src=src, path="it/precommit/disk.img", chunk_size="1MiB"))
    assert result["changed"] and result["resumed"] and result["bytes_sent"] == 0, run.output
    assert chunk_bytes(emu) == before
    assert emu.stored_sha256("servicefabric", "it/precommit/disk.img") == digest
