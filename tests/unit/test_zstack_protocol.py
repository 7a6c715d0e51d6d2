"""The ZStack protocol's decisions over an in-memory ZStack API: which job is resumed (only one shown to hold this file's
bytes), what becomes of the others, what a failed verification leaves (nothing usable), and same-name replacement."""

import hashlib
import json

import pytest

from ansible_collections.imagestore.upload.plugins.module_utils._errors import BadInput, ImageStoreError, VerificationError
from ansible_collections.imagestore.upload.plugins.module_utils._protocol import REMOVED, Context, LocalFile, Session
from ansible_collections.imagestore.upload.plugins.module_utils._source import Source
from ansible_collections.imagestore.upload.plugins.module_utils._wait import Deadline
from ansible_collections.imagestore.upload.plugins.module_utils._zstack_client import ZStackApiError
from ansible_collections.imagestore.upload.plugins.module_utils._zstack_jobs import (
    UploadJobs, add_image_params, content_mark, job_mark, marks_content,
)
from ansible_collections.imagestore.upload.plugins.module_utils._zstack_protocol import Dest, SliceState, ZStack

BS = {"uuid": "b" * 32, "name": "bs", "status": "Connected", "state": "Enabled"}
OPTIONS = {"name": "img", "format": "qcow2", "media_type": "RootVolumeTemplate", "platform": "Linux"}


class FakeApi:
    """Images and long jobs in memory, with the answers of ZStack's API that the protocol relies on."""

    def __init__(self):
        self.images = {}
        self.jobs = {}
        self.calls = []

    def add_job(self, uuid, image_id, state, description, offset=0, md5sum=None, size=1000, name="img"):
        image_uuid = "i" + uuid[1:]
        self.images[image_uuid] = {"uuid": image_uuid, "name": name, "status": "Ready" if state == "Succeeded" else "Downloading",
                                   "actualSize": size, "md5Sum": md5sum, "backupStorageRefs": [{"backupStorageUuid": BS["uuid"]}]}
        data = dict(add_image_params(dict(OPTIONS, name=name), BS["uuid"], image_id, "0" * 32, size), description=description)
        self.jobs[uuid] = {"uuid": uuid, "state": state, "jobData": json.dumps(data), "targetResourceUuid": image_uuid,
                           "tag": image_id, "offset": offset}
        return image_uuid

    # -- what the protocol calls
    def upload_job_details(self, image_id):
        return [{"longJobUuid": u, "longJobState": j["state"], "imageUuid": j["targetResourceUuid"], "imageUploadUrl": "http://bs/up",
                 "offset": j["offset"]} for u, j in sorted(self.jobs.items())
                if j["tag"] == image_id and j["state"] not in ("Succeeded", "Failed", "Canceled")]

    def get_image(self, uuid):
        return self.images.get(uuid)

    def get_long_job(self, uuid):
        return self.jobs.get(uuid)

    def add_image_jobs(self, conditions=()):
        wanted = dict(c.split("=", 1) for c in conditions if "~=" not in c)
        return [j for j in self.jobs.values() if all(str(j.get(k)) == v for k, v in wanted.items() if k != "jobName")]

    def cancel_long_job(self, uuid):
        self.calls.append(("cancel", uuid))
        job = self.jobs[uuid]
        if job["state"] in ("Succeeded", "Failed"):
            return False
        job["state"] = "Canceled"
        return True

    def delete_image(self, uuid):
        self.calls.append(("delete", uuid))
        self.images[uuid]["status"] = "Deleted"

    def expunge_image(self, uuid, storages):
        self.calls.append(("expunge", uuid))
        if self.images[uuid]["status"] != "Deleted":
            raise ZStackApiError("expunge", {"code": "SYS.1007", "details": "not deleted"})
        del self.images[uuid]

    def calculate_image_hash(self, uuid, storage_uuid, algorithm="MD5"):
        return self.images[uuid]


@pytest.fixture
def local(tmp_path):
    path = tmp_path / "disk.qcow2"
    data = bytes(range(256)) * 4
    path.write_bytes(data)
    f = LocalFile("disk.qcow2", Source(str(path)))
    f.digests = {"md5": hashlib.md5(data).hexdigest(), "sha256": hashlib.sha256(data).hexdigest()}
    return f


def protocol(api, check_mode=False, **params):
    warnings = []
    base = dict(username="admin", password="pw", name="img", backup_storage="bs", chunk_size=1024, force=False, replace=True)
    base.update(params)
    p = ZStack(Context(base, None, Deadline(None), check_mode=check_mode, warn=warnings.append))
    p.api = api
    p.jobs = UploadJobs(api, p.deadline, p.warn, check_mode)
    return p, warnings


