"""vhdport benchmark: vhdport against the original data path and qemu-img, same input.

    python -m bench.run [--quick] [--virtual-mib N] [--small-mib N] [--no-glance]
                        [--doc docs/benchmarks.md] [--json FILE] [--work DIR] [--keep]

Every vhdport row runs twice: with the fast codec (isal, as `pip install 'vhdport[cli]'`
installs it) and with the standard library alone (VHDPORT_CODEC=zlib, as dom0 has it);
the original path and qemu-img run once per input.
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
import resource
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

#: the two codec modes every P row runs in: the fast codec (what `pip install 'vhdport[cli]'`
#: gives: isal where it has wheels) and the standard library alone, as dom0 has it
MODES = (("fast", {}), ("stdlib", {"VHDPORT_CODEC": "zlib"}))
#: targets of issue #12, per mode
TARGETS = {
    "fast": {"P1": 3.0, "P2": 10.0, "P2size": 1.05, "P3": 1.0, "P5": 100.0, "P6": 2.0},
    "stdlib": {"P1": 2.0, "P2": 1.8, "P2size": 1.05, "P3": 1.0, "P5": 100.0, "P6": 2.0},
}


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
        self.mode = "fast"
        self.fast_codec = _fast_codec()
        self.baselines = {}
        self.child_cpu = 0.0   # CPU seconds of the last timed baseline command(s)

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
        fields.setdefault("mode", self.mode)
        fields["codec"] = self.codec(fields["mode"])
        self.rows.append(fields)
        print("  {id} [{codec}] {what}: vhdport {v} | baseline {b}{r}".format(
            v=fields.get("vhdport", "-"), b=fields.get("baseline", "-"),
            r=" | {:.2f}x".format(fields["ratio"]) if fields.get("ratio") else "", **fields),
            flush=True)

    def codec(self, mode):
        return "zlib" if mode == "stdlib" else self.fast_codec

    def target(self, key):
        return TARGETS[self.mode][key]

    def env(self):
        """The environment of vhdport processes in the current mode."""
        return dict(os.environ, PYTHONPATH=REPO, **dict(MODES)[self.mode])

    def timed(self, cmd, vhdport=False, **kw):
        settle()
        cpu0 = _children_cpu()
        start = time.perf_counter()
        subprocess.run(cmd, check=True, env=self.env() if vhdport else None, **kw)
        took = time.perf_counter() - start
        self.child_cpu = _children_cpu() - cpu0
        return took

    def pipeline(self, first, second):
        """Wall time of ``first | second`` (two processes, no shell)."""
        settle()
        cpu0 = _children_cpu()
        start = time.perf_counter()
        a = subprocess.Popen(first, stdout=subprocess.PIPE)
        b = subprocess.Popen(second, stdin=a.stdout)
        a.stdout.close()
        rb, ra = b.wait(), a.wait()
        if ra or rb:
            raise RuntimeError("pipeline failed: {} ({}) | {} ({})".format(
                first[0], ra, second[0], rb))
        took = time.perf_counter() - start
        self.child_cpu = _children_cpu() - cpu0
        return took

    def worker(self, *argv):
        settle()
        out = subprocess.run([PY, "-m", "bench.worker"] + [str(a) for a in argv],
                             stdout=subprocess.PIPE, check=True, env=self.env(), cwd=REPO)
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

    def baseline(self, key, measure):
        """The original path is the same in both modes: time it once per input."""
        if key not in self.baselines:
            took = measure()
            self.baselines[key] = (took, self.child_cpu)
        return self.baselines[key]

    def upload_nginx(self, label, info):
        n = self.nginx
        orig = "up/orig-{}.tgz".format(label)
        t_orig = self.baseline(("P2", label), lambda: self.pipeline(
            ["tar", "-cz", "-C", info["stage"], "."],
            ["curl", "-sSf", "-T", "-", "{}/{}".format(n.url, orig)]))
        orig_size = os.path.getsize(os.path.join(n.root, orig))
        res = self.worker("upload", "nginx", n.url, n.root, info["sr"], info["leaf"],
                          "vhdport-{}-{}.tgz".format(label, self.mode))
        ours = os.path.join(n.root, res["result"])
        ours_size = os.path.getsize(ours)
        self.verify_bundle(label, ours, info)
        return t_orig, orig_size, res, ours_size

    def verify_bundle(self, label, bundle, info):
        out = self.fresh(label, "untar")
        subprocess.run(["tar", "-xzf", bundle, "-C", out], check=True)
        same = all(_same_file(os.path.join(out, n), os.path.join(info["stage"], n))
                   for n in sorted(os.listdir(info["stage"])))
        self.check("P2 {} [{}] bundle members identical to the SR files (GNU tar reads "
                   "it)".format(label, self.codec(self.mode)), same and sorted(os.listdir(out)) == sorted(os.listdir(info["stage"])))
        shutil.rmtree(out)

    def download_nginx(self, label, info, bundle):
        n = self.nginx
        out = self.fresh(label, "curl-tar")
        t_orig = self.baseline(("P1", label), lambda: self.pipeline(
            ["curl", "-sSf", "{}/{}".format(n.url, bundle)], ["tar", "-xz", "-C", out]))
        shutil.rmtree(out)
        sr = self.fresh(label, "sr-down")
        res = self.worker("download", "nginx", n.url, n.root, bundle, sr)
        leaf = os.path.join(sr, res["result"]["root"]["uuid"] + ".vhd")
        self.check("P1 {} [{}] downloaded chain reads as the reference".format(
            label, self.codec(self.mode)),
                   gen.chain_digest(leaf) == info["digest"])
        shutil.rmtree(sr)
        return t_orig, res

    def p1_p2(self, label, info, report_rows):
        t_up, gz_size, up, ours_size = self.upload_nginx(label, info)
        bundle = "up/orig-{}.tgz".format(label)
        bpath = os.path.join(self.nginx.root, bundle)
        if not os.path.exists(bpath + ".json"):
            md5, sha = _digests(bpath)
            write_sidecar(self.nginx.root, bundle, gz_size, md5, sha)
        t_down, down = self.download_nginx(label, info, bundle)
        info.setdefault("runs", {})[self.mode] = dict(up=up, down=down)
        info.update(gz_size=gz_size, ours_size=ours_size)
        if not report_rows:
            return
        (t_up, cpu_up), (t_down, cpu_down) = t_up, t_down
        tar_bytes = info["files"]
        ratio = t_down / down["seconds"]
        self.row(id="P1", what="download from nginx into an SR, gzip -6 bundle of {:.0f} MiB "
                 "(vhdport: transfer.download, hashed + verified + fsync'd; original: "
                 "curl \\| tar -xz)".format(gz_size / MIB),
                 vhdport="{:.2f} s ({:.1f} CPU-s), {:.0f} MiB/s gz, {:.0f} MiB/s virtual".format(
                     down["seconds"], down["cpu_s"], report.rate(gz_size, down["seconds"]),
                     report.rate(info["virtual"], down["seconds"])),
                 baseline="{:.2f} s ({:.1f} CPU-s), {:.0f} MiB/s gz".format(
                     t_down, cpu_down, report.rate(gz_size, t_down)),
                 ratio=ratio, target=">= {}x".format(self.target("P1")),
                 met=ratio >= self.target("P1"),
                 measured=[down["seconds"], down["cpu_s"], t_down, cpu_down])
        ratio = t_up / up["seconds"]
        self.row(id="P2", what="upload to nginx (PUT), {:.0f} MiB of VHDs (vhdport: "
                 "transfer.upload; original: tar -cz \\| curl -T -)".format(tar_bytes / MIB),
                 vhdport="{:.2f} s ({:.1f} CPU-s), {:.0f} MiB/s of tar".format(
                     up["seconds"], up["cpu_s"], report.rate(tar_bytes, up["seconds"])),
                 baseline="{:.2f} s ({:.1f} CPU-s), {:.0f} MiB/s of tar".format(
                     t_up, cpu_up, report.rate(tar_bytes, t_up)),
                 ratio=ratio, target=">= {}x".format(self.target("P2")),
                 met=ratio >= self.target("P2"),
                 measured=[up["seconds"], up["cpu_s"], t_up, cpu_up])
        size_ratio = ours_size / gz_size
        self.row(id="P2", what="compressed size relative to gzip -6",
                 vhdport="{:.1f} MiB".format(ours_size / MIB),
                 baseline="{:.1f} MiB".format(gz_size / MIB), ratio=size_ratio,
                 target="<= {}x".format(self.target("P2size")),
                 met=size_ratio <= self.target("P2size"))

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

    def p3_qemu(self, info):
        """qemu-img's import and export, once (no codec involved):
        {(op, cache): (seconds, CPU seconds)}."""
        ref, size = info["ref"], info["virtual"]
        qemu = shutil.which("qemu-img")
        if not qemu:
            self.skip("P3 qemu-img rows skipped: qemu-img not installed")
            return None
        ours_vhd, q_vhd = self.path("p3-ours.vhd"), self.path("p3-qemu.vhd")
        exp_q = self.path("p3-export-qemu.raw")
        times = {}
        for cache in ("unsafe", "writeback"):
            for p in (ours_vhd, q_vhd, exp_q):
                _rm(p)
            # inputs were written minutes ago and may have left the page cache: read them
            # back first so neither side pays for a cold cache the other then warms
            gen.sparse_digest(ref)
            took = self.timed([qemu, "convert", "-t", cache, "-f", "raw", "-O", "vpc", "-o",
                               "subformat=dynamic,force_size=on", ref, q_vhd])
            times["import", cache] = (took, self.child_cpu)
            self.timed(VHDPORT + ["vhd", "import", ref, ours_vhd], vhdport=True,
                       stdout=subprocess.DEVNULL)
            gen.sparse_digest(ours_vhd)
            took = self.timed([qemu, "convert", "-t", cache, "-f", "vpc", "-O", "raw",
                               ours_vhd, exp_q])
            times["export", cache] = (took, self.child_cpu)
            if cache == "unsafe":
                self.check("P3 qemu-img reads vhdport's import as the raw input",
                           gen.sparse_digest(exp_q, size) == info["digest"])
                _rm(exp_q)
                self.timed(VHDPORT + ["vhd", "export", q_vhd, exp_q], vhdport=True)
                self.check("P3 vhdport reads qemu-img's VHD as the raw input",
                           gen.sparse_digest(exp_q, size) == info["digest"])
        for p in (ours_vhd, q_vhd, exp_q):
            _rm(p)
        return times

    def p3(self, info, qemu_times):
        """vhdport's import and export in the current mode, against qemu-img's."""
        ref, size = info["ref"], info["virtual"]
        ours_vhd, exp_ours = self.path("p3-ours.vhd"), self.path("p3-export-ours.raw")
        for p in (ours_vhd, exp_ours):
            _rm(p)
        gen.sparse_digest(ref)
        t_imp = (self.timed(VHDPORT + ["vhd", "import", ref, ours_vhd], vhdport=True,
                            stdout=subprocess.DEVNULL), self.child_cpu)
        gen.sparse_digest(ours_vhd)
        t_exp = (self.timed(VHDPORT + ["vhd", "export", ours_vhd, exp_ours], vhdport=True),
                 self.child_cpu)
        self.check("P3 [{}] vhd import -> vhd export round trip equals the raw input".format(
            self.codec(self.mode)), gen.sparse_digest(exp_ours) == info["digest"])
        for p in (ours_vhd, exp_ours):
            _rm(p)
        if not qemu_times:
            return
        # qemu-img convert defaults to -t unsafe (never flushes); vhdport fsyncs, so the
        # target compares with -t writeback (flushes at the end): like for like
        for op, ours, what in (("import", t_imp, "import raw -> VHD (`vhd import` vs qemu-img "
                                "convert -t writeback -O vpc)"),
                               ("export", t_exp, "export VHD -> raw (`vhd export` vs qemu-img "
                                "convert -t writeback -f vpc -O raw)")):
            theirs = qemu_times[op, "writeback"]
            self.row(id="P3", what=what + ", {} MiB virtual".format(size // MIB),
                     vhdport=_secs(ours), baseline=_secs(theirs), ratio=theirs[0] / ours[0],
                     target=">= 1.0x", met=theirs[0] / ours[0] >= self.target("P3"),
                     measured=list(ours) + list(theirs))
        if self.mode == "fast":
            for op, ours in (("import", t_imp), ("export", t_exp)):
                theirs = qemu_times[op, "unsafe"]
                self.row(id="P3", what="{}, qemu-img with its default `-t unsafe` (never "
                         "flushes; vhdport fsyncs)".format(op),
                         vhdport=_secs(ours), baseline=_secs(theirs),
                         ratio=theirs[0] / ours[0], target="(informative)", met=None)

    def p4(self, info):
        size = info["virtual"]
        chain_raw = self.path("p4.raw")
        _rm(chain_raw)
        for name in os.listdir(info["stage"]):
            _warm(os.path.join(info["stage"], name))
        t_chain = self.timed(VHDPORT + ["vhd", "export", info["leaf_path"], chain_raw],
                             vhdport=True)
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
            a = small["runs"][self.mode][key]["maxrss_mib"]
            b = full["runs"][self.mode][key]["maxrss_mib"]
            ok = max(a, b) < self.target("P5") and b - a < 10
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
                     target="< 2 s", met=seconds < self.target("P6"))
        shutil.rmtree(work)

    def p6_qcow2(self):
        """P6 for a QCOW2 VDI (issue #14): 2 TiB virtual, 10 MiB allocated, same four steps."""
        work = self.fresh("p6-qcow2")
        res = self.worker("sparse-qcow2", work, self.nginx.url, self.nginx.root)
        r = res["result"]
        self.check("P6 2 TiB sparse QCOW2 VDI: export holds the written data, holes stay holes",
                   r["ok"] and r["raw_allocated"] < 64 * MIB,
                   "raw file allocates {:.0f} MiB".format(r["raw_allocated"] / MIB))
        for step, seconds in r["steps"].items():
            self.row(id="P6", what="QCOW2 2 TiB virtual, 10 MiB allocated: {}".format(step),
                     vhdport="{:.2f} s".format(seconds), baseline="-",
                     target="< 2 s", met=seconds < self.target("P6"))
        shutil.rmtree(work)

    # ---------------------------------------------------------------------- run

    def run(self):
        a = self.args
        full = self.make_input("full", a.virtual_mib)
        small = self.make_input("small", a.small_mib)
        if nginx_binary() and shutil.which("curl"):
            self.nginx = Nginx(self.path("nginx")).start()
            try:
                for self.mode, _env in MODES:
                    print("[{}] P1/P2 at {} MiB (for P5)".format(self.mode, a.small_mib),
                          flush=True)
                    self.p1_p2("small", small, report_rows=False)
                    print("[{}] P1/P2 at {} MiB".format(self.mode, a.virtual_mib), flush=True)
                    self.p1_p2("full", full, report_rows=True)
                    self.p5(full, small)
                self.mode = "fast"
                if not a.no_glance:
                    print("P1/P2 with the real Glance", flush=True)
                    try:
                        self.p1_p2_glance(full)
                    finally:
                        if self.glance is not None:
                            self.glance.stop()
                print("P6", flush=True)
                self.p6()
                self.p6_qcow2()
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
        qemu_times = self.p3_qemu(full)
        for self.mode, _env in MODES:
            self.p3(full, qemu_times)
        self.mode = "fast"
        self.p4(full)
        from bench import qcow2_bench       # QCOW2 rows (issue #13) live in their own module
        qcow2_bench.add_to(self, min(a.virtual_mib, 1024))
        from bench import digest_bench      # content digest rows (issue #14): their own module
        digest_bench.add_to(self)

    def skip(self, note):
        self.notes.append(note)
        self.skipped.append(note)

    def results(self):
        full, small = self.data["full"], self.data["small"]
        return {
            "machine": report.machine(), "quick": self.args.quick,
            "codecs": {"fast": self.fast_codec, "stdlib": "zlib"},
            "codec_versions": _codec_versions(),
            "threads": _default_threads(),
            "sizes": {"virtual_mib": full["virtual"] // MIB,
                      "small_virtual_mib": small["virtual"] // MIB,
                      "written_mib": round(full["written"] / MIB),
                      "files_mib": round(full["files"] / MIB)},
            "rows": self.rows, "checks": self.checks, "notes": self.notes,
            "skipped": self.skipped, "no_glance": self.args.no_glance,
        }


def _secs(timing):
    """(wall, CPU) seconds as the table shows them."""
    return "{:.2f} s ({:.1f} CPU-s)".format(*timing)


def _children_cpu():
    use = resource.getrusage(resource.RUSAGE_CHILDREN)
    return use.ru_utime + use.ru_stime


def _codec_versions():
    import zlib
    versions = {"zlib": zlib.ZLIB_RUNTIME_VERSION}
    try:
        import isal
        versions["isal"] = isal.__version__
    except ImportError:
        pass
    return versions


def _fast_codec():
    """What the fast mode gets here (isal if installed; zlib otherwise -- then both modes
    measure the same thing, and the header says so)."""
    from vhdport.bundle import codec
    return "isal" if codec.isal_installed() else "zlib"


def _default_threads():
    from vhdport.bundle import codec
    return codec.default_threads()


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
    "CPU-s: user + system CPU seconds of the timed operation (vhdport: all its threads; "
    "original: all processes of the pipeline). Wall time well above CPU-s / cores means the "
    "step waited -- for I/O, or for CPU taken by other work on the machine (see the load "
    "average in the header).",
]


