"""Many stores: one image to N Service Fabric stores (each its own emulator process) through one play with N hosts
and ``forks: N``, as issue 10's play does. Aggregate MB/s, and what limits it: the CPU of the whole client tree
(controller, forks, modules) and of the emulators against the cores the machine has over the play's wall time."""

import json
import os
import sys

from bench_lib import GiB, Ansible, EmulatorCPU, MachineCPU, warm_memory
from imagestore_emulator.process import EmulatorProcess


def bench_fanout(src, counts, workdir, log):
    size = os.path.getsize(src)
    emulators = []
    rows = []
    try:
        for i in range(max(counts)):
            data = os.path.join(workdir, "emu-fan-%d" % i)
            os.makedirs(data, exist_ok=True)
            emulators.append(EmulatorProcess(data).start())
        ansible = Ansible(workdir)
        cores = os.cpu_count() or 1
        for n in counts:
            for e in emulators:
                e.reset()
            warm_memory(workdir, (n + 1) * size)
            hosts = dict(("store%d" % i, {"ansible_connection": "local", "ansible_python_interpreter": sys.executable,
                                          "endpoint": emulators[i].url}) for i in range(n))
            inventory = os.path.join(workdir, "fan-inventory.yml")
            with open(inventory, "w") as fh:
                json.dump({"all": {"hosts": hosts}}, fh)
            play = [{"hosts": "all", "gather_facts": False,
                     "tasks": [{"name": "upload", "imagestore.upload.image_upload": {
                         "provider": "servicefabric", "endpoint": "{{ endpoint }}", "src": src, "path": "fan/image"}}]}]
            cache = os.path.join(workdir, "cache-fan-%d.json" % n)
            with MachineCPU() as m, EmulatorCPU(*emulators[:n]) as e:
                c, records = ansible.playbook(play, cache, inventory=inventory, ANSIBLE_FORKS=str(n))
            if len(records) != n or not all(r["result"].get("changed") for r in records):
                raise RuntimeError("fan-out to %d stores: %d tasks reported" % (n, len(records)))
            store_gib = n * size / GiB
            busy = (c.cpu + e.cpu) / (c.wall * cores)
            row = {"stores": n, "wall_s": c.wall, "aggregate_mbps": n * size / 1e6 / c.wall,
                   "client_cpu_per_gib_store": c.cpu / store_gib, "emulator_cpu_per_gib_store": e.cpu / store_gib,
                   "cpu_busy": busy, "machine_busy": m.busy, "slowest_module_s": max(r["result"]["elapsed"] for r in records)}
            if m.busy is not None and m.busy >= 0.9:
                row["limit"] = ("CPU: the %d cores were %.0f%% busy, %.0f%% of them this play (client and emulators), "
                                "the rest other processes" % (cores, 100 * m.busy, 100 * busy))
            else:
                row["limit"] = ("not CPU alone: %.0f%% of the %d cores busy (this play: %.0f%%): waits (start-up, "
                                "round trips)" % (100 * (m.busy or busy), cores, 100 * busy))
            rows.append(row)
            log("  %d store(s): %.2f s, %.0f MB/s aggregate; client %.2f, emulators %.2f CPU-s per GiB-store; %s"
                % (n, c.wall, row["aggregate_mbps"], row["client_cpu_per_gib_store"], row["emulator_cpu_per_gib_store"],
                   row["limit"]))
    finally:
        for e in emulators:
            try:
                e.stop()
            except Exception:
                pass
    return {"fanout_bytes": size, "fanout": rows}
