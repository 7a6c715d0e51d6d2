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
    a vSphere Content Library or ZStack, through the store's upload-session API; with O(state=absent), removes it.
  - Idempotent by content. When the destination already holds these bytes, nothing is sent and the result is not
    changed; a same-size edit is uploaded. RV(compared) says how it was decided (Service Fabric from this collection's
    record in the store, vSphere the checksum the server reports, ZStack the MD5).
  - Resumable from any host holding the same bytes. When an earlier run was interrupted (a time-out, a lost
    connection, a killed process), the session for the same content is found and only what the store reports missing
    is sent (RV(resumed=true)). A session of this collection for other content is never resumed.
  - Streamed in constant memory (at most O(chunk_size) x O(parallel) bytes of the file in memory), in parallel where
    the protocol allows, bounded by O(timeout), verified after the upload. A run that fails keeps what a re-run can
    resume and removes what nobody can use (RV(session_cleanup)).
  - Service Fabric. O(src) goes to O(path). A directory O(src) is uploaded as an application package, each file to the
    same relative path below O(path) (optionally O(compress)ed), then an empty C(_.dir) marker per folder.
  - vSphere. O(src) goes into item O(item) (created when missing, of type V(iso) for C(.iso), V(ovf) for C(.ovf) or
    C(.ova), else V(file)) of library O(library) (name or id) as O(file_name); an C(.ovf) goes with the files it
    references, in parallel. Each file is sent whole and its checksum verified by the server.
  - ZStack. O(src) becomes the image O(name) on O(backup_storage), uploaded as a long job in slices of O(chunk_size);
    other images of that name on the backup storage are replaced once the new one is Ready (O(replace)).
  - docs/guarantees.md in the collection says exactly what holds for each provider.
extends_documentation_fragment:
  - imagestore.upload.connection
  - imagestore.upload.transfer
  - imagestore.upload.servicefabric
  - imagestore.upload.vsphere
  - imagestore.upload.vsphere.COMMON
  - imagestore.upload.zstack
  - imagestore.upload.attributes
notes:
  - Service Fabric keeps no digest, so this collection keeps a record of what it uploaded in the image store itself
    (empty marker files under C(.imagestore-upload/records/)), tied to each stored file's version and modification date;
    a file without such a record (uploaded by another tool) is uploaded once more to make one, and RV(notes) says so.
  - vSphere. Where the server reports no checksum for a stored file (vcsim), only the size can be compared; RV(compared)
    is then V(size) and RV(notes) says so.
  - The action plugin of this module prints a progress line every O(progress_interval) seconds when the module runs on
    the controller (local connection, C(delegate_to=localhost), AWX execution environments).
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
    - Whether an interrupted upload of the same content was continued (its session existed before this run), from this
      host or another one holding the same bytes.
  returned: always
  type: bool
sha256:
  description:
    - SHA-256 of the source file (none for a package; see RV(files)).
  returned: always
  type: str
  sample: 9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08
compared:
  description:
    - How the destination was compared with the file; for a package, the list of the ways used for its files.
    - V(sha256), V(sha1), V(md5) (a digest the store reports or this collection recorded); V(size) (the store reports no
      checksum, so only the size could be compared); V(record) (Service Fabric, a file without this collection's record,
      uploaded once more to make one); V(absent) (nothing there).
  returned: with O(state=present)
  type: raw
  sample: sha256
notes:
  description: What the comparison could not show, in a sentence each (also appended to RV(msg)).
  returned: when there is something to say
  type: list
  elements: str
  sample: ["the store reports no checksum for disk.iso, so only its size was compared"]
removed:
  description: With O(state=absent), what was removed (empty when there was nothing).
  returned: with O(state=absent)
  type: list
  elements: str
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
    - On failure after the upload session existed, what became of it. V(kept) (a re-run resumes it); V(removed) (with
      what it had received, since nobody could use it); V(incomplete) (removing it failed, it may still exist); V(left)
      (another run's session, joined by this one, left to it).
  returned: on failure
  type: str
replaced_sessions:
  description: Service Fabric. Upload sessions of this collection for other content of the path, removed by this run.
  returned: when there were some
  type: list
  elements: str
compressed:
  description: Service Fabric, with O(compress=true). The archives this run built (those of unchanged folders are reused).
  returned: with O(compress=true)
  type: list
  elements: str
records_written:
  description: Service Fabric. How many record markers this run wrote into the store.
  returned: when something was uploaded
  type: int
replaced:
  description: ZStack. The images named O(name) on O(backup_storage) that this run deleted and expunged (or would).
  returned: when provider is zstack
  type: list
  elements: str
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
