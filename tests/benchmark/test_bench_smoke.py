"""The benchmark command runs end to end (tiny sizes): one table, and a JSON file with every figure.

The figures themselves are for reading (docs/performance.md); what this checks is that the command a user
runs from a fresh clone works for every provider, and that the figures it reports are consistent.
"""

import json
import os
import subprocess
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
KEYS = ("upload_mbps", "module_mbps", "put_mbps", "ratio", "module_ratio", "p1_mbps", "p4_mbps", "speedup", "speedup_module",
        "rss_small_mib", "rss_large_mib", "noop_s", "upload_s", "noop_fraction", "noop_module_fraction",
        "resume_missing", "resume_sent", "resume_resent")


def test_bench_runs_for_every_provider_and_reports_every_figure(tmp_path, collections_path):
    out = tmp_path / "figures.json"
    env = dict(os.environ, BENCH_COLLECTIONS_PATH=collections_path)
    env["PYTHONPATH"] = os.pathsep.join(p for p in (collections_path, env.get("PYTHONPATH")) if p)
    proc = subprocess.run([sys.executable, os.path.join(ROOT, "benchmarks", "bench.py"), "--scale", "0.015625", "--runs", "1",
                           "--json", str(out), "--workdir", str(tmp_path / "work")],
                          stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env, timeout=600, check=False)
    assert proc.returncode == 0, proc.stderr.decode()[-3000:]
    report = json.loads(out.read_text())
    assert [r["provider"] for r in report["results"]] == ["servicefabric", "vsphere", "zstack"]
    table = proc.stdout.decode().splitlines()
    assert table[1].split()[:2] == ["provider", "upload"]
    for r in report["results"]:
        assert all(k in r for k in KEYS), sorted(set(KEYS) - set(r))
        assert r["upload_bytes"] == 16 * 1024 * 1024
        assert r["module_mbps"] >= r["upload_mbps"] > 0          # the module's own time is part of the task's
        assert r["rss_large_mib"] > 0 and r["rss_small_mib"] > 0
        missing = r["resume_missing"]
        assert 0 < missing < r["upload_bytes"]
        if r["provider"] == "vsphere":
            assert r["resume_sent"] == r["upload_bytes"]           # whole-file re-send: all the protocol allows
        else:
            assert r["resume_sent"] == missing and r["resume_resent"] == 0
        assert any(line.split()[0] == r["provider"] for line in table[2:])
