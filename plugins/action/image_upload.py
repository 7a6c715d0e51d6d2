# -*- coding: utf-8 -*-
# Copyright: imagestore.upload contributors
# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Action plugin of image_upload: runs the module as the normal action does and, when it runs on the controller,
prints its progress every ``progress_interval`` seconds (see plugin_utils/_follow.py). Under ``async`` it only
names the progress file in the module's environment and returns it as ``progress_file``, for
imagestore.upload.upload_progress to follow. On other connections the module runs unchanged."""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

from ansible.plugins.action import ActionBase
from ansible.utils.display import Display
from ansible.utils.vars import merge_hash

from ansible_collections.imagestore.upload.plugins.plugin_utils._follow import (
    Follower, is_local, module_environment, new_progress_file, remove_quietly,
)

display = Display()
DEFAULT_INTERVAL = 30


def interval_of(args):
    """progress_interval as the module will read it (an invalid value: no lines; the module then says what is wrong)."""
    value = args.get("progress_interval", DEFAULT_INTERVAL)
    try:
        value = int(value if value is not None else DEFAULT_INTERVAL)
    except (TypeError, ValueError):
        return 0
    return max(0, value)


class ActionModule(ActionBase):

    _supports_check_mode = True
    _supports_async = True

    def run(self, tmp=None, task_vars=None):
        result = super(ActionModule, self).run(tmp, task_vars)
        del tmp
        task_vars = task_vars or {}
        wrap_async = self._task.async_val and not self._connection.has_native_async
        interval = interval_of(self._task.args)
        host = task_vars.get("inventory_hostname") or "localhost"
        path = None
        if is_local(self._connection) and (wrap_async or interval):
            try:
                path = new_progress_file(host)
            except OSError as exc:
                display.warning("image_upload: no progress lines: %s" % exc)
        follower = None
        saved_environment = None
        if path:
            saved_environment = module_environment(self._task, path)
            if not wrap_async:
                follower = Follower(path, interval, display.display, host).start()
        try:
            result = merge_hash(result, self._execute_module(task_vars=task_vars, wrap_async=wrap_async))
        finally:
            if follower is not None:
                follower.stop()
            if path:
                self._task.environment = saved_environment
                if not wrap_async:
                    remove_quietly(path)
        if path and wrap_async:
            result["progress_file"] = path
        if not wrap_async:
            self._remove_tmp_path(self._connection._shell.tmpdir)
        return result
