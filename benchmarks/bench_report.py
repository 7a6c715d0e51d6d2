"""The benchmark's one table: a row per figure, a column per provider (vSphere twice: a first run, and a run with
the ``checksum`` option given). Printed as text, and as Markdown for docs/performance.md."""

COLUMNS = (("servicefabric", None), ("vsphere", None), ("vsphere+checksum", "with_checksum"), ("zstack", None))
MODULE_ONLY = {"vsphere+checksum"}        # the columns that have the module-level figures only


def _f(fmt):
    return lambda v: fmt % v


def _pair(a, b, fmt="%.2f / %.2f"):
    return lambda r: fmt % (r[a], r[b]) if a in r and b in r else None


def _fanout(n, what):
    def get(r):
        for row in r.get("fanout", ()):
            if row["stores"] == n:
                if what != "mbps":
                    return row[what]
                if row.get("machine_busy") is None:
                    return "%.0f (%.0f%%)" % (row["aggregate_mbps"], 100 * row["cpu_busy"])
                return "%.0f (%.0f%% / %.0f%%)" % (row["aggregate_mbps"], 100 * row["cpu_busy"], 100 * row["machine_busy"])
        return None
    return get


def rows(report):
    """(section, label, getter(result) -> text or None)."""
    sizes = report["sizes"]
    mib = sizes["upload"] // (1024 * 1024)
    out = [
        ("module", "module MB/s (its elapsed; %d MiB, cold digest cache)" % mib, "module_mbps", "%.0f"),
        ("module", "plain PUT MB/s (%s, same file, same emulator)" % report.get("put_tool", "curl"), "put_mbps", "%.0f"),
        ("module", "module / plain PUT", "module_ratio", "%.2f"),
        ("module", "module CPU s/GiB (user+sys, getrusage)", "module_cpu_per_gib", "%.2f"),
        ("module", "  user / sys", _pair("module_user_per_gib", "module_sys_per_gib"), None),
        ("module", "plain PUT CPU s/GiB", "put_cpu_per_gib", "%.2f"),
        ("module", "digests the protocol needs", "digests", "%s"),
        ("module", "digest floor CPU s/GiB (hashlib, one read)", "digest_cpu_per_gib", "%.2f"),
        ("module", "gap: module - (PUT + digests) s/GiB", "gap_cpu_per_gib", "%+.2f"),
        ("module", "module fixed CPU s (1 MiB run)", "module_fixed_cpu_s", "%.2f"),
        ("module", "emulator CPU s/GiB: module / PUT", _pair("emulator_cpu_per_gib_module", "emulator_cpu_per_gib_put"), None),
        ("task", "task MB/s (ansible-playbook)", "task_mbps", "%.0f"),
        ("task", "task s / its tree's CPU s", _pair("task_s", "task_cpu_s"), None),
        ("task", "no-op task s", "noop_s", "%.2f"),
        ("task", "no-op / upload (task)", "noop_fraction", "%.2f"),
        ("task", "no-op / upload (module)", "noop_module_fraction", "%.3f"),
        ("latency", "20 ms latency, module MB/s p=1 / p=4", _pair("p1_mbps", "p4_mbps", "%.1f / %.1f"), None),
        ("latency", "speedup p=4 vs p=1 (module)", "speedup", "%.2f"),
        ("memory", "peak RSS MiB small / large", _pair("rss_small_mib", "rss_large_mib", "%.1f / %.1f"), None),
        ("memory", "RSS large / small", "rss_ratio", "%.2f"),
        ("resume", "resume: bytes missing", "resume_missing", "%d"),
        ("resume", "resume: bytes sent / re-sent", _pair("resume_sent", "resume_resent", "%d / %d"), None),
    ]
    pkg = report.get("package") or {}
    if pkg:
        out += [
            ("package", "package: files / MB", lambda r: "%d / %.0f" % (pkg["package_files"], pkg["package_bytes"] / 1e6), None),
            ("package", "sfctl application upload s", lambda r: "%.1f" % pkg["sfctl_s"] if "sfctl_s" in pkg else "skipped", None),
            ("package", "image_upload first s (task / module)",
             lambda r: "%.1f / %.1f" % (pkg["package_task_s"], pkg["package_module_s"]), None),
            ("package", "CPU s, client tree / emulator: sfctl",
             lambda r: "%.1f / %.1f" % (pkg["sfctl_cpu_s"], pkg["sfctl_emulator_cpu_s"]) if "sfctl_cpu_s" in pkg else "-", None),
            ("package", "CPU s, client tree / emulator: image_upload",
             lambda r: "%.1f / %.1f" % (pkg["package_cpu_s"], pkg["package_emulator_cpu_s"]), None),
            ("package", "image_upload / sfctl", lambda r: "%.2f" % pkg["package_vs_sfctl"] if "package_vs_sfctl" in pkg else "-", None),
            ("package", "no-op re-run s (task / module)",
             lambda r: "%.2f / %.2f" % (pkg["package_noop_s"], pkg["package_noop_module_s"]), None),
            ("package", "no-op / first upload (task)", lambda r: "%.3f" % pkg["package_noop_fraction"], None),
        ]
    fan = report.get("fanout") or {}
    for row in fan.get("fanout", ()):
        n = row["stores"]
        out.append(("fanout", "fan-out to %d store%s: MB/s (CPU busy: play / machine)" % (n, "" if n == 1 else "s"),
                    (lambda n: lambda r: _fanout(n, "mbps")(fan))(n), None))
    return out


