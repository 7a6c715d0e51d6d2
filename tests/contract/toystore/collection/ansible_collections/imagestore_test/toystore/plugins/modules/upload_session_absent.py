#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright: imagestore.upload contributors
# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import absolute_import, division, print_function

__metaclass__ = type

DOCUMENTATION = r'''
module: upload_session_absent
short_description: Remove toy store upload sessions
version_added: 0.0.1
description:
  - M(imagestore.upload.upload_session_absent) on the toy store's protocol. Removes the sessions and what they received.
extends_documentation_fragment:
  - imagestore.upload.connection
  - imagestore_test.toystore.toystore.session
author:
  - imagestore.upload developers (@imagestore)
'''

EXAMPLES = r'''
- name: Sessions of a path
  imagestore_test.toystore.upload_session_absent:
    provider: toystore
    endpoint: http://127.0.0.1:8080
    username: toy
    password: "{{ toy_password }}"
    path: images/disk.img
'''

RETURN = r'''
msg:
  description: One sentence saying what was done.
  returned: when something was asked of a session
  type: str
'''

from ansible_collections.imagestore.upload.plugins.module_utils._runner import run_module
from ansible_collections.imagestore_test.toystore.plugins.module_utils._toystore_protocol import ToyStore


def main():
    run_module("absent", registry={"toystore": ToyStore})


if __name__ == "__main__":
    main()
