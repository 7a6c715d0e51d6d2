"""The vSphere protocol on the engine, against the emulator running in this process (no Ansible: the engine is called as
the module runner calls it). What the integration tests cannot show cheaply: resume keyed on content, a declared
SHA-256 instead of a SHA-1 pass, a UTF-8 password, an OVA counted by its members, state=absent."""

import hashlib
import io
import os
import tarfile
import threading

import pytest
import requests

from ansible_collections.imagestore.upload.plugins.module_utils._errors import ImageStoreError
from ansible_collections.imagestore.upload.plugins.module_utils._options import session_spec, upload_spec, validate
from ansible_collections.imagestore.upload.plugins.module_utils._registry import PROVIDERS
from ansible_collections.imagestore.upload.plugins.module_utils._runner import close, connect, execute
from ansible_collections.imagestore.upload.plugins.module_utils._source import Source
from ansible_collections.imagestore.upload.plugins.module_utils._vsphere_client import ContentLibraryClient
from imagestore_emulator.testing import running_emulator
import vsphere_helpers as partial_vsphere
from pytest_imagestore.plugin import Target

MiB = 1024 * 1024


@pytest.fixture(scope="module")
def emu():
    with running_emulator() as info:
        yield info


@pytest.fixture(autouse=True)
def no_digest_cache(monkeypatch, tmp_path):
    monkeypatch.setenv("IMAGESTORE_DIGEST_CACHE", "")


def run(emu, operation="upload", check=False, **params):
    """One module run: (result, warnings); a failure is a result with failed/msg."""
    spec, owners = upload_spec(PROVIDERS) if operation == "upload" else session_spec(PROVIDERS, absent=operation == "absent")
    args = dict((k, v.get("default")) for k, v in spec.items())
    creds = emu["credentials"]["vsphere"]
    args.update(provider="vsphere", endpoint=emu["url"], username=creds["username"], password=creds["password"], library="images")
    args.update(params)
    warnings = []
    try:
        validate(args, PROVIDERS, owners, operation)
        protocol = connect(args, PROVIDERS["vsphere"], check, warnings.append)
        try:
            result = execute(protocol, operation)
        finally:
            close(protocol, warnings.append)
    except ImageStoreError as exc:
        result = dict(failed=True, msg=exc.message, **exc.to_result())
    result["warnings"] = warnings
    return result


def stored(emu, item_id, name):
    r = requests.get("%s/_emulator/vsphere/items/%s/files/%s" % (emu["url"], item_id, name))
    return r.content if r.status_code == 200 else None


def sessions(emu, item_id):
    return [s for s in requests.get(emu["url"] + "/_emulator/vsphere/sessions").json() if s["library_item_id"] == item_id]


def write(path, data):
    with open(str(path), "wb") as fh:
        fh.write(data)
    return str(path)


def target(emu):
    creds = emu["credentials"]["vsphere"]
    return Target("vsphere", emu["url"], username=creds["username"], password=creds["password"], library="images")


def test_a_same_size_edit_is_uploaded_and_the_rerun_compares_by_sha1(emu, tmp_path):
    src = write(tmp_path / "a.iso", b"1" * 300000)
    first = run(emu, src=src, item="edit")
    write(tmp_path / "a.iso", b"2" * 300000)
    second = run(emu, src=src, item="edit")
    third = run(emu, src=src, item="edit")
    assert first["changed"] and second["changed"] and second["compared"] == "sha1" and second["bytes_sent"] == 300000
    assert stored(emu, second["item_id"], "a.iso") == b"2" * 300000
    assert not third["changed"] and third["compared"] == "sha1" and "notes" not in third


@pytest.mark.parametrize("same", [True, False], ids=["same content", "other content"])
def test_resume_counts_a_ready_file_only_with_this_content(emu, tmp_path, same):
    """A kept session holds the file READY (every byte received, not completed); the re-run resumes that session and sends
    the file again only when its content is not this file's (same size, other bytes)."""
    src = write(tmp_path / "r.iso", os.urandom(200000))
    item = "resume-%s" % ("same" if same else "other")
    made, cleanup = partial_vsphere.make(target(emu), src, 1.0, 65536, library="images", item=item)
    try:
        if not same:
            write(src, os.urandom(200000))
        result = run(emu, src=src, item=item)
        assert result["changed"] and result["resumed"] and result["session_id"] == made.session_id, result
        assert result["bytes_sent"] == (0 if same else 200000)
        assert stored(emu, made.item_id, "r.iso") == open(src, "rb").read()
        assert sessions(emu, made.item_id) == []
    finally:
        cleanup()


