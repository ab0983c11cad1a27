"""QCOW2 rows: raw -> qcow2 import, qcow2 -> raw export, 3-deep chain read, vs qemu-img convert.

    python -m bench.qcow2_bench [--virtual-mib N] [--repeat N] [--work DIR] [--json FILE]
    make bench-qcow2            # these rows alone, 1024 MiB, 5 runs each

Separate from bench/run.py on purpose (issue #13); run.py calls ``add_to(bench, mib)``
(a two-line hook at the end of ``Bench.run``) and ``rows(work, virtual_mib)`` returns the
measurements as dicts.  Every timing is a whole
process (python -c ... vs qemu-img), after a ``sync``; both sides fsync their output
(qemu-img with ``-t writeback``, which flushes).  Like for like: the same source file,
both read through the page cache, both leave zeros as holes (the allocated bytes of both
outputs are recorded and must match).  With ``--repeat N`` each row runs N times, ours
and qemu-img alternating, and reports the medians (the ratio is the median of the
per-run ratios): one run on a shared machine is noise.  Outputs are compared byte for
byte; a wrong output makes the exit status 1, slowness never does.
"""

import argparse
import json
import os
import random
import shutil
import statistics
import subprocess
import sys
import tempfile
import time

MIB = 1 << 20
PY = sys.executable
QEMU_IMG = shutil.which("qemu-img")


def _timed(cmd):
    subprocess.check_call(["sync"])
    start = time.monotonic()
    subprocess.check_call(cmd, stdout=subprocess.DEVNULL)
    return time.monotonic() - start


def _ours(code):
    return [PY, "-c", "import sys; from vhdport.qcow2 import *; " + code]


