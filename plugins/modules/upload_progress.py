#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright: imagestore.upload contributors
# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import absolute_import, division, print_function

__metaclass__ = type

DOCUMENTATION = r'''
module: upload_progress
short_description: Follow an image_upload started with async to its end, printing its progress
version_added: 0.1.0
description:
  - Follows an M(imagestore.upload.image_upload) task started in the background (C(async) with C(poll) V(0)) until
    it ends, and returns its result, as M(ansible.builtin.async_status) would, plus RV(state) (V(running),
    V(done), V(failed)) and RV(percent).
  - The same for every provider, whatever becomes of the upload session when the upload ends.
  - While the upload runs, prints a line every O(progress_interval) seconds (percent, bytes, rate, time left, or
    what the upload is doing), in the terminal and in AWX job output.
  - Runs on the controller (an action plugin); the upload's own progress is read where the upload ran, the job's
    outcome through M(ansible.builtin.async_status) on the task's host.
options:
  job:
    description:
      - The registered result of the M(imagestore.upload.image_upload) task started with C(async) and C(poll) V(0)
        (it holds C(ansible_job_id), and RV(imagestore.upload.image_upload#module:progress_file) when the upload runs
        on the controller).
    type: dict
    required: true
  wait:
    description:
      - Wait until the upload ends. V(false) returns at once how far it is (RV(state) V(running) while it runs).
    type: bool
    default: true
  timeout:
    description:
      - Seconds to wait at most; V(0) waits until the upload ends (C(async) bounds it). When they pass, the task
        fails saying how far the upload is; the upload goes on.
    type: int
    default: 0
  progress_interval:
    description:
      - Seconds between two progress lines; V(0) prints none.
    type: int
    default: 30
attributes:
  check_mode:
    support: full
    description: Changes nothing in any mode; in check mode an C(async) upload did not run, so there is nothing to follow.
  diff_mode:
    support: none
    description: Nothing changes here.
notes:
  - The percentages need the upload to run on the controller (the C(local) connection, C(delegate_to) V(localhost),
    AWX execution environments), as image_upload's own progress lines do. On another host this module still follows
    the upload to its end and returns its result, and its lines only say that it runs.
seealso:
  - module: imagestore.upload.image_upload
  - module: ansible.builtin.async_status
author:
  - imagestore.upload developers (@imagestore)
'''

EXAMPLES = r'''
- name: Start the upload in the background
  imagestore.upload.image_upload:
    provider: zstack
    endpoint: http://zstack.example.com:8080
    src: /srv/images/centos9.qcow2
    name: centos9
    backup_storage: bs
  async: 7200
  poll: 0
  register: upload

- name: Other work while it runs
  ansible.builtin.debug:
    msg: the upload runs in the background

- name: Follow it to its end, printing its progress every 30 seconds
  imagestore.upload.upload_progress:
    job: "{{ upload }}"
  register: uploaded

- name: Where it went
  ansible.builtin.debug:
    msg: "{{ uploaded.state }}: {{ uploaded.msg }} ({{ uploaded.destination }})"
'''

RETURN = r'''
state:
  description: V(running) (only with O(wait=false) or a O(timeout)), V(done) or V(failed).
  returned: always
  type: str
  sample: done
percent:
  description: How far the upload is, 0 to 100 (V(100) when done; none before the size is known or without a progress record).
  returned: always
  type: float
  sample: 42.5
progress:
  description:
    - The upload's last progress record, when it ran on the controller - C(state), C(phase), C(size), C(done) (bytes),
      C(percent), C(rate) (bytes per second), C(eta) (seconds), C(destination), and at the end C(result).
  returned: when the upload runs on the controller
  type: dict
msg:
  description: The upload's message once it ended (see M(imagestore.upload.image_upload)), else how far it is.
  returned: always
  type: str
  sample: uploaded 209715200 bytes of disk.vhd to images/disk.vhd
destination:
  description: Where the content is, in the provider's own terms (the upload's own RV(imagestore.upload.image_upload#module:destination)).
  returned: when the upload ended
  type: dict
  sample: {"path": "images/disk.vhd"}
finished:
  description: Whether the upload ended.
  returned: always
  type: bool
ansible_job_id:
  description: The async job id of the upload.
  returned: always
  type: str
'''

from ansible.module_utils.basic import AnsibleModule


def main():
    module = AnsibleModule(argument_spec=dict(
        job=dict(type="dict", required=True),
        wait=dict(type="bool", default=True),
        timeout=dict(type="int", default=0),
        progress_interval=dict(type="int", default=30),
    ), supports_check_mode=True)
    module.fail_json(msg="imagestore.upload.upload_progress runs as an action plugin on the controller; this file documents it")


if __name__ == "__main__":
    main()
