# -*- coding: utf-8 -*-
# Copyright: imagestore.upload contributors
# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Following a module run's progress file from an action plugin (private, controller side).

The action plugin of image_upload names a fresh progress file in the module's environment
(``IMAGESTORE_PROGRESS_FILE``) when the module runs on the controller, and a ``Follower`` thread prints
a line from it every ``progress_interval`` seconds through Ansible's Display, which the worker process
hands to the main process: the line shows in a terminal and, through ansible-runner's events, in AWX.
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import os
import re
import time
import uuid

from ansible_collections.imagestore.upload.plugins.module_utils._progress import (
    PROGRESS_FILE_ENV, describe, progress_dir, read_record, where,
)
from ansible_collections.imagestore.upload.plugins.module_utils._wait import Ticker

#: progress files older than this are removed when a new one is made (left by async runs nobody followed)
KEEP_SECONDS = 7 * 24 * 3600


def is_local(connection):
    """Does the module run on the controller (the local connection, delegate_to: localhost)?"""
    return getattr(connection, "transport", None) in ("local", "ansible.builtin.local")


def new_progress_file(host):
    """A fresh progress file name in the progress directory (made 0700 when missing); old files are removed."""
    folder = progress_dir()
    if not os.path.isdir(folder):
        os.makedirs(folder, 0o700)
    now = time.time()
    for name in os.listdir(folder):
        path = os.path.join(folder, name)
        try:
            if name.endswith(".json") and now - os.stat(path).st_mtime > KEEP_SECONDS:
                os.unlink(path)
        except OSError:
            pass
    safe = re.sub(r"[^A-Za-z0-9_.-]+", "_", str(host or "host"))[:60]
    return os.path.join(folder, "%s-%s.json" % (safe, uuid.uuid4().hex[:16]))


def remove_quietly(path):
    try:
        os.unlink(path)
    except OSError:
        pass


def progress_line(host, record, now=None):
    """``host: path images/disk.vhd: 42% (440.0 MiB of 1.00 GiB) at 85.3 MiB/s, 7s left``."""
    target = where(record.get("destination"))
    return "%s: %s%s" % (host, target + ": " if target else "", describe(record, now))


class Follower(Ticker):
    """A thread that says ``progress_line`` of ``path`` every ``interval`` seconds until ``stop()``; before the file
    has a record, it says that the upload is starting, with the time it has run."""

    def __init__(self, path, interval, say, host, clock=time.time):
        super(Follower, self).__init__(interval, name="imagestore-progress", join_timeout=5)
        self.path = path
        self.say = say
        self.host = host
        self.clock = clock
        self.started = clock()
        self.lines = 0

    def tick(self):
        record = read_record(self.path)
        if record is None:
            line = "%s: starting (for %ds)" % (self.host, int(self.clock() - self.started))
        elif record.get("state") != "running":
            return
        else:
            line = progress_line(self.host, record, self.clock())
        try:
            self.say(line)
            self.lines += 1
        except Exception:  # pylint: disable=broad-except  # a progress line must never break the task
            pass


def module_environment(task, path):
    """Add ``IMAGESTORE_PROGRESS_FILE=path`` to the task's environment; return what to restore afterwards."""
    saved = task.environment
    current = saved if isinstance(saved, list) else ([saved] if saved else [])
    task.environment = list(current) + [{PROGRESS_FILE_ENV: path}]
    return saved
