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
    return {"cores": os.cpu_count(), "cpu": model, "python": platform.python_version(),
            "kernel": platform.release(), "date": time.strftime("%Y-%m-%d %H:%M")}


def render(results):
    """Markdown: a header with the machine and sizes, then one row per measurement."""
    m = results["machine"]
    sizes = results["sizes"]
    lines = [
        "Machine: {} cores ({}), Python {}, Linux {}; {}; loopback, hot page cache.".format(
            m["cores"], m["cpu"] or "unknown CPU", m["python"], m["kernel"], m["date"]),
        "Input: 3-layer chain, {} MiB virtual, {} MiB written ({} MiB of VHD files); "
        "P5 also at {} MiB virtual. Compressor: {}.".format(
            sizes["virtual_mib"], sizes["written_mib"], sizes["files_mib"],
            sizes["small_virtual_mib"], results.get("compressor")),
        "",
        "| # | measurement | vhdport | original / qemu-img | ratio | target | |",
        "|---|---|---|---|---|---|---|",
    ]
    for row in results["rows"]:
        lines.append("| {} | {} | {} | {} | {} | {} | {} |".format(
            row["id"], row["what"], row.get("vhdport", "-"), row.get("baseline", "-"),
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
