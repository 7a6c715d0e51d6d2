# -*- coding: utf-8 -*-
# Copyright: imagestore.upload contributors
# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import absolute_import, division, print_function

__metaclass__ = type


class ModuleDocFragment(object):
    # Options of image_upload that every provider shares (see plugins/module_utils/_options.py).
    DOCUMENTATION = r'''
options:
  state:
    description:
      - V(present) uploads O(src) unless the destination already holds its content.
      - V(absent) removes what the destination holds (and this collection's sessions and records for it); O(src) is
        not needed.
    type: str
    default: present
    choices: [present, absent]
  src:
    description:
      - The file to upload, on the host that runs the module. A regular file, or a block device (its whole size is
        sent). Character devices, FIFOs and sockets are refused.
      - For O(provider=servicefabric) a directory is also accepted (an application package), and for
        O(provider=vsphere) an C(.ovf) descriptor brings the files it references.
      - Required with O(state=present).
    type: path
  checksum:
    description:
      - The digest of O(src) when you already have it, as C(<algorithm>:<hex>) (V(sha256), V(sha1), V(md5), V(sha512)),
        like M(ansible.builtin.get_url) takes it. It names the content at once, so no digest pass runs before the
        first byte; the bytes read are digested while they go out and compared before the commit (a difference fails
        the run and nothing is committed).
    type: str
  chunk_size:
    description:
      - Size of one chunk (Service Fabric) or slice (ZStack), in bytes or with a unit (V(16MiB), V(512KiB), V(1GiB)).
      - From 64 KiB to 4 GiB. Memory used is at most O(chunk_size) times O(parallel). vSphere sends each file
        in one streamed request and ignores it.
    type: str
    default: '16777216'
  parallel:
    description:
      - How many chunks (or files) are sent at the same time (1 to 64).
    type: int
    default: 4
  force:
    description:
      - Upload even when the destination already holds the same content.
    type: bool
    default: false
  digest_cache:
    description:
      - Remember the digests of files read by earlier runs, keyed by path, device, inode, size, modification and change
        time, so that a re-run does not read an unchanged file again. A file that is written to gets a new change time
        and is read again. Block devices are always read.
      - The cache lives in C(~/.cache/imagestore-upload/digests.json), or where E(IMAGESTORE_DIGEST_CACHE) points.
    type: bool
    default: true
  progress_interval:
    description:
      - Seconds between two progress lines (percent, bytes, rate, time left, or what the upload is doing) printed
        while the upload runs, in the terminal and in AWX job output; V(0) prints none. The first line comes after
        O(progress_interval) seconds, so a short upload prints none.
      - Printed when the module runs on the controller (the C(local) connection, C(delegate_to) V(localhost), AWX
        execution environments); on another host the module runs as usual, without these lines.
      - Under C(async), nothing is printed by this task; M(imagestore.upload.upload_progress) follows the upload and
        prints these lines.
      - The command line C(imagestore-upload) prints its lines at this interval when its output is not a terminal.
    type: int
    default: 30
'''