def cell(result, column, getter, fmt):
    if result is None:
        return ""
    if callable(getter):
        value = getter(result)
        return "-" if value is None else value
    value = result.get(getter)
    return "-" if value is None else fmt % value


def grid(report):
    """Header and rows of cells: one column per provider that ran."""
    by_name = dict((r["provider"], r) for r in report["results"])
    columns = []
    for name, sub in COLUMNS:
        base = by_name.get(name.split("+")[0])
        if base is None or (sub and sub not in base):
            continue
        columns.append((name, base[sub] if sub else base))
    header = ["figure"] + [name for name, _ in columns]
    body = []
    for section, label, getter, fmt in rows(report):
        cells = []
        for name, result in columns:
            if name in MODULE_ONLY and section != "module":
                cells.append("")
            elif section in ("package", "fanout") and name != "servicefabric":
                cells.append("")
            else:
                cells.append(cell(result, name, getter, fmt))
        if any(c not in ("", "-") for c in cells):
            body.append([label] + cells)
    return header, body


def text_table(report):
    header, body = grid(report)
    widths = [max(len(r[i]) for r in [header] + body) for i in range(len(header))]
    lines = ["  ".join(h.ljust(w) if i == 0 else h.rjust(w) for i, (h, w) in enumerate(zip(header, widths)))]
    lines.append("  ".join("-" * w for w in widths))
    for r in body:
        lines.append("  ".join(c.ljust(w) if i == 0 else c.rjust(w) for i, (c, w) in enumerate(zip(r, widths))))
    return "\n".join(lines)


def markdown_table(report):
    header, body = grid(report)
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join("---" for _ in header) + "|"]
    lines += ["| " + " | ".join(c or " " for c in r) + " |" for r in body]
    return "\n".join(lines)


def headline(report):
    s = report["sizes"]
    load = report.get("loadavg", {})
    return ("%d MiB upload, median of %d runs (package and fan-out: one run); latency %d MiB in %s-byte chunks; memory "
            "%d / %d MiB; package %d x %d B + %d MiB; fan-out %d MiB to %s stores; %d cores, load average %.1f at the start, "
            "%.1f at the end; %.0f s in all" % (
                s["upload"] >> 20, report["runs"], s["latency"] >> 20, s["latency_chunk"], s["rss_small"] >> 20,
                s["rss_large"] >> 20, s["package_files"], s["package_small"], s["package_big"] >> 20, s["fanout"] >> 20,
                ",".join(str(n) for n in s["fanout_stores"]), report["cpus"], load.get("start", 0), load.get("end", 0),
                report.get("seconds", 0)))
