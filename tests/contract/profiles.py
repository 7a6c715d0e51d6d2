"""What each provider contributes to the contract suite: how to start its store, name a destination, read back
what it stored and count what it received. The suite's tests are written once against this interface.

A profile answers:
  start(tmp, extra_args=(), data_dir=None)
                             -> a store (a fresh server of the test's own: the emulator, or the toy store), with
                                ``url``, ``port``, ``credentials``, ``control()``, ``stats()``, ``stop()``, and
                                ``process.kill()`` / ``process.restart()``
  inject(store, *rules), fired(store), clear_faults(store)
                             -> the server's fault rules (imagestore_emulator/faults.py's format); ``operations``
                                maps "data", "commit", "read" to the server's operation names; ``exactly_once``
  module(name)               -> the module's full name (the toy store's modules live in imagestore_test.toystore)
  args(store, src, dest, **) -> image_upload's module arguments for destination ``dest`` (a short word)
  stored_sha256(store, dest, result) -> SHA-256 of the bytes stored at ``dest`` (None: nothing there)
  received(store)            -> payload bytes the server accepted so far (a counter)
  open_sessions(store, dest, result) -> how many unfinished upload sessions the destination has
  unit(chunk_size, size)     -> the most a resume may re-send beyond what was missing (one unit of transfer)

and may add what only its store can show (each has a default that holds for every store):
  keep_args                  -> module arguments that keep a failed run's session (vSphere: keep_session_on_failure)
  expiry_restarts            -> an expired session is started again (False: resumed, nothing sent twice)
  extra_faults               -> {name: Fault}: the provider's own server faults, run by test_contract_faults.py
  fault_expect               -> {generic fault case: dict(expect=..., at_least=..., warns=...)}: more it shows for a
                                generic case
  check_clean(store, dest, result, before, size)
                             -> what a completed upload leaves on the store (``before``: ``stats()`` when it began)
  check_crashed(store, dest, failed)
                             -> what the store holds after a crash mid-upload and a restart; returns the bytes
                                of the upload it kept (None: it cannot tell)
  race_rules, check_race(store, dest, results, before, size)
                             -> fault rules that widen the window of two runs for one destination; what they leave
"""

import hashlib
import os

import requests

from imagestore_emulator.process import EmulatorProcess

MiB = 1024 * 1024
ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


#: in a Fault's ``expect``: the size of the file uploaded
FILE_SIZE = "the file's size"


class Fault:
    """A provider's own fault case, run by test_contract_faults.py for its profile with the assertions of the generic
    cases (completed, read back byte-identical, no traceback, every byte accepted once) and these:

    ``rules``     the server's fault rules (imagestore_emulator/faults.py); ``after="last"`` lets every data request of the
                  upload but the last one through
    ``args``      more module arguments (e.g. ``api_style``)
    ``fires``     how many times the rules fire (default: the sum of their counts)
    ``expect``    exact values: a counter of the server's ``stats()`` (its change during the run) or a key of the result
                  (FILE_SIZE: the size of the file)
    ``at_least``  the same, as lower bounds
    ``spaced``    (operation, seconds): the requests the rules refused came at least that far apart (Retry-After honoured)
    ``warns``     a part of a warning the run gives
    """

    def __init__(self, *rules, **kw):
        self.rules = [dict(rule, count=rule.get("count", 1)) for rule in rules]
        self.args = kw.pop("args", {})
        self.fires = kw.pop("fires", None)
        if self.fires is None:
            self.fires = sum(rule["count"] for rule in self.rules)
        self.expect = kw.pop("expect", {})
        self.at_least = kw.pop("at_least", {})
        self.spaced = kw.pop("spaced", None)
        self.warns = kw.pop("warns", None)
        assert not kw, kw


