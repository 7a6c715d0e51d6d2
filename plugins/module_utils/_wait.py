# -*- coding: utf-8 -*-
# Copyright: imagestore.upload contributors
# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)
"""The wait and retry toolkit (private): one deadline, one backoff, one poll loop, one periodic thread.

Every wait of the collection goes through a ``Deadline`` (the module's ``timeout``): request
time-outs are cut to what is left (``bound``), sleeps never pass it (``sleep``), poll loops stop at
it (``poll_until``), long loops check it (``check``). The clock and the sleep are injectable, so
waits are tested without real time.
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import random
import threading
import time

from ansible_collections.imagestore.upload.plugins.module_utils._errors import DeadlineExceeded

#: the shortest bound given to a request when the deadline is close (a request needs some time to fail cleanly)
MIN_BOUND = 0.5
#: seconds of grace a failed run gets past its deadline to clean up and log out
CLEANUP_GRACE = 5.0


class Deadline:
    """The run's wall-clock budget (``seconds`` None or 0: no limit)."""

    def __init__(self, seconds=None, clock=time.monotonic, sleep=time.sleep):
        self.seconds = seconds or None
        self.clock = clock
        self._sleep = sleep
        self.start = clock()
        self.end = self.start + seconds if seconds else None
        #: what the run was doing when the deadline passed (for the message); set by ``check`` and ``sleep``
        self.doing = None
        #: why the run was stopped before its deadline (``interrupt``), for the message
        self.interrupted = None

    def elapsed(self):
        return self.clock() - self.start

    def remaining(self):
        """Seconds left, None without a limit (never negative)."""
        return None if self.end is None else max(0.0, self.end - self.clock())

    def expired(self):
        return self.end is not None and self.clock() >= self.end

    def grace(self, seconds):
        """A few more seconds past a spent deadline, to clean up (remove a session, log out) before reporting."""
        if self.end is not None:
            self.end = max(self.end, self.clock() + seconds)

    def interrupt(self, why):
        """End the budget now (Ctrl-C at the command line): every wait and check stops as at the deadline, so the run
        ends the same way, keeping what a re-run can resume; the message says ``why``."""
        self.interrupted = why
        self.end = self.clock()

    def error(self, doing):
        if self.interrupted:
            return DeadlineExceeded("%s while %s" % (self.interrupted, doing))
        return DeadlineExceeded("timeout of %s seconds reached while %s" % (_seconds(self.seconds), doing))

    def check(self, doing):
        """Raise DeadlineExceeded when the budget is spent."""
        if self.expired():
            raise self.error(doing)

    def bound(self, seconds):
        """``seconds`` cut to what is left of the budget (at least MIN_BOUND, so a request can still fail cleanly)."""
        left = self.remaining()
        if left is None:
            return seconds
        if seconds is None:
            return max(MIN_BOUND, left)
        return max(MIN_BOUND, min(seconds, left))

    def sleep(self, seconds, doing):
        """Sleep ``seconds``, never past the deadline; raise when it is spent."""
        self.check(doing)
        left = self.remaining()
        pause = seconds if left is None else min(seconds, left)
        if pause > 0:
            self._sleep(pause)
        self.check(doing)


def _seconds(value):
    return ("%d" % value) if float(value).is_integer() else ("%g" % value)


class Backoff:
    """Delays that grow by ``factor`` from ``first`` up to ``maximum``, with up to ``jitter`` (a fraction) added."""

    def __init__(self, first=0.05, factor=1.5, maximum=2.0, jitter=0.0, rng=None):
        self.first = first
        self.factor = factor
        self.maximum = maximum
        self.jitter = jitter
        self.rng = rng or random.Random()
        self.tries = 0

    def __iter__(self):
        return self

    def __next__(self):
        delay = min(self.maximum, self.first * (self.factor ** self.tries))
        self.tries += 1
        if self.jitter:
            delay += delay * self.jitter * self.rng.random()
        return delay

    next = __next__         # Python 2 spelling, for sanity's compile tests

    def reset(self):
        self.tries = 0


