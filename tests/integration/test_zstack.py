"""The four modules with provider zstack, run through ansible-playbook against the emulator.

Outcomes are read from the emulator: stored bytes (by SHA-256), the counters of accepted slice bytes
(which tell exactly what a run sent), the long jobs, and the images through the ZStack API itself.
"""

import hashlib
import re
import time

import pytest

from cli_helpers import PROFILES
from tests.conftest import assert_no_traceback
from tests.integration.zstack_api import BS_UUID, Rest

MiB = 1024 * 1024


@pytest.fixture
def emu(imagestore_emulator, zs):
    if not zs.emulated:
        pytest.skip("reads the emulator's stored bytes and counters")
    return imagestore_emulator


def upload_args(zs, **extra):
    return zs.module_args(**dict({"backup_storage": zs.options["backup_storage"]}, **extra))


def md5_file(path):
    digest = hashlib.md5()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(MiB), b""):
            digest.update(block)
    return digest.hexdigest()


def counters(emu):
    return emu.stats("zstack")


def delta(after, before, key):
    return after[key] - before[key]


def job_view(emu, job_uuid):
    return next((j for j in emu.control("GET", "zstack/jobs").json()["jobs"] if j["uuid"] == job_uuid), None)


def test_128_mib_qcow2_is_ready_identical_then_unchanged(ansible, zs, emu, image):
    """The issue's acceptance: 128 MiB qcow2, Ready with the right size and MD5, read back identical, re-run unchanged."""
    src, digest = image(128 * MiB, seed=40, name="disk.qcow2")
    md5 = md5_file(src)
    before = counters(emu)
    first, run = ansible.module("image_upload", upload_args(zs, src=src, name="it-128"))
    assert first["changed"] is True and first["resumed"] is False, run.output
    assert first["size"] == first["bytes_sent"] == 128 * MiB
    assert first["md5"] == first["image_id"] == md5 and first["sha256"] == digest
    assert (first["status"], first["format"], first["media_type"], first["slice_size"]) == ("Ready", "qcow2", "RootVolumeTemplate", 16 * MiB)
    image_uuid = first["image_uuid"]
    assert first["destination"] == {"image_uuid": image_uuid, "backup_storage_uuid": BS_UUID, "name": "it-128"}
    assert first["session_id"] == first["long_job_uuid"]
    assert first["diff"]["before"]["image_uuid"] is None and first["diff"]["after"]["md5"] == md5

    after = counters(emu)
    assert delta(after, before, "slice_bytes") == 128 * MiB
    assert delta(after, before, "slice_requests") == 8 and delta(after, before, "rejected_slices") == 0
    assert delta(after, before, "logins") == delta(after, before, "logouts") == 1
    rest = Rest(zs)
    stored = rest.get("/images/" + image_uuid)
    assert (stored["status"], stored["size"], stored["actualSize"], stored["md5Sum"]) == ("Ready", 128 * MiB, 128 * MiB, md5)
    assert (stored["format"], stored["name"], stored["platform"]) == ("qcow2", "it-128", "Linux")
    assert rest.get("/longjobs/" + first["long_job_uuid"])["state"] == "Succeeded"
    assert emu.stored_sha256("zstack", image_uuid) == digest
    after = counters(emu)

    second, run = ansible.module("image_upload", upload_args(zs, src=src, name="it-128"))
    assert second["changed"] is False and second["bytes_sent"] == 0, run.output
    assert (second["image_uuid"], second["long_job_uuid"], second["status"]) == (image_uuid, first["long_job_uuid"], "Ready")
    assert second["msg"] == ("image 'it-128' (%s) on backup storage bs already holds disk.qcow2 (compared by md5); nothing sent "
                             "(force=true uploads again)" % image_uuid)
    assert second["compared"] == "md5" and second["md5"] == md5 and second["replaced"] == []
    final = counters(emu)
    assert delta(final, after, "slice_bytes") == 0 and delta(final, after, "logins") == delta(final, after, "logouts") == 1


