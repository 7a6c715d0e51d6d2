"""The provider contract suite: every test runs for every provider (its profile in profiles.py).

Each test gets a store of its own (``store``), started fresh, so faults, kills and counters of one test
never touch another; ``upload(...)`` runs image_upload through ansible-playbook (the way users run it).
"""

import hashlib
import shutil

from ansible_helpers import make_file

MiB = 1024 * 1024


class Contract:
    """What a contract test does with its provider: upload, read back, count."""

    def __init__(self, profile, store, ansible, tmp_path):
        self.profile = profile
        self.store = store
        self.ansible = ansible
        self.tmp = tmp_path

    def image(self, size, seed=0, name="disk.img"):
        path = str(self.tmp / name)
        return path, make_file(path, size, seed)

    def copy(self, src, name="copy.img"):
        """The same bytes as another host would hold them: a new inode, a new mtime, no digest cache entry."""
        path = str(self.tmp / name)
        shutil.copyfile(src, path)
        return path

    def args(self, src, dest, **extra):
        return self.profile.args(self.store, src, dest, **extra)

    def upload(self, src, dest, check=False, diff=False, env=None, verbosity=0, **extra):
        return self.ansible.module(self.profile.module("image_upload"), self.args(src, dest, **extra), check=check,
                                   diff=diff, env=env, verbosity=verbosity)

    def stored(self, dest, result=None):
        return self.profile.stored_sha256(self.store, dest, result)

    def received(self):
        return self.profile.received(self.store)

    def open_sessions(self, dest, result=None):
        return self.profile.open_sessions(self.store, dest, result)


def sha256_of(path):
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(MiB), b""):
            h.update(block)
    return h.hexdigest()
