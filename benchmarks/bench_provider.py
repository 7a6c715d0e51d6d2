"""The per-provider part of the benchmark: the module's MB/s and CPU per GiB beside curl and the digest floor,
the task through ansible-playbook, the no-op re-run, 20 ms latency at parallel 1 and 4, memory and resume."""

import os
import statistics

import json
import subprocess

from bench_lib import DIGESTS, GiB, MiB, Ansible, Target, curl_put, destination, digest_floor, make_file, module_invocation, \
    peak_rss_mib, run_module, warm_memory
from pytest_imagestore.partial import PartialUploads

LATENCY_PROVIDERS = ("servicefabric", "zstack")     # vSphere sends a file in one PUT: parallelism does not apply


def med(values):
    return statistics.median(values) if values else None


def throughput(provider, emulator, big, runs, workdir, log, checksum=False):
    """Module run directly (cold digest cache, fresh destination) against curl's PUT and the digest floor, alternating."""
    name = provider + ("+checksum" if checksum else "")
    target = Target(provider, emulator)
    size = os.path.getsize(big)
    gib = size / GiB
    rows = {k: [] for k in ("module_s", "module_cpu", "module_user", "module_sys", "module_emu", "curl_s", "curl_cpu",
                            "curl_emu", "digest_cpu")}
    extra = {}
    if checksum:
        extra["checksum"] = "sha256:" + digest_floor(big, ("sha256",))[1]["sha256"]
    tool = None
    for i in range(runs):
        emulator.reset()
        warm_memory(workdir, 2 * size)
        cache = os.path.join(workdir, "cache-cpu-%s-%d.json" % (name, i))
        result, c, emu_cpu = run_module(target.module_args(src=big, **dict(destination(provider, "cpu-%d" % i), **extra)),
                                        workdir, cache, [emulator])
        assert result["changed"] and result["bytes_sent"] == size, result
        rows["module_s"].append(result["elapsed"])
        rows["module_cpu"].append(c.cpu / gib)
        rows["module_user"].append(c.user / gib)
        rows["module_sys"].append(c.sys / gib)
        rows["module_emu"].append(emu_cpu / gib)
        emulator.reset()
        warm_memory(workdir, 2 * size)
        tool, c, emu_cpu = curl_put(emulator, big, "%s-%d" % (name, i))
        rows["curl_s"].append(c.wall)
        rows["curl_cpu"].append(c.cpu / gib)
        rows["curl_emu"].append(emu_cpu / gib)
        rows["digest_cpu"].append(digest_floor(big, DIGESTS[name])[0] / gib)
        log("  %s run %d: module %.2f s, %.2f CPU-s/GiB (emulator %.2f); %s %.2f s, %.2f CPU-s/GiB; digests %.2f CPU-s/GiB"
            % (name, i + 1, result["elapsed"], rows["module_cpu"][-1], rows["module_emu"][-1], tool, c.wall,
               rows["curl_cpu"][-1], rows["digest_cpu"][-1]))
    emulator.reset()
    m = {k: med(v) for k, v in rows.items()}
    res = {"module_mbps": size / 1e6 / m["module_s"], "module_s": m["module_s"],
           "module_cpu_per_gib": m["module_cpu"], "module_user_per_gib": m["module_user"], "module_sys_per_gib": m["module_sys"],
           "emulator_cpu_per_gib_module": m["module_emu"],
           "put_tool": tool, "put_mbps": size / 1e6 / m["curl_s"], "put_s": m["curl_s"], "put_cpu_per_gib": m["curl_cpu"],
           "emulator_cpu_per_gib_put": m["curl_emu"],
           "digests": "+".join(DIGESTS[name]), "digest_cpu_per_gib": m["digest_cpu"]}
    res["module_ratio"] = res["module_mbps"] / res["put_mbps"]
    res["gap_cpu_per_gib"] = res["module_cpu_per_gib"] - (res["put_cpu_per_gib"] + res["digest_cpu_per_gib"])
    return res


def fixed_cost(provider, emulator, workdir):
    """CPU seconds of a module run that sends 1 MiB: its start-up (interpreter, imports) and per-run requests."""
    small = os.path.join(workdir, "fixed.img")
    make_file(small, MiB)
    try:
        cpus = []
        for i in range(3):
            _, c, _ = run_module(Target(provider, emulator).module_args(src=small, **destination(provider, "fixed-%d" % i)),
                                 workdir, os.path.join(workdir, "cache-fixed-%s-%d.json" % (provider, i)))
            cpus.append(c.cpu)
        return med(cpus)
    finally:
        os.unlink(small)
        emulator.reset()


def task_level(provider, emulator, big, runs, workdir, log):
    """image_upload through ansible-playbook (fresh destination, cold cache), then its no-op re-run."""
    ansible = Ansible(workdir)
    target = Target(provider, emulator)
    size = os.path.getsize(big)
    ups, up_cpu, mods, noops, noop_mods = [], [], [], [], []
    for i in range(runs):
        cache = os.path.join(workdir, "cache-task-%s-%d.json" % (provider, i))
        warm_memory(workdir, 2 * size)
        args = target.module_args(src=big, **destination(provider, "task-%d" % i))
        t, r, c = ansible.run(args, cache)
        assert r["changed"] and r["bytes_sent"] == size, r
        t2, r2, _ = ansible.run(args, cache)
        assert not r2["changed"], r2
        ups.append(t)
        up_cpu.append(c.cpu)
        mods.append(r["elapsed"])
        noops.append(t2)
        noop_mods.append(r2["elapsed"])
        emulator.reset()
        log("  task run %d: upload %.2f s (module %.2f s, tree %.2f CPU-s), no-op %.2f s (module %.3f s)"
            % (i + 1, t, r["elapsed"], c.cpu, t2, r2["elapsed"]))
    res = {"task_s": med(ups), "task_cpu_s": med(up_cpu), "task_module_s": med(mods), "noop_s": med(noops),
           "noop_module_s": med(noop_mods)}
    res["task_mbps"] = size / 1e6 / res["task_s"]
    res["noop_fraction"] = res["noop_s"] / res["task_s"]
    res["noop_module_fraction"] = res["noop_module_s"] / res["task_module_s"]
    return res


