# -*- coding: utf-8 -*-
# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Benchmark helper: record each task's wall time and result into the JSON file named by BENCH_TIMING_OUT."""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

DOCUMENTATION = r'''
name: bench_timing
type: aggregate
short_description: record task durations for the benchmark
description: Writes one JSON line per finished task (name, seconds, result) to the file in E(BENCH_TIMING_OUT).
requirements: [enable in configuration]
'''

import json
import os
import time

from ansible.plugins.callback import CallbackBase


class CallbackModule(CallbackBase):
    CALLBACK_VERSION = 2.0
    CALLBACK_TYPE = "aggregate"
    CALLBACK_NAME = "bench_timing"
    CALLBACK_NEEDS_ENABLED = True

    def __init__(self):
        super(CallbackModule, self).__init__()
        self._start = {}

    def v2_playbook_on_task_start(self, task, is_conditional):
        self._start[task._uuid] = time.monotonic()

    def _record(self, result, failed=False):
        seconds = time.monotonic() - self._start.get(result._task._uuid, time.monotonic())
        with open(os.environ["BENCH_TIMING_OUT"], "a") as fh:
            fh.write(json.dumps({"task": result._task.get_name(), "seconds": seconds, "failed": failed,
                                 "result": result._result}) + "\n")

    def v2_runner_on_ok(self, result):
        self._record(result)

    def v2_runner_on_failed(self, result, ignore_errors=False):
        self._record(result, failed=True)
