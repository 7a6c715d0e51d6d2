# -*- coding: utf-8 -*-
# Copyright: imagestore.upload contributors
# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Digests computed beside other work (private): a hasher in a thread of its own, several hashers fed by one read.

hashlib releases the GIL on large buffers, so digests fed from one read run side by side on several cores.
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import threading

try:
    import queue
except ImportError:  # pragma: no cover - Python 2 is not supported, but sanity imports on it
    import Queue as queue


class ThreadedHasher:
    """A hasher fed from one thread and computed in another: ``update()`` queues the block (at most two
    waiting), so a sender hashing what it sends does not wait for the digest between socket writes.
    ``hexdigest()`` waits for the queued blocks; ``close()`` ends the thread of a hasher left unused."""

    def __init__(self, hasher):
        self._hasher = hasher
        self._queue = queue.Queue(maxsize=2)
        self._thread = threading.Thread(target=self._work, name="imagestore-hasher")
        self._thread.daemon = True
        self._thread.start()

    def _work(self):
        while True:
            block = self._queue.get()
            if block is None:
                return
            self._hasher.update(block)

    def update(self, data):
        if self._thread is None:
            raise ValueError("update() after hexdigest() or close()")
        self._queue.put(data)

    def close(self):
        if self._thread is not None:
            self._queue.put(None)
            self._thread.join()
            self._thread = None

    def hexdigest(self):
        self.close()
        return self._hasher.hexdigest()


def feed(hashers, blocks):
    """Feed every block to every hasher, each hasher in a thread of its own when there are several.

    hashlib releases the GIL on large buffers, so MD5 and SHA-256 of one read run side by side on two
    cores; each hasher's queue holds at most two blocks (memory stays a few blocks).
    """
    hashers = list(hashers)
    if len(hashers) == 1:
        for block in blocks:
            hashers[0].update(block)
        return
    threaded = [ThreadedHasher(h) for h in hashers]
    try:
        for block in blocks:
            for t in threaded:
                t.update(block)
    finally:
        for t in threaded:
            t.close()