class Store:
    """A running server of one test: ``url``, ``port``, ``credentials``, ``control()``, ``stats()``, ``stop()``; ``process``
    has ``kill()`` (SIGKILL, as a crash) and ``restart()`` (a new process on the same data)."""

    def __init__(self, process, profile):
        self.process = process
        self.profile = profile

    @property
    def url(self):
        return self.process.url

    @property
    def port(self):
        return int(self.url.rsplit(":", 1)[1])

    @property
    def credentials(self):
        return self.profile.credentials(self.process)

    def control(self, method, path, **kw):
        """The server's control API (the emulator's /_emulator/, the toy store's /_control/): ``path`` below it."""
        return self.process.control(method, path, **kw)

    def stats(self):
        return self.profile.stats(self)

    def stop(self):
        self.process.stop()


class Profile:
    """What every profile shares: the server as a child process of the test, its fault rules, the module names.

    A subclass sets ``name``, ``module_collection``, ``operations`` (the server's names of the operations fault rules
    target: sending bytes, finishing, reading the session; None: the protocol has no such call) and ``exactly_once``
    (every payload byte is accepted once, faults or not), and implements ``process``, ``credentials``, ``stats`` and
    the per-destination answers (``args``, ``stored_sha256``, ``received``, ``open_sessions``, ``unit``).
    """

    name = None
    module_collection = None
    operations = {}
    exactly_once = True
    #: an expired session is started again (what it had received is sent again); False: it is resumed
    expiry_restarts = True
    #: a request body that stalls is given up after this many seconds (real gateways have such a limit)
    body_timeout = 3
    #: module arguments that keep a failed run's session for the next run (where keeping is not the default)
    keep_args = {}
    extra_faults = {}
    fault_expect = {}
    race_rules = ()

    def process(self, data_dir, extra_args):
        """The server's process object (not started) on ``data_dir``, with these command-line arguments."""
        raise NotImplementedError

    def credentials(self, process):
        raise NotImplementedError

    def start(self, tmp, extra_args=(), data_dir=None):
        data = data_dir or os.path.join(str(tmp), "store-%s" % self.name)
        os.makedirs(data, exist_ok=True)
        args = ["--body-timeout", str(self.body_timeout)] + list(extra_args)
        return Store(self.process(data, args).start(), self)

    def inject(self, store, *rules):
        """Fault rules in the emulator's format (imagestore_emulator/faults.py), for this provider's operations."""
        r = store.control("POST", "faults", json={"rules": [dict({"provider": self.name}, **rule) for rule in rules]})
        assert r.status_code == 200, r.text

    def fired(self, store):
        return store.control("GET", "faults").json()["fired"]

    def clear_faults(self, store):
        store.control("DELETE", "faults")

    def module(self, name):
        return "%s.%s" % (self.module_collection, name)

    def check_clean(self, store, dest, result, before, size):
        """What a completed upload leaves on the store: no unfinished session. (``before`` None: other runs went at the
        same time, the server's counters are not this run's alone.)"""
        assert self.open_sessions(store, dest, result) == 0

    def check_crashed(self, store, dest, failed):
        """After the store crashed mid-upload and restarted: the unfinished session is there, nothing was committed."""
        assert self.open_sessions(store, dest, failed) == 1
        assert self.stored_sha256(store, dest, failed) is None
        return None

    def check_race(self, store, dest, results, before, size):
        """After two runs for one destination: nothing unfinished left."""
        assert self.open_sessions(store, dest, results[0]) == 0

    def connection(self, store, endpoint=None):
        args = {"provider": self.name, "endpoint": endpoint or store.url}
        args.update(store.credentials)
        return args


class EmulatorProfile(Profile):
    module_collection = "imagestore.upload"

    def process(self, data_dir, extra_args):
        return EmulatorProcess(data_dir, extra_args=extra_args)

    def credentials(self, process):
        return process.credentials.get(self.name) or {}

    def stats(self, store):
        return store.process.stats(self.name)

    def _sha256_of(self, store, path):
        r = requests.get("%s/_emulator/%s" % (store.url, path), stream=True, timeout=120)
        if r.status_code == 404:
            return None
        r.raise_for_status()
        h = hashlib.sha256()
        for block in r.iter_content(MiB):
            h.update(block)
        return h.hexdigest()


