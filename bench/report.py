"""Turn measurements into the markdown table (and say met / not met per target)."""

import os
import platform
import time

MIB = 1 << 20


def mib(n):
    return n / MIB


def rate(nbytes, seconds):
    return mib(nbytes) / seconds if seconds else float("inf")


def verdict(ok):
    if ok is None:
        return "n/a"
    return "met" if ok else "**not met**"


def _fmt_s(seconds):
    return "{:.2f} s".format(seconds) if seconds is not None else "-"


def machine():
    model = ""
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    model = line.split(":", 1)[1].strip()
                    break
    except OSError:
        pass
    try:
        usable = len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        usable = os.cpu_count()
    load = load_average()
    return {"cores": os.cpu_count(), "usable_cores": usable, "cpu": model,
            "python": platform.python_version(), "kernel": platform.release(),
            "date": time.strftime("%Y-%m-%d %H:%M"), "load_at_start": load}


def load_average():
    """The 1-minute load average (a string; "?" where /proc is missing)."""
    try:
        with open("/proc/loadavg") as f:
            return f.read().split()[0]
    except OSError:
        return "?"


def _busy_note(m):
    """A warning when other work shared the CPUs: ratios then say little about speed."""
    loads = [m.get("load_at_start"), m.get("load_at_end")]
    try:
        worst = max(float(x) for x in loads if x not in (None, "?"))
    except ValueError:
        return None
    cores = m.get("usable_cores") or m.get("cores") or 1
    if worst <= cores:
        return None
    return ("**Busy machine:** the load average reached {:.1f} on {} cores during this run "
            "(other work shared the CPUs), so every process got a fraction of a core and wall "
            "times are longer and noisier than on a quiet machine. The CPU-s columns are the "
            "steadier measure; re-run `make bench` on a quiet machine for the ratios.".format(
                worst, cores))


def render(results):
    """Markdown: a header with the machine and sizes, then one row per measurement."""
    m = results["machine"]
    sizes = results["sizes"]
    codecs, versions = results["codecs"], results.get("codec_versions", {})
    lines = [
        "Machine: {} cores ({} usable to this process; {}), Linux {}; load average {} at the "
        "start, {} at the end; {}; loopback, hot page cache.".format(
            m["cores"], m.get("usable_cores", m["cores"]), m["cpu"] or "unknown CPU",
            m["kernel"], m.get("load_at_start", "?"), m.get("load_at_end", "?"), m["date"]),
        "vhdport ran on Python {} with {} compression threads (one per usable core). Every "
        "vhdport row runs twice: **fast** = `{}`{} (what `pip install 'vhdport[cli]'` "
        "installs), **stdlib** = `zlib` {} alone (`VHDPORT_CODEC=zlib`, as dom0 has "
        "it).".format(
            m["python"], results.get("threads", "?"), codecs["fast"],
            " " + versions[codecs["fast"]] if codecs["fast"] in versions else "",
            versions.get("zlib", "")),
        "Input: 3-layer chain, {} MiB virtual, {} MiB written ({} MiB of VHD files); "
        "P5 also at {} MiB virtual.".format(
            sizes["virtual_mib"], sizes["written_mib"], sizes["files_mib"],
            sizes["small_virtual_mib"]),
        "",
    ]
    busy = _busy_note(m)
    if busy:
        lines += [busy, ""]
    lines += [
        "| # | codec | measurement | vhdport | original / qemu-img | ratio | target | |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for row in results["rows"]:
        lines.append("| {} | {} | {} | {} | {} | {} | {} | {} |".format(
            row["id"], "{} ({})".format(row.get("codec", "-"), row.get("mode", "-")),
            row["what"], row.get("vhdport", "-"), row.get("baseline", "-"),
            "{:.2f}x".format(row["ratio"]) if row.get("ratio") is not None else "-",
            row.get("target", ""), verdict(row.get("met"))))
    checks = results["checks"]
    bad = [c for c in checks if not c["ok"]]
    lines.append("")
    lines.append("Output checks: {} of {} passed{}".format(
        len(checks) - len(bad), len(checks),
        "" if not bad else " -- FAILED: " + "; ".join(c["what"] for c in bad)))
    for note in results.get("notes", []):
        lines.append("")
        lines.append(note)
    return "\n".join(lines) + "\n"
