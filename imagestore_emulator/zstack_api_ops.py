"""The ZStack management API operations: login, logout, api-job polls, queries, long jobs and images."""

import hashlib
import json
import time

from imagestore_emulator.wire import Response
from imagestore_emulator.zstack_wire import (
    CONTROL_RE, FINAL_STATES, FORMATS, HASH_ALGORITHMS, MANAGEMENT_NODE_UUID, MEDIA_TYPES, PLATFORMS, ARCHITECTURES,
    UPLOAD_TAG, UUID_RE, ZStackError, error_code, json_object, matches_conditions, new_uuid, parse_conditions, sha512_hex,
    timestamp)


class ApiOps:
    """The ``_api_*`` operations (mixed into ``ZStackAPI``; the lock is held)."""

    def _api_login(self, request, body):
        params = json_object(body["logInByAccount"], "logInByAccount")
        name, password = params.get("accountName"), params.get("password")
        if not isinstance(name, str) or not isinstance(password, str):
            raise ZStackError("SYS.1007", "missing mandatory field[accountName] or field[password]")
        if name != self.config["zstack_username"] or password.lower() != sha512_hex(str(self.config["zstack_password"])):
            raise ZStackError("ID.1000", "wrong account name or password")
        session_uuid = new_uuid()
        expires = time.time() + float(self.config.get("zstack_session_seconds", 7200))
        account = hashlib.md5(name.encode("utf-8")).hexdigest()
        self._state["sessions"][session_uuid] = {"expires": expires, "accountUuid": account}
        self._save()
        self._stats["logins"] += 1
        return Response.json({"inventory": {"uuid": session_uuid, "accountUuid": account, "userUuid": account, "userType": "Account",
                                            "expiredDate": timestamp(expires), "createDate": timestamp(), "noSessionEvaluation": False}})

    def _api_logout(self, request, body, uuid):
        self._stats["logouts"] += 1
        if self._state["sessions"].pop(uuid, None) is not None:
            self._save()
        return Response.json({})

    def _api_poll(self, request, body, uuid):
        self._stats["polls"] += 1
        job = self._state["api_jobs"].get(uuid)
        if job is None:
            return Response.text("the job has been expired", 404)
        job["polls"] += 1
        if job["polls"] == 1:
            return Response.json({}, 202)
        return Response.json(job["body"], job["status"])

    # -------------------------------------------------------------- queries

    def _query(self, request, inventories, uuid=None):
        if uuid is not None:
            conditions = [("uuid", "=", uuid)]     # GET /<resources>/{uuid} ignores other conditions
        else:
            conditions = parse_conditions(request.query.get("q", []))
        try:
            found = [inv for inv in inventories if matches_conditions(inv, conditions)]
        except KeyError as exc:
            raise ZStackError("SYS.1007", "the query has no field[%s]" % exc.args[0])
        return Response.json({"inventories": found})

    def _api_query_images(self, request, body, uuid=None):
        return self._query(request, self._state["images"].values(), uuid)

    def _api_query_backup_storage(self, request, body, uuid=None):
        used = sum(image["actualSize"] for image in self._state["images"].values())
        storages = [dict(bs, availableCapacity=bs["totalCapacity"] - used) for bs in self._state["backup_storage"].values()]
        return self._query(request, storages, uuid)

    def _api_query_longjobs(self, request, body, uuid=None):
        return self._query(request, [job["inventory"] for job in self._state["jobs"].values()], uuid)

    def _api_job_details(self, request, body, image_id):
        if CONTROL_RE.search(image_id):
            return Response.json({"error": error_code("SYS.1007", "imageId must not contain control characters")}, 400)
        details = []
        for job_uuid, job in self._state["jobs"].items():
            image = self._state["images"].get(job["image_uuid"])
            if job["image_id"] != image_id or job["inventory"]["state"] in FINAL_STATES or image is None:
                continue
            details.append({"longJobUuid": job_uuid, "longJobState": job["inventory"]["state"], "imageUuid": image["uuid"],
                            "imageUploadUrl": image["backupStorageRefs"][0]["installPath"], "offset": self._prefix(job["upload"])})
        return Response.json({"existingJobDetails": details})

    # --------------------------------------------------- long-job lifecycle

    def _api_submit_longjob(self, request, body):
        params = json_object(body.get("params"), "params")
        job_name = params.get("jobName")
        if job_name != "APIAddImageMsg":
            raise ZStackError("SYS.1007", "%s is not an API the emulator runs as a long job (only APIAddImageMsg)" % job_name)
        for field, limit in (("name", 255), ("description", 2048)):
            if params.get(field) is not None and (not isinstance(params[field], str) or len(params[field]) > limit):
                raise ZStackError("SYS.1007", "field[%s] must be a string of at most %d characters" % (field, limit))
        try:
            data = json.loads(params.get("jobData") or "")
        except (TypeError, ValueError):
            raise ZStackError("SYS.1007", "field[jobData] must be the JSON text of the APIAddImageMsg parameters")
        add_image = self._validate_add_image(data)
        job_uuid = self._new_resource_uuid(params.get("resourceUuid"), self._state["jobs"])
        image_id = self._upload_tag(body.get("systemTags") or [])
        if image_id is not None:
            for other_uuid, other in self._state["jobs"].items():
                if other["image_id"] == image_id and other["inventory"]["state"] not in FINAL_STATES:
                    raise ZStackError("SYS.1007", "long job[uuid:%s] for imageId[%s] is %s; resume or cancel it instead of submitting"
                                      " another one" % (other_uuid, image_id, other["inventory"]["state"]))
        now = time.time()
        created = timestamp(now)
        inventory = {"uuid": job_uuid, "name": params.get("name") or job_name, "description": params.get("description"),
                     "apiId": new_uuid(), "jobName": job_name, "jobData": json.dumps(add_image), "jobResult": None, "state": "Waiting",
                     "targetResourceUuid": None, "managementNodeUuid": MANAGEMENT_NODE_UUID, "createDate": created, "lastOpDate": created,
                     "executeTime": None}
        self._state["jobs"][job_uuid] = {
            "inventory": inventory, "params": add_image, "image_id": image_id, "image_uuid": add_image["resourceUuid"], "created": now, "stage_at": now,
            "upload": {"total": None, "slice_size": None, "received": [], "last_activity": now},
        }
        return {"inventory": inventory}

    @staticmethod
    def _new_resource_uuid(wanted, table):
        if wanted is None:
            return new_uuid()
        if not isinstance(wanted, str) or not UUID_RE.fullmatch(wanted) or wanted in table:
            raise ZStackError("SYS.1007", "resourceUuid[%s] must be 32 lower-case hex digits and not in use" % wanted)
        return wanted

    @staticmethod
    def _upload_tag(system_tags):
        if not isinstance(system_tags, list) or not all(isinstance(tag, str) for tag in system_tags):
            raise ZStackError("SYS.1007", "systemTags must be a list of strings")
        ids = [tag[len(UPLOAD_TAG):] for tag in system_tags if tag.startswith(UPLOAD_TAG)]
        if len(ids) > 1:
            raise ZStackError("SYS.1007", "only one %s<imageId> tag is allowed" % UPLOAD_TAG)
        if ids and (not ids[0] or CONTROL_RE.search(ids[0]) or len(ids[0]) > 255):
            raise ZStackError("SYS.1007", "the imageId of %s must be 1 to 255 characters without control characters" % UPLOAD_TAG)
        return ids[0] if ids else None

    def _validate_add_image(self, data):
        """APIAddImageMsg parameters -> normalized copy (ImageApiInterceptor rules); ZStackError when invalid."""
        if not isinstance(data, dict):
            raise ZStackError("SYS.1007", "jobData must be a JSON object")
        params = dict(data)
        name = params.get("name")
        if not isinstance(name, str) or not name or len(name) > 255:
            raise ZStackError("SYS.1007", "field[name] is mandatory and at most 255 characters")
        url = params.get("url")
        if not isinstance(url, str) or not url.startswith("upload://"):
            raise ZStackError("SYS.1007", "field[url] must be upload://<name>: the emulator only takes local uploads")
        params["mediaType"] = params.get("mediaType") or "RootVolumeTemplate"
        for field, valid in (("mediaType", MEDIA_TYPES), ("platform", PLATFORMS), ("architecture", ARCHITECTURES)):
            if params.get(field) is not None and params[field] not in valid:
                raise ZStackError("SYS.1007", "valid value for field[%s] are %s, but %s found" % (field, list(valid), params[field]))
        if params["mediaType"] == "ISO":
            params["format"] = "iso"
        if params.get("format") not in FORMATS:
            raise ZStackError("SYS.1007", "unknown format[%s]" % params.get("format"))
        params["platform"] = params.get("platform") or "Linux"
        params["architecture"] = params.get("architecture") or "x86_64"
        storages = params.get("backupStorageUuids")
        if not isinstance(storages, list) or not storages:
            raise ZStackError("SYS.1007", "field[backupStorageUuids] must be a non-empty list")
        for storage_uuid in storages:
            storage = self._state["backup_storage"].get(storage_uuid)
            if storage is None:
                raise ZStackError("SYS.1003", "invalid field[backupStorageUuids], resource[uuid:%s, type:BackupStorageVO] not found" % storage_uuid)
            if storage["status"] != "Connected" or storage["state"] != "Enabled":
                raise ZStackError("SYS.1006", "no backup storage specified in uuids%s is available for adding this image" % storages)
        params["backupStorageUuids"] = list(dict.fromkeys(storages))
        taken = set(self._state["images"]) | {job["image_uuid"] for job in self._state["jobs"].values()}
        params["resourceUuid"] = self._new_resource_uuid(params.get("resourceUuid"), taken)
        return params

    def _lookup_job(self, uuid):
        job = self._state["jobs"].get(uuid)
        if job is None:
            raise ZStackError("SYS.1003", "invalid field[uuid], resource[uuid:%s, type:LongJobVO] not found" % uuid)
        return job

    def _api_longjob_action(self, request, body, uuid):
        job = self._lookup_job(uuid)
        state = job["inventory"]["state"]
        if "resumeLongJob" in body:
            if state != "Suspended":
                raise ZStackError("SYS.1007", "can only resume longjob that is Suspended")
            self._set_job(job, state="Running")
            job["upload"]["last_activity"] = time.time()
            return {"inventory": job["inventory"]}
        if state in ("Succeeded", "Failed"):
            raise ZStackError("SYS.1007", "cannot cancel longjob that is %s" % state.lower())
        if state != "Canceled":
            self._finish(job, "Canceled", error_code("LONG_JOB.1000", "long job[uuid:%s] has been canceled" % uuid))
            if state in ("Running", "Suspended"):
                self._remove_image(job["image_uuid"])
        return {}

    def _api_delete_longjob(self, request, body, uuid):
        if self._lookup_job(uuid)["inventory"]["state"] not in FINAL_STATES:
            raise ZStackError("SYS.1007", "delete longjob only when it's succeeded, canceled, or failed")
        del self._state["jobs"][uuid]
        self._digests.pop(uuid, None)
        return {}

    # --------------------------------------------------------------- images

    def _lookup_image(self, uuid):
        image = self._state["images"].get(uuid)
        if image is None:
            raise ZStackError("SYS.1003", "invalid field[uuid], resource[uuid:%s, type:ImageVO] not found" % uuid)
        return image

    def _api_delete_image(self, request, body, uuid):
        image = self._lookup_image(uuid)
        mode = request.arg("deleteMode", "Permissive")
        if mode not in ("Permissive", "Enforcing"):
            raise ZStackError("SYS.1007", "deleteMode must be Permissive or Enforcing, not %s" % mode)
        job = self._job_of_image(uuid)[1]
        if job is not None and job["inventory"]["state"] not in FINAL_STATES:
            self._finish(job, "Failed", error_code("SYS.1006", "image[uuid:%s] was deleted during the upload" % uuid))
        image["status"] = "Deleted"
        image["lastOpDate"] = timestamp()
        for ref in image["backupStorageRefs"]:
            ref["status"] = "Deleted"
        return {}

    def _api_image_action(self, request, body, uuid):
        image = self._lookup_image(uuid)
        if "calculateImageHash" in body:
            params = json_object(body["calculateImageHash"], "calculateImageHash")
            if params.get("algorithm", "MD5") not in HASH_ALGORITHMS:
                raise ZStackError("SYS.1007", "algorithm must be one of %s" % list(HASH_ALGORITHMS))
            if params.get("backupStorageUuid") not in [ref["backupStorageUuid"] for ref in image["backupStorageRefs"]]:
                raise ZStackError("SYS.1003", "the image[uuid:%s] is not on the backup storage[uuid:%s]" % (uuid, params.get("backupStorageUuid")))
            if image["status"] != "Ready":
                raise ZStackError("SYS.1006", "the image[uuid:%s] is %s, not Ready" % (uuid, image["status"]))
            return {"inventory": image}
        wanted = json_object(body["expungeImage"], "expungeImage").get("backupStorageUuids")
        if wanted:
            for storage_uuid in wanted:
                ref = next((r for r in image["backupStorageRefs"] if r["backupStorageUuid"] == storage_uuid), None)
                if ref is None or ref["status"] != "Deleted":
                    raise ZStackError("SYS.1007", "the image[uuid:%s, name:%s] is not %s the backup storage[uuid:%s]"
                                      % (uuid, image["name"], "on" if ref is None else "deleted on", storage_uuid))
        elif not any(ref["status"] == "Deleted" for ref in image["backupStorageRefs"]):
            raise ZStackError("SYS.1006", "the image[uuid:%s, name:%s] is not deleted on any backup storage" % (uuid, image["name"]))
        self._remove_image(uuid)
        return {}