#: what profiling (py-spy, cProfile, CPU seconds) showed limits a row; printed under a missed row
_P3 = ("P3 bottleneck: the device. `vhd import` spends ~0.2 CPU-s per GiB of raw input "
       "(cProfile: reads and writes through the page cache, the final fsync); the rest of its "
       "wall time is write-back, which qemu-img -t writeback pays too. Tried for issue #12 "
       "and not kept: sync_file_range(WRITE) every 64 MiB instead of fdatasync in a thread "
       "(slower: 1.6-4.5 s vs 0.9-2.9 s per GiB in interleaved runs), and copy-free zero "
       "checks / one pwritev of bitmap + block (they save CPU the import does not spend; no "
       "change measured). Direct I/O for import data did not help either (ext4 serialises "
       "it against the buffered metadata writes to the same file).")
_P5 = ("P5: peak RSS is the interpreter and imported modules plus bounded buffers "
       "(read-ahead 4 x 1 MiB, inflate-ahead 2 x 1 MiB, 3 x 4 MiB write buffers; upload: "
       "threads + 2 deflate blocks of 1 MiB in flight).")
_P6 = ("P6 bottleneck: the 4 MiB BAT of a 2040 GiB disk is read, checked and rewritten "
       "(relink) in Python on each step.")
BOTTLENECKS = {
    ("P1", "fast"): "P1 [fast] bottleneck: vhdport's own work is reading + md5 + sha512 of every "
                    "compressed byte (checked against the store's record; the original hashes "
                    "nothing), inflating (isal) and parsing + direct-I/O writes, in three "
                    "threads. Where the cores-busy figure below is well under the usable cores, "
                    "the rest of the wall time went waiting for CPU that other work held (see "
                    "the load average in the header).",
    ("P1", "stdlib"): "P1 [stdlib] bottleneck: zlib's inflate, the longest stage, runs on one "
                      "core (a deflate stream cannot be inflated in parallel); reading + "
                      "hashing and parsing + writes overlap with it in their own threads. Its "
                      "share of a busy machine's CPU bounds the ratio (cores-busy below). "
                      "perf, 1 GiB virtual chain from a local store (2.3 CPU-s): libz 45 % "
                      "(inflate, with its CRC-32 5 %), md5 + sha512 22 %, kernel 18 % (page "
                      "faults of fresh 1 MiB buffers, direct-I/O writes), memcpy 8.5 %, the "
                      "interpreter 6 %: the CPU is the work itself. Buffered writes instead of "
                      "direct I/O measured slower (4.6-6.7 s vs 4.0-4.9 s wall).",
    ("P2", "fast"): "P2 [fast] bottleneck: the calling thread reads the files, hashes the "
                    "compressed stream (md5 + sha512) and sends it while isal deflates in the "
                    "workers (thread_time: 1.0 CPU-s per 442 MiB of VHDs in that thread, 1.8 "
                    "with the former single-stream writer). The original gzip runs alone in "
                    "its own process; on a busy machine both get a fraction of the cores.",
    ("P2", "stdlib"): "P2 [stdlib] bottleneck: zlib level-6 deflate, ~90 % of the CPU-s, runs "
                      "in one worker per usable core; the speed-up over single-stream gzip is "
                      "the number of cores the process actually gets (cores-busy below). "
                      "Measured alone on the same data (load ~3 on 2 cores), 2 threads took "
                      "27.6 s and 1 thread 54.6 s (1.98x; tar -cz 50.6 s). On a heavily "
                      "oversubscribed machine one process with several threads got fewer "
                      "cores than the three processes of the original pipeline (cores-busy "
                      "below); a likely cause is the GIL: a thread preempted by the OS while "
                      "it holds the GIL stalls the process's other threads.",
    ("P3", "fast"): _P3, ("P3", "stdlib"): _P3,
    ("P5", "fast"): _P5, ("P5", "stdlib"): _P5,
    ("P6", "fast"): _P6,
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
    p.add_argument("--from-json", metavar="FILE",
                   help="measure nothing: render the table (and --doc) from a results file")
    a = p.parse_args(argv)
    args_shown = " ".join(argv if argv is not None else sys.argv[1:])
    if a.from_json:
        with open(a.from_json) as f:
            results = json.load(f)
        if "run_notes" not in results:   # files written before run_notes existed
            results["run_notes"] = [n for n in results["notes"] if "skipped" in n]
        args_shown = results.get("args") or "(table re-rendered from {})".format(a.from_json)
        a.quick, a.no_glance = results.get("quick", False), results.get("no_glance", False)
        return _finish(results, a, args_shown, results.get("skipped", []), write_json=False)
    if a.virtual_mib is None:
        a.virtual_mib = 256 if a.quick else 4096
    if a.small_mib is None:
        a.small_mib = max(64, a.virtual_mib // 4 // 2 * 2)
    if a.quick:
        a.no_glance = True
        a.no_objstores = True
    if a.doc and doc_refusal(a):
        print("bench: not writing {}: {}".format(a.doc, "; ".join(doc_refusal(a))),
              file=sys.stderr)
        return 1
    bench = Bench(a)
    started = time.perf_counter()
    try:
        bench.run()
    finally:
        if not a.keep:
            shutil.rmtree(bench.work, ignore_errors=True)
    results = bench.results()
    results["run_notes"] = results.pop("notes")
    results["elapsed_s"] = round(time.perf_counter() - started, 1)
    results["machine"]["load_at_end"] = report.load_average()
    results["args"] = args_shown
    return _finish(results, a, args_shown, bench.skipped)


def _measured(row, cores):
    """What the clocks say about a missed row: how many cores each side kept busy."""
    ours_s, ours_cpu, theirs_s, theirs_cpu = row["measured"]
    return ("- measured, {} [{}] {}: vhdport {:.1f} CPU-s in {:.2f} s ({:.2f} of {} cores busy "
            "on average); original / qemu-img {:.1f} CPU-s in {:.2f} s ({:.2f} cores).".format(
                row["id"], row.get("codec"), row["what"].split(" (")[0].split(",")[0],
                ours_cpu, ours_s, ours_cpu / ours_s if ours_s else 0, cores, theirs_cpu,
                theirs_s, theirs_cpu / theirs_s if theirs_s else 0))


def _finish(results, a, args_shown, skipped, write_json=True):
    """Notes (general, of this run, bottlenecks of missed rows), table, JSON, doc; exit status."""
    missed = []
    for row in results["rows"]:
        key = (row["id"], row.get("mode"))
        if row.get("met") is False and key in BOTTLENECKS and key not in missed:
            missed.append(key)
    notes = NOTES + results["run_notes"]
    cores = results["machine"].get("usable_cores") or results["machine"]["cores"]
    for key in missed:   # one note may cover a row in both modes
        measured = [_measured(row, cores) for row in results["rows"]
                    if (row["id"], row.get("mode")) == key and row.get("met") is False
                    and row.get("measured")]
        text = BOTTLENECKS[key]
        if text not in notes:
            notes.append(text)
        notes.extend(measured)
    results["notes"] = notes
    table = report.render(results)
    print()
    print(table)
    if write_json:
        out = a.json or os.path.join(HERE, "results-{}.json".format(
            "quick" if a.quick else "full"))
        with open(out, "w") as f:
            json.dump(results, f, indent=1)
    refused = doc_refusal(a, skipped) if a.doc else []
    if refused:
        print("bench: NOT writing {}: this run is partial: {}".format(a.doc, "; ".join(refused)),
              file=sys.stderr)
    elif a.doc:
        with open(a.doc, "w") as f:
            f.write("# vhdport benchmarks\n\nGenerated by `make bench` (`python -m bench.run "
                    "{}`) in {:.0f} s; do not edit by hand.\n\n".format(
                        args_shown, results["elapsed_s"]))
            f.write(table)
    wrong = [c for c in results["checks"] if not c["ok"]]
    if wrong:
        print("WRONG OUTPUT: " + "; ".join(c["what"] for c in wrong), file=sys.stderr)
        return 1
    return 1 if refused else 0


if __name__ == "__main__":
    sys.exit(main())
