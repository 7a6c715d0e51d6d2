#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright: imagestore.upload contributors
# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import absolute_import, division, print_function

__metaclass__ = type

DOCUMENTATION = r'''
module: image_upload
short_description: Upload a large image into an image store, resumably and idempotently
version_added: 0.1.0
description:
  - Uploads a local file (a VM disk, an ISO, an application package) into the Service Fabric Image Store,
    a vSphere Content Library or ZStack, through the store's upload-session API.
  - Idempotent. When the destination already holds the same content, nothing is sent and the result is
    not changed (Service Fabric compares the size, vSphere the size and checksum, ZStack the MD5).
  - Resumable. When an earlier run was interrupted, the open session for the same content is found and only
    what the server reports missing is sent (O(ignore:resumed=true)).
  - Streamed in constant memory (at most O(chunk_size) x O(parallel) bytes of the file in memory), in
    parallel where the protocol allows, verified after the upload.
  - Service Fabric. O(src) goes to O(path). A directory O(src) is uploaded as an application package, each
    file to the same relative path below O(path), empty files by whole-file PUT, then an empty C(_.dir) marker per
    folder. The upload session id is derived from the path, the size and the SHA-256 of the file, so a
    different file never resumes a session that is not its own.
  - vSphere. O(src) goes into item O(item) (created when missing, of type V(iso) for C(.iso), V(ovf) for C(.ovf) or C(.ova), else V(file))
    of library O(library) (name or id) as O(file_name). The item's ACTIVE update session is resumed (files it holds READY
    are not sent again); each file is sent whole in one streamed PUT and its SHA-1 verified by the server; an C(.ovf) goes
    with the files it references. A failed session is failed, canceled and deleted unless O(keep_session_on_failure=true)
    and the failure is retryable.
  - ZStack. O(src) becomes the image O(name) on O(backup_storage), uploaded as a long job in parallel slices of
    O(chunk_size). A Ready image with the same O(name) and MD5 on the backup storage is left alone; an unfinished
    upload job for the same O(image_id) is resumed (a Suspended one first) and only the slices after its offset are sent.
extends_documentation_fragment:
  - imagestore.upload.connection
  - imagestore.upload.transfer
  - imagestore.upload.servicefabric
  - imagestore.upload.vsphere
  - imagestore.upload.zstack
  - imagestore.upload.attributes
notes:
  - Idempotent by content for every provider. Service Fabric keeps no digest, so this collection keeps a record of what
    it uploaded in the image store itself (empty marker files under C(.imagestore-upload/records/)), tied to each stored
    file's version and modification date; a file without such a record (uploaded by another tool) is uploaded once more
    to make one, and the result's RV(notes) says so.
  - vSphere. Where the server reports no checksum for a stored file (vcsim), only the size can be compared; RV(compared)
    is then V(size) and RV(notes) says so.
seealso:
  - module: imagestore.upload.upload_session_info
  - module: imagestore.upload.upload_session_commit
  - module: imagestore.upload.upload_session_absent
author:
  - imagestore.upload developers (@imagestore)
'''

EXAMPLES = r'''
- name: Upload a disk image into the Service Fabric Image Store
  imagestore.upload.image_upload:
    provider: servicefabric
    endpoint: https://cluster.example.com:19080
    client_cert: /etc/ssl/private/sf-admin.pem
    src: /srv/images/disk.vhd
    path: images/disk.vhd
    parallel: 4
    chunk_size: 16MiB
  register: upload

- name: Upload an application package folder
  imagestore.upload.image_upload:
    provider: servicefabric
    endpoint: http://localhost:19080
    src: /build/CalcServiceApp
    path: Store/CalcServiceApp

- name: Upload an ISO into a content library item (created if missing)
  imagestore.upload.image_upload:
    provider: vsphere
    endpoint: https://vcenter.example.com
    username: svc-images@vsphere.local
    password: "{{ vcenter_password }}"
    ca_path: /etc/pki/vcenter-root.pem
    src: /srv/iso/ubuntu-24.04.iso
    library: images
    item: ubuntu-24.04

- name: Upload a qcow2 template into ZStack
  imagestore.upload.image_upload:
    provider: zstack
    endpoint: http://zstack.example.com:8080
    username: admin
    password: "{{ zstack_password }}"
    src: /srv/images/centos9.qcow2
    name: centos9
    backup_storage: bs
    platform: Linux
  register: zimage

- name: Set the connection once for every module of the collection
  module_defaults:
    group/imagestore.upload.upload:
      provider: servicefabric
      endpoint: "{{ sf_endpoint }}"
      client_cert: "{{ sf_cert }}"
  block:
    - name: Upload
      imagestore.upload.image_upload:
        src: /srv/images/disk.vhd
        path: images/disk.vhd
'''

