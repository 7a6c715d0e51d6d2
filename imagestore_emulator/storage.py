"""State on disk: atomic JSON documents, and the full-disk condition.

Every write of stored content (chunks, files, slices, and a commit that assembles a file) calls
``check_space(n)`` first. A real full filesystem raises ``OSError(ENOSPC)`` from any write, documents
included; the ``enospc`` fault (see ``faults.py``) raises the same error from ``check_space`` for the
request it fires on, once ``bytes`` bytes were let through, so it fills the store's content disk only
(the bookkeeping of sessions, like a real server's database, is elsewhere). ``is_disk_full(exc)`` tells either apart from any other error, so each
provider answers it as its real server answers a full disk.
"""

import errno
import json
import os
import threading

_local = threading.local()


class simulated_full_disk:
    """Within this block (on this thread), writes fail with ENOSPC once ``allowance`` bytes were written."""

    def __init__(self, allowance=0):
        self.allowance = allowance

    def __enter__(self):
        _local.allowance = self.allowance
        return self

    def __exit__(self, *exc):
        _local.allowance = None
        return False


def check_space(nbytes=0):
    """Raise ENOSPC when the simulated full disk has no room for ``nbytes`` more bytes."""
    allowance = getattr(_local, "allowance", None)
    if allowance is None:
        return
    if nbytes > allowance or (nbytes == 0 and allowance == 0):
        _local.allowance = 0
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
    _local.allowance = allowance - nbytes


def is_disk_full(exc):
    return isinstance(exc, OSError) and exc.errno in (errno.ENOSPC, errno.EDQUOT)


def write_json_atomic(path, obj):
    """Persist a small JSON document so a crash (or a full disk) never leaves half a file behind."""
    data = json.dumps(obj).encode("utf-8")
    tmp = "%s.tmp.%d.%d" % (path, os.getpid(), threading.get_ident())
    try:
        with open(tmp, "wb") as fh:
            fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        try:
            os.unlink(tmp)
        except OSError:
            pass
        raise


def read_json(path, default=None):
    try:
        with open(path, "r", encoding="utf-8") as fh:
            return json.load(fh)
    except (OSError, ValueError):
        return default
