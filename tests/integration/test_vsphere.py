"""The four modules with provider vsphere, run through ansible-playbook against the emulator AND vcsim.

Tests taking ``peer`` run twice: on the emulator (the plugin's target, or a configured vCenter) and on
govmomi's vcsim (built and started once per session from tests/vcsim/). The same assertions hold on
both where both can answer them: the stored size everywhere, the read-back SHA-256 on the emulator.
What only the emulator can show (resume after an interrupted transfer, checksum verification, the
/api style, fault injection, exact login errors) runs there only; see docs/vcsim-notes.md for why.

vcsim is skipped, with its reason, only where Go or the govmomi sources are missing; with
``IMAGESTORE_REQUIRE_VCSIM=1`` (CI) that is a failure instead.
"""

import os
import uuid

import pytest
import requests

from ansible_collections.imagestore.upload.plugins.module_utils._digest_cache import DigestCache
from ansible_collections.imagestore.upload.plugins.module_utils._source import Source
from pytest_imagestore.partial import PartialUploads
from vsphere_helpers import client_for, make as broken_upload
from pytest_imagestore.plugin import Target
from tests.conftest import assert_no_traceback, make_file, sha256_file

MiB = 1024 * 1024
ISO_SIZE = 64 * MiB
VCSIM_LIBRARY = "it-vsphere"


@pytest.fixture(scope="session")
def vcsim_target(vcsim):
    """govmomi's vcsim (the session's ``vcsim`` fixture) with a library on its datastore, as a Target."""
    target = Target("vsphere", vcsim["url"], username=vcsim["username"], password=vcsim["password"],
                    validate_certs=False, ca_path=None, library=VCSIM_LIBRARY)
    api = client_for(target)
    api.library_create_local(VCSIM_LIBRARY, vcsim["datastore_id"])
    api.logout()
    api.http.close()
    return target


class Peer:
    """Where a test runs: module arguments, a client for looking at the server, the emulator if it is one."""

    def __init__(self, kind, target):
        self.kind = kind
        self.target = target
        self.library = target.options.get("library") or "images"
        self.emulator = target.emulator
        self._api = None

    def args(self, **extra):
        return self.target.module_args(**dict({"library": self.library}, **extra))

    @property
    def api(self):
        if self._api is None:
            self._api = client_for(self.target)
        return self._api

    def close(self):
        if self._api is not None:
            self._api.logout()
            self._api.http.close()

    def item_id(self, name):
        found = self.api.item_find(self.library_id(), name)
        return found[0] if found else None

    def library_id(self):
        return self.api.library_find(self.library)[0]

    def files(self, item_id):
        """name -> size of what the item holds (the last entry: vcsim lists a name once per PUT)."""
        return dict((f["name"], f["size"]) for f in self.api.item_files(item_id))

    def sessions(self, item_id):
        """(id, state) of every update session of the item."""
        found = []
        for session_id in self.api.session_list(item_id):
            model = self.api.session_get(session_id)
            if model and model.get("library_item_id") == item_id:
                found.append((session_id, model["state"]))
        return found

    def data_bytes(self):
        return self.emulator.stats("vsphere")["data_bytes"] if self.emulator else None


@pytest.fixture(params=["emulator", "vcsim"])
def peer(request, imagestore_target):
    target = imagestore_target("vsphere") if request.param == "emulator" else request.getfixturevalue("vcsim_target")
    p = Peer(request.param, target)
    yield p
    p.close()


@pytest.fixture
def partial(peer):
    """Half-finished uploads on the peer (the plugin's maker, bound to this peer's target), removed after the test."""
    uploads = PartialUploads({"vsphere": peer.target})
    yield lambda src, **kwargs: uploads("vsphere", src, library=peer.library, **kwargs)
    uploads.cleanup()


@pytest.fixture
def emu_peer(imagestore_target):
    """The emulator only (tests of what vcsim does not implement)."""
    target = imagestore_target("vsphere")
    if not target.emulated:
        pytest.skip("needs the emulator (a real vCenter is configured)")
    p = Peer("emulator", target)
    yield p
    p.close()


@pytest.fixture
def faults(imagestore_emulator):
    """Fault rules for the vSphere part of the emulator, cleared before and after."""
    url = imagestore_emulator.url + "/_emulator/faults"
    requests.delete(url)

    def add(**rule):
        r = requests.post(url, json=dict({"provider": "vsphere"}, **rule))
        assert r.status_code == 200, r.text
    add.url = url
    yield add
    requests.delete(url)