#: backoff of status polls (a server finishing a commit, a job starting): fine at first, at most one second apart
POLL = dict(first=0.05, factor=1.25, maximum=1.0)
#: backoff of waits for the server to release what it still holds (a stalled chunk, a busy slice)
HOLD = dict(first=0.5, factor=2.0, maximum=8.0, jitter=0.25)


def poll_until(fetch, done, deadline, doing, backoff=None, limit=None, on_wait=None):
    """Call ``fetch()`` until ``done(value)`` is true; return that value.

    Waits between calls follow ``backoff`` (default POLL) and never pass ``deadline``; ``limit`` (seconds) bounds this
    wait alone, so a poll never runs forever even in a run without a deadline. ``done`` may raise to end the wait with
    an error. ``on_wait(value)`` is called before each sleep.
    """
    backoff = backoff or Backoff(**POLL)
    until = deadline.clock() + limit if limit else None
    while True:
        value = fetch()
        if done(value):
            return value
        if on_wait is not None:
            on_wait(value)
        pause = next(backoff)
        if until is not None:
            left = until - deadline.clock()
            if left <= 0:
                raise DeadlineExceeded("%s: not done after %s seconds; run again later to continue waiting" % (doing, _seconds(limit)))
            pause = min(pause, left)
        deadline.sleep(pause, doing)


def once(call, landed, deadline, doing, attempts=3, settle=30, backoff=None):
    """Run a call that changes something (a commit, a whole-file PUT) so that it never runs twice.

    When its outcome is uncertain (``_errors.uncertain``: a cut connection, a 504 behind which it may have completed),
    ``landed()`` is asked, for up to ``settle`` seconds, whether it took effect; only when it did not is the call made
    again (``attempts`` in all). Returns the call's result, or None when it was found landed.
    """
    from ansible_collections.imagestore.upload.plugins.module_utils._errors import uncertain
    for attempt in range(attempts):
        try:
            return call()
        except DeadlineExceeded:
            raise
        except Exception as exc:  # pylint: disable=broad-except  # only uncertain outcomes are looked at; others re-raised
            if not uncertain(exc) or attempt + 1 == attempts:
                raise
            try:
                poll_until(landed, bool, deadline, doing, backoff=backoff or Backoff(first=0.5, factor=1.5, maximum=4.0), limit=settle)
                return None
            except DeadlineExceeded:
                if deadline.expired():
                    raise
    return None


class Ticker:
    """``tick()`` every ``interval`` seconds in a daemon thread, until ``stop()`` or the ``deadline``.

    The one periodic background thread of the collection (vSphere's keep-alive, the progress lines of the action
    plugin and of the command line). ``tick`` is a callable, or a subclass overrides ``tick()``; ``wait(seconds)``
    (default: the stop event's) is injectable, so tests run it without real time; ``stop()`` joins the thread (at
    most ``join_timeout`` seconds) unless called from it."""

    def __init__(self, interval, tick=None, name="imagestore-ticker", deadline=None, wait=None, join_timeout=None):
        self.interval = float(interval)
        self.deadline = deadline
        self._tick = tick
        self._join_timeout = join_timeout
        self._stop = threading.Event()
        self._wait = wait or self._stop.wait
        self._thread = threading.Thread(target=self._run, name=name)
        self._thread.daemon = True

    def tick(self):
        self._tick()

    def start(self):
        self._thread.start()
        return self

    def stop(self):
        self._stop.set()
        if self._thread.is_alive() and self._thread is not threading.current_thread():
            self._thread.join(self._join_timeout)

    def _run(self):
        while not self._stop.is_set():
            left = self.deadline.remaining() if self.deadline is not None else None
            if self._wait(self.interval if left is None else min(self.interval, left)) or self._stop.is_set():
                return
            if self.deadline is not None and self.deadline.expired():
                return
            self.tick()