def test_a_job_started_by_another_client_is_resumed_sending_only_the_rest(ansible, zs, emu, image, imagestore_partial_upload):
    """Its slices are 4 MiB, chunk_size is 16 MiB: the job's own slice size is taken from its offset (20 MiB)."""
    size = 40 * MiB + 123
    src, digest = image(size, seed=41, name="resume.raw")
    partial = imagestore_partial_upload("zstack", src, fraction=0.5, chunk_size=4 * MiB, name="it-resume")
    assert partial.units_sent == 5 and partial.bytes_sent == 20 * MiB
    assert job_view(emu, partial.session_id)["offset"] == 20 * MiB
    before = counters(emu)
    result, run = ansible.module("image_upload", upload_args(zs, src=src, name="it-resume"))
    assert result["changed"] and result["resumed"], run.output
    assert (result["session_id"], result["image_uuid"]) == (partial.session_id, partial.image_uuid)
    assert result["bytes_sent"] == size - 20 * MiB and result["slice_size"] == 4 * MiB and result["format"] == "raw"
    after = counters(emu)
    assert delta(after, before, "slice_bytes") == size - 20 * MiB and delta(after, before, "rejected_slices") == 0
    assert emu.stored_sha256("zstack", partial.image_uuid) == digest


def test_a_slice_size_the_offset_does_not_tell_is_taken_from_the_receiver(ansible, zs, emu, image, imagestore_partial_upload):
    """Offset 8 MiB from two 4 MiB slices: the guess (8 MiB) is refused with the job's size, the rest goes in 4 MiB slices."""
    size = 12 * MiB + 5
    src, digest = image(size, seed=42, name="grid.raw")
    partial = imagestore_partial_upload("zstack", src, fraction=0.5, chunk_size=4 * MiB, name="it-grid")
    assert partial.bytes_sent == 8 * MiB
    before = counters(emu)
    result, run = ansible.module("image_upload", upload_args(zs, src=src, name="it-grid", parallel=1))
    assert result["resumed"] and result["slice_size"] == 4 * MiB and result["chunks_replanned"] >= 1, run.output
    assert result["bytes_sent"] == size - 8 * MiB
    after = counters(emu)
    assert delta(after, before, "slice_bytes") == size - 8 * MiB and delta(after, before, "rejected_slices") == 1
    assert emu.stored_sha256("zstack", partial.image_uuid) == digest


def test_an_idle_upload_goes_suspended_and_the_next_run_resumes_it(ansible, zs, emu, image, imagestore_partial_upload):
    size = 6 * MiB + 1
    src, digest = image(size, seed=43, name="idle.qcow2")
    idle = emu.configure()["zstack_idle_seconds"]
    emu.configure(zstack_idle_seconds=0.5)
    try:
        partial = imagestore_partial_upload("zstack", src, fraction=0.5, chunk_size=MiB, name="it-idle")
        time.sleep(0.8)
        assert job_view(emu, partial.session_id)["state"] == "Suspended"          # the view runs the idle timer
    finally:
        emu.configure(zstack_idle_seconds=idle)
    info, run = ansible.module("upload_session_info", zs.module_args(image_id=partial.image_id))
    (session,) = info["sessions"]
    assert (session["id"], session["state"], session["offset"], session["size"]) == (partial.session_id, "suspended", 3 * MiB, size), run.output
    assert session["missing_ranges"] == [{"start": 3 * MiB, "end": size - 1}] and session["progress"] == round(300.0 * MiB / size, 2)
    assert session["error"].startswith("LONG_JOB.1002 ") and "(cause: IMG.1001 uploading has been inactive more than 0.5 sec)" in session["error"]
    before = counters(emu)
    result, run = ansible.module("image_upload", upload_args(zs, src=src, name="it-idle", chunk_size="1MiB"))
    assert result["changed"] and result["resumed"] and result["session_id"] == partial.session_id, run.output
    assert result["bytes_sent"] == size - 3 * MiB == delta(counters(emu), before, "slice_bytes")
    assert emu.stored_sha256("zstack", partial.image_uuid) == digest
    committed, _ = ansible.module("upload_session_commit", zs.module_args(session_id=partial.session_id))
    assert committed["changed"] is False and committed["session"]["image_status"] == "Ready"
    assert committed["msg"] == "upload session %s was already committed" % partial.session_id