class ServiceFabricProfile(EmulatorProfile):
    name = "servicefabric"
    #: the emulator's names of the operations fault rules target: sending bytes, finishing, reading the session
    operations = {"data": "chunk", "commit": "commit", "read": "get"}
    #: every payload byte is accepted exactly once, faults or not (ranges never re-sent once landed)
    exactly_once = True
    #: the cluster gateway's own failures (issue 15): each survived with every byte accepted once, the commit made once
    extra_faults = {
        "504 FABRIC_E_TIMEOUT after the chunk and the commit completed": Fault(
            dict(operation="chunk", action="status_after", status=504, code="FABRIC_E_TIMEOUT", count=2, after=1),
            dict(operation="commit", action="status_after", status=504, code="FABRIC_E_TIMEOUT"),
            expect={"bytes_sent": FILE_SIZE, "commits": 1}),
        "503 FABRIC_E_NOT_PRIMARY and FABRIC_E_NOT_READY": Fault(
            dict(operation="chunk", action="status", status=503, code="FABRIC_E_NOT_PRIMARY", count=2),
            dict(operation="get", action="status", status=503, code="FABRIC_E_NOT_READY"),
            expect={"bytes_sent": FILE_SIZE, "commits": 1}),
        "a commit slower than the gateway's time-out (it lands behind the 504)": Fault(
            dict(operation="commit", action="delay", ms=3500),
            expect={"bytes_sent": FILE_SIZE, "commits": 1}),
    }

    def args(self, store, src, dest, endpoint=None, **extra):
        args = self.connection(store, endpoint)
        args.update(src=src, path="contract/%s/disk.img" % dest)
        args.update(extra)
        return args

    def stored_sha256(self, store, dest, result=None):
        return self._sha256_of(store, "servicefabric/content/contract/%s/disk.img" % dest)

    def received(self, store):
        stats = self.stats(store)
        return stats["chunk_bytes"] + stats.get("whole_file_bytes", 0)

    def open_sessions(self, store, dest, result=None):
        sessions = store.control("GET", "servicefabric/sessions").json()
        if isinstance(sessions, dict):
            sessions = sessions.get("sessions", [])
        return sum(1 for s in sessions if s.get("path", "").lower() == ("contract/%s/disk.img" % dest)
                   and not s.get("committed"))

    @staticmethod
    def unit(chunk_size, size):
        return chunk_size


def moved(before, after):
    """How much each server counter changed."""
    return dict((k, v - before.get(k, 0)) for k, v in after.items() if isinstance(v, (int, float)))