def test_content_marks():
    assert content_mark("id-1", "a" * 32, 12) == "imagestore.upload imageId=id-1 md5=%s size=12" % ("a" * 32)
    job = {"jobData": json.dumps({"description": content_mark("id-1", "A" * 32, 12)})}
    assert job_mark(job) == {"image_id": "id-1", "md5": "a" * 32, "size": 12}
    old = {"jobData": json.dumps({"description": "imagestore.upload imageId=" + "c" * 32})}     # before the MD5 was recorded
    assert job_mark(old) == {"image_id": "c" * 32, "md5": None, "size": None}
    assert job_mark({"jobData": json.dumps({"description": "uploaded by the console"})}) is None
    assert marks_content(job_mark(old), "c" * 32, "c" * 32, 5) and not marks_content(job_mark(old), "x", "c" * 32, 5)
    assert not marks_content(job_mark(job), "id-1", "a" * 32, 13) and marks_content(job_mark(job), "id-1", "a" * 32, 12)


def test_only_a_job_marked_with_this_content_is_resumed_one_for_other_content_is_canceled_and_purged(local):
    api = FakeApi()
    md5 = local.digests["md5"]
    stale_image = api.add_job("j1" + "0" * 30, "my-id", "Suspended", content_mark("my-id", "f" * 32, local.size), offset=512)
    api.add_job("j2" + "0" * 30, "my-id", "Running", content_mark("my-id", md5, local.size), offset=256)
    p, warnings = protocol(api, image_id="my-id")
    dest = Dest("img", BS, OPTIONS, local)
    session = p.find_session(dest, "my-id", [local])
    assert session.id == "j2" + "0" * 30 and session.found and session.missing == [(256, local.size - 1)] and session.grid == 256
    assert api.jobs["j1" + "0" * 30]["state"] == "Canceled" and stale_image not in api.images
    assert warnings == ["upload job %s for image_id my-id was submitted for other content (MD5 %s; src has MD5 %s) and holds 512 bytes "
                        "of it: it was canceled, its image %s deleted and expunged, and a new upload job started"
                        % ("j1" + "0" * 30, "f" * 32, md5, stale_image)]


def test_check_mode_only_says_what_a_real_run_does_with_a_job_for_other_content(local):
    api = FakeApi()
    api.add_job("j1" + "0" * 30, "my-id", "Running", content_mark("my-id", "f" * 32, local.size), offset=512)
    p, warnings = protocol(api, check_mode=True, image_id="my-id")
    assert p.find_session(Dest("img", BS, OPTIONS, local), "my-id", [local]) is None
    assert api.calls == [] and api.jobs["j1" + "0" * 30]["state"] == "Running"
    assert warnings[0].endswith(": a real run cancels it, deletes and expunges its image %s and starts a new upload job" % ("i1" + "0" * 30))


def test_a_job_without_this_collections_mark_is_never_resumed(local):
    api = FakeApi()
    api.add_job("j1" + "0" * 30, "my-id", "Suspended", "uploaded with the web console", offset=512)
    p, dummy = protocol(api, image_id="my-id")
    with pytest.raises(ImageStoreError) as err:
        p.find_session(Dest("img", BS, OPTIONS, local), "my-id", [local])
    assert err.value.message == (
        "upload job %s (Suspended) for image_id my-id was not submitted by imagestore.upload (its description has no "
        "'imagestore.upload imageId=' mark), so the bytes it received cannot be checked against src and it is not resumed; "
        "remove it with imagestore.upload.upload_session_absent, or give another image_id" % ("j1" + "0" * 30))
    assert api.calls == []


def test_a_mark_of_an_older_version_resumes_when_the_image_id_is_the_md5(local):
    api = FakeApi()
    md5 = local.digests["md5"]
    api.add_job("j1" + "0" * 30, md5, "Running", "imagestore.upload imageId=" + md5, offset=256)
    p, dummy = protocol(api)
    session = p.find_session(Dest("img", BS, OPTIONS, local), md5, [local])
    assert session.id == "j1" + "0" * 30 and api.calls == []


def upload_session(p, api, dest, job_uuid):
    image_uuid = api.jobs[job_uuid]["targetResourceUuid"]
    session = Session(job_uuid, "active", size=dest.file.size, found=False, grid=1024)
    session.upload = SliceState("my-id", image_uuid, "http://bs/up", 0, "disk.qcow2", False)
    return session, image_uuid