def test_info_commit_and_absent_are_idempotent(ansible, zs, emu, image, imagestore_partial_upload):
    size = 4 * MiB
    src, _ = image(size, seed=44, name="session.qcow2")
    partial = imagestore_partial_upload("zstack", src, fraction=0.25, chunk_size=MiB, name="it-session")
    job = partial.session_id
    run = ansible.run([
        ("imagestore.upload.upload_session_info", zs.module_args(image_id=partial.image_id)),
        ("imagestore.upload.upload_session_info", zs.module_args(session_id=job)),
        ("imagestore.upload.upload_session_commit", zs.module_args(session_id=job)),
        {"imagestore.upload.upload_session_absent": zs.module_args(session_id=job), "check_mode": True},
        {"imagestore.upload.upload_session_commit": zs.module_args(image_id=partial.image_id), "check_mode": True},
    ])
    by_id, by_job, commit, checked, commit_checked = run.results
    (session,) = by_id["sessions"]
    assert by_id["changed"] is False and by_job["sessions"] == by_id["sessions"], run.output
    assert (session["id"], session["provider"], session["state"], session["size"], session["bytes_received"]) == (job, "zstack", "active", size, MiB)
    assert session["raw_state"] == "Running" and session["image_uuid"] == partial.image_uuid and session["offset"] == MiB
    assert session["missing_ranges"] == [{"start": MiB, "end": size - 1}] and session["progress"] == 25.0
    assert session["raw"] == {"longJobUuid": job, "longJobState": "Running", "imageUuid": partial.image_uuid,
                              "imageUploadUrl": zs.endpoint + "/imagestore/upload", "offset": MiB}
    assert commit["failed"] and commit["missing_ranges"] == [{"start": MiB, "end": size - 1}]
    assert commit["msg"] == ("upload session %s cannot be committed: %d bytes are missing (ranges %d-%d); run image_upload again to "
                             "send them" % (job, size - MiB, MiB, size - 1))
    assert commit_checked["failed"] and commit_checked["msg"] == commit["msg"]
    assert checked["changed"] is True and checked["deleted"] == [job]
    assert job_view(emu, job)["state"] in ("Running", "Suspended")     # not canceled (the idle timer may have suspended it)

    run = ansible.run([
        ("imagestore.upload.upload_session_absent", zs.module_args(session_id=job)),
        ("imagestore.upload.upload_session_absent", zs.module_args(session_id=job, purge=True)),
        ("imagestore.upload.upload_session_info", zs.module_args(image_id=partial.image_id)),
        ("imagestore.upload.upload_session_info", zs.module_args(session_id=job)),
        ("imagestore.upload.upload_session_commit", zs.module_args(session_id=job)),
    ])
    first, again, by_id, by_job, commit = run.results
    assert first["changed"] is True and first["deleted"] == [job] and first["msg"] == "removed 1 upload session(s): %s" % job, run.output
    assert job_view(emu, job)["state"] == "Canceled" and Rest(zs).get("/images/" + partial.image_uuid) is None
    assert again["changed"] is False and again["deleted"] == [] and again.get("purged", []) == []
    assert by_id["sessions"] == [] and by_job["sessions"][0]["state"] == "canceled"
    assert by_job["sessions"][0]["error"] == "LONG_JOB.1000 long job[uuid:%s] has been canceled" % job
    assert commit["failed"] and commit["msg"] == ("upload session %s is canceled (Canceled): it cannot be committed; run image_upload "
                                                  "again to start a new one" % job)
    assert_no_traceback(run.output)


