"""What each provider contributes to the contract suite: how to start its store, name a destination, read back
what it stored and count what it received. The suite's tests are written once against this interface.

A profile answers:
  start(tmp)                 -> a store (a fresh server of the test's own: the emulator, or the toy store), with
                                ``url``, ``port`` and ``stop()``
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
    """A running server of one test: ``url``, ``port``, ``credentials``, ``stats(name)``, ``stop()``, ``kill()``."""

    def __init__(self, process, provider):
        self.process = process
        self.provider = provider

    @property
    def url(self):
        return self.process.url

    @property
    def port(self):
        return int(self.url.rsplit(":", 1)[1])

    @property
    def credentials(self):
        return self.process.credentials.get(self.provider) or {}

    def control(self, method, path, **kw):
        return self.process.control(method, path, **kw)

    def stop(self):
        self.process.stop()


class EmulatorProfile:
    name = None
    module_collection = "imagestore.upload"

    def inject(self, store, *rules):
        """Fault rules of the emulator (imagestore_emulator/faults.py) for this provider."""
        r = store.control("POST", "faults", json={"rules": [dict({"provider": self.name}, **rule) for rule in rules]})
        assert r.status_code == 200, r.text

    def fired(self, store):
        return store.control("GET", "faults").json()["fired"]

    def clear_faults(self, store):
        store.control("DELETE", "faults")

    #: a request body that stalls is given up after this many seconds (real gateways have such a limit)
    body_timeout = 3

    def start(self, tmp, extra_args=(), data_dir=None):
        data = data_dir or os.path.join(str(tmp), "store-%s" % self.name)
        os.makedirs(data, exist_ok=True)
        args = ["--body-timeout", str(self.body_timeout)] + list(extra_args)
        return Store(EmulatorProcess(data, extra_args=args).start(), self.name)

    def module(self, name):
        return "%s.%s" % (self.module_collection, name)

    def connection(self, store, endpoint=None):
        args = {"provider": self.name, "endpoint": endpoint or store.url}
        args.update(store.credentials)
        return args

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


class ToyStoreProfile:
    """The test-only fourth provider: collection imagestore_test.toystore on the toy store (tests/contract/toystore)."""

    name = "toystore"
    module_collection = "imagestore_test.toystore"

    def start(self, tmp):
        from toystore.process import ToyStoreProcess
        return ToyStoreProcess(os.path.join(str(tmp), "store-toystore"), body_timeout=2.0).start()

    def module(self, name):
        return "%s.%s" % (self.module_collection, name)

    def args(self, store, src, dest, endpoint=None, **extra):
        args = dict(provider=self.name, endpoint=endpoint or store.url, src=src, path="contract/%s/disk.img" % dest)
        args.update(store.credentials)
        args.update(extra)
        return args

    def stored_sha256(self, store, dest, result=None):
        r = store.control("GET", "files", params={"path": "contract/%s/disk.img" % dest})
        if r.status_code == 404:
            return None
        r.raise_for_status()
        return hashlib.sha256(r.content).hexdigest()

    def received(self, store):
        return store.stats()["payload_bytes"]

    def open_sessions(self, store, dest, result=None):
        return sum(1 for s in store.control("GET", "sessions").json()["sessions"] if s["path"] == "contract/%s/disk.img" % dest)

    @staticmethod
    def unit(chunk_size, size):
        return chunk_size


PROFILES = {p.name: p for p in (ServiceFabricProfile(), VSphereProfile(), ZStackProfile(), ToyStoreProfile())}
