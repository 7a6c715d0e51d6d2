#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright: imagestore.upload contributors
# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import absolute_import, division, print_function

__metaclass__ = type

DOCUMENTATION = r'''
module: upload_session_absent
short_description: Make sure an upload session is gone, with what it received
version_added: 0.1.0
description:
  - Service Fabric. Deletes the session O(session_id), or every session of O(path), and the chunks they hold.
  - vSphere. Cancels the update session if it is ACTIVE, then deletes it.
  - ZStack. Cancels the upload job; with O(purge=true) also deletes and expunges the half-uploaded image.
  - A session that is already gone is not an error; the result is then not changed.
extends_documentation_fragment:
  - imagestore.upload.connection
  - imagestore.upload.session
  - imagestore.upload.servicefabric.SELECTORS
  - imagestore.upload.vsphere.SELECTORS
  - imagestore.upload.vsphere.COMMON
  - imagestore.upload.zstack.SELECTORS
  - imagestore.upload.zstack.ABSENT
  - imagestore.upload.attributes
seealso:
  - module: imagestore.upload.upload_session_info
author:
  - imagestore.upload developers (@imagestore)
'''

EXAMPLES = r'''
- name: Drop every unfinished upload of a path
  imagestore.upload.upload_session_absent:
    provider: servicefabric
    endpoint: http://localhost:19080
    path: images/disk.vhd
'''

RETURN = r'''
msg:
  description: What was done.
  returned: always
  type: str
deleted:
  description: Ids of the sessions removed (or that would be, in check mode).
  returned: always
  type: list
  elements: str
canceled:
  description: vSphere. ACTIVE sessions canceled before their deletion.
  returned: when provider is vsphere
  type: list
  elements: str
purged:
  description: ZStack. Uuids of the images deleted and expunged (or that would be).
  returned: when provider is zstack
  type: list
  elements: str
'''

from ansible_collections.imagestore.upload.plugins.module_utils._runner import run_module


def main():
    run_module("absent")


if __name__ == "__main__":
    main()