def make_raw(path, virtual_mib, seed=13):
    """Half data (random and text), a quarter written zeros, a quarter holes."""
    rng = random.Random(seed)
    with open(path, "wb") as f:
        f.truncate(virtual_mib * MIB)
        for mib in range(virtual_mib):
            kind = mib % 4
            if kind == 0:
                f.seek(mib * MIB)
                f.write(rng.getrandbits(8 * MIB).to_bytes(MIB, "little"))
            elif kind == 1:
                f.seek(mib * MIB)
                f.write((b"vhdport qcow2 bench %d\n" % mib) * (MIB // 22) + bytes(MIB % 22))
            elif kind == 2:
                f.seek(mib * MIB)
                f.write(bytes(MIB))


def _same(a, b):
    return subprocess.call([QEMU_IMG, "compare", "-q", a, b]) == 0


def _allocated(path):
    return os.stat(path).st_blocks * 512


def _pair(ours_cmd, qemu_cmd, ours_out, qemu_out, repeat):
    """Run both ``repeat`` times, alternating (the outputs are removed before each run);
    medians of the times and of the per-run ratios.  The last outputs are kept."""
    ours, qemu, ratios = [], [], []
    for _ in range(repeat):
        for path in (ours_out, qemu_out):
            if os.path.exists(path):
                os.unlink(path)
        ours.append(_timed(ours_cmd))
        qemu.append(_timed(qemu_cmd))
        ratios.append(qemu[-1] / ours[-1] if ours[-1] else None)
    row = {"ours_s": statistics.median(ours), "qemu_s": statistics.median(qemu),
           "ratio": statistics.median(ratios) if None not in ratios else None,
           "runs": repeat, "ours_runs": ours, "qemu_runs": qemu, "ratios": ratios}
    row["ours_alloc"], row["qemu_alloc"] = _allocated(ours_out), _allocated(qemu_out)
    return row


def rows(work, virtual_mib, repeat=1):
    if not QEMU_IMG:
        return [{"what": "qcow2 rows", "skipped": "qemu-img not installed"}]
    raw = os.path.join(work, "in.raw")
    make_raw(raw, virtual_mib)
    out = []

    def p(name):
        path = os.path.join(work, name)
        if os.path.exists(path):
            os.unlink(path)
        return path

    def convert(fmt_in, fmt_out, src, dst):
        return [QEMU_IMG, "convert", "-t", "writeback", "-f", fmt_in, "-O", fmt_out, src, dst]

    ours_q, theirs_q = p("ours.qcow2"), p("qemu.qcow2")
    row = _pair(_ours("import_raw(sys.argv[1], sys.argv[2])") + [raw, ours_q],
                convert("raw", "qcow2", raw, theirs_q), ours_q, theirs_q, repeat)
    row.update(what="import raw -> qcow2", ok=_same(ours_q, raw))
    out.append(row)
    ours_r, theirs_r = p("ours.raw"), p("qemu.raw")
    row = _pair(_ours("export_raw(sys.argv[1], sys.argv[2])") + [theirs_q, ours_r],
                convert("qcow2", "raw", theirs_q, theirs_r), ours_r, theirs_r, repeat)
    row.update(what="export qcow2 -> raw", ok=_same(ours_r, raw),
               sparse=row["ours_alloc"] == row["qemu_alloc"])
    out.append(row)
    chain = [theirs_q]
    for level in (1, 2):
        child = p("chain{}.qcow2".format(level))
        subprocess.check_call([QEMU_IMG, "create", "-q", "-f", "qcow2", "-F", "qcow2", "-b",
                               os.path.basename(chain[-1]), child])
        subprocess.check_call(["qemu-io", "-f", "qcow2", "-c",
                               "write -P {} {}M {}M".format(level, level, virtual_mib // 4),
                               child], stdout=subprocess.DEVNULL)
        chain.append(child)
    ours_c, theirs_c = p("chain-ours.raw"), p("chain-qemu.raw")
    row = _pair(_ours("export_raw(sys.argv[1], sys.argv[2], backing=local_backing)")
                + [chain[-1], ours_c], convert("qcow2", "raw", chain[-1], theirs_c),
                ours_c, theirs_c, repeat)
    row.update(what="read a 3-deep chain (export to raw)", ok=_same(ours_c, theirs_c),
               sparse=row["ours_alloc"] == row["qemu_alloc"])
    out.append(row)
    return out


def add_to(bench, virtual_mib, repeat=3):
    """The hook for bench/run.py: QCOW2 rows (Q1-Q3) and output checks in its own format."""
    work = bench.fresh("qcow2")
    for i, r in enumerate(rows(work, virtual_mib, repeat), 1):
        if "skipped" in r:
            getattr(bench, "skip", bench.notes.append)("QCOW2 rows skipped: {}".format(
                r["skipped"]))
            continue
        bench.check("Q{} {} output".format(i, r["what"]), r["ok"])
        if "sparse" in r:
            bench.check("Q{} output as sparse as qemu-img's".format(i), r["sparse"],
                        "{:.0f} / {:.0f} MiB allocated".format(r["ours_alloc"] / MIB,
                                                               r["qemu_alloc"] / MIB))
        median = " (median of {})".format(r["runs"]) if r["runs"] > 1 else ""
        bench.row(id="Q{}".format(i), what="{} ({} MiB virtual)".format(r["what"], virtual_mib),
                  vhdport="{:.2f} s{}".format(r["ours_s"], median),
                  baseline="{:.2f} s (qemu-img convert -t writeback){}".format(r["qemu_s"], median),
                  ratio=r["ratio"], target=">= 1.0x (informative)",
                  met=r["ratio"] is not None and r["ratio"] >= 1.0)


def table(result_rows, virtual_mib):
    lines = ["| QCOW2, {} MiB virtual | vhdport s | qemu-img s | speed vs qemu-img | runs "
             "(ratios) | allocated MiB ours / qemu | output |".format(virtual_mib),
             "|---|---|---|---|---|---|---|"]
    for r in result_rows:
        if "skipped" in r:
            lines.append("| {} | skipped: {} | | | | | |".format(r["what"], r["skipped"]))
            continue
        lines.append("| {} | {:.2f} | {:.2f} | {:.2f}x | {} ({}) | {:.0f} / {:.0f} | {} |".format(
            r["what"], r["ours_s"], r["qemu_s"], r["ratio"], r["runs"],
            " ".join("{:.2f}".format(x) for x in r["ratios"]), r["ours_alloc"] / MIB,
            r["qemu_alloc"] / MIB, "same" if r["ok"] else "WRONG"))
    return "\n".join(lines)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--virtual-mib", type=int, default=256)
    parser.add_argument("--repeat", type=int, default=1, help="runs per row, alternating")
    parser.add_argument("--work")
    parser.add_argument("--json")
    args = parser.parse_args(argv)
    work = args.work or tempfile.mkdtemp(prefix="vhdport-qcow2-bench-")
    os.makedirs(work, exist_ok=True)
    try:
        result = rows(work, args.virtual_mib, args.repeat)
        print("load average after: {:.2f} {:.2f} {:.2f}".format(*os.getloadavg()))
    finally:
        if not args.work:
            shutil.rmtree(work, ignore_errors=True)
    print(table(result, args.virtual_mib))
    if args.json:
        with open(args.json, "w") as f:
            json.dump(result, f, indent=1)
    return 1 if any(r.get("ok") is False or r.get("sparse") is False for r in result) else 0


if __name__ == "__main__":
    sys.exit(main())
