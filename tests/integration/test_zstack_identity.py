"""ZStack content identity through ansible-playbook against the emulator (issue 12 A, B, G; issue 13 item 7):
a name holds one image (the new one replaces the others once it is Ready, or replace=false refuses), a job is resumed
only when it is shown to hold this file's bytes, a failed verification leaves no usable image, a source changed
mid-upload is named as such, and image_upload state=absent removes the images of a name."""

import hashlib
import json
import os
import time
from concurrent.futures import ThreadPoolExecutor

import pytest
import requests

from tests.conftest import assert_no_traceback, make_file
from tests.integration.zstack_api import BS_UUID, Rest, clean_emulator

MiB = 1024 * 1024


@pytest.fixture
def emu(imagestore_emulator, zs):
    with clean_emulator(imagestore_emulator, zs, "reads the emulator's stored bytes, jobs and counters") as emulator:
        yield emulator


def args(zs, **extra):
    return zs.module_args(**dict({"backup_storage": "bs", "chunk_size": "1MiB"}, **extra))


def md5_of(path):
    with open(path, "rb") as fh:
        return hashlib.md5(fh.read()).hexdigest()


def jobs_of(emu, image_id):
    return [j for j in emu.control("GET", "zstack/jobs").json()["jobs"] if j["imageId"] == image_id]


def ready(rest, name):
    return sorted(i["uuid"] for i in rest.images(name) if i["status"] == "Ready")


def rewrite(path, size, seed):
    """New bytes of the same size in place, the modification time set back: only the content (and ctime) tell."""
    st = os.stat(path)
    digest = make_file(path, size, seed)
    os.utime(path, ns=(st.st_atime_ns, st.st_mtime_ns))
    return digest


def test_new_content_under_a_name_replaces_the_old_image_once_ready(ansible, zs, emu, tmp_path):
    name = "it-replace"
    emu.names.append(name)
    src = str(tmp_path / "disk.qcow2")
    make_file(src, 3 * MiB + 11, seed=60)
    first, run = ansible.module("image_upload", args(zs, src=src, name=name))
    assert first["changed"] and first["replaced"] == [], run.output
    old = first["image_uuid"]

    new_digest = rewrite(src, 3 * MiB + 11, seed=61)
    checked, run = ansible.module("image_upload", args(zs, src=src, name=name), check=True, diff=True)
    assert checked["changed"] and checked["replaced"] == [old] and checked["would_send"] == 3 * MiB + 11, run.output
    assert checked["msg"] == "would send %d of %d bytes to image %r on backup storage bs in place of image %s" % (
        3 * MiB + 11, 3 * MiB + 11, name, old)
    assert checked["diff"]["before"]["images"] == [old] and ready(Rest(zs), name) == [old]

    second, run = ansible.module("image_upload", args(zs, src=src, name=name), diff=True)
    new = second["image_uuid"]
    assert second["changed"] and new != old and second["replaced"] == [old] and second["resumed"] is False, run.output
    assert second["msg"] == "uploaded %d bytes of disk.qcow2 to image %r on backup storage bs in place of image %s" % (
        3 * MiB + 11, name, old)
    assert second["diff"]["before"]["image_uuid"] == old and second["diff"]["before"]["images"] == [old]
    assert second["diff"]["after"]["image_uuid"] == new and second["diff"]["after"]["images"] == [new]
    rest = Rest(zs)
    assert ready(rest, name) == [new] and rest.get("/images/" + old) is None
    assert emu.stored_sha256("zstack", new) == new_digest

    before = emu.stats("zstack")
    jobs = len(emu.control("GET", "zstack/jobs").json()["jobs"])
    rewrite(src, 3 * MiB + 11, seed=62)
    refused, run = ansible.module("image_upload", args(zs, src=src, name=name, replace=False))
    assert refused["failed"] and refused["msg"] == (
        "replace is false and backup storage bs already holds an image named %r: %s (Ready, MD5 %s); nothing was sent "
        "(replace=true, the default, replaces it once the new image is Ready; or give another name)" % (name, new, second["md5"]))
    assert emu.stats("zstack")["slice_requests"] == before["slice_requests"]
    assert len(emu.control("GET", "zstack/jobs").json()["jobs"]) == jobs and ready(rest, name) == [new]
    assert_no_traceback(run.output)