class VSphereProfile(EmulatorProfile):
    name = "vsphere"
    operations = {"data": "data_put", "commit": "session_complete", "read": "session_get"}
    exactly_once = False          # a file cut mid-transfer is sent again whole
    keep_args = {"keep_session_on_failure": True}
    extra_faults = {
        "503 storm with Retry-After on session and file calls": Fault(
            dict(operation="session_create", action="status", status=503, retry_after=1),
            dict(operation="file_add", action="status", status=503, retry_after=1, count=2),
            dict(operation="session_complete", action="status", status=503, retry_after=0),
            expect={"bytes_sent": FILE_SIZE, "sessions_created": 1}, spaced=("file_add", 1.0)),
        "slow session reads past request_timeout": Fault(dict(operation="session_get", action="delay", ms=2500),
                                                         expect={"bytes_sent": FILE_SIZE}),
        "lost answer to session create": Fault(dict(operation="session_create", action="drop_response"),
                                               expect={"sessions_created": 1}),
        "lost answer to session create on /rest (client_token in the body)": Fault(
            dict(operation="session_create", action="drop_response"), args={"api_style": "rest"},
            expect={"sessions_created": 1, "api_style": "rest"}),
        "401 on the data PUT: log in again once": Fault(dict(operation="data_put", action="status", status=401),
                                                        expect={"logins": 2}),
        "503 on login": Fault(dict(operation="login", action="status", status=503, retry_after=1, count=2),
                              expect={"logins": 1}, spaced=("login", 1.0)),
    }
    #: both runs look for a session, find none, and create one: a delay on the creates widens the window in which both
    #: have looked; the second is refused (resource_busy) and joins the first one's session
    race_rules = (dict(operation="session_create", action="delay", ms=1500, count=2),)
    fault_expect = {
        # the update session idle-expires at the data PUT: one restart, a second session, a warning naming the cause
        "session expired mid-upload": dict(expect={"session_restarts": 1, "sessions_created": 2},
                                           warns="ended during the upload (ERROR: session expired"),
    }

    def args(self, store, src, dest, endpoint=None, **extra):
        args = self.connection(store, endpoint)
        args.update(src=src, library="images", item="contract-%s" % dest, file_name="disk.img")
        args.update(extra)
        return args

    def _item(self, store, dest):
        items = store.control("GET", "vsphere/items").json()
        items = items.get("items", items) if isinstance(items, dict) else items
        for item in items:
            if item.get("name") == "contract-%s" % dest:
                return item
        return None

    def stored_sha256(self, store, dest, result=None):
        item = self._item(store, dest)
        if item is None:
            return None
        return self._sha256_of(store, "vsphere/items/%s/files/disk.img" % item["id"])

    def received(self, store):
        return self.stats(store)["data_bytes"]

    def open_sessions(self, store, dest, result=None):
        item = self._item(store, dest)
        if item is None:
            return 0
        sessions = store.control("GET", "vsphere/sessions").json()
        sessions = sessions.get("sessions", sessions) if isinstance(sessions, dict) else sessions
        return sum(1 for s in sessions if s.get("library_item_id") == item["id"] and s.get("state") == "ACTIVE")

    @staticmethod
    def unit(chunk_size, size):
        return size               # a file is re-sent whole: the protocol has no ranged upload

    def _sessions_of(self, store, item_id):
        """Every update session the emulator holds for the item (ended ones too, until deleted)."""
        sessions = store.control("GET", "vsphere/sessions").json()
        sessions = sessions.get("sessions", sessions) if isinstance(sessions, dict) else sessions
        return [s for s in sessions if s.get("library_item_id") == item_id]

    def check_clean(self, store, dest, result, before, size):
        """Never two update sessions at once (one more per restart); the DONE session deleted, nothing left behind."""
        if before is not None:
            counted = moved(before, self.stats(store))
            assert counted["sessions_created"] == 1 + result.get("session_restarts", 0), counted
        assert self._sessions_of(store, result["item_id"]) == []

    def check_crashed(self, store, dest, failed):
        """The client could neither finish nor clean up, and says so; the session is ACTIVE after the restart with its
        file in ERROR: the PUT was in flight, its bytes are gone (the file is sent again whole)."""
        session_id = failed["session_id"]
        assert failed["session_cleanup"] == "incomplete", failed
        assert failed["cleanup_error"].startswith("update session {0} could not be cleaned up (failed: fail update session {0} "
                                                  "failed after 2 attempts: ".format(session_id)), failed["cleanup_error"]
        assert failed["cleanup_error"].endswith("); it may still be ACTIVE"), failed["cleanup_error"]
        (left,) = self._sessions_of(store, failed["item_id"])
        assert left["id"] == session_id and left["state"] == "ACTIVE", left
        (f,) = left["files"]
        assert f["status"] == "ERROR" and f["bytes_transferred"] == 0, f
        assert "interrupted (server restart)" in f["error_message"]["default_message"]
        assert self.stored_sha256(store, dest) is None
        return 0

    def check_race(self, store, dest, results, before, size):
        """An item has at most one ACTIVE update session and each file goes whole: the runs that changed something worked
        in one session (one opened it, the other resumed it); one complete; a file sent at most once by each run."""
        item = self._item(store, dest)
        assert set(r["item_id"] for r in results) == set([item["id"]])
        assert sum(r["item_created"] for r in results) == 1
        assert item["content_version"] == "2", results            # created as 1, completed once
        assert self._sessions_of(store, item["id"]) == []          # the DONE session deleted, none ACTIVE
        counted = moved(before, self.stats(store))
        assert counted["sessions_created"] == 1, counted           # never a second session for the item
        assert size <= counted["data_bytes"] <= 2 * size, counted
        changed = [r for r in results if r["changed"]]
        assert len(set(r["session_id"] for r in changed)) == 1 and None not in set(r["session_id"] for r in changed), results
        if len(changed) == 2:
            assert sorted(r["resumed"] for r in changed) == [False, True], results
        for loser in (r for r in results if not r["changed"]):
            assert loser["session_id"] in (None, changed[0]["session_id"]), results