def test_absent_cancels_and_purge_deletes_and_expunges(ansible, zs, emu, image, imagestore_partial_upload):
    src, _ = image(3 * MiB, seed=45, name="purge.qcow2")
    running = imagestore_partial_upload("zstack", src, fraction=0.5, chunk_size=MiB, name="it-purge")
    checked, _ = ansible.module("upload_session_absent", zs.module_args(image_id=running.image_id, purge=True), check=True)
    assert checked["changed"] and checked["deleted"] == [running.session_id]
    assert job_view(emu, running.session_id)["state"] == "Running"
    first, run = ansible.module("upload_session_absent", zs.module_args(image_id=running.image_id, purge=True))
    assert first["changed"] and first["deleted"] == [running.session_id], run.output
    assert job_view(emu, running.session_id)["state"] == "Canceled"
    assert Rest(zs).get("/images/" + running.image_uuid) is None
    second, _ = ansible.module("upload_session_absent", zs.module_args(image_id=running.image_id, purge=True))
    assert second["changed"] is False and second["msg"] == "no upload session to remove for image_id %s" % running.image_id

    # an image deleted during its upload stays as Deleted (its job Failed): purge expunges it
    other, _ = image(3 * MiB, seed=46, name="deleted.qcow2")
    failed = imagestore_partial_upload("zstack", other, fraction=0.5, chunk_size=MiB, name="it-purge-deleted")
    rest = Rest(zs)
    assert rest.call("DELETE", "/images/" + failed.image_uuid).status_code == 200
    assert rest.get("/images/" + failed.image_uuid)["status"] == "Deleted"
    purged, run = ansible.module("upload_session_absent", zs.module_args(session_id=failed.session_id, purge=True))
    assert purged["changed"] and purged["deleted"] == [failed.session_id] and purged["purged"] == [failed.image_uuid], run.output
    assert rest.get("/images/" + failed.image_uuid) is None
    again, _ = ansible.module("upload_session_absent", zs.module_args(session_id=failed.session_id, purge=True))
    assert again["changed"] is False


def test_purge_never_touches_a_finished_image(ansible, zs, emu, image):
    src, digest = image(MiB + 3, seed=47, name="kept.img")
    done, run = ansible.module("image_upload", upload_args(zs, src=src, name="it-kept"))
    assert done["changed"], run.output
    result, _ = ansible.module("upload_session_absent", zs.module_args(session_id=done["session_id"], purge=True))
    assert result["changed"] is False and result["deleted"] == [] and result.get("purged", []) == []
    assert Rest(zs).get("/images/" + done["image_uuid"])["status"] == "Ready"
    assert emu.stored_sha256("zstack", done["image_uuid"]) == digest


def test_check_mode_sends_nothing_and_submits_nothing(ansible, zs, emu, image, imagestore_partial_upload):
    fresh, _ = image(2 * MiB, seed=48, name="fresh.iso")
    half, _ = image(2 * MiB, seed=49, name="half.qcow2")
    partial = imagestore_partial_upload("zstack", half, fraction=0.5, chunk_size=MiB, name="it-check-half")
    jobs_before = len(emu.control("GET", "zstack/jobs").json()["jobs"])
    before = counters(emu)
    run = ansible.run([
        ("imagestore.upload.image_upload", upload_args(zs, src=fresh, name="it-check")),
        ("imagestore.upload.image_upload", upload_args(zs, src=half, name="it-check-half")),
    ], check=True, diff=True)
    new, resumed = run.results
    assert new["changed"] and new["bytes_sent"] == 0 and new["would_send"] == 2 * MiB and not new["resumed"], run.output
    assert (new["format"], new["media_type"], new["image_uuid"], new["session_id"]) == ("iso", "ISO", None, None)
    assert new["diff"]["before"]["image_uuid"] is None and new["diff"]["after"]["size"] == 2 * MiB
    assert resumed["changed"] and resumed["resumed"] and resumed["would_send"] == MiB and resumed["session_id"] == partial.session_id
    assert len(emu.control("GET", "zstack/jobs").json()["jobs"]) == jobs_before
    after = counters(emu)
    assert delta(after, before, "slice_requests") == 0 and job_view(emu, partial.session_id)["offset"] == MiB