def latency(provider, slow_emulator, sizes, runs, workdir, log):
    """Module run directly against the emulator that waits 20 ms before every answer, parallel 1 and 4."""
    lat = os.path.join(workdir, "lat.img")
    make_file(lat, sizes["latency"])
    target = Target(provider, slow_emulator)
    res = {}
    try:
        for p in (1, 4):
            times = []
            for i in range(runs):
                r, _, _ = run_module(target.module_args(src=lat, parallel=p, chunk_size=sizes["latency_chunk"],
                                                        **destination(provider, "lat-p%d-%d" % (p, i))),
                                     workdir, os.path.join(workdir, "cache-lat-%s-%d-%d.json" % (provider, p, i)))
                times.append(r["elapsed"])
            res["p%d_mbps" % p] = sizes["latency"] / 1e6 / med(times)
        slow_emulator.reset()
    finally:
        os.unlink(lat)
    res["speedup"] = res["p4_mbps"] / res["p1_mbps"]
    log("  20 ms latency, module: parallel 1 %.1f MB/s, parallel 4 %.1f MB/s (x%.2f)" % (res["p1_mbps"], res["p4_mbps"], res["speedup"]))
    return res


def memory(provider, emulator, sizes, workdir, log):
    res = {}
    target = Target(provider, emulator)
    for key in ("rss_small", "rss_large"):
        f = os.path.join(workdir, "%s.img" % key)
        make_file(f, sizes[key])
        try:
            res[key + "_mib"] = peak_rss_mib(target.module_args(src=f, **destination(provider, key)), workdir,
                                             os.path.join(workdir, "cache-%s-%s.json" % (provider, key)))
        finally:
            os.unlink(f)
            emulator.reset()
    res["rss_ratio"] = res["rss_large_mib"] / res["rss_small_mib"]
    log("  peak RSS: %.1f MiB (%d MiB file), %.1f MiB (%d MiB file)" % (
        res["rss_small_mib"], sizes["rss_small"] // MiB, res["rss_large_mib"], sizes["rss_large"] // MiB))
    return res


def received_by_store(target, session_id, workdir):
    """The bytes the store reports received in session ``session_id`` (upload_session_info), or None."""
    argv, env = module_invocation(target.module_args(session_id=session_id), workdir, "", module="upload_session_info")
    try:
        result = json.loads(subprocess.run(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env).stdout.decode())
        found = [s for s in result.get("sessions", ()) if s.get("id") == session_id]
        return int(found[0]["bytes_received"]) if found and found[0].get("bytes_received") is not None else None
    except (ValueError, KeyError, TypeError):
        return None


def resume(provider, emulator, src, workdir):
    """A session half uploaded by the pytest plugin's partial-upload factory (the collection's own engine, stopped),
    then image_upload through Ansible: what was missing, what the run sent."""
    target = Target(provider, emulator)
    dest = destination(provider, "resume")
    size = os.path.getsize(src)
    chunk = min(16 * MiB, max(MiB, size // 8))      # several chunks (slices) before the stop, and a session, not one PUT
    partials = PartialUploads({provider: target})
    try:
        try:
            partial = partials(provider, src, 0.5, chunk, **dest)
        except RuntimeError as exc:
            return {"resume_error": str(exc)[:300]}
        received = received_by_store(target, partial.session_id, workdir)     # what the store says it holds
        missing = size - (partial.bytes_sent if received is None else received)
        _, r, _ = Ansible(workdir).run(target.module_args(src=src, chunk_size="%dKiB" % (chunk // 1024), **dest),
                                       os.path.join(workdir, "cache-resume-%s.json" % provider))
        return {"resume_missing": missing, "resume_sent": r["bytes_sent"], "resume_resent": r["bytes_sent"] - missing,
                "resumed": r["resumed"], "resume_missing_from": "store" if received is not None else "partial upload"}
    finally:
        try:
            partials.cleanup()
        except Exception:
            pass
        emulator.reset()


def bench_provider(provider, emulator, slow_emulator, sizes, runs, workdir, log):
    big = os.path.join(workdir, "big.img")
    make_file(big, sizes["upload"])
    res = {"provider": provider, "upload_bytes": sizes["upload"]}
    try:
        res.update(throughput(provider, emulator, big, runs, workdir, log))
        res["module_fixed_cpu_s"] = fixed_cost(provider, emulator, workdir)
        if provider == "vsphere":
            res["with_checksum"] = throughput(provider, emulator, big, runs, workdir, log, checksum=True)
        res.update(task_level(provider, emulator, big, runs, workdir, log))
        if provider in LATENCY_PROVIDERS:
            res.update(latency(provider, slow_emulator, sizes, runs, workdir, log))
        res.update(memory(provider, emulator, sizes, workdir, log))
        res.update(resume(provider, emulator, big, workdir))
        if "resume_error" in res:
            log("  resume: no half-finished upload could be made: %s" % res["resume_error"])
        else:
            log("  resume: %d bytes missing, %d sent" % (res["resume_missing"], res["resume_sent"]))
    finally:
        os.unlink(big)
    return res