def test_a_session_holding_another_uploads_files_is_not_used(emu, tmp_path):
    other = write(tmp_path / "other.iso", os.urandom(1000))
    made, cleanup = partial_vsphere.make(target(emu), other, 0.0, 65536, library="images", item="foreign")
    try:
        result = run(emu, src=write(tmp_path / "mine.iso", b"m" * 1000), item="foreign")
        assert result["failed"] and result["msg"] == (
            "the item's ACTIVE update session %s holds files of another upload that are not received (other.iso): wait for "
            "that upload, or remove the session with imagestore.upload.upload_session_absent" % made.session_id)
        assert [s["state"] for s in sessions(emu, made.item_id)] == ["ACTIVE"]      # left alone
    finally:
        cleanup()


def test_a_declared_sha256_is_sent_as_checksum_info_without_a_pass_before_the_first_byte(emu, tmp_path, monkeypatch):
    data = os.urandom(500000)
    src = write(tmp_path / "d.iso", data)
    events, add = [], ContentLibraryClient.file_add
    digests = Source.digests

    def recording_add(self, session_id, name, size, checksum_info=None):
        events.append(("file_add", checksum_info))
        return add(self, session_id, name, size, checksum_info)

    def recording_digests(self, algorithms=("sha256",)):
        if threading.current_thread() is threading.main_thread():
            events.append(("digest pass", tuple(algorithms)))
        return digests(self, algorithms)
    monkeypatch.setattr(ContentLibraryClient, "file_add", recording_add)
    monkeypatch.setattr(Source, "digests", recording_digests)
    sha256 = hashlib.sha256(data).hexdigest()
    result = run(emu, src=src, item="declared", checksum="sha256:" + sha256)
    assert result["changed"] and result["sha256"] == sha256 and stored(emu, result["item_id"], "d.iso") == data
    assert events[0] == ("file_add", {"algorithm": "SHA256", "checksum": sha256}), events
    again = run(emu, src=src, item="declared", checksum="sha256:" + sha256)
    assert not again["changed"] and again["compared"] == "sha1"        # the item reports SHA-1: computed for the comparison


def test_a_wrong_declared_sha256_fails_and_stores_nothing(emu, tmp_path):
    src = write(tmp_path / "w.iso", os.urandom(100000))
    result = run(emu, src=src, item="wrong-sha", checksum="sha256:" + "0" * 64)
    assert result["failed"] and result["session_cleanup"] == "removed", result
    # the server refuses the file (its SHA-256 is not the declared one); the user is told it is their checksum that is wrong
    actual = hashlib.sha256(open(src, "rb").read()).hexdigest()
    assert result["msg"].startswith("checksum: sha256 of %s is %s, not the declared %s; nothing was committed"
                                    % (src, actual, "0" * 64)), result["msg"]
    assert result["msg"].endswith("the library item %s created by this run was deleted" % result["item_id"])
    assert [i for i in requests.get(emu["url"] + "/_emulator/vsphere/items").json() if i["name"] == "wrong-sha"] == []


def test_a_password_beyond_latin_1_logs_in(emu, tmp_path):
    config = emu["url"] + "/_emulator/config"
    before = requests.get(config).json()["vsphere_password"]
    password = "pässwörd-密码-ключ"
    requests.post(config, json={"vsphere_password": password}).raise_for_status()
    try:
        result = run(emu, src=write(tmp_path / "u.iso", b"u" * 5000), item="utf8", password=password)
        wrong = run(emu, src=str(tmp_path / "u.iso"), item="utf8", password="pässwörd-falsch")
    finally:
        requests.post(config, json={"vsphere_password": before}).raise_for_status()
    assert result["changed"] and stored(emu, result["item_id"], "u.iso") == b"u" * 5000
    assert wrong["failed"] and "wrong user name or password" in wrong["msg"] and "pässwörd" not in wrong["msg"]


def test_an_ova_counts_as_stored_when_its_members_are_there(emu, tmp_path):
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w") as tar:
        for name, data in (("a.ovf", b"<Envelope/>"), ("a-disk1.vmdk", b"d" * 3000)):
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    src = write(tmp_path / "a.ova", buf.getvalue())
    first = run(emu, src=src, item="ova")
    assert first["changed"] and first["diff"]["after"]["checksum"] is None, first      # an OVA's checksum is never declared
    item_id = first["item_id"]
    api = partial_vsphere.client_for(target(emu))
    try:
        session_id = api.session_create(item_id)          # what the server would keep after unpacking: the members
        for name, size in (("a.ovf", 11), ("a-disk1.vmdk", 3000)):
            info = api.file_add(session_id, name, size)
            api.put(info["upload_endpoint"]["uri"], name, lambda n=name, s=size: (b"<Envelope/>" if n == "a.ovf" else b"d" * s), size)
        api.session_complete(session_id)
    finally:
        api.logout()
    again = run(emu, src=src, item="ova")
    assert not again["changed"] and again["compared"] == "size"
    assert again["notes"] == ["the server unpacks a.ova: every member of the archive is in the item with its size"]