def unique(prefix):
    return "%s-%s" % (prefix, uuid.uuid4().hex[:8])


# ---------------------------------------------------------------------------------------------
# both peers

def test_iso_into_a_new_item_then_unchanged_and_no_session_left(ansible, peer, image):
    src, digest = image(ISO_SIZE, seed=31, name="ubuntu.iso")
    item = unique("iso")
    before = peer.data_bytes()
    first, run = ansible.module("image_upload", peer.args(src=src, item=item))
    assert first["changed"] is True and first["item_created"] is True, run.output
    assert first["size"] == ISO_SIZE and first["bytes_sent"] == ISO_SIZE and first["sha256"] == digest
    assert first["resumed"] is False and first["api_style"] == ("api" if peer.kind == "emulator" else "rest")
    item_id = first["item_id"]
    assert first["destination"] == {"library_id": peer.library_id(), "item_id": item_id, "file_name": "ubuntu.iso"}
    assert peer.api.item_get(item_id)["type"] == "iso"
    assert peer.files(item_id) == {"ubuntu.iso": ISO_SIZE}
    if peer.emulator:
        assert peer.emulator.stored_sha256("vsphere", item_id, "ubuntu.iso") == digest
        assert peer.data_bytes() - before == ISO_SIZE

    again = ansible.run([("imagestore.upload.image_upload", peer.args(src=src, item=item)),
                         ("imagestore.upload.upload_session_info", peer.args(item=item))])
    second, info = again.results
    assert second["changed"] is False and second["bytes_sent"] == 0 and second["session_id"] is None, again.output
    assert second["item_id"] == item_id and second["sha256"] == digest
    if peer.kind == "emulator":
        assert second["compared"] == "sha1" and "notes" not in second
        assert second["msg"] == ("item %r of library %r already holds ubuntu.iso (compared by sha1); nothing sent (force=true "
                                 "uploads again)" % (item, peer.library))
    else:                                                                       # vcsim reports no checksum: size decides
        note = "the store reports no checksum for ubuntu.iso, so only its size was compared"
        assert second["compared"] == "size" and second["notes"] == [note]
        assert second["msg"] == ("item %r of library %r already holds ubuntu.iso (compared by size); nothing sent (force=true "
                                 "uploads again); %s" % (item, peer.library, note))
    assert info["sessions"] == [] and peer.sessions(item_id) == []             # the DONE session was deleted, none ACTIVE
    if peer.emulator:
        assert peer.data_bytes() - before == ISO_SIZE


def test_check_mode_sends_nothing_and_diff_shows_the_change(ansible, peer, image):
    src, _ = image(3 * MiB, seed=32, name="check.iso")
    item = unique("check")
    before = peer.data_bytes()
    result, run = ansible.module("image_upload", peer.args(src=src, item=item), check=True, diff=True)
    assert result["changed"] is True and result["bytes_sent"] == 0 and result["would_send"] == 3 * MiB, run.output
    assert result["item_id"] is None and result["session_id"] is None
    assert result["msg"] == "would send %d of %d bytes to item %r of library %r" % (3 * MiB, 3 * MiB, item, peer.library)
    assert result["diff"]["before"] == {"item": item, "file_name": "check.iso", "size": None, "checksum": None}
    assert result["diff"]["after"]["size"] == 3 * MiB
    assert peer.item_id(item) is None                        # no item was created, so no session either
    assert peer.data_bytes() == before


