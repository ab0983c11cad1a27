"""vhdport benchmark: vhdport against the original data path and qemu-img, same input.

    python -m bench.run [--quick] [--virtual-mib N] [--small-mib N] [--no-glance]
                        [--doc docs/benchmarks.md] [--json FILE] [--work DIR] [--keep]

Prints a markdown table (met / not met per target) and writes JSON.  Exit status
is 1 when an output of vhdport is WRONG (contents differ from the reference), or when
--doc was asked for and the run cannot write it; slow is reported, never fatal.  Peers
that are missing (nginx, curl, qemu-img, Glance) turn their rows into "skipped", and a
run with skipped rows (or --quick / --no-glance) never writes --doc: the document must
show every row of a full run.
"""

import argparse
import hashlib
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time

from bench import gen, report
from bench.plainhttp import write_sidecar
from bench.servers import Nginx, nginx_binary, start_glance

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(HERE)
PY = sys.executable
MIB = 1 << 20
VHDPORT = [PY, "-m", "vhdport.cli.main"]

TARGETS = {"P1": 2.5, "P2": 5.0, "P2size": 1.05, "P3": 1.0, "P5": 100.0, "P6": 2.0}


class Bench(object):
    def __init__(self, args):
        self.args = args
        self.work = args.work or tempfile.mkdtemp(prefix="vhdport-bench-")
        os.makedirs(self.work, exist_ok=True)
        self.rows, self.checks, self.notes = [], [], []
        self.skipped = []       # notes of rows that did not run: no --doc from this run
        self.data = {}
        self.nginx = None
        self.glance = None

    # ---------------------------------------------------------------- helpers

    def path(self, *parts):
        return os.path.join(self.work, *parts)

    def fresh(self, *parts):
        p = self.path(*parts)
        shutil.rmtree(p, ignore_errors=True)
        os.makedirs(p)
        return p

    def check(self, what, ok, detail=""):
        self.checks.append({"what": what, "ok": bool(ok), "detail": detail})
        print("  check {}: {}{}".format(what, "ok" if ok else "WRONG",
                                        " ({})".format(detail) if detail else ""), flush=True)

    def row(self, **fields):
        self.rows.append(fields)
        print("  {id} {what}: vhdport {v} | baseline {b}{r}".format(
            v=fields.get("vhdport", "-"), b=fields.get("baseline", "-"),
            r=" | {:.2f}x".format(fields["ratio"]) if fields.get("ratio") else "", **fields),
            flush=True)

    @staticmethod
    def timed(cmd, **kw):
        settle()
        start = time.perf_counter()
        subprocess.run(cmd, check=True, **kw)
        return time.perf_counter() - start

    @staticmethod
    def pipeline(first, second):
        """Wall time of ``first | second`` (two processes, no shell)."""
        settle()
        start = time.perf_counter()
        a = subprocess.Popen(first, stdout=subprocess.PIPE)
        b = subprocess.Popen(second, stdin=a.stdout)
        a.stdout.close()
        rb, ra = b.wait(), a.wait()
        if ra or rb:
            raise RuntimeError("pipeline failed: {} ({}) | {} ({})".format(
                first[0], ra, second[0], rb))
        return time.perf_counter() - start

    def worker(self, *argv):
        settle()
        env = dict(os.environ, PYTHONPATH=REPO)
        out = subprocess.run([PY, "-m", "bench.worker"] + [str(a) for a in argv],
                             stdout=subprocess.PIPE, check=True, env=env, cwd=REPO)
        return json.loads(out.stdout.decode().strip().splitlines()[-1])

    # ------------------------------------------------------------------ input

    def make_input(self, label, virtual_mib):
        sr = self.fresh(label, "sr")
        ref = self.path(label, "ref.raw")
        start = time.perf_counter()
        info = gen.make_chain(sr, ref, virtual_mib * MIB, seed=virtual_mib)
        leaf_path = os.path.join(sr, info["leaf"] + ".vhd")
        stage = self.fresh(label, "stage")
        for i, u in enumerate(info["chain"]):
            os.link(os.path.join(sr, u + ".vhd"), os.path.join(stage, "{}.vhd".format(i)))
        info.update(sr=sr, ref=ref, leaf_path=leaf_path, stage=stage, virtual=virtual_mib * MIB,
                    files=sum(os.path.getsize(os.path.join(stage, n)) for n in os.listdir(stage)),
                    digest=gen.sparse_digest(ref))
        print("input {}: {} MiB virtual, {:.0f} MiB written, {:.0f} MiB of files ({:.1f} s)".format(
            label, virtual_mib, info["written"] / MIB, info["files"] / MIB,
            time.perf_counter() - start), flush=True)
        self.data[label] = info
        return info

    # ------------------------------------------------------- P2 then P1 (nginx)

    def upload_nginx(self, label, info):
        n = self.nginx
        orig = "up/orig-{}.tgz".format(label)
        t_orig = self.pipeline(["tar", "-cz", "-C", info["stage"], "."],
                               ["curl", "-sSf", "-T", "-", "{}/{}".format(n.url, orig)])
        orig_size = os.path.getsize(os.path.join(n.root, orig))
        res = self.worker("upload", "nginx", n.url, n.root, info["sr"], info["leaf"],
                          "vhdport-{}.tgz".format(label))
        ours = os.path.join(n.root, res["result"])
        ours_size = os.path.getsize(ours)
        self.verify_bundle(label, ours, info)
        return t_orig, orig_size, res, ours_size

    def verify_bundle(self, label, bundle, info):
        out = self.fresh(label, "untar")
        subprocess.run(["tar", "-xzf", bundle, "-C", out], check=True)
        same = all(_same_file(os.path.join(out, n), os.path.join(info["stage"], n))
                   for n in sorted(os.listdir(info["stage"])))
        self.check("P2 {} bundle members identical to the SR files (GNU tar reads it)".format(
            label), same and sorted(os.listdir(out)) == sorted(os.listdir(info["stage"])))
        shutil.rmtree(out)

    def download_nginx(self, label, info, bundle):
        n = self.nginx
        out = self.fresh(label, "curl-tar")
        t_orig = self.pipeline(["curl", "-sSf", "{}/{}".format(n.url, bundle)],
                               ["tar", "-xz", "-C", out])
        shutil.rmtree(out)
        sr = self.fresh(label, "sr-down")
        res = self.worker("download", "nginx", n.url, n.root, bundle, sr)
        leaf = os.path.join(sr, res["result"]["root"]["uuid"] + ".vhd")
        self.check("P1 {} downloaded chain reads as the reference".format(label),
                   gen.chain_digest(leaf) == info["digest"])
        shutil.rmtree(sr)
        return t_orig, res

    def p1_p2(self, label, info, report_rows):
        t_up, gz_size, up, ours_size = self.upload_nginx(label, info)
        bundle = "up/orig-{}.tgz".format(label)
        bpath = os.path.join(self.nginx.root, bundle)
        md5, sha = _digests(bpath)
        write_sidecar(self.nginx.root, bundle, gz_size, md5, sha)
        t_down, down = self.download_nginx(label, info, bundle)
        info.update(up=up, down=down, gz_size=gz_size, ours_size=ours_size)
        if not report_rows:
            return
        tar_bytes = info["files"]
        ratio = t_down / down["seconds"]
        self.row(id="P1", what="download from nginx into an SR, gzip -6 bundle of {:.0f} MiB "
                 "(vhdport: transfer.download, hashed + verified + fsync'd; original: "
                 "curl \\| tar -xz)".format(gz_size / MIB),
                 vhdport="{:.2f} s, {:.0f} MiB/s gz, {:.0f} MiB/s virtual".format(
                     down["seconds"], report.rate(gz_size, down["seconds"]),
                     report.rate(info["virtual"], down["seconds"])),
                 baseline="{:.2f} s, {:.0f} MiB/s gz".format(t_down, report.rate(gz_size, t_down)),
                 ratio=ratio, target=">= {}x".format(TARGETS["P1"]), met=ratio >= TARGETS["P1"])
        ratio = t_up / up["seconds"]
        self.row(id="P2", what="upload to nginx (PUT), {:.0f} MiB of VHDs (vhdport: "
                 "transfer.upload; original: tar -cz \\| curl -T -)".format(tar_bytes / MIB),
                 vhdport="{:.2f} s, {:.0f} MiB/s of tar".format(
                     up["seconds"], report.rate(tar_bytes, up["seconds"])),
                 baseline="{:.2f} s, {:.0f} MiB/s of tar".format(t_up, report.rate(tar_bytes, t_up)),
                 ratio=ratio, target=">= {}x".format(TARGETS["P2"]), met=ratio >= TARGETS["P2"])
        size_ratio = ours_size / gz_size
        self.row(id="P2", what="compressed size relative to gzip -6",
                 vhdport="{:.1f} MiB".format(ours_size / MIB),
                 baseline="{:.1f} MiB".format(gz_size / MIB), ratio=size_ratio,
                 target="<= {}x".format(TARGETS["P2size"]), met=size_ratio <= TARGETS["P2size"])

    # ------------------------------------------------------------------ Glance

    def p1_p2_glance(self, info):
        from vhdport import transfer
        from vhdport.stores.glance import GlanceStore
        try:
            self.glance = start_glance(self.path("glance"))
        except Exception as e:   # not installable / will not start: say so, go on
            self.skip("Glance rows skipped: {}".format(e))
            return
        url = self.glance.url
        store = GlanceStore(url)
        bundle = os.path.join(self.nginx.root, "up/orig-full.tgz")
        image = transfer.import_image(store, bundle, "bench-orig")
        out = self.fresh("full", "curl-tar-glance")
        t_orig = self.pipeline(["curl", "-sSf", "{}/v2/images/{}/file".format(url, image)],
                               ["tar", "-xz", "-C", out])
        shutil.rmtree(out)
        sr = self.fresh("full", "sr-glance")
        res = self.worker("download", "glance", url, "-", image, sr)
        leaf = os.path.join(sr, res["result"]["root"]["uuid"] + ".vhd")
        self.check("P1 full download from Glance reads as the reference",
                   gen.chain_digest(leaf) == info["digest"])
        shutil.rmtree(sr)
        gz = info["gz_size"]
        self.row(id="P1g", what="download from the real Glance (Glance serves in Python)",
                 vhdport="{:.2f} s, {:.0f} MiB/s gz".format(res["seconds"],
                                                          report.rate(gz, res["seconds"])),
                 baseline="{:.2f} s".format(t_orig), ratio=t_orig / res["seconds"],
                 target="(informative)", met=None)
        target = store.create("bench-orig-up", "vhd", "ovf")["id"]
        t_up = self.pipeline(
            ["tar", "-cz", "-C", info["stage"], "."],
            ["curl", "-sSf", "-T", "-", "-H", "Content-Type: application/octet-stream",
             "{}/v2/images/{}/file".format(url, target)])
        up = self.worker("upload", "glance", url, "-", info["sr"], info["leaf"], "bench-vhdport")
        self.row(id="P2g", what="upload to the real Glance (Glance hashes in Python)",
                 vhdport="{:.2f} s".format(up["seconds"]), baseline="{:.2f} s".format(t_up),
                 ratio=t_up / up["seconds"], target="(informative)", met=None)

    # ----------------------------------------------------------------- P3, P4

    def p3_p4(self, info):
        ref, size = info["ref"], info["virtual"]
        qemu = shutil.which("qemu-img")
        ours_vhd, q_vhd = self.path("p3-ours.vhd"), self.path("p3-qemu.vhd")
        for p in (ours_vhd, q_vhd):
            _rm(p)
        # inputs were written minutes ago and may have left the page cache: read them
        # back first so neither side pays for a cold cache the other then warms
        gen.sparse_digest(ref)
        t_imp = self.timed(VHDPORT + ["vhd", "import", ref, ours_vhd], stdout=subprocess.DEVNULL)
        exp_ours = self.path("p3-export-ours.raw")
        _rm(exp_ours)
        t_exp = self.timed(VHDPORT + ["vhd", "export", ours_vhd, exp_ours])
        self.check("P3 vhd import -> vhd export round trip equals the raw input",
                   gen.sparse_digest(exp_ours) == info["digest"])
        _rm(exp_ours)
        if qemu:
            gen.sparse_digest(ref)
            t_qimp = self.timed([qemu, "convert", "-f", "raw", "-O", "vpc", "-o",
                                 "subformat=dynamic,force_size=on", ref, q_vhd])
            exp_q = self.path("p3-export-qemu.raw")
            _rm(exp_q)
            t_qexp = self.timed([qemu, "convert", "-f", "vpc", "-O", "raw", ours_vhd, exp_q])
            self.check("P3 qemu-img reads vhdport's import as the raw input",
                       gen.sparse_digest(exp_q, size) == info["digest"])
            _rm(exp_q)
            self.timed(VHDPORT + ["vhd", "export", q_vhd, exp_q])
            self.check("P3 vhdport reads qemu-img's VHD as the raw input",
                       gen.sparse_digest(exp_q, size) == info["digest"])
            _rm(exp_q)
            # qemu-img convert defaults to -t unsafe (never flushes); vhdport fsyncs.
            # The same conversions with -t writeback (flush at the end) compare like for like.
            _rm(q_vhd)
            gen.sparse_digest(ref)
            t_qimp_wb = self.timed([qemu, "convert", "-t", "writeback", "-f", "raw", "-O", "vpc",
                                    "-o", "subformat=dynamic,force_size=on", ref, q_vhd])
            _rm(exp_q)
            t_qexp_wb = self.timed([qemu, "convert", "-t", "writeback", "-f", "vpc", "-O", "raw",
                                    ours_vhd, exp_q])
            _rm(exp_q)
            for what, ours, theirs in (("import raw -> VHD (`vhd import` vs qemu-img "
                                        "convert -O vpc)", t_imp, t_qimp),
                                       ("export VHD -> raw (`vhd export` vs qemu-img "
                                        "convert -f vpc -O raw)", t_exp, t_qexp)):
                self.row(id="P3", what=what + ", {} MiB virtual".format(size // MIB),
                         vhdport="{:.2f} s".format(ours), baseline="{:.2f} s".format(theirs),
                         ratio=theirs / ours, target=">= 1.0x", met=theirs / ours >= TARGETS["P3"])
            for what, ours, theirs in (("import, qemu-img with `-t writeback` (flushes, as "
                                        "vhdport does)", t_imp, t_qimp_wb),
                                       ("export, qemu-img with `-t writeback`", t_exp, t_qexp_wb)):
                self.row(id="P3", what=what, vhdport="{:.2f} s".format(ours),
                         baseline="{:.2f} s".format(theirs), ratio=theirs / ours,
                         target="(informative)", met=None)
        else:
            self.skip("P3 qemu-img rows skipped: qemu-img not installed")
        for p in (ours_vhd, q_vhd):
            _rm(p)
        chain_raw = self.path("p4.raw")
        _rm(chain_raw)
        for name in os.listdir(info["stage"]):
            _warm(os.path.join(info["stage"], name))
        t_chain = self.timed(VHDPORT + ["vhd", "export", info["leaf_path"], chain_raw])
        self.check("P4 export of the 3-deep chain equals the reference raw",
                   gen.sparse_digest(chain_raw) == info["digest"])
        _rm(chain_raw)
        self.row(id="P4", what="chain read: `vhd export` of the 3-deep chain",
                 vhdport="{:.2f} s: {:.0f} MiB/s virtual, {:.0f} MiB/s of files".format(
                     t_chain, report.rate(size, t_chain), report.rate(info["files"], t_chain)),
                 baseline="(qemu-img cannot read VHD differencing chains)", target="-", met=None)

    # -------------------------------------------------------------------- P5, P6

    def p5(self, full, small):
        for op, key in (("P1 download", "down"), ("P2 upload", "up")):
            a, b = small[key]["maxrss_mib"], full[key]["maxrss_mib"]
            ok = max(a, b) < TARGETS["P5"] and b - a < 10
            self.row(id="P5", what="peak RSS of the vhdport process during {} ({} MiB vs {} "
                     "MiB virtual)".format(op, small["virtual"] // MIB, full["virtual"] // MIB),
                     vhdport="{:.0f} MiB / {:.0f} MiB".format(a, b), baseline="-",
                     target="< 100 MiB, flat (< 10 MiB growth)", met=ok)

    def p6(self):
        work = self.fresh("p6")
        res = self.worker("sparse", work, self.nginx.url, self.nginx.root)
        r = res["result"]
        self.check("P6 2040 GiB sparse disk: export holds the written data, holes stay holes",
                   r["ok"] and r["raw_allocated"] < 64 * MIB,
                   "raw file allocates {:.0f} MiB".format(r["raw_allocated"] / MIB))
        for step, seconds in r["steps"].items():
            self.row(id="P6", what="2040 GiB virtual, 10 MiB allocated: {}".format(step),
                     vhdport="{:.2f} s".format(seconds), baseline="-",
                     target="< 2 s", met=seconds < TARGETS["P6"])
        shutil.rmtree(work)

    # ---------------------------------------------------------------------- run

    def run(self):
        a = self.args
        full = self.make_input("full", a.virtual_mib)
        small = self.make_input("small", a.small_mib)
        if nginx_binary() and shutil.which("curl"):
            self.nginx = Nginx(self.path("nginx")).start()
            try:
                print("P1/P2 at {} MiB (for P5)".format(a.small_mib), flush=True)
                self.p1_p2("small", small, report_rows=False)
                print("P1/P2 at {} MiB".format(a.virtual_mib), flush=True)
                self.p1_p2("full", full, report_rows=True)
                self.p5(full, small)
                if not a.no_glance:
                    print("P1/P2 with the real Glance", flush=True)
                    try:
                        self.p1_p2_glance(full)
                    finally:
                        if self.glance is not None:
                            self.glance.stop()
                print("P6", flush=True)
                self.p6()
            finally:
                self.nginx.stop()
        else:
            self.skip("P1, P2, P5, P6 skipped: nginx or curl missing "
                              "(run bash bench/setup.sh as root)")
        if not a.no_objstores:  # issue #15: informative rows, see bench/objstores.py
            print("O1/O2 object stores (Swift: S3 and Swift APIs)", flush=True)
            from bench import objstores
            objstores.run(self, full)
        print("P3/P4", flush=True)
        self.p3_p4(full)
        from bench import qcow2_bench       # QCOW2 rows (issue #13) live in their own module
        qcow2_bench.add_to(self, min(a.virtual_mib, 1024))

    def skip(self, note):
        self.notes.append(note)
        self.skipped.append(note)

    def results(self):
        from vhdport.bundle import compressor_name
        full, small = self.data["full"], self.data["small"]
        return {
            "machine": report.machine(), "quick": self.args.quick,
            "compressor": compressor_name(),
            "sizes": {"virtual_mib": full["virtual"] // MIB,
                      "small_virtual_mib": small["virtual"] // MIB,
                      "written_mib": round(full["written"] / MIB),
                      "files_mib": round(full["files"] / MIB)},
            "rows": self.rows, "checks": self.checks, "notes": self.notes,
        }


def settle():
    """Flush everyone's dirty pages before a timed step: on ext4 (data=ordered) an fsync
    would otherwise also pay for the writeback of earlier steps' files."""
    os.sync()


def _warm(path, chunk=4 * MIB):
    with open(path, "rb", buffering=0) as f:
        while f.read(chunk):
            pass


def _same_file(a, b, chunk=4 * MIB):
    if os.path.getsize(a) != os.path.getsize(b):
        return False
    with open(a, "rb") as fa, open(b, "rb") as fb:
        while True:
            x, y = fa.read(chunk), fb.read(chunk)
            if x != y:
                return False
            if not x:
                return True


def _digests(path):
    md5, sha = hashlib.md5(), hashlib.sha512()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(4 * MIB), b""):
            md5.update(block)
            sha.update(block)
    return md5.hexdigest(), sha.hexdigest()


def _rm(path):
    try:
        os.unlink(path)
    except FileNotFoundError:
        pass


NOTES = [
    "Notes: vhdport timings are of the library call in a fresh process (transfer.download / "
    "transfer.upload; P3/P4 the `vhdport` CLI including its start-up); the original path and "
    "qemu-img are timed as whole commands, each step after a `sync`. vhdport fsyncs what it writes and hashes (md5 + "
    "sha512) and verifies every byte against the store's record; `tar` and `qemu-img` (whose "
    "convert defaults to `-t unsafe`) do neither. One run per row on a machine shared with "
    "other work, so ratios carry noise (page-cache write speed here varied 200 MB/s - 2 GB/s).",
]


#: what profiling (py-spy, cProfile) showed limits a row; printed when its target is missed
BOTTLENECKS = {
    "P1": "P1 bottleneck (py-spy, 1 GiB chain): both cores are busy -- the read-ahead thread "
          "hashes every compressed byte twice over (md5 + sha512, both compared with the "
          "store's record) and the main thread inflates (isal); together they are about "
          "2 CPU-seconds per second of download. The original path hashes nothing.",
    "P2": "P2 bottleneck: compression (isal level 2 for gzip -6) plus md5 + sha512 of the "
          "compressed stream; the size target bounds how much faster a lower level could go.",
    "P3": "P3 bottleneck (cProfile): `vhd import` is kernel copies -- reading the raw file "
          "and writing the VHD through the page cache -- plus making the VHD durable (fsync); "
          "`qemu-img convert` defaults to `-t unsafe` (no flush at all) and runs its I/O in a "
          "thread pool. Direct I/O for import data did not help here (ext4 serialises it "
          "against the buffered metadata writes to the same file). The `-t writeback` rows "
          "compare like for like.",
    "P5": "P5: peak RSS is the interpreter and imported modules plus bounded buffers "
          "(4 x 1 MiB read-ahead, 3 x 4 MiB write buffers).",
    "P6": "P6 bottleneck: the 4 MiB BAT of a 2040 GiB disk is read, checked and rewritten "
          "(relink) in Python on each step.",
}


def doc_refusal(args, skipped=()):
    """Why this run may not write --doc (empty when it may): only full runs are published."""
    reasons = []
    if args.quick:
        reasons.append("--quick is a smoke run")
    if args.no_glance:
        reasons.append("--no-glance leaves out the Glance rows")
    if getattr(args, "no_objstores", False):
        reasons.append("--no-objstores leaves out the object store rows")
    reasons.extend(skipped)
    return reasons


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--quick", action="store_true", help="smoke run (~200 MiB); for CI")
    p.add_argument("--virtual-mib", type=int, help="virtual size of the chain (multiple of 2)")
    p.add_argument("--small-mib", type=int, help="second, smaller size for P5")
    p.add_argument("--no-glance", action="store_true", help="skip the real-Glance rows")
    p.add_argument("--no-objstores", action="store_true",
                   help="skip the s3:// and swift:// rows (real Swift)")
    p.add_argument("--doc", help="also write the table to this markdown file")
    p.add_argument("--json", help="write the results here (default bench/results-<mode>.json)")
    p.add_argument("--work", help="scratch directory (default: a new one under /tmp)")
    p.add_argument("--keep", action="store_true", help="keep the scratch directory")
    a = p.parse_args(argv)
    if a.virtual_mib is None:
        a.virtual_mib = 256 if a.quick else 4096
    if a.small_mib is None:
        a.small_mib = max(64, a.virtual_mib // 4 // 2 * 2)
    if a.quick:
        a.no_glance = True
        a.no_objstores = True
    if a.doc and doc_refusal(a):
        print("bench: not writing {}: {}".format(a.doc, "; ".join(doc_refusal(a))), file=sys.stderr)
        return 1
    bench = Bench(a)
    started = time.perf_counter()
    try:
        bench.run()
    finally:
        if not a.keep:
            shutil.rmtree(bench.work, ignore_errors=True)
    results = bench.results()
    missed = []
    for row in results["rows"]:
        key = row["id"]
        if row.get("met") is False and key in BOTTLENECKS and key not in missed:
            missed.append(key)
    results["notes"] = NOTES + results["notes"] + [BOTTLENECKS[k] for k in missed]
    results["elapsed_s"] = round(time.perf_counter() - started, 1)
    table = report.render(results)
    print()
    print(table)
    out = a.json or os.path.join(HERE, "results-{}.json".format("quick" if a.quick else "full"))
    with open(out, "w") as f:
        json.dump(results, f, indent=1)
    refused = doc_refusal(a, bench.skipped) if a.doc else []
    if refused:
        print("bench: NOT writing {}: this run is partial: {}".format(a.doc, "; ".join(refused)),
              file=sys.stderr)
    elif a.doc:
        with open(a.doc, "w") as f:
            f.write("# vhdport benchmarks\n\nGenerated by `make bench` (`python -m bench.run "
                    "--doc docs/benchmarks.md`) in {:.0f} s; do not edit by hand.\n\n".format(
                        results["elapsed_s"]))
            f.write(table)
    wrong = [c for c in results["checks"] if not c["ok"]]
    if wrong:
        print("WRONG OUTPUT: " + "; ".join(c["what"] for c in wrong), file=sys.stderr)
        return 1
    return 1 if refused else 0


if __name__ == "__main__":
    sys.exit(main())