def test_state_absent_removes_the_item_with_check_mode_diff_and_idempotence(emu, tmp_path):
    src = write(tmp_path / "gone.iso", b"g" * 4000)
    made = run(emu, src=src, item="absent")
    partial, _cleanup = partial_vsphere.make(target(emu), src, 0.0, 65536, library="images", item="absent")
    check = run(emu, check=True, state="absent", item="absent")
    assert check["changed"] and check["msg"] == "would remove gone.iso from item 'absent' of library 'images'"
    assert check["diff"] == {"before": {"present": ["gone.iso"]}, "after": {"present": []}}
    assert stored(emu, made["item_id"], "gone.iso") == b"g" * 4000
    gone = run(emu, state="absent", item="absent")
    assert gone["changed"] and gone["removed"] == ["gone.iso"] and gone["item_id"] == made["item_id"]
    assert [i for i in requests.get(emu["url"] + "/_emulator/vsphere/items").json() if i["name"] == "absent"] == []
    assert sessions(emu, made["item_id"]) == []                       # the ACTIVE session was canceled and deleted first
    again = run(emu, state="absent", item="absent")
    assert not again["changed"] and again["msg"] == "item 'absent' of library 'images' holds nothing to remove"


def test_session_modules_name_states_in_the_engines_words(emu, tmp_path):
    src = write(tmp_path / "s.iso", b"s" * 7000)
    made, cleanup = partial_vsphere.make(target(emu), src, 1.0, 65536, library="images", item="states")
    try:
        (record,) = run(emu, "sessions", item="states")["sessions"]
        assert record["state"] == "complete" and record["raw_state"] == "ACTIVE" and record["progress"] == 100.0
        requests.post("%s/_emulator/vsphere/sessions/%s/expire" % (emu["url"], made.session_id)).raise_for_status()
        (expired,) = run(emu, "sessions", session_id=made.session_id, library=None)["sessions"]
        assert expired["state"] == "failed" and expired["raw_state"] == "ERROR" and "expired" in expired["error"]
        refused = run(emu, "commit", session_id=made.session_id, library=None)
        assert refused["failed"] and refused["msg"].startswith("upload session %s is failed (ERROR)" % made.session_id)
    finally:
        cleanup()


def test_a_session_completed_and_deleted_by_another_run_meanwhile_counts_as_done(emu, tmp_path, monkeypatch):
    """This run takes the item's ACTIVE session (its file READY); before it asks what the session misses, another run
    completes the session and deletes it, the item holding the file: that is the upload done (docs/vsphere.md: "DONE and
    deleted, with the item holding the files"), not a session lost: no restart, no second session, nothing sent."""
    from ansible_collections.imagestore.upload.plugins.module_utils import _vsphere_protocol
    from ansible_collections.imagestore.upload.plugins.module_utils._vsphere_sessions import complete
    src = write(tmp_path / "d.iso", os.urandom(300000))
    made, cleanup = partial_vsphere.make(target(emu), src, 1.0, 65536, library="images", item="done-meanwhile")
    other = partial_vsphere.client_for(target(emu))
    found = _vsphere_protocol.VSphere.find_session

    def find_then_the_other_run_completes(self, dest, key, files):
        session = found(self, dest, key, files)
        complete(other, made.session_id)
        other.session_delete(made.session_id)
        return session
    monkeypatch.setattr(_vsphere_protocol.VSphere, "find_session", find_then_the_other_run_completes)
    before = requests.get(emu["url"] + "/_emulator/vsphere/stats").json()
    try:
        result = run(emu, src=src, item="done-meanwhile")
    finally:
        other.logout()
        cleanup()
    assert not result.get("failed") and result["session_id"] == made.session_id and result["bytes_sent"] == 0, result
    assert "session_restarts" not in result and not any("ended during the upload" in w for w in result["warnings"]), result
    after = requests.get(emu["url"] + "/_emulator/vsphere/stats").json()
    assert after["sessions_created"] == before["sessions_created"] and after["data_bytes"] == before["data_bytes"]
    assert stored(emu, made.item_id, "d.iso") == open(src, "rb").read()
    assert sessions(emu, made.item_id) == []