def test_an_explicit_image_id_whose_file_was_rewritten_never_resumes_its_job(ansible, zs, emu, tmp_path, imagestore_partial_upload):
    """Issue 12 B: run 1 stopped at 4 of 12 MiB; the file rewritten in place (same size, mtime restored); run 2 with the
    same image_id cancels that job and its image (its bytes are the old file's) and uploads the new content whole."""
    name, image_id, size = "it-rewritten", "it-rewritten-id", 12 * MiB
    emu.names.append(name)
    src = str(tmp_path / "disk.raw")
    make_file(src, size, seed=63)
    partial = imagestore_partial_upload("zstack", src, fraction=1.0 / 3, chunk_size=MiB, name=name, image_id=image_id)
    assert partial.bytes_sent == 4 * MiB
    old_md5 = md5_of(src)
    digest = rewrite(src, size, seed=64)
    before = emu.stats("zstack")

    result, run = ansible.module("image_upload", args(zs, src=src, name=name, image_id=image_id))
    assert result["changed"] and result["resumed"] is False and result["session_id"] != partial.session_id, run.output
    assert result["bytes_sent"] == size == emu.stats("zstack")["slice_bytes"] - before["slice_bytes"]
    assert result["warnings"] == [
        "upload job %s for image_id %s was submitted for other content (MD5 %s; src has MD5 %s) and holds %d bytes of it: it was "
        "canceled, its image %s deleted and expunged, and a new upload job started"
        % (partial.session_id, image_id, old_md5, md5_of(src), 4 * MiB, partial.image_uuid)]
    old, new = sorted(jobs_of(emu, image_id), key=lambda j: j["uuid"] != partial.session_id)
    assert (old["state"], new["state"], new["uuid"]) == ("Canceled", "Succeeded", result["session_id"])
    rest = Rest(zs)
    assert rest.get("/images/" + partial.image_uuid) is None and ready(rest, name) == [result["image_uuid"]]
    assert emu.stored_sha256("zstack", result["image_uuid"]) == digest and result["md5"] == md5_of(src)


def test_a_job_another_client_submitted_is_not_resumed(ansible, zs, emu, tmp_path):
    name, image_id = "it-foreign", "it-foreign-id"
    emu.names.append(name)
    src = str(tmp_path / "disk.raw")
    make_file(src, 2 * MiB, seed=65)
    rest = Rest(zs)
    data = {"name": name, "url": "upload://" + name, "mediaType": "RootVolumeTemplate", "format": "raw", "platform": "Linux",
            "backupStorageUuids": [BS_UUID],
            "description": "uploaded with the web console"}
    answer = rest.call("POST", "/longjobs", json={"params": {"jobName": "APIAddImageMsg", "jobData": json.dumps(data)},
                                                  "systemTags": ["uploadImage::" + image_id]})
    job = answer.json()["inventory"]["uuid"]
    deadline = time.monotonic() + 30
    while not [j for j in jobs_of(emu, image_id) if j["state"] == "Running"]:
        assert time.monotonic() < deadline
        time.sleep(0.05)
    before = emu.stats("zstack")
    result, run = ansible.module("image_upload", args(zs, src=src, name=name, image_id=image_id))
    assert result["failed"] and result["msg"] == (
        "upload job %s (Running) for image_id %s was not submitted by imagestore.upload (its description has no "
        "'imagestore.upload imageId=' mark), so the bytes it received cannot be checked against src and it is not resumed; "
        "remove it with imagestore.upload.upload_session_absent, or give another image_id" % (job, image_id)), run.output
    assert emu.stats("zstack")["slice_requests"] == before["slice_requests"] and len(jobs_of(emu, image_id)) == 1
    rest.call("PUT", "/longjobs/%s/actions" % job, json={"cancelLongJob": {}})


def forge_job(target, src_for_mark, src_for_bytes, name, image_id, slices):
    """A job marked as made for ``src_for_mark`` whose first ``slices`` 1 MiB slices come from ``src_for_bytes``: what a
    store holding wrong bytes under the right record looks like (the receiver's MD5 is then not the file's)."""
    from ansible_collections.imagestore.upload.plugins.module_utils._source import Source
    from ansible_collections.imagestore.upload.plugins.module_utils._wait import Deadline
    from ansible_collections.imagestore.upload.plugins.module_utils._zstack_client import ZStackClient, classify, parse_error
    from ansible_collections.imagestore.upload.plugins.module_utils._zstack_jobs import add_image_params, image_options
    from ansible_collections.imagestore.upload.plugins.module_utils._http import HttpClient

    marked, sent = Source(src_for_mark), Source(src_for_bytes)
    http = HttpClient(target.endpoint, validate_certs=target.options.get("validate_certs", True), error_parser=parse_error,
                      classify=classify)
    api = ZStackClient(http, target.options["username"], target.options["password"], Deadline(None))
    try:
        params = add_image_params(image_options(src_for_mark, {"name": name}), BS_UUID, image_id,
                                  marked.digest("md5"), marked.size)
        job = api.submit_add_image(image_id, params)
        api.wait_long_job_started(job["uuid"])
        detail = api.job_detail(image_id, job["uuid"])
        for index in range(slices):
            start, end = index * MiB, (index + 1) * MiB - 1
            assert api.send_slice(detail["imageUploadUrl"], detail["imageUuid"], sent.size, index, start, end, sent,
                                  "x.raw") == "accepted"
        return job["uuid"], detail["imageUuid"]
    finally:
        api.logout()
        http.close()


