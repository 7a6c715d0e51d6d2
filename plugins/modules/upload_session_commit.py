#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright: imagestore.upload contributors
# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import absolute_import, division, print_function

__metaclass__ = type

DOCUMENTATION = r'''
module: upload_session_commit
short_description: Commit a completely uploaded session, idempotently
version_added: 0.1.0
description:
  - Service Fabric. Commits the session O(session_id) once every byte is received; the file then appears at
    the session's path and its size is verified. A session already committed is not changed.
  - vSphere. Validates the update session, completes it and waits until it is DONE.
  - ZStack. Waits until the image is Ready and its upload job Succeeded.
  - Fails, listing what is missing, when the session is incomplete.
extends_documentation_fragment:
  - imagestore.upload.connection
  - imagestore.upload.session
  - imagestore.upload.servicefabric.SELECTORS
  - imagestore.upload.vsphere.SELECTORS
  - imagestore.upload.vsphere.COMMON
  - imagestore.upload.zstack.SELECTORS
  - imagestore.upload.attributes
seealso:
  - module: imagestore.upload.image_upload
  - module: imagestore.upload.upload_session_info
author:
  - imagestore.upload developers (@imagestore)
'''

EXAMPLES = r'''
- name: Commit a Service Fabric upload session
  imagestore.upload.upload_session_commit:
    provider: servicefabric
    endpoint: http://localhost:19080
    session_id: 4a2340e8-d8d8-497c-95fe-cdaa1052f33b
'''

RETURN = r'''
msg:
  description: What was done.
  returned: always
  type: str
session:
  description: The session before the commit, in the normalised form of M(imagestore.upload.upload_session_info).
  returned: success
  type: dict
path:
  description: Service Fabric. Where the committed file is.
  returned: when provider is servicefabric
  type: str
image_uuid:
  description: ZStack. Uuid of the image.
  returned: when provider is zstack
  type: str
long_job_uuid:
  description: ZStack. Uuid of the upload's long job.
  returned: when provider is zstack
  type: str
status:
  description: ZStack. The image's status after the commit (V(Ready)).
  returned: when provider is zstack
  type: str
item_id:
  description: vSphere. Id of the library item.
  returned: when provider is vsphere
  type: str
missing_files:
  description: vSphere. On failure, the files the session does not hold.
  returned: failure because files are missing or invalid
  type: list
  elements: str
invalid_files:
  description: vSphere. On failure, the files the server found invalid, each with name and error.
  returned: failure because files are missing or invalid
  type: list
  elements: dict
missing_ranges:
  description: On failure, the byte ranges the server has not received.
  returned: failure because bytes are missing
  type: list
  elements: dict
'''

from ansible_collections.imagestore.upload.plugins.module_utils._runner import run_module


def main():
    run_module("commit")


if __name__ == "__main__":
    main()