def test_info_commit_and_absent_are_idempotent(ansible, peer, image, partial):
    src, digest = image(2 * MiB + 5, seed=33, name="commit.img")
    item = unique("commit")
    made = partial(src, fraction=1.0, item=item)           # every byte received, the session not completed
    sid = made.session_id
    run = ansible.run([
        ("imagestore.upload.upload_session_info", peer.args(item=item)),
        ("imagestore.upload.upload_session_info", peer.target.module_args(session_id=sid)),
        {"imagestore.upload.upload_session_commit": peer.target.module_args(session_id=sid), "check_mode": True},
        ("imagestore.upload.upload_session_commit", peer.target.module_args(session_id=sid)),
        ("imagestore.upload.upload_session_commit", peer.args(item=item)),
        ("imagestore.upload.upload_session_absent", peer.target.module_args(session_id=sid)),
        ("imagestore.upload.upload_session_absent", peer.target.module_args(session_id=sid)),
    ])
    by_item, by_id, checked, committed, again, absent, absent_again = run.results
    assert by_item["changed"] is False, run.output
    (s,) = by_item["sessions"]
    assert s["id"] == sid and s["provider"] == "vsphere" and s["library_item_id"] == made.library_item_id
    assert [f["name"] for f in s["files"]] == ["commit.img"] and s["raw"]["state"] == "ACTIVE" and s["raw_state"] == "ACTIVE"
    if peer.kind == "emulator":                     # every file READY: complete (vcsim never says a file is READY)
        assert s["state"] == "complete" and s["size"] == 2 * MiB + 5 and s["bytes_received"] == 2 * MiB + 5
        assert s["progress"] == 100.0 and s["files"][0]["status"] == "ready" and s["missing_ranges"] == []
        assert s["expires"].endswith("Z")
    else:
        assert s["state"] == "active"
    assert by_id["sessions"] == by_item["sessions"]
    assert checked["changed"] is True and checked["msg"] == "would commit upload session %s" % sid
    assert committed["changed"] is True and committed["msg"] == "committed upload session %s" % sid
    assert again["changed"] is False and again["msg"] == "upload session %s was already committed" % sid
    assert absent["changed"] is True and absent["deleted"] == [sid] and absent["canceled"] == []      # DONE: not canceled
    assert absent_again["changed"] is False and absent_again["msg"] == "no upload session to remove for session_id %s" % sid
    assert peer.sessions(made.library_item_id) == []
    assert peer.files(made.library_item_id) == {"commit.img": 2 * MiB + 5}
    if peer.emulator:
        assert peer.emulator.stored_sha256("vsphere", made.library_item_id, "commit.img") == digest


def test_absent_cancels_an_active_session_then_deletes_it(ansible, peer, vsphere_update_session):
    session = vsphere_update_session(target=peer.target)
    item = peer.api.item_get(session["item_id"])["name"]
    run = ansible.run([("imagestore.upload.upload_session_absent", peer.args(item=item)),
                       ("imagestore.upload.upload_session_absent", peer.args(item=item))])
    first, second = run.results
    assert first["changed"] is True and first["canceled"] == [session["id"]] and first["deleted"] == [session["id"]], run.output
    assert first["msg"] == "removed 1 upload session(s): %s" % session["id"]
    assert second["changed"] is False and second["deleted"] == []
    assert peer.sessions(session["item_id"]) == []


def test_unknown_library_fails_clearly(ansible, peer, image):
    src, _ = image(1000, name="x.iso")
    result, run = ansible.module("image_upload", peer.args(src=src, item="x", library="no-such-library"))
    assert result["failed"] is True, run.output
    assert result["msg"] == ("library 'no-such-library' not found on %s: give the name or id of an existing content library"
                             % peer.target.endpoint)
    assert_no_traceback(run.output)


# ---------------------------------------------------------------------------------------------
# the emulator only

def test_both_api_styles(ansible, emu_peer, image):
    src, digest = image(2 * MiB + 1, seed=34, name="style.bin")
    items = {"api": unique("style-api"), "rest": unique("style-rest")}
    run = ansible.run([("imagestore.upload.image_upload", emu_peer.args(src=src, item=items["api"], api_style="api")),
                       ("imagestore.upload.image_upload", emu_peer.args(src=src, item=items["rest"], api_style="rest")),
                       ("imagestore.upload.image_upload", emu_peer.args(src=src, item=items["api"], api_style="rest"))])
    by_api, by_rest, again = run.results
    for style, result in (("api", by_api), ("rest", by_rest)):
        assert result["changed"] is True and result["api_style"] == style, run.output
        assert emu_peer.api.item_get(result["item_id"])["type"] == "file"
        assert emu_peer.emulator.stored_sha256("vsphere", result["item_id"], "style.bin") == digest
    assert again["changed"] is False and again["api_style"] == "rest" and again["item_id"] == by_api["item_id"]


