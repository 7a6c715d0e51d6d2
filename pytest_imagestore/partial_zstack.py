"""ZStack: the long job image_upload would submit for a file, with its first slices sent, left Running."""

from ansible_collections.imagestore.upload.plugins.module_utils._source import Source
from ansible_collections.imagestore.upload.plugins.module_utils._wait import Deadline
from ansible_collections.imagestore.upload.plugins.module_utils._zstack_client import ZStackClient, classify, parse_error
from ansible_collections.imagestore.upload.plugins.module_utils._zstack_jobs import (
    add_image_params, check_image_id, image_options, resolve_backup_storage,
)
from ansible_collections.imagestore.upload.plugins.module_utils._zstack_multipart import multipart_filename, slice_md5
from pytest_imagestore.partial import Partial, http_for


def make(target, src, fraction, chunk_size, name, backup_storage=None, image_id=None, **image):
    """Submit the upload job of ``src`` as image ``name`` and send the first ``fraction`` of its ``chunk_size`` slices.

    ``backup_storage`` defaults to the target's (``bs`` on the emulator); ``image_id`` to the MD5 of the file, as
    image_upload's; ``image`` may give ``format``, ``media_type``, ``platform`` as image_upload takes them.
    The job is left Running (the server's idle timer suspends it later). ``cleanup()`` cancels the job and deletes
    and expunges its image, whatever state they reached (gone is fine).
    """
    source = Source(src)
    options = image_options(src, dict(image, name=name))
    http = http_for(target, parse_error)
    http.classify = classify
    api = ZStackClient(http, target.options.get("username"), target.options.get("password"), Deadline(None))
    state = {"job": None, "image": None, "storage": None}

    def cleanup():
        try:
            if state["job"]:
                api.cancel_long_job(state["job"])          # False when finished already, or gone
            found = api.get_image(state["image"]) if state["image"] else None
            if found is not None:
                if found.get("status") != "Deleted":
                    api.delete_image(found["uuid"])
                api.expunge_image(found["uuid"], [r["backupStorageUuid"] for r in found.get("backupStorageRefs") or []])
        finally:
            api.logout()
            api.http.close()

    try:
        storage = resolve_backup_storage(api, backup_storage or target.options.get("backup_storage") or "bs")
        md5 = source.digest("md5")
        image_id = check_image_id(image_id or md5)
        job = api.submit_add_image(image_id, add_image_params(options, storage["uuid"], image_id, md5, source.size))
        state["job"] = job["uuid"]
        api.wait_long_job_started(job["uuid"])
        detail = api.job_detail(image_id, job["uuid"])
        if detail is None:
            raise AssertionError("upload job %s runs but GetUploadImageJobDetails does not list it" % job["uuid"])
        state["image"] = detail["imageUuid"]
        count = -(-source.size // chunk_size)
        wanted = min(count, int(count * fraction))
        sent = []
        for index in range(wanted):
            start, end = index * chunk_size, min(source.size, (index + 1) * chunk_size) - 1
            api.send_slice(detail["imageUploadUrl"], detail["imageUuid"], source.size, index, start, end, source,
                           slice_md5(source, start, end), multipart_filename(src))
            sent.append((start, end))
    except BaseException:
        cleanup()
        raise
    return Partial(provider="zstack", session_id=job["uuid"], long_job_uuid=job["uuid"], image_uuid=detail["imageUuid"],
                   image_id=image_id, name=name, backup_storage_uuid=storage["uuid"], size=source.size,
                   bytes_sent=sum(e - s + 1 for s, e in sent), slice_size=chunk_size, slices_sent=len(sent), sent=sent), cleanup
