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
"""

import hashlib
import os

import requests

from imagestore_emulator.process import EmulatorProcess

MiB = 1024 * 1024
ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


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
    #: a request body that stalls is given up after this many seconds (real gateways have such a limit)
    body_timeout = 3

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


class VSphereProfile(EmulatorProfile):
    name = "vsphere"
    operations = {"data": "data_put", "commit": "session_complete", "read": "session_get"}
    exactly_once = False          # a file cut mid-transfer is sent again whole

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


class ZStackProfile(EmulatorProfile):
    name = "zstack"
    operations = {"data": "slice", "commit": None, "read": "details"}
    exactly_once = True

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


class ToyStoreProfile(Profile):
    """The test-only fourth provider: collection imagestore_test.toystore on the toy store (tests/contract/toystore)."""

    name = "toystore"
    module_collection = "imagestore_test.toystore"
    operations = {"data": "data", "commit": "commit", "read": "session_get"}
    exactly_once = True           # a range the store has (or is receiving) is refused with 409, never taken twice
    body_timeout = 2
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