def test_resume_after_an_interrupted_transfer(ansible, emu_peer, image, request):
    """A PUT that broke half-way (the connection closed mid-body): the file is in ERROR, and the protocol has no ranged
    PUT, so the next run sends the whole file again in the same session."""
    src, digest = image(6 * MiB + 7, seed=35, name="resume.iso")
    item = unique("resume")
    partial, cleanup = broken_upload(emu_peer.target, src, 0.5, 65536, library=emu_peer.library, item=item)
    request.addfinalizer(cleanup)
    assert partial.status == "ERROR" and partial.bytes_sent == (6 * MiB + 7) // 2
    before = emu_peer.data_bytes()
    run = ansible.run([("imagestore.upload.upload_session_commit", emu_peer.args(item=item)),
                       ("imagestore.upload.image_upload", emu_peer.args(src=src, item=item))])
    refused, result = run.results
    assert refused["failed"] is True, run.output
    assert refused["msg"] == ("upload session %s cannot be committed: %d bytes are missing (ranges 0-%d); run image_upload "
                              "again to send them" % (partial.session_id, 6 * MiB + 7, 6 * MiB + 6))
    assert refused["session"]["state"] == "active" and refused["missing_ranges"] == [{"start": 0, "end": 6 * MiB + 6}]
    (broken,) = refused["session"]["files"]
    assert broken["status"] == "error" and broken["error"].startswith("the transfer of resume.iso broke after ")
    assert result["changed"] is True and result["resumed"] is True, run.output
    assert result["session_id"] == partial.session_id and result["item_created"] is False
    assert result["bytes_sent"] == 6 * MiB + 7                        # whole-file re-send: the protocol has no ranged PUT
    assert emu_peer.data_bytes() - before == 6 * MiB + 7
    assert emu_peer.emulator.stored_sha256("vsphere", partial.item_id, "resume.iso") == digest
    assert emu_peer.sessions(partial.item_id) == []


def test_resumed_ovf_sends_only_the_files_not_yet_ready(ansible, emu_peer, tmp_path, imagestore_partial_upload):
    folder = tmp_path / "appliance"
    folder.mkdir()
    digests = {"disk1.vmdk": make_file(str(folder / "disk1.vmdk"), 3 * MiB, seed=36),
               "disk2.vmdk": make_file(str(folder / "disk2.vmdk"), 2 * MiB + 9, seed=37)}
    (folder / "appliance.ovf").write_text(
        '<?xml version="1.0"?>\n<Envelope xmlns="http://schemas.dmtf.org/ovf/envelope/1" '
        'xmlns:ovf="http://schemas.dmtf.org/ovf/envelope/1"><References>'
        '<File ovf:href="disk1.vmdk" ovf:id="file1"/><File ovf:href="disk2.vmdk" ovf:id="file2"/>'
        '</References></Envelope>\n')
    ovf = str(folder / "appliance.ovf")
    item = unique("ovf")
    # the descriptor and disk1 accepted (one whole-file PUT each), disk2 not yet added to the session
    partial = imagestore_partial_upload("vsphere", ovf, units=2, library=emu_peer.library, item=item)
    assert partial.units_sent == 2 and partial.bytes_sent == (folder / "appliance.ovf").stat().st_size + 3 * MiB
    before = emu_peer.data_bytes()
    run = ansible.run([("imagestore.upload.upload_session_commit", emu_peer.target.module_args(session_id=partial.session_id)),
                       ("imagestore.upload.image_upload", emu_peer.args(src=ovf, item=item)),
                       ("imagestore.upload.image_upload", emu_peer.args(src=ovf, item=item))])
    refused, result, again = run.results
    assert refused["failed"] is True, run.output
    assert refused["missing_files"] == ["disk2.vmdk"]          # referenced by the descriptor, never added
    assert refused["msg"] == ("update session %s cannot be completed: missing files: disk2.vmdk; run image_upload again "
                              "to send them" % partial.session_id)
    assert result["changed"] is True and result["resumed"] is True and result["session_id"] == partial.session_id, run.output
    assert result["bytes_sent"] == 2 * MiB + 9 and emu_peer.data_bytes() - before == 2 * MiB + 9
    assert [(f["name"], f["bytes_sent"]) for f in result["files"]] == [("appliance.ovf", 0), ("disk1.vmdk", 0),
                                                                       ("disk2.vmdk", 2 * MiB + 9)]
    assert emu_peer.api.item_get(partial.library_item_id)["type"] == "ovf"
    for name, digest in digests.items():
        assert emu_peer.emulator.stored_sha256("vsphere", partial.library_item_id, name) == digest
    assert emu_peer.emulator.stored_bytes("vsphere", partial.library_item_id, "appliance.ovf") == (folder / "appliance.ovf").read_bytes()
    assert again["changed"] is False and again["bytes_sent"] == 0
    assert emu_peer.sessions(partial.library_item_id) == []


