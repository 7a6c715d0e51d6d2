# -*- coding: utf-8 -*-
# Copyright: imagestore.upload contributors
# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)
"""The transfer loop (private): send every unit the store reports missing, with a bounded pool.

One loop for every protocol and every unit of transfer (a byte range, a slice of a fixed grid, a whole
file): ask the store what is missing, cut it into units, send them with ``parallel`` workers (the pool
refills as each unit ends), and ask again. What the loop survives, decided here once:

* ``Conflict`` from a unit (the store's account moved: a retried unit whose first attempt landed, a
  concurrent sender): the other units go on, then the store is asked again and the plan redone;
* a retryable failure of a unit (a connection reset or cut silently, a 5xx after the HTTP layer's
  retries): the other units go on; the unit is planned again from the store's next answer. A store
  that still holds a cut unit as "in flight" refuses it for a while: the loop waits with backoff
  (never past the deadline) and tries again, and gives up only when nothing was accepted for
  ``stall_seconds`` and at least ``STALL_ROUNDS`` rounds were tried (a whole-file unit whose attempt
  outlasts ``stall_seconds`` is still tried again);
* anything else stops the workers and is raised (``SessionLost`` is the engine's to handle; ``StoreFull``: a
  re-run resumes once the store has room, this run does not fill the rest of its disk).
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import threading
from concurrent.futures import FIRST_COMPLETED, ThreadPoolExecutor, wait

from ansible_collections.imagestore.upload.plugins.module_utils._errors import (
    Conflict, DeadlineExceeded, ImageStoreError, SessionLost, StoreFull, TransferError,
)
from ansible_collections.imagestore.upload.plugins.module_utils._wait import HOLD, Backoff

#: rounds without any accepted byte before a stalled transfer is given up (with ``stall_seconds`` passed too)
STALL_ROUNDS = 3


class Unit:
    """One request's worth of bytes: ``[start, end]`` of ``item`` (an engine file)."""

    __slots__ = ("item", "start", "end")

    def __init__(self, item, start, end):
        self.item = item
        self.start = start
        self.end = end

    @property
    def size(self):
        return self.end - self.start + 1

    def __repr__(self):
        return "Unit(%s, %d, %d)" % (getattr(self.item, "name", self.item), self.start, self.end)


class Transfer:
    """Drive a set of files to "nothing missing".

    ``missing()`` -> list of Unit still to send (the store's current account, already planned);
    ``send(unit)`` -> bytes the store accepted from this request (0: it had them);
    ``on_sent(n)`` (progress) is told of the bytes of a unit as its request body reads them (``tap``, given to the
    sources' readers: a unit may be a whole file of several GiB) and, when the unit ends, of the difference to what
    the store accepted (negative when the request failed), so that its sum is the bytes accepted.
    """

    def __init__(self, missing, send, parallel, deadline, stall_seconds=60.0, on_sent=None, doing="uploading"):
        self.missing = missing
        self.send = send
        self.parallel = max(1, parallel)
        self.deadline = deadline
        self.stall_seconds = stall_seconds
        self.on_sent = on_sent
        self.doing = doing
        self.rounds = 0
        self.conflicts = 0
        self.failures = 0
        self.bytes_sent = 0
        self.initial_missing = None
        self.last_error = None
        self._streamed = threading.local()

    def run(self):
        """Return the bytes the store accepted; raise TransferError when it cannot finish."""
        backoff = Backoff(**HOLD)
        last_progress = self.deadline.clock()
        previous = None
        fruitless = 0           # rounds since the last accepted byte
        while True:
            self.deadline.check(self.doing)
            units = self.missing()
            if self.initial_missing is None:
                self.initial_missing = sum(u.size for u in units)
            if not units:
                return self.bytes_sent
            plan = [(id(u.item), u.start, u.end) for u in units]
            self.rounds += 1
            accepted, waits = self._round(units)
            if accepted:
                last_progress = self.deadline.clock()
                backoff.reset()
                previous = None
                fruitless = 0
                continue
            fruitless += 1
            if waits is None and plan != previous:
                previous = plan        # every unit answered and the store had them all: ask again (once for this plan)
                continue
            idle = self.deadline.clock() - last_progress
            if idle >= self.stall_seconds and fruitless >= STALL_ROUNDS:
                left = sum(u.size for u in units)
                raise TransferError("the store still reports %d bytes missing; nothing was accepted for %d seconds (last error: %s)"
                                    % (left, idle, self.last_error or "none"))
            self.deadline.sleep(max([next(backoff)] + (waits or [])), self.doing)

    def tap(self, n):
        """``n`` bytes of a unit's request body were read (reads outside a unit's send, as a digest pass, do not count)."""
        counted = getattr(self._streamed, "bytes", None)
        if counted is None:
            return
        self._streamed.bytes = counted + n
        if self.on_sent is not None:
            self.on_sent(n)

    def _send_one(self, unit, stop):
        if stop.is_set():
            return 0
        self._streamed.bytes = 0
        n = 0
        try:
            n = self.send(unit)
        finally:
            streamed, self._streamed.bytes = self._streamed.bytes, None
            if self.on_sent is not None and n != streamed:
                self.on_sent(n - streamed)
        return n

    def _round(self, units):
        """Send the units; return (bytes accepted, None when every unit went through, else the waits conflicts asked for)."""
        stop = threading.Event()
        accepted, waits, troubled = 0, [], False
        queue = list(reversed(units))
        with ThreadPoolExecutor(max_workers=min(self.parallel, len(units))) as pool:
            pending = set()
            while queue or pending:
                while queue and len(pending) < self.parallel and not stop.is_set():
                    pending.add(pool.submit(self._send_one, queue.pop(), stop))
                if not pending:
                    break
                done, pending = wait(pending, return_when=FIRST_COMPLETED)   # refill as soon as one ends: no lockstep batches
                for future in done:
                    exc = future.exception()
                    if exc is None:
                        n = future.result()
                        accepted += n
                        self.bytes_sent += n
                    elif isinstance(exc, Conflict):
                        self.conflicts += 1
                        troubled = True
                        waits.append(exc.wait)
                        self.last_error = exc.message
                    elif isinstance(exc, ImageStoreError) and exc.retryable and not self.deadline.expired() \
                            and not isinstance(exc, (SessionLost, DeadlineExceeded, StoreFull)):
                        self.failures += 1
                        troubled = True
                        self.last_error = exc.message
                    else:
                        stop.set()
                        for other in pending:
                            other.cancel()
                        wait(pending)
                        raise exc
        return accepted, (waits if troubled else None)