def test_bad_input_fails_clearly_without_secrets(ansible, zs, emu, image, tmp_path):
    src, _ = image(MiB, seed=50, name="bad.qcow2")
    odd = tmp_path / "disk.bin"
    odd.write_bytes(b"x" * 100)
    secret = "Wr0ng-S3cret-%d" % time.time()
    cases = [
        ("image_upload", upload_args(zs, src=src, name="it-bad", backup_storage="nope"),
         "backup_storage 'nope' is not a backup storage of this ZStack: give the name or uuid of one of: bs"),
        ("image_upload", upload_args(zs, src=src, name="it-bad", password=secret),
         "login to ZStack at %s as %s failed (ID.1000 wrong account name or password): check username and password"
         % (zs.endpoint, zs.options["username"])),
        ("image_upload", upload_args(zs, src=str(odd), name="it-bad"),
         "format: cannot tell the image format of %s from its extension (known: .qcow2, .raw, .img, .vmdk, .iso); give format "
         "(qcow2, raw, vmdk, iso, ...)" % odd),
        ("image_upload", upload_args(zs, src=src, name="it-bad", media_type="ISO", format="qcow2"),
         "format qcow2 does not go with media_type ISO: ZStack keeps ISO images in format iso"),
        ("image_upload", upload_args(zs, src=src, name="it-bad", image_id="a/b"),
         "image_id 'a/b' is not usable as a ZStack upload id: give 1 to 255 letters, digits, '.', '_' or '-' (the default, the MD5 of the "
         "file, is one)"),
        ("image_upload", upload_args(zs, src=src), "provider zstack uploads with src, name, backup_storage: name is missing"),
        ("upload_session_info", zs.module_args(session_id="not-a-job"),
         "session_id 'not-a-job' is not a ZStack long job uuid: give the 32 hexadecimal digits image_upload returned as session_id "
         "(or look the job up by image_id)"),
        ("upload_session_commit", zs.module_args(), "provider zstack commits upload sessions by session_id, or by image_id; give one of them"),
        ("upload_session_commit", zs.module_args(image_id="no-such-upload"),
         "no upload session for image_id no-such-upload on %s (it was committed and forgotten, removed, or it expired)" % zs.endpoint),
    ]
    before = counters(emu)
    run = ansible.run([("imagestore.upload." + module, args) for module, args, _ in cases])
    for (module, _, message), result in zip(cases, run.results):
        assert result.get("failed") is True, (module, result)
        assert result["msg"] == message
    assert_no_traceback(run.output)
    wrong_password = run.results[1]
    assert "status" not in wrong_password and wrong_password["error_code"] == "ID.1000"    # no misleading HTTP 503
    assert secret not in run.output and hashlib.sha512(secret.encode()).hexdigest() not in run.output
    # no session uuid anywhere: the only 32-hex-digit strings in the output are the image_id and the backup storage's uuid
    assert set(re.findall(r"(?<![0-9a-f])[0-9a-f]{32}(?![0-9a-f])", run.output)) <= {BS_UUID}
    after = counters(emu)
    assert delta(after, before, "logins") == delta(after, before, "logouts") and delta(after, before, "slice_requests") == 0


# ---------------------------------------------------------------------------------------------
# an exhausted retry budget, on a store of the test's own (the contract suite's ZStack profile; the faults every store
# meets, and ZStack's own fault cases, are in tests/contract/)