def test_checksum_mismatch_fails_clearly_and_cleans_up(ansible, emu_peer, image):
    """A digest cache that vouches for content the file no longer holds (the file rewritten in place
    with size and times that match the cached entry): the declared SHA-1 is stale, and the server,
    which verifies it against what arrives, refuses the upload."""
    src, _ = image(4 * MiB, seed=38, name="changed.iso")
    item = unique("mismatch")
    cache = DigestCache(os.path.join(ansible.workdir, "digests.json"))       # where the runs' digest cache lives
    stale = Source(src, cache).digests(("sha1", "sha256"))                  # what an earlier run left there
    stale_sha1 = stale["sha1"]
    with open(src, "r+b") as fh:
        fh.seek(MiB)
        fh.write(b"\xff" * 4096)
    cache.put(src, Source(src).identity, stale)                             # the entry now matches the rewritten file
    cache.flush()
    new_digest = sha256_file(src)
    run = ansible.run([("imagestore.upload.image_upload", emu_peer.args(src=src, item=item)),
                       ("imagestore.upload.upload_session_info", emu_peer.args(item=item)),
                       ("imagestore.upload.image_upload", emu_peer.args(src=src, item=item))])
    failed, info, retried = run.results
    assert failed["failed"] is True, run.output
    sid = failed["session_id"]
    assert failed["msg"].startswith("upload of changed.iso failed: HTTP 400 invalid_argument: checksum mismatch for changed.iso "
                                    "(SHA1): expected %s, got " % stale_sha1)
    assert "%s changed after its checksum was computed" % src in failed["msg"]
    assert failed["msg"].endswith("upload session %s was removed with what it had received; the library item %s created by "
                                  "this run was deleted" % (sid, failed["item_id"]))
    assert failed["session_cleanup"] == "removed"
    assert_no_traceback(run.output)
    assert info["sessions"] == []                                       # cleaned up: nothing left, let alone ACTIVE
    assert all(s["id"] != sid for s in emu_peer.emulator.control("GET", "vsphere/sessions").json())
    assert retried["changed"] is True and retried["item_created"] is True   # the digest cache was corrected
    assert emu_peer.emulator.stored_sha256("vsphere", retried["item_id"], "changed.iso") == new_digest


def test_a_transfer_cut_once_is_sent_again_in_the_same_run(ansible, emu_peer, image, faults):
    src, digest = image(4 * MiB, seed=39, name="cut.iso")
    faults(operation="data_put", action="close_after_bytes", bytes=MiB, count=1)
    result, run = ansible.module("image_upload", emu_peer.args(src=src, item=unique("cut")))
    assert result["changed"] is True and result["bytes_sent"] >= 4 * MiB, run.output
    assert requests.get(faults.url).json()["fired"], "the fault never fired"
    assert emu_peer.emulator.stored_sha256("vsphere", result["item_id"], "cut.iso") == digest