class ZStackProfile(EmulatorProfile):
    name = "zstack"
    operations = {"data": "slice", "commit": None, "read": "details"}
    exactly_once = True
    expiry_restarts = False       # the expire fault on a slice idle-suspends the job: it is resumed, nothing sent twice
    extra_faults = {
        # the retry of the last slice is held back (1 s) so that it arrives once the image is Ready
        "lost answer to the last slice": Fault(dict(operation="slice", action="drop_response", after="last"),
                                               dict(operation="slice", action="delay", ms=1000, after="last")),
        "503 storm with Retry-After on polls": Fault(dict(operation="poll", action="status", status=503, retry_after=1, count=3)),
        "lost answer to the long-job submit": Fault(dict(operation="submit", action="drop_response")),
        "API session expired at a job-details read": Fault(dict(operation="details", action="expire", after=1),
                                                           expect={"logins": 2}),
        "API session expired at the submit": Fault(dict(operation="submit", action="expire"), expect={"logins": 2}),
        "503 on login": Fault(dict(operation="login", action="status", status=503, count=2), expect={"logins": 1}),
    }
    fault_expect = {
        # the job idle-suspended: its slices refused until it is resumed, the transfer re-planned
        "session expired mid-upload": dict(at_least={"chunks_replanned": 1}),
        # a slice that lands after its retry was answered is not taken twice (the receiver answers 406: present)
        "answers slower than request_timeout": dict(expect={"slice_bytes": FILE_SIZE}),
    }
    #: both runs look for a job, find none, and submit: a delay on the submits widens the window in which both have looked
    race_rules = (dict(operation="submit", action="delay", ms=1500, count=2),)

    def args(self, store, src, dest, endpoint=None, **extra):
        args = self.connection(store, endpoint)
        args.update(src=src, name="contract-%s" % dest, backup_storage="bs", format="raw")
        args.update(extra)
        return args

    def _images(self, store, dest):
        r = requests.get("%s/zstack/v1/images" % store.url, params={"q": "name=contract-%s" % dest},
                         headers={"Authorization": "OAuth %s" % self._session(store)}, timeout=30)
        return [i for i in r.json().get("inventories", []) if i.get("name") == "contract-%s" % dest]

    def _session(self, store):
        creds = store.credentials
        body = {"logInByAccount": {"accountName": creds["username"],
                                   "password": hashlib.sha512(creds["password"].encode()).hexdigest()}}
        return requests.put("%s/zstack/v1/accounts/login" % store.url, json=body, timeout=30).json()["inventory"]["uuid"]

    def stored_sha256(self, store, dest, result=None):
        ready = [i for i in self._images(store, dest) if i.get("status") == "Ready"]
        if not ready:
            return None
        assert len(ready) == 1, "two Ready images named contract-%s: %s" % (dest, ready)
        return self._sha256_of(store, "zstack/images/%s/content" % ready[0]["uuid"])

    def received(self, store):
        return self.stats(store)["slice_bytes"]

    def open_sessions(self, store, dest, result=None):
        return sum(1 for i in self._images(store, dest) if i.get("status") not in ("Ready", "Deleted"))

    @staticmethod
    def unit(chunk_size, size):
        return chunk_size

    def _jobs(self, store, image_id):
        return [j for j in store.control("GET", "zstack/jobs").json()["jobs"] if j["imageId"] == image_id]

    def check_clean(self, store, dest, result, before, size):
        """One long job for the image_id, Succeeded, every slice received; one image of that name, Ready, of the file's
        size; the run's API session logged out once."""
        (job,) = self._jobs(store, result["image_id"])
        (image,) = self._images(store, dest)
        assert (job["state"], image["status"], image["actualSize"]) == ("Succeeded", "Ready", size), (job, image)
        assert (result["session_id"], result["image_uuid"]) == (job["uuid"], image["uuid"])
        assert job["imageUuid"] == image["uuid"]
        assert sorted(job["receivedSlices"]) == list(range(-(-size // job["sliceSize"])))
        if before is not None:
            assert moved(before, self.stats(store))["logouts"] == 1

    def check_crashed(self, store, dest, failed):
        """The job is kept (a re-run resumes it): Running or Suspended after the restart, its offset within what the
        receiver recorded; no image Ready. Returns the bytes of the slices the receiver recorded."""
        assert failed["session_cleanup"] == "kept", failed
        (job,) = self._jobs(store, failed["image_id"])
        assert job["uuid"] == failed["session_id"] and job["state"] in ("Running", "Suspended"), job
        grid, size = job["sliceSize"], job["size"]
        received = sum(min(grid, size - i * grid) for i in job["receivedSlices"])
        assert 0 < received < size and job["offset"] <= received, job
        assert all(i.get("status") != "Ready" for i in self._images(store, dest))
        return received

    def check_race(self, store, dest, results, before, size):
        """ZStack refuses a second job for the image_id: the loser joins the winner's job (or, had it come late, finds the
        image Ready). One job, one image, every slice accepted once whoever sent it."""
        first, second = sorted(results, key=lambda r: (r["resumed"], not r["changed"]))
        assert first["changed"] is True and first["resumed"] is False, results
        assert (second["session_id"], second["image_uuid"]) == (first["session_id"], first["image_uuid"]), results
        assert second["resumed"] is True or second["changed"] is False, results
        if second["resumed"]:
            assert any("was submitted by another run meanwhile; this run joins it" in w for w in second.get("warnings", [])), second
        (job,) = self._jobs(store, first["image_id"])
        (image,) = self._images(store, dest)
        assert (job["uuid"], job["state"], image["status"]) == (first["session_id"], "Succeeded", "Ready")


class ToyStoreProfile(Profile):
    """The test-only fourth provider: collection imagestore_test.toystore on the toy store (tests/contract/toystore)."""

    name = "toystore"
    module_collection = "imagestore_test.toystore"
    operations = {"data": "data", "commit": "commit", "read": "session_get"}
    exactly_once = True           # a range the store has (or is receiving) is refused with 409, never taken twice
    body_timeout = 2
    #: the second run's session create is held until the first run has committed (the window between looking at the
    #: store and opening a session, as a long digest pass makes it): it must find the upload done, not make it again
    race_rules = (dict(operation="session_put", action="delay", ms=6000, after=1),)
    #: one password for every toy store of the run, as the emulator has (a test may point a run at a second store)
    password = "Toy-Store-Passw0rd!"

    def process(self, data_dir, extra_args):
        from toystore.process import ToyStoreProcess
        return ToyStoreProcess(data_dir, extra_args=["--password", self.password] + list(extra_args))

    def credentials(self, process):
        return process.credentials

    def stats(self, store):
        return store.process.stats()

    def args(self, store, src, dest, endpoint=None, **extra):
        args = self.connection(store, endpoint)
        args.update(src=src, path="contract/%s/disk.img" % dest)
        args.update(extra)
        return args

    def stored_sha256(self, store, dest, result=None):
        r = store.control("GET", "files", params={"path": "contract/%s/disk.img" % dest})
        if r.status_code == 404:
            return None
        r.raise_for_status()
        return hashlib.sha256(r.content).hexdigest()

    def received(self, store):
        return self.stats(store)["payload_bytes"]

    def open_sessions(self, store, dest, result=None):
        return sum(1 for s in store.control("GET", "sessions").json()["sessions"] if s["path"] == "contract/%s/disk.img" % dest)

    @staticmethod
    def unit(chunk_size, size):
        return chunk_size


PROFILES = {p.name: p for p in (ServiceFabricProfile(), VSphereProfile(), ZStackProfile(), ToyStoreProfile())}
#: the collection's own providers (the toy store is a test collection of its own)
PROVIDER_PROFILES = dict((name, p) for name, p in PROFILES.items() if p.module_collection == "imagestore.upload")
