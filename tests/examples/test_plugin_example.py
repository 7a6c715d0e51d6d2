"""The pytest plugin as a user's infrastructure test would use it (docs/pytest-plugin.md)."""

import hashlib
import json
import os
import subprocess
import sys


def ansible(*args):
    exe = os.path.join(os.path.dirname(sys.executable), "ansible")
    return subprocess.run([exe, "localhost", "-o"] + list(args), stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                          text=True, env=dict(os.environ, ANSIBLE_LOCALHOST_WARNING="false"))


def test_my_image_lands(imagestore_target, imagestore_emulator, tmp_path):
    target = imagestore_target("servicefabric")
    src = tmp_path / "disk.img"
    src.write_bytes(os.urandom(3_000_000))
    args = target.module_args(src=str(src), path="ci/disk.img")
    run = ansible("-m", "imagestore.upload.image_upload", "-a", json.dumps(args))
    assert run.returncode == 0 and "CHANGED" in run.stdout, run.stdout
    if target.emulated:
        assert imagestore_emulator.stored_sha256("servicefabric", "ci/disk.img") == \
            hashlib.sha256(src.read_bytes()).hexdigest()


def test_resume(imagestore_partial_upload, imagestore_target, tmp_path):
    src = tmp_path / "disk.img"
    src.write_bytes(os.urandom(4_000_000))
    half = imagestore_partial_upload("servicefabric", str(src), path="ci/half.img", fraction=0.5)
    assert half.bytes_sent == 2_000_000     # the session is open, and is deleted after the test
    args = imagestore_target("servicefabric").module_args(path="ci/half.img")
    run = ansible("-m", "imagestore.upload.upload_session_info", "-a", json.dumps(args))
    assert half.session_id in run.stdout and '"progress": 50.0' in run.stdout, run.stdout