def test_a_failed_verification_deletes_and_expunges_the_image(local):
    api = FakeApi()
    job = "j1" + "0" * 30
    api.add_job(job, "my-id", "Succeeded", content_mark("my-id", local.digests["md5"], local.size), md5sum="e" * 32, size=local.size)
    p, dummy = protocol(api, image_id="my-id")
    dest = Dest("img", BS, OPTIONS, local)
    session, image_uuid = upload_session(p, api, dest, job)
    dest.image = api.images[image_uuid]
    with pytest.raises(VerificationError) as err:
        p.verify(session, dest, [local])
    assert err.value.message == "verification failed: ZStack computed MD5 %s for image %s ('img'), the MD5 of %s is %s" % (
        "e" * 32, image_uuid, local.path, local.digests["md5"])
    assert p.abort(session, dest, err.value.message, keep=False) == (REMOVED, "image %s was deleted and expunged" % image_uuid)
    assert image_uuid not in api.images and api.calls == [("cancel", job), ("delete", image_uuid), ("expunge", image_uuid)]


def test_a_kept_job_is_left_as_it_is(local):
    api = FakeApi()
    job = "j1" + "0" * 30
    api.add_job(job, "my-id", "Running", content_mark("my-id", local.digests["md5"], local.size))
    p, dummy = protocol(api, image_id="my-id")
    session, dummy = upload_session(p, api, Dest("img", BS, OPTIONS, local), job)
    assert p.abort(session, None, "timeout", keep=True) == "kept" and api.calls == []


def ready_image(api, uuid, md5, size):
    api.images[uuid] = {"uuid": uuid, "name": "img", "status": "Ready", "actualSize": size, "md5Sum": md5,
                        "backupStorageRefs": [{"backupStorageUuid": BS["uuid"]}]}
    return api.images[uuid]


def test_replace_false_refuses_before_anything_is_sent_naming_the_images(local):
    api = FakeApi()
    old = ready_image(api, "u" * 32, "d" * 32, local.size)
    p, dummy = protocol(api, replace=False)
    dest = Dest("img", BS, OPTIONS, local)
    dest.images = [old]
    with pytest.raises(BadInput) as err:
        p.holds(dest, None, local)
    assert err.value.message == ("replace is false and backup storage bs already holds an image named 'img': %s (Ready, MD5 %s); "
                                 "nothing was sent (replace=true, the default, replaces it once the new image is Ready; or give "
                                 "another name)" % ("u" * 32, "d" * 32))
    p, dummy = protocol(api)
    verdict = p.holds(dest, None, local)
    assert not verdict.same and verdict.compared == "md5" and dest.replaces == [old]
    assert p.where(dest) == "image 'img' on backup storage bs in place of image %s" % ("u" * 32)


def test_an_image_already_holding_the_file_stays_and_the_others_of_its_name_go(local):
    api = FakeApi()
    same = ready_image(api, "s" * 32, local.digests["md5"], local.size)
    other = ready_image(api, "o" * 32, "d" * 32, 5)
    p, dummy = protocol(api)
    dest = Dest("img", BS, OPTIONS, local)
    dest.images = [other, same]
    verdict = p.holds(dest, None, local)
    assert verdict.same and verdict.compared == "md5" and dest.match is same
    assert verdict.note == "removed the other image of that name: %s" % ("o" * 32)
    finished = p.finish(dest, [local], False)
    assert finished["changed"] and finished["replaced"] == ["o" * 32] and set(api.images) == {"s" * 32}
    assert finished["diff"]["after"]["images"] == ["s" * 32] and finished["diff"]["before"]["images"] == ["o" * 32, "s" * 32]
    keep, dummy = protocol(api, replace=False)
    again = Dest("img", BS, OPTIONS, local)
    again.images = [ready_image(api, "o" * 32, "d" * 32, 5), same]
    assert keep.holds(again, None, local).note == "replace=false keeps the other image of that name: %s" % ("o" * 32)
    assert keep.finish(again, [local], False) == {} and "o" * 32 in api.images


def test_without_md5sum_the_record_of_the_job_that_made_the_image_decides(local):
    api = FakeApi()
    md5 = local.digests["md5"]
    image_uuid = api.add_job("j1" + "0" * 30, md5, "Succeeded", content_mark(md5, md5, local.size), size=local.size)
    p, dummy = protocol(api)
    dest = Dest("img", BS, OPTIONS, local)
    dest.images = [api.images[image_uuid]]
    verdict = p.holds(dest, None, local)
    assert verdict.same and verdict.compared == "record" and "recorded was compared" in verdict.note
    api.jobs["j1" + "0" * 30]["jobData"] = json.dumps({"description": content_mark(md5, "f" * 32, local.size)})
    dest = Dest("img", BS, OPTIONS, local)
    dest.images = [api.images[image_uuid]]
    assert not p.holds(dest, None, local).same
