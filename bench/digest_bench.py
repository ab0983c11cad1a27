"""Content digest rows (issue #14): ``vhdport digest`` of a huge sparse disk, raw / VHD / QCOW2.

    python -m bench.digest_bench [--work DIR]

A 2 TiB disk (2040 GiB for VHD, its limit) with 10 MiB written must digest in under 2 s:
holes are never read.  Each timing is the whole ``vhdport digest`` process.  The
formats of the same contents must print the same digest (a check: a wrong digest makes
the exit status 1, slowness never does).  run.py calls ``add_to(bench)``.
"""

import argparse
import os
import random
import shutil
import subprocess
import sys
import tempfile
import time

MIB = 1 << 20
GIB = 1 << 30
VHDPORT = os.path.join(os.path.dirname(sys.executable), "vhdport")
QEMU_IMG = shutil.which("qemu-img")
TARGET_S = 2.0


def make_sparse_raw(path, size, written_mib=10, seed=14):
    """``size`` bytes of holes with ``written_mib`` MiB of random data in 1 MiB pieces."""
    rng = random.Random(seed)
    with open(path, "wb") as f:
        f.truncate(size)
        for i in range(written_mib):
            f.seek((size // written_mib) * i + 4096 * i)
            f.write(rng.getrandbits(8 * MIB).to_bytes(MIB, "little"))


def _digest(path):
    start = time.monotonic()
    out = subprocess.check_output([VHDPORT, "digest", path], universal_newlines=True)
    return time.monotonic() - start, out.strip()


def rows(work):
    if not QEMU_IMG:
        return [{"what": "digest rows", "skipped": "qemu-img not installed"}]
    raw, raw_vhd = os.path.join(work, "d.raw"), os.path.join(work, "d2040.raw")
    make_sparse_raw(raw, 2048 * GIB)
    make_sparse_raw(raw_vhd, 2040 * GIB)
    vhd, qcow2 = os.path.join(work, "d.vhd"), os.path.join(work, "d.qcow2")
    subprocess.check_call([QEMU_IMG, "convert", "-f", "raw", "-O", "vpc", "-o",
                           "subformat=dynamic,force_size=on", raw_vhd, vhd])
    subprocess.check_call([QEMU_IMG, "convert", "-f", "raw", "-O", "qcow2", raw, qcow2])
    out = []
    for what, path in (("raw 2 TiB", raw), ("VHD 2040 GiB", vhd), ("QCOW2 2 TiB", qcow2),
                       ("raw 2040 GiB", raw_vhd)):
        seconds, digest = _digest(path)
        out.append({"what": what, "seconds": seconds, "digest": digest})
    by = {r["what"]: r["digest"] for r in out}
    for r in out:
        twin = {"raw 2 TiB": "QCOW2 2 TiB", "QCOW2 2 TiB": "raw 2 TiB",
                "VHD 2040 GiB": "raw 2040 GiB", "raw 2040 GiB": "VHD 2040 GiB"}[r["what"]]
        r["ok"] = r["digest"] == by[twin] and r["digest"].startswith("blake2b-256/4MiB:")
    return out


def add_to(bench):
    """The hook for bench/run.py: rows D1-D4 and their agreement checks."""
    work = bench.fresh("digest")
    for i, r in enumerate(rows(work), 1):
        if "skipped" in r:
            bench.skip("digest rows skipped: {}".format(r["skipped"]))
            continue
        bench.check("D{} digest of {} equals the same contents in another format".format(
            i, r["what"]), r["ok"])
        bench.row(id="D{}".format(i),
                  what="vhdport digest, {} virtual, 10 MiB allocated".format(r["what"]),
                  vhdport="{:.2f} s".format(r["seconds"]), baseline="-",
                  target="< {:.0f} s".format(TARGET_S), met=r["seconds"] < TARGET_S)
    shutil.rmtree(work, ignore_errors=True)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--work")
    args = parser.parse_args(argv)
    work = args.work or tempfile.mkdtemp(prefix="vhdport-digest-bench-")
    os.makedirs(work, exist_ok=True)
    try:
        result = rows(work)
    finally:
        if not args.work:
            shutil.rmtree(work, ignore_errors=True)
    for r in result:
        if "skipped" in r:
            print("skipped: {}".format(r["skipped"]))
            continue
        print("{:<14} {:6.2f} s  {}  {}".format(r["what"], r["seconds"], r["digest"],
                                               "same" if r["ok"] else "WRONG"))
    return 1 if any(r.get("ok") is False for r in result) else 0


if __name__ == "__main__":
    sys.exit(main())
