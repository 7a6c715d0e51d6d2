"""examples/fanout: one play over an inventory of stores, forks > 1, the local connection (docs/fanout.md).

Three emulators stand in for three sites; each serves one Service Fabric cluster, one vCenter and one
ZStack of the example inventory, so the nine stores are nine distinct (provider, emulator) pairs. The
example's inventory is used as it is, with each host's endpoint (and the accounts) replaced by an
emulator's. The play runs through ansible-runner, whose events say when each store's task started and
ended: the uploads overlap (forks at work), every store holds the image byte for byte, and the re-run
changes nothing.
"""

import copy
import os
from datetime import datetime

import ansible_runner
import pytest
import yaml

from tests.conftest import make_file

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
EXAMPLE = os.path.join(ROOT, "examples", "fanout")
GROUPS = {"servicefabric_clusters": "servicefabric", "vsphere_vcenters": "vsphere", "zstack_clusters": "zstack"}
SITES = 3
FORKS = 9
SIZE = 6 * 1024 * 1024 + 11
#: each provider's counter of image bytes the emulator accepted (docs/emulator.md)
# what each store counts as received: a Service Fabric file up to the whole-file limit goes in one PUT, not in chunks
BYTES = {"servicefabric": ("chunk_bytes", "whole_file_bytes"), "vsphere": ("data_bytes",), "zstack": ("slice_bytes",)}


def received_by(provider, emu):
    stats = emu.stats(provider)
    return sum(stats.get(key, 0) for key in BYTES[provider])


@pytest.fixture
def sites(private_emulator):
    # a little latency per request, so that an upload lasts long enough for the overlap check below
    return [private_emulator("--latency-ms", "60") for _ in range(SITES)]


def inventory_for(sites):
    """The example inventory, each group's i-th store pointed at the i-th emulator."""
    with open(os.path.join(EXAMPLE, "inventory.yml")) as fh:
        inventory = copy.deepcopy(yaml.safe_load(fh))
    where = {}
    for group, provider in GROUPS.items():
        spec = inventory["imagestores"]["children"][group]
        assert spec["vars"]["imagestore_provider"] == provider
        hosts = list(spec["hosts"])
        assert len(hosts) == SITES, hosts
        spec["vars"].pop("imagestore_client_cert", None)            # the emulators speak plain HTTP
        creds = sites[0].credentials.get(provider, {})
        if "imagestore_password" in spec["vars"]:
            spec["vars"].update(imagestore_username=creds["username"], imagestore_password=creds["password"])
        for host, emu in zip(hosts, sites):
            spec["hosts"][host]["imagestore_endpoint"] = emu.url
            where[host] = (provider, emu)
    return inventory, where


def play(tmp_path, inventory, image, name):
    private = tmp_path / name
    (private / "project").mkdir(parents=True)
    (private / "inventory").mkdir()
    with open(str(private / "inventory" / "hosts.yml"), "w") as fh:
        yaml.safe_dump(inventory, fh)
    env = {"ANSIBLE_COLLECTIONS_PATH": os.environ["ANSIBLE_COLLECTIONS_PATH"], "ANSIBLE_COLLECTIONS_SCAN_SYS_PATH": "false",
           "IMAGESTORE_DIGEST_CACHE": str(tmp_path / "digests.json")}
    r = ansible_runner.run(private_data_dir=str(private), project_dir=EXAMPLE, playbook="upload.yml", forks=FORKS,
                           envvars=env, extravars={"image": image}, quiet=True)
    output = r.stdout.read()
    results, starts = {}, {}
    for event in r.events:
        data = event.get("event_data", {})
        if data.get("task_action") != "imagestore.upload.image_upload":
            continue
        if event["event"] == "runner_on_start":           # sent by the worker process as it starts the task
            starts[data["host"]] = datetime.fromisoformat(event["created"])
        elif event["event"] in ("runner_on_ok", "runner_on_failed", "runner_on_unreachable"):
            results[data["host"]] = data["res"]
    assert r.status == "successful", output[-6000:]
    return results, starts, output


def test_one_play_many_stores(sites, tmp_path):
    inventory, where = inventory_for(sites)
    image = str(tmp_path / "fleet-disk.qcow2")
    digest = make_file(image, SIZE, seed=8)
    first, starts, output = play(tmp_path, inventory, image, "first")
    assert sorted(first) == sorted(where), output[-4000:]

    for host, (provider, emu) in where.items():
        res = first[host]
        assert res["changed"] is True and res["bytes_sent"] == SIZE, (host, res.get("msg"))
        address = {"servicefabric": lambda: (res["path"],),
                   "vsphere": lambda: (res["item_id"], res["destination"]["file_name"]),
                   "zstack": lambda: (res["image_uuid"],)}[provider]()
        assert emu.stored_sha256(provider, *address) == digest, host
    assert first["sf-west"]["path"] == "images/fleet-disk.qcow2"
    assert first["vc-east"]["destination"]["file_name"] and first["zs-north"]["status"] == "Ready"
    # served at once: some store's task started while another's module was still running (its start plus
    # the module's own elapsed time); with --forks 1 each starts only after the one before has ended
    ordered = sorted((starts[h], first[h]["elapsed"], h) for h in where)
    overlaps = [(a[2], b[2]) for a, b in zip(ordered, ordered[1:]) if (b[0] - a[0]).total_seconds() < a[1]]
    assert overlaps, ordered
    received = dict((host, received_by(provider, emu)) for host, (provider, emu) in where.items())
    assert all(n >= SIZE for n in received.values()), received
    again, _, output = play(tmp_path, inventory, image, "again")
    assert {h: (r["changed"], r["bytes_sent"]) for h, r in again.items()} == {h: (False, 0) for h in where}, output[-4000:]
    assert dict((host, received_by(provider, emu)) for host, (provider, emu) in where.items()) == received