def test_a_failed_verification_deletes_and_expunges_the_image(ansible, zs, emu, tmp_path):
    """The job's record says this file, its first slices are another file's: the image turns Ready with another MD5, and
    the run deletes and expunges it and says so; no image of that name is usable afterwards."""
    name, image_id, size = "it-verify", "it-verify-id", 4 * MiB
    emu.names.append(name)
    src, other = str(tmp_path / "disk.raw"), str(tmp_path / "other.raw")
    make_file(src, size, seed=66)
    make_file(other, size, seed=67)
    job, image = forge_job(zs, src, other, name, image_id, 2)
    result, run = ansible.module("image_upload", args(zs, src=src, name=name, image_id=image_id))
    with open(other, "rb") as a, open(src, "rb") as b:
        mixed = hashlib.md5(a.read(2 * MiB) + b.read()[2 * MiB:]).hexdigest()
    assert result["failed"] and result["msg"] == (
        "verification failed: ZStack computed MD5 %s for image %s (%r), the MD5 of %s is %s; upload session %s was removed with "
        "what it had received; image %s was deleted and expunged" % (mixed, image, name, src, md5_of(src), job, image)), run.output
    assert result["session_cleanup"] == "removed" and result["image_uuid"] == image
    rest = Rest(zs)
    assert rest.get("/images/" + image) is None and rest.images(name) == []
    assert_no_traceback(run.output)


def test_a_source_rewritten_during_the_upload_is_named_as_such(ansible, zs, emu, tmp_path):
    name, size = "it-changed", 24 * MiB
    emu.names.append(name)
    src = str(tmp_path / "disk.raw")
    make_file(src, size, seed=68)
    requests.post(emu.url + "/_emulator/faults", json={"provider": "zstack", "operation": "slice", "action": "delay", "ms": 300,
                                                       "count": 0})
    before = emu.stats("zstack")["slice_bytes"]
    with ThreadPoolExecutor(1) as pool:
        running = pool.submit(ansible.module, "image_upload", args(zs, src=src, name=name, parallel=1))
        deadline = time.monotonic() + 60
        while emu.stats("zstack")["slice_bytes"] - before < 2 * MiB:
            assert time.monotonic() < deadline and not running.done(), "the upload did not get going"
            time.sleep(0.05)
        rewrite(src, size, seed=69)
        result, run = running.result(timeout=120)
    assert result["failed"] and result["msg"].startswith("%s changed while it was being uploaded (" % src), run.output
    assert "; run again to upload its current content; upload session " in result["msg"]
    assert result["session_cleanup"] == "removed" and Rest(zs).images(name) == []
    assert_no_traceback(run.output)


def test_state_absent_removes_the_images_of_a_name(ansible, zs, emu, tmp_path, imagestore_partial_upload):
    name = "it-absent"
    emu.names.append(name)
    src, half = str(tmp_path / "disk.qcow2"), str(tmp_path / "half.qcow2")
    make_file(src, MiB + 5, seed=70)
    make_file(half, 2 * MiB, seed=71)
    done, run = ansible.module("image_upload", args(zs, src=src, name=name))
    assert done["changed"], run.output
    partial = imagestore_partial_upload("zstack", half, fraction=0.5, chunk_size=MiB, name=name)
    present = sorted([done["image_uuid"], partial.image_uuid])
    absent = dict(name=name, backup_storage="bs", state="absent")
    run = ansible.run([{"imagestore.upload.image_upload": zs.module_args(**absent), "check_mode": True, "diff": True},
                       ("imagestore.upload.image_upload", zs.module_args(**absent)),
                       ("imagestore.upload.image_upload", zs.module_args(**absent))])
    checked, removed, again = run.results
    assert checked["changed"] and checked["removed"] == present and checked["diff"]["before"]["present"] == present, run.output
    assert checked["msg"] == "would remove %s from image %r on backup storage bs" % (", ".join(present), name)
    assert removed["changed"] and removed["removed"] == present
    assert again["changed"] is False and again["removed"] == [] and again["msg"] == "image %r on backup storage bs holds nothing to remove" % name
    rest = Rest(zs)
    assert rest.images(name) == [] and [j["state"] for j in jobs_of(emu, partial.image_id)] == ["Canceled"]
    assert_no_traceback(run.output)
