"""The ZStack API itself, as the ZStack tests use it to check what the modules left and to clean up."""

import contextlib
import hashlib
import time

import pytest
import requests

BS_UUID = "5c0fa9b2e4d14f0c9a1b7e3d2c6f8a90"       # the emulator's seeded backup storage "bs"


class Rest:
    """Logs in with the target's account; reads, calls (polling async api-jobs) and removes images."""

    def __init__(self, zs):
        self.url = zs.endpoint + "/zstack/v1"
        password = hashlib.sha512(zs.options["password"].encode()).hexdigest()
        login = requests.put(self.url + "/accounts/login",
                             json={"logInByAccount": {"accountName": zs.options["username"], "password": password}})
        self.auth = {"Authorization": "OAuth " + login.json()["inventory"]["uuid"]}

    def get(self, path):
        """The first inventory at ``path`` (e.g. ``/images/<uuid>``), or None."""
        found = requests.get(self.url + path, headers=self.auth).json()["inventories"]
        return found[0] if found else None

    def images(self, name):
        return requests.get(self.url + "/images", params={"q": "name=%s" % name}, headers=self.auth).json()["inventories"]

    def call(self, method, path, **kwargs):
        """An asynchronous call: the final answer of its api-job."""
        location = requests.request(method, self.url + path, headers=self.auth, **kwargs).json()["location"]
        while True:
            answer = requests.get(location)
            if answer.status_code != 202:
                return answer
            time.sleep(0.02)

    def remove(self, name):
        """Delete and expunge every image called ``name``."""
        for image in self.images(name):
            if image["status"] != "Deleted":
                self.call("DELETE", "/images/%s" % image["uuid"], params={"deleteMode": "Permissive"})
            self.call("PUT", "/images/%s/actions" % image["uuid"], json={"expungeImage": {"backupStorageUuids": [BS_UUID]}})


@contextlib.contextmanager
def clean_emulator(emulator, zs, why):
    """The emulator for a test that needs it (skipped with ``why`` against a real ZStack): fault rules
    cleared before and after, and the images the test lists in ``emulator.names`` removed afterwards."""
    if not zs.emulated:
        pytest.skip(why)
    requests.delete(emulator.url + "/_emulator/faults")
    emulator.names = []
    try:
        yield emulator
    finally:
        requests.delete(emulator.url + "/_emulator/faults")
        rest = Rest(zs)
        for name in emulator.names:
            rest.remove(name)
