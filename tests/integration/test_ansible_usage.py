"""The collection used as Ansible users use it: under async with progress, installed from the Galaxy
tarball, and the pytest plugin installed from the wheel."""

import os
import subprocess
import sys
from importlib import metadata

import pytest


ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
BIN = os.path.dirname(sys.executable)
MiB = 1024 * 1024


@pytest.fixture
def slow_emulator(private_emulator):
    return private_emulator("--latency-ms", "60")


def test_async_upload_reports_progress_while_it_runs(ansible, slow_emulator, image):
    src, digest = image(64 * MiB, seed=41)
    conn = {"provider": "servicefabric", "endpoint": slow_emulator.url}
    run = ansible.run([
        {"name": "start", "imagestore.upload.image_upload": dict(conn, src=src, path="async/disk.img", chunk_size="512KiB",
                                                                 parallel=2),
         "async": 300, "poll": 0},
        {"name": "watch", "imagestore.upload.upload_session_info": dict(conn, path="async/disk.img"),
         "until": "r1.sessions | length > 0 and r1.sessions[0].progress > 0", "retries": 200, "delay": 0.2},
        {"name": "wait", "ansible.builtin.async_status": {"jid": "{{ r0.ansible_job_id }}"},
         "until": "r2.finished", "retries": 300, "delay": 0.5},
    ])
    started, watched, finished = run.results
    assert started["started"] == 1 and not started.get("failed"), run.output
    progress = watched["sessions"][0]["progress"]
    assert 0 < progress < 100, watched                      # seen mid-upload
    assert finished["finished"] == 1 and finished["changed"] and finished["sha256"] == digest, run.output
    assert slow_emulator.stored_sha256("servicefabric", "async/disk.img") == digest


def test_installed_from_the_galaxy_tarball(tmp_path, imagestore_target):
    out = tmp_path / "build"
    subprocess.run([os.path.join(BIN, "ansible-galaxy"), "collection", "build", "--output-path", str(out), ROOT],
                   check=True, stdout=subprocess.PIPE)
    (tarball,) = list(out.glob("imagestore-upload-*.tar.gz"))
    names = subprocess.run(["tar", "-tzf", str(tarball)], check=True, stdout=subprocess.PIPE).stdout.decode().split()
    assert "plugins/modules/image_upload.py" in names and "meta/runtime.yml" in names
    for junk in (".tox", ".pytest_cache", ".hypothesis", "__pycache__", "imagestore_emulator", ".venv", "tests/output"):
        assert not any(n == junk or n.startswith(junk + "/") or "/%s/" % junk in "/" + n for n in names), junk
    dest = tmp_path / "collections"
    subprocess.run([os.path.join(BIN, "ansible-galaxy"), "collection", "install", "--offline", "--force", "-p", str(dest), str(tarball)],
                   check=True, stdout=subprocess.PIPE)
    env = dict(os.environ, ANSIBLE_COLLECTIONS_PATH=str(dest), ANSIBLE_COLLECTIONS_SCAN_SYS_PATH="false",
               IMAGESTORE_PROVIDER="servicefabric", IMAGESTORE_ENDPOINT=imagestore_target("servicefabric").endpoint,
               DEMO_WORKDIR=str(tmp_path / "work"), IMAGESTORE_DIGEST_CACHE=str(tmp_path / "d.json"),
               ANSIBLE_LOCALHOST_WARNING="false", ANSIBLE_INVENTORY_UNPARSED_WARNING="false")
    run = subprocess.run([os.path.join(BIN, "ansible-playbook"), "-i", "localhost,", os.path.join(ROOT, "examples", "demo.yml"),
                          "-e", "image_size_mib=4"], env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    output = run.stdout.decode()
    assert run.returncode == 0, output
    assert str(dest) in subprocess.run([os.path.join(BIN, "ansible-galaxy"), "collection", "list", "imagestore.upload"],
                                       env=env, stdout=subprocess.PIPE).stdout.decode()
    assert "failed=0" in output
    # what ansible-builder (AWX execution environments) reads from the installed collection
    intro = subprocess.run([os.path.join(BIN, "ansible-builder"), "introspect", "--sanitize", str(dest)],
                           stdout=subprocess.PIPE, stderr=subprocess.STDOUT, check=True).stdout.decode()
    assert "requests>=2.25  # from collection imagestore.upload" in intro, intro


def _installed_plugin():
    try:
        return any(ep.name == "imagestore" for ep in metadata.entry_points(group="pytest11"))
    except Exception:
        return False


@pytest.mark.skipif(not _installed_plugin() and not os.environ.get("CI"),
                    reason="the package is not pip-installed here (tox and CI install it from the built wheel)")
def test_pytest_lists_the_plugins_fixtures(tmp_path):
    run = subprocess.run([sys.executable, "-m", "pytest", "--fixtures", "-p", "no:cacheprovider"], cwd=str(tmp_path),
                         stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    out = run.stdout.decode()
    for name, words in [("imagestore_emulator", "The emulator, started once per test session"),
                        ("imagestore_targets", "Provider name -> Target"),
                        ("imagestore_target", "Factory"),
                        ("imagestore_partial_upload", "Factory of half-finished uploads")]:
        assert name in out and words in out, out[-3000:]
