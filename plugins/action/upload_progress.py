# -*- coding: utf-8 -*-
# Copyright: imagestore.upload contributors
# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Action plugin of upload_progress: follows an image_upload started with async until it ends. The outcome comes
from the async job (ansible.builtin.async_status's module on the task's host), so an upload that failed or was
killed reads as failed, whatever its session became; the percentages come from the progress file the image_upload
action plugin named (when the upload runs on the controller)."""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import time

from ansible.plugins.action import ActionBase
from ansible.utils.display import Display

from ansible_collections.imagestore.upload.plugins.module_utils._progress import describe, read_record
from ansible_collections.imagestore.upload.plugins.plugin_utils._follow import is_local, progress_line, remove_quietly

display = Display()

SPEC = dict(
    job=dict(type="dict", required=True),
    wait=dict(type="bool", default=True),
    timeout=dict(type="int", default=0),
    progress_interval=dict(type="int", default=30),
)


class ActionModule(ActionBase):

    _supports_check_mode = True
    _supports_async = False

    def run(self, tmp=None, task_vars=None):
        result = super(ActionModule, self).run(tmp, task_vars)
        del tmp
        task_vars = task_vars or {}
        dummy, args = self.validate_argument_spec(argument_spec=SPEC)
        job = args["job"]
        jid = job.get("ansible_job_id")
        if not jid:
            return dict(result, failed=True, msg="job: give the registered result of an imagestore.upload.image_upload task "
                                                 "started with async and poll: 0 (it has ansible_job_id)")
        if args["timeout"] < 0 or args["progress_interval"] < 0:
            return dict(result, failed=True, msg="timeout and progress_interval must be 0 or a positive number of seconds")
        host = task_vars.get("inventory_hostname") or "localhost"
        path = job.get("progress_file") if is_local(self._connection) else None
        interval = args["progress_interval"]
        poll = max(1, min(5, interval or 5))
        began = time.time()
        last_line = began
        try:
            while True:
                status = self._status(jid, task_vars)
                record = read_record(path) if path else None
                if status.get("finished") or status.get("failed"):
                    break
                now = time.time()
                if not args["wait"]:
                    return self._running(result, jid, record, now)
                if args["timeout"] and now - began >= args["timeout"]:
                    running = self._running(result, jid, record, now)
                    running.update(failed=True, msg="the upload still runs after %d seconds (%s); it goes on: follow it again"
                                   % (args["timeout"], running["msg"]))
                    return running
                if interval and now - last_line >= interval:
                    last_line = now
                    display.display(progress_line(host, record, now) if record else "%s: running (for %ds)" % (host, now - began))
                time.sleep(poll)
        finally:
            self._remove_tmp_path(self._connection._shell.tmpdir)
        outcome = dict(status)
        outcome["state"] = "failed" if outcome.get("failed") else "done"
        outcome["percent"] = 100.0 if outcome["state"] == "done" else (record or {}).get("percent")
        if record is not None:
            outcome["progress"] = record
        if path:
            remove_quietly(path)
        if interval:
            display.display("%s: %s: %s" % (host, outcome["state"], outcome.get("msg") or ""))
        outcome["ansible_job_id"] = jid
        return dict(result, **outcome)

    def _running(self, result, jid, record, now):
        return dict(result, changed=False, state="running", finished=False, ansible_job_id=jid,
                    percent=(record or {}).get("percent"), progress=record,
                    msg=describe(record, now) if record else "running")

    def _status(self, jid, task_vars):
        """The async job's status through async_status's module (on any connection, with its async_dir)."""
        async_dir = self._remote_expand_user(self.get_shell_option("async_dir", default="~/.ansible_async"))
        status = self._execute_module(module_name="ansible.legacy.async_status", task_vars=task_vars,
                                      module_args=dict(jid=jid, mode="status", _async_dir=async_dir))
        for key in ("started", "finished"):
            status[key] = bool(status.get(key))
        return status
