#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright: imagestore.upload contributors
# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import absolute_import, division, print_function

__metaclass__ = type

DOCUMENTATION = r'''
module: image_upload
short_description: Upload a file into the toy store (the contract suite's test-only provider)
version_added: 0.0.1
description:
  - The engine of M(imagestore.upload.image_upload) on the toy store's protocol (idempotent, resumable, verified).
extends_documentation_fragment:
  - imagestore.upload.connection
  - imagestore_test.toystore.toystore
options:
  state:
    description: V(present) uploads O(src) to O(path); V(absent) removes the file and the sessions at O(path).
    type: str
    default: present
    choices: [present, absent]
  src:
    description: The file (or block device) to upload; required with O(state=present).
    type: path
  checksum:
    description: The file's digest as V(sha256:<hex>), verified against the bytes sent.
    type: str
  chunk_size:
    description: Bytes per request, or a size with a unit (V(2MiB)), from 64 KiB to 4 GiB.
    type: str
    default: '16777216'
  parallel:
    description: Requests at the same time (1 to 64).
    type: int
    default: 4
  force:
    description: Upload even when the store already holds these bytes.
    type: bool
    default: false
  digest_cache:
    description: Remember the digests of unchanged files between runs.
    type: bool
    default: true
author:
  - imagestore.upload developers (@imagestore)
'''

EXAMPLES = r'''
- name: Upload a disk image
  imagestore_test.toystore.image_upload:
    provider: toystore
    endpoint: http://127.0.0.1:8080
    username: toy
    password: "{{ toy_password }}"
    src: /srv/images/disk.img
    path: images/disk.img
'''

RETURN = r'''
msg:
  description: One sentence saying what was done.
  returned: always
  type: str
path:
  description: Normalised path of the file in the store.
  returned: always
  type: str
'''

from ansible_collections.imagestore.upload.plugins.module_utils._runner import run_module
from ansible_collections.imagestore_test.toystore.plugins.module_utils._toystore_protocol import ToyStore


def main():
    run_module("upload", registry={"toystore": ToyStore})


if __name__ == "__main__":
    main()
