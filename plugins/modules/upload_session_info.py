#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright: imagestore.upload contributors
# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import absolute_import, division, print_function

__metaclass__ = type

DOCUMENTATION = r'''
module: upload_session_info
short_description: Show upload sessions of an image store, normalised across providers
version_added: 0.1.0
description:
  - Looks upload sessions up by O(session_id), or by destination (Service Fabric O(path), ZStack O(image_id),
    vSphere O(library) and O(item)), and returns them in one normalised form plus the server's raw answer.
  - Changes nothing. Useful to watch the O(ignore:progress) of a long upload running under C(async).
extends_documentation_fragment:
  - imagestore.upload.connection
  - imagestore.upload.session
  - imagestore.upload.servicefabric.SELECTORS
  - imagestore.upload.vsphere.SELECTORS
  - imagestore.upload.vsphere.COMMON
  - imagestore.upload.zstack.SELECTORS
  - imagestore.upload.attributes.INFO
seealso:
  - module: imagestore.upload.image_upload
author:
  - imagestore.upload developers (@imagestore)
'''

EXAMPLES = r'''
- name: Sessions open for a Service Fabric path
  imagestore.upload.upload_session_info:
    provider: servicefabric
    endpoint: http://localhost:19080
    path: images/disk.vhd
  register: info

- name: Show what is still missing
  ansible.builtin.debug:
    msg: "{{ item.id }}: {{ item.progress }}% received, missing {{ item.missing_ranges }}"
  loop: "{{ info.sessions }}"
'''

RETURN = r'''
sessions:
  description: The sessions found (empty when none).
  returned: always
  type: list
  elements: dict
  contains:
    id:
      description: Session id.
      type: str
      returned: always
    provider:
      description: Provider name.
      type: str
      returned: always
    state:
      description:
        - Normalised state. Service Fabric V(active) (bytes missing) or V(complete) (all received, committed or
          not); vSphere and ZStack report their own states in lower case (V(active), V(done), V(error),
          V(canceled); V(running), V(suspended), V(succeeded), ...).
      type: str
      returned: always
    size:
      description: Size of the file being uploaded, in bytes (ZStack, none until the first slice has arrived).
      type: int
      returned: always
    bytes_received:
      description: Bytes the server holds.
      type: int
      returned: always
    missing_ranges:
      description: Byte ranges the server has not received, inclusive.
      type: list
      elements: dict
      returned: always
      sample: [{"start": 0, "end": 402128}]
    progress:
      description: Percentage received, 0 to 100.
      type: float
      returned: always
    expires:
      description: When the server will drop the session, where the server says (ISO 8601).
      type: str
      returned: always
    raw:
      description: The server's own description of the session.
      type: dict
      returned: always
    path:
      description: Service Fabric. Image store relative path of the session.
      type: str
      returned: when provider is servicefabric
    files:
      description: vSphere. The session's files, each with name, size, status, bytes_transferred, checksum and error.
      type: list
      elements: dict
      returned: when provider is vsphere
    library_item_id:
      description: vSphere. Id of the library item the session updates.
      type: str
      returned: when provider is vsphere
    client_progress:
      description: vSphere. The progress the uploading client reported, 0 to 100.
      type: int
      returned: when provider is vsphere
    offset:
      description: ZStack. The contiguous prefix the image store has received, in bytes.
      type: int
      returned: when provider is zstack
    image_id:
      description: ZStack. The upload's id.
      type: str
      returned: when provider is zstack
    image_uuid:
      description: ZStack. Uuid of the image being uploaded.
      type: str
      returned: when provider is zstack
    upload_url:
      description: ZStack. Where the slices go.
      type: str
      returned: when provider is zstack
    image_status:
      description: ZStack. Status of the image (V(Downloading), V(Ready), ...).
      type: str
      returned: when provider is zstack
    error:
      description: ZStack. The job's error, for a suspended, failed or canceled job.
      type: str
      returned: when provider is zstack and the job has one
'''

from ansible_collections.imagestore.upload.plugins.module_utils._runner import run_module


def main():
    run_module("sessions")


if __name__ == "__main__":
    main()