ZSTACK = PROFILES["zstack"]
SLICE = MiB
SIZE = 12 * MiB
KEPT = "; upload session {job} is kept: run again to resume it, or remove it with imagestore.upload.upload_session_absent"
EXHAUSTED = {
    # case -> (rule, message of the failed run (<N>: a number that varies), bytes the job holds afterwards)
    # every slice refused: the transfer loop sends the others, then waits for the refused ones until nothing was accepted
    # for the stall time (30 s), and keeps the job
    "503 on every slice": (
        dict(operation="slice", action="status", status=503, count=0, after=5),
        "the store still reports %d bytes missing; nothing was accepted for <N> seconds (last error: send slice <N> (bytes <N>-<N>) "
        "of image {image} failed after 3 attempts: HTTP 503 SYS.1010: injected fault: HTTP 503)" % (SIZE - 5 * SLICE) + KEPT,
        5 * SLICE),
    "the job suspended on every slice": (
        dict(operation="slice", action="expire", count=0, after=2),
        "upload job {job} was suspended again after 3 resumes while its slices were being sent (LONG_JOB.1002 some error interrupt "
        "long job[uuid:{job}], analysis the cause to fix it and resume long job if you want to continue. (cause: IMG.1001 uploading "
        "has been inactive more than {idle} sec))" + KEPT,
        2 * SLICE),
    "503 on every login": (
        dict(operation="login", action="status", status=503, count=0),
        "login to ZStack at {endpoint} as {user} failed after 3 attempts: HTTP 503 SYS.1010: injected fault: HTTP 503",
        None),
}


@pytest.fixture
def zstore(tmp_path):
    started = ZSTACK.start(tmp_path)
    yield started
    started.stop()


@pytest.mark.parametrize("case", sorted(EXHAUSTED))
def test_exhausted_budget_fails_clearly_and_the_next_run_resumes(ansible, zstore, image, case):
    """The job is kept where slices went (Running or Suspended, its offset what was accepted), nothing is Ready; the next
    run resumes that job and sends exactly the rest; a run that failed at login submitted nothing."""
    src, digest = image(SIZE, seed=164, name="disk.qcow2")
    rule, message, kept = EXHAUSTED[case]
    args = ZSTACK.args(zstore, src, "exhausted", chunk_size=SLICE, parallel=1, retries=2, request_timeout=2)
    ZSTACK.inject(zstore, rule)
    result, run = ansible.module(ZSTACK.module("image_upload"), args)
    assert result["failed"] is True, run.output
    jobs = [j for j in zstore.control("GET", "zstack/jobs").json()["jobs"]]
    job = jobs[0] if jobs else {"uuid": None, "imageUuid": None}
    idle = float(zstore.process.configure()["zstack_idle_seconds"])
    expected = message.format(image=job["imageUuid"], job=job["uuid"], endpoint=zstore.url, idle=idle,
                              user=zstore.credentials["username"])
    assert re.fullmatch(re.escape(expected).replace(re.escape("<N>"), r"\d+"), result["msg"]), result["msg"]
    assert_no_traceback(run.output)
    ZSTACK.clear_faults(zstore)
    assert ZSTACK.stored_sha256(zstore, "exhausted") is None                  # nothing Ready
    if kept is None:
        assert jobs == []                                       # nothing was submitted
    else:
        (job,) = jobs
        assert job["state"] in ("Running", "Suspended") and job["offset"] == kept

    before = ZSTACK.received(zstore)
    again, run = ansible.module(ZSTACK.module("image_upload"), args)
    assert again["changed"] is True and again["resumed"] is (kept is not None), run.output
    assert again["bytes_sent"] == ZSTACK.received(zstore) - before == SIZE - (kept or 0)
    assert ZSTACK.stored_sha256(zstore, "exhausted", again) == digest
    (done,) = zstore.control("GET", "zstack/jobs").json()["jobs"]
    assert done["state"] == "Succeeded" and done["uuid"] == again["session_id"] and (kept is None or done["uuid"] == job["uuid"])