def test_retryable_failure_keeps_the_session_only_when_asked(ansible, emu_peer, image, faults, imagestore_emulator):
    """Every data PUT is cut: the transfer loop sends the file again with backoff until the run's timeout (6 s), which is a
    retryable failure: the session is removed (with the item the run created), or kept on request and resumed next."""
    src, digest = image(3 * MiB, seed=40, name="kept.iso")
    item = unique("kept")
    always = {"provider": "vsphere", "operation": "data_put", "action": "close_after_bytes", "bytes": MiB, "count": 0}
    clear = {"url": faults.url, "method": "DELETE", "status_code": 200}
    run = ansible.run([
        {"ansible.builtin.uri": {"url": faults.url, "method": "POST", "body_format": "json", "body": always}},
        ("imagestore.upload.image_upload", emu_peer.args(src=src, item=item, retries=1, timeout=6)),
        ("imagestore.upload.image_upload", emu_peer.args(src=src, item=item, retries=1, timeout=6, keep_session_on_failure=True)),
        {"ansible.builtin.uri": clear},
        ("imagestore.upload.image_upload", emu_peer.args(src=src, item=item)),
    ])
    _, dropped, kept, _, resumed = run.results
    assert dropped["failed"] is True and dropped["session_cleanup"] == "removed", run.output
    assert dropped["msg"].startswith("timeout of 6 seconds reached while ")
    assert dropped["msg"].endswith("upload session %s was removed with what it had received; the library item %s created by "
                                   "this run was deleted" % (dropped["session_id"], dropped["item_id"]))
    assert kept["failed"] is True and kept["session_cleanup"] == "kept" and kept["session_id"] != dropped["session_id"]
    assert kept["msg"].endswith("upload session %s is kept: run again to resume it, or remove it with "
                                "imagestore.upload.upload_session_absent" % kept["session_id"])
    assert resumed["changed"] is True and resumed["resumed"] is True and resumed["session_id"] == kept["session_id"]
    assert resumed["item_created"] is False and resumed["item_id"] == kept["item_id"]
    assert emu_peer.emulator.stored_sha256("vsphere", resumed["item_id"], "kept.iso") == digest
    assert emu_peer.sessions(resumed["item_id"]) == []
    assert_no_traceback(run.output)


def test_bad_input_fails_clearly_without_secrets(ansible, emu_peer, image):
    src, _ = image(1000, name="bad.iso")
    secret = "Wrong-Secret-%s" % uuid.uuid4().hex[:6]
    cases = [
        ("image_upload", emu_peer.args(src=src, item="bad", password=secret),
         "login to %s as %s failed: wrong user name or password (HTTP 401 from POST /api/session)"
         % (emu_peer.target.endpoint, emu_peer.target.options["username"])),
        ("image_upload", emu_peer.args(src=src, item="bad", file_name="../x.iso"),
         "file_name '../x.iso' must be a plain file name without '/', '\\' or '..', e.g. 'disk.iso'"),
        ("upload_session_info", emu_peer.target.module_args(library=emu_peer.library),
         "provider vsphere looks up upload sessions by session_id, or by library and item; give the missing item"),
        ("upload_session_commit", emu_peer.target.module_args(session_id="../etc"),
         "session_id '../etc' is not a valid vSphere update session id: use the id image_upload or upload_session_info "
         "returned (letters, digits, '.', '_', ':' and '-')"),
        ("image_upload", dict(emu_peer.args(src=src, item="bad"), username=None, password=None),
         "provider vsphere needs username and password (options username and password, or IMAGESTORE_USERNAME and "
         "IMAGESTORE_PASSWORD)"),
    ]
    run = ansible.run([("imagestore.upload." + module, {k: v for k, v in args.items() if v is not None})
                       for module, args, _ in cases])
    for (module, _, message), result in zip(cases, run.results):
        assert result.get("failed") is True, (module, result)
        assert result["msg"] == message, (module, result["msg"])
    assert_no_traceback(run.output)
    assert secret not in run.output and secret not in repr(run.results)
    assert emu_peer.target.options["password"] not in run.output


def test_state_absent_removes_the_item_with_check_mode_and_diff(ansible, emu_peer, image):
    src, _ = image(2 * MiB, seed=43, name="gone.iso")
    item = unique("absent")
    made, run = ansible.module("image_upload", emu_peer.args(src=src, item=item))
    assert made["changed"] is True, run.output
    absent = emu_peer.args(item=item, state="absent")
    check, run = ansible.module("image_upload", absent, check=True, diff=True)
    assert check["changed"] is True and check["msg"] == "would remove gone.iso from item %r of library %r" % (item, emu_peer.library)
    assert check["diff"] == {"before": {"present": ["gone.iso"]}, "after": {"present": []}}, run.output
    assert emu_peer.item_id(item) == made["item_id"]
    run = ansible.run([("imagestore.upload.image_upload", absent), ("imagestore.upload.image_upload", absent)])
    gone, again = run.results
    assert gone["changed"] is True and gone["removed"] == ["gone.iso"] and gone["item_id"] == made["item_id"], run.output
    assert again["changed"] is False and again["msg"] == "item %r of library %r holds nothing to remove" % (item, emu_peer.library)
    assert emu_peer.item_id(item) is None
    assert_no_traceback(run.output)