RETURN = r'''
changed:
  description: Whether anything was sent to the store.
  returned: always
  type: bool
msg:
  description: One sentence saying what was done.
  returned: always
  type: str
  sample: uploaded 209715200 bytes to images/disk.vhd
session_id:
  description: Id of the upload session used (none when nothing was sent or the file went by whole-file PUT).
  returned: always
  type: str
  sample: 4a2340e8-d8d8-497c-95fe-cdaa1052f33b
size:
  description: Size of the source in bytes (for a package, of all its files).
  returned: always
  type: int
  sample: 209715200
bytes_sent:
  description: File bytes sent by this run (less than O(ignore:size) after a resume, V(0) when unchanged).
  returned: always
  type: int
  sample: 104857600
resumed:
  description:
    - Whether an interrupted upload of the same content was continued.
    - Service Fabric resumes a session started by a run on the same host for the same, unchanged file (same
      device, inode, size, modification and change time).
  returned: always
  type: bool
sha256:
  description:
    - SHA-256 of the source file (none for a package), computed while the bytes go out.
    - Service Fabric keeps no digest to compare with, so when nothing is sent (the destination already
      holds a file of that size) the file is not read, and this is the digest cached by an earlier run for
      the same unchanged file, or none.
  returned: always
  type: str
  sample: 9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08
destination:
  description: Where the content is, in the provider's own terms.
  returned: always
  type: dict
  sample: {"path": "images/disk.vhd"}
path:
  description: Service Fabric. Normalised image store relative path.
  returned: when provider is servicefabric
  type: str
  sample: images/disk.vhd
elapsed:
  description:
    - Seconds the module spent, from its start to the end of the verification (hashing, every request and
      every wait included; the time Ansible takes to start the module is not).
  returned: success
  type: float
  sample: 12.482
would_send:
  description: In check mode, the bytes a real run would send.
  returned: in check mode, when something would be sent
  type: int
chunks_replanned:
  description: How many times the server's account of missing ranges changed under a running upload and the plan was redone.
  returned: when a session upload ran
  type: int
library_id:
  description: vSphere. Id of the content library.
  returned: when provider is vsphere
  type: str
item_id:
  description: vSphere. Id of the library item (none in check mode when it would be created).
  returned: when provider is vsphere
  type: str
item_created:
  description: vSphere. Whether this run created the item.
  returned: when provider is vsphere
  type: bool
api_style:
  description: vSphere. API style used, V(api) or V(rest).
  returned: when provider is vsphere
  type: str
session_cleanup:
  description:
    - vSphere. On failure after the update session existed, what became of it, V(deleted), V(kept), V(incomplete), or V(left)
      (the session was opened by a concurrent run for the same item, which this run joined; it is left to that run).
  returned: on failure
  type: str
image_uuid:
  description: ZStack. Uuid of the image.
  returned: when provider is zstack
  type: str
long_job_uuid:
  description: ZStack. Uuid of the upload's long job (the same as RV(session_id)).
  returned: when provider is zstack
  type: str
status:
  description: ZStack. The image's status, V(Ready) after an upload.
  returned: when provider is zstack
  type: str
md5:
  description: ZStack. MD5 of the source file.
  returned: when provider is zstack
  type: str
image_id:
  description: ZStack. The upload's id (the long job is tagged C(uploadImage::<image_id>)).
  returned: when provider is zstack
  type: str
format:
  description: ZStack. Format the image was added with.
  returned: when provider is zstack
  type: str
media_type:
  description: ZStack. Media type the image was added with.
  returned: when provider is zstack
  type: str
slice_size:
  description: ZStack. Slice size used; for a resumed job, the job's own.
  returned: when provider is zstack
  type: int
slices_already_present:
  description: ZStack. Slices the image store already had (answered 406).
  returned: when provider is zstack
  type: int
session_restarts:
  description: How many times the session vanished during the upload (expired, deleted, lost on failover) and was started again.
  returned: when it happened
  type: int
files:
  description: For a package folder (Service Fabric) or an OVF (vSphere), one result per file.
  returned: when src is a directory or an .ovf descriptor
  type: list
  elements: dict
progress_file:
  description:
    - Under C(async) with the module running on the controller, the file its progress is written to (read by
      M(imagestore.upload.upload_progress), which follows the upload to its end and removes it).
  returned: when started with C(async) on the controller
  type: str
  sample: /home/user/.cache/imagestore-upload/progress/localhost-5c1f0d0e2b8a4f3e.json
markers:
  description: For a package folder, the C(_.dir) markers written.
  returned: when src is a directory
  type: list
  elements: str
'''

from ansible_collections.imagestore.upload.plugins.module_utils._progress import file_reporter
from ansible_collections.imagestore.upload.plugins.module_utils._runner import run_module


def main():
    run_module("upload", reporter=file_reporter)


if __name__ == "__main__":
    main()
