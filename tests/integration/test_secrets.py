"""Secrets never appear in module results, warnings, -vvv output or error texts: passwords, the
SHA-512 ZStack logs in with, and the session tokens the servers issued during the run."""

import hashlib
import json
import os

import pytest
import requests

MiB = 1024 * 1024


@pytest.fixture
def emu(imagestore_emulator):
    requests.delete(imagestore_emulator.url + "/_emulator/faults")
    yield imagestore_emulator
    requests.delete(imagestore_emulator.url + "/_emulator/faults")


def issued_tokens(emu):
    """Every login token the emulator knows now (logouts are refused below, so the run's stay)."""
    tokens = set()
    vs = os.path.join(emu.data_dir, "vsphere", "tokens.json")
    if os.path.exists(vs):
        tokens.update(json.load(open(vs)))
    zs = os.path.join(emu.data_dir, "zstack", "state.json")
    if os.path.exists(zs):
        tokens.update(json.load(open(zs)).get("sessions", {}))
    return tokens


def keep_tokens(emu, provider):
    """Refuse logouts, so the tokens of the run are still known to the emulator afterwards."""
    r = requests.post(emu.url + "/_emulator/faults", json={"provider": provider, "operation": "logout", "action": "status",
                                                           "status": 500, "count": 0})
    assert r.status_code == 200


def runs(imagestore_target, image, provider):
    src, _ = image(3 * MiB + 5, seed={"vsphere": 51, "zstack": 52}[provider])
    t = imagestore_target(provider)
    if provider == "vsphere":
        good = t.module_args(src=src, library="images", item="secrets-item", retries=0)
        bad = dict(good, item="secrets-item-2")
        fault = {"provider": "vsphere", "operation": "data_put", "action": "status", "status": 500, "count": 0}
    else:
        good = t.module_args(src=src, name="secrets-image", backup_storage="bs", retries=0, chunk_size="1MiB")
        bad = dict(good, name="secrets-image-2", image_id="secrets-2")
        fault = {"provider": "zstack", "operation": "slice", "action": "status", "status": 500, "count": 0}
    return t, good, bad, fault


@pytest.mark.parametrize("provider", ["vsphere", "zstack"])
def test_no_secret_in_results_warnings_or_verbose_output(ansible, emu, imagestore_target, image, provider):
    target, good, bad, fault = runs(imagestore_target, image, provider)
    password = target.options["password"]
    keep_tokens(emu, provider)
    before = issued_tokens(emu)
    ok = ansible.run([("imagestore.upload.image_upload", good),
                      ("imagestore.upload.upload_session_info", dict(target.module_args(**(
                          {"library": "images", "item": "secrets-item"} if provider == "vsphere" else {"image_id": "nope"}))))],
                     verbosity=3)
    assert ok.results[0]["changed"], ok.output
    requests.post(emu.url + "/_emulator/faults", json=fault)
    failed = ansible.run([("imagestore.upload.image_upload", bad)], verbosity=3)
    assert failed.results[0]["failed"], failed.output
    wrong = ansible.run([("imagestore.upload.image_upload", dict(good, password="Another-Wrong-Pass-9"))], verbosity=3)
    assert wrong.results[0]["failed"], wrong.output

    tokens = issued_tokens(emu) - before
    assert tokens, "the runs' tokens should still be known to the emulator"
    secrets = {password, hashlib.sha512(password.encode()).hexdigest(), "Another-Wrong-Pass-9"} | tokens
    for run in (ok, failed, wrong):
        text = run.output + json.dumps(run.results)
        for secret in secrets:
            assert secret not in text, "a secret leaked into the output"
