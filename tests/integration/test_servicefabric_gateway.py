"""Service Fabric as real clusters behave (issue 15): gateway time-outs (504 FABRIC_E_TIMEOUT, the operation may have
completed behind it), 503 NOT_PRIMARY / NOT_READY, slow commits; completed, and nothing sent twice."""

import os

import pytest
import requests

from ansible_helpers import make_file

MiB = 1024 * 1024


@pytest.fixture
def emu(private_emulator):
    return private_emulator("--body-timeout", "5")


def sf_args(emu, **kw):
    args = {"provider": "servicefabric", "endpoint": emu.url}
    args.update(kw)
    return args


def faults(emu, *rules, seed=1):
    r = requests.post(emu.url + "/_emulator/faults", json={"seed": seed, "rules": [dict({"provider": "servicefabric"}, **r)
                                                                                  for r in rules]})
    assert r.status_code == 200, r.text


def received(emu):
    return requests.get(emu.url + "/_emulator/servicefabric/received").json()


def package(root, files=60, big=8 * MiB + 3):
    """An application package: ``files`` small files in nested folders and one big file; {relative: sha256}."""
    digests = {}
    for i in range(files):
        rel = "Svc%d/Code/file%03d.dll" % (i % 3, i)
        os.makedirs(os.path.join(root, os.path.dirname(rel)), exist_ok=True)
        digests[rel] = make_file(os.path.join(root, rel), 3000 + i, seed=i)
    digests["Svc0/Data/big.vhd"] = (os.makedirs(os.path.join(root, "Svc0/Data"), exist_ok=True) or
                                    make_file(os.path.join(root, "Svc0/Data/big.vhd"), big, seed=999))
    digests["ApplicationManifest.xml"] = make_file(os.path.join(root, "ApplicationManifest.xml"), 1500, seed=1000)
    return digests


def test_504_behind_which_calls_completed_and_503s_on_5_percent_of_calls(ansible, emu, tmp_path):
    pkg = str(tmp_path / "App")
    digests = package(pkg)
    faults(emu, dict(operation="*", action="status_after", status=504, probability=0.05, count=0),
           dict(operation="*", action="status", status=503, code="FABRIC_E_NOT_PRIMARY", probability=0.03, count=0), seed=5)
    result, run = ansible.module("image_upload", sf_args(emu, src=pkg, path="gw/App", chunk_size="1MiB", parallel=4,
                                                         request_timeout=5, timeout=300))
    assert result["changed"] and not result.get("failed"), run.output[-3000:]
    fired = requests.get(emu.url + "/_emulator/faults").json()["fired"]
    assert sum(f["action"] == "status_after" for f in fired) >= 3, fired
    for rel, digest in digests.items():
        assert emu.stored_sha256("servicefabric", "gw/App/" + rel) == digest, rel
    totals = received(emu)["totals"]
    assert totals["repeat_chunk_bodies"] == 0 and totals["repeat_file_bodies"] == 0, totals        # nothing sent twice
    requests.delete(emu.url + "/_emulator/faults")
    again, run = ansible.module("image_upload", sf_args(emu, src=pkg, path="gw/App", chunk_size="1MiB"))
    assert again["changed"] is False, run.output[-3000:]


def test_a_commit_slower_than_the_gateway_time_out_is_reported_as_the_success_it_is(ansible, emu, tmp_path):
    src = str(tmp_path / "disk.img")
    digest = make_file(src, 6 * MiB + 1, seed=7)
    requests.post(emu.url + "/_emulator/config", json={"sf_commit_seconds": 4}).raise_for_status()
    result, run = ansible.module("image_upload", sf_args(emu, src=src, path="gw/slow.img", chunk_size="1MiB",
                                                         request_timeout=3, timeout=120))
    assert result["changed"] and not result.get("failed"), run.output[-3000:]
    assert received(emu)["gateway"]["timeouts"] >= 1                       # the commit did answer 504 first
    assert emu.stored_sha256("servicefabric", "gw/slow.img") == digest


def test_every_call_passes_the_server_side_timeout_from_what_is_left(ansible, emu, tmp_path):
    src = str(tmp_path / "disk.img")
    make_file(src, 2 * MiB, seed=8)
    faults(emu, dict(operation="chunk", action="delay", ms=2500, count=1))
    result, run = ansible.module("image_upload", sf_args(emu, src=src, path="gw/timeout.img", chunk_size="1MiB",
                                                         parallel=1, request_timeout=3, timeout=60))
    assert result["changed"] and not result.get("failed"), run.output[-3000:]
    assert received(emu)["gateway"]["timeouts"] >= 1                       # the server gave up first (timeout=2), with a 504
    assert received(emu)["totals"]["repeat_chunk_bodies"] == 0
