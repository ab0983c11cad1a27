"""R5 concurrency: 8 downloads of different images into one SR, in parallel processes,
while another process runs XenServer's GC rule in a loop (and, in the second case,
a third one keeps snapshotting a VDI of the same SR).

All downloads must succeed, every chain must be intact (vhd.check_chain, content
read back), the GC must delete nothing, and a lock-free scanner in the test process
must never see a hidden VHD without children (what XenServer's own GC would delete).
"""

import json
import os
import subprocess
import sys
import threading
import time

import pytest

from tests.hostile.conftest import bundle_bytes, put_image, tree_digest
from tests.hostile.scripts.chains import content_sha, random_chain
from vhdport.sr import SR
from vhdport.stores.local import LocalStore
from vhdport.vhd.check import check_chain

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
SCRIPT = os.path.join(REPO, "tests", "hostile", "scripts", "crashrun.py")
WORKERS = 8


@pytest.fixture(scope="module")
def images(tmp_path_factory):
    """A local store with 8 different images (chains 1 to 4 deep, random data)."""
    root = str(tmp_path_factory.mktemp("r5"))
    store = LocalStore(os.path.join(root, "store"))
    made = []
    for i in range(WORKERS):
        src = os.path.join(root, "src{}".format(i))
        os.makedirs(src)
        chain = random_chain(src, 1 + i % 4, seed=500 + i, size=4 << 20)
        made.append((put_image(store, bundle_bytes(chain, level=1), name="r5-{}".format(i)),
                     1 + i % 4, content_sha(chain[0])))
    return store.root, made


def spawn(*args):
    return subprocess.Popen([sys.executable, SCRIPT, "none"] + [str(a) for a in args],
                            cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            universal_newlines=True)


def _names(sr):
    out = {}
    for entry in os.scandir(sr):
        if entry.name.endswith(".vhd"):
            try:
                out[entry.name] = entry.inode()
            except OSError:
                pass
    return out


class Scanner(threading.Thread):
    """Scan the SR without any lock, recording hidden childless VHDs.

    A scan reads files one by one, so a snapshot's rename between the listing and a read
    can show a graph that never existed (an old base whose child was just renamed away).
    Scans during which any name or inode changed are therefore discarded (``torn``):
    what is recorded is a state the SR really was in.
    """

    def __init__(self, sr):
        super().__init__(daemon=True)
        self.path = sr
        self.sr, self.stop, self.seen, self.scans, self.torn = SR(sr), threading.Event(), \
            set(), 0, 0

    def run(self):
        while not self.stop.is_set():
            before = _names(self.path)
            vdis = self.sr.vdis()
            if _names(self.path) != before:
                self.torn += 1
                continue
            for u, info in vdis.items():
                if info.hidden and not info.children:
                    self.seen.add(u)
            self.scans += 1


def run_parallel(tmp_path, images, snapshot_count=0):
    store_root, made = images
    sr = str(tmp_path / "sr")
    os.makedirs(sr)
    old_chain = random_chain(sr, 2, seed=599)
    old_leaf = os.path.basename(old_chain[0])[:-4]
    old_sha = content_sha(old_chain[0])
    old_digest = {k: v for k, v in tree_digest(sr).items() if k.endswith(".vhd")}
    stop = str(tmp_path / "stop")
    gc_out, snap_out = str(tmp_path / "gc.json"), str(tmp_path / "snap.json")
    scanner = Scanner(sr)
    scanner.start()
    gc = spawn("gc-loop", sr, stop, gc_out)
    snapper = spawn("snapshot-loop", sr, old_leaf, snapshot_count, snap_out) \
        if snapshot_count else None
    started = time.monotonic()
    workers = [spawn("download", store_root, image, sr) for image, _, _ in made]
    results = [w.communicate(timeout=120) + (w.returncode,) for w in workers]
    if snapper is not None:
        snapper.communicate(timeout=120)
    elapsed = time.monotonic() - started
    open(stop, "w").close()
    gc.communicate(timeout=60)
    scanner.stop.set()
    scanner.join(30)
    for out, err, rc in results:
        assert rc == 0, "a download failed: {}".format(err[-1500:])
    with open(gc_out) as f:
        gc_report = json.load(f)
    snaps = {"made": [], "errors": []}
    if snapper is not None:
        with open(snap_out) as f:
            snaps = json.load(f)
    vdis = SR(sr).vdis()
    for (out, _, _), (image, depth, sha) in zip(results, made):
        result = json.loads(out.strip().splitlines()[-1])
        chain = result["chain"]
        assert len(chain) == depth
        leaf = SR(sr).vdi_path(chain[0])
        assert SR(sr).chain_paths(chain[0], vdis) == [SR(sr).vdi_path(u) for u in chain]
        assert check_chain(leaf) == []
        assert content_sha(leaf) == sha, "image {} reads wrong data".format(image)
    assert gc_report["deleted"] == [] and gc_report["errors"] == [], gc_report
    assert scanner.seen == set(), "hidden childless VHDs seen: {}".format(scanner.seen)
    assert content_sha(SR(sr).vdi_path(old_leaf)) == old_sha
    for made_snap, _base in snaps["made"]:
        assert content_sha(SR(sr).vdi_path(made_snap)) == old_sha
    assert snaps["errors"] == []
    now = tree_digest(sr)
    for name in old_digest:   # old files: still there (the old leaf's file became a base)
        assert name in now
    assert [n for n in os.listdir(os.path.join(sr, ".vhdport-staging"))
            if n != ".root.lock"] == []
    for info in vdis.values():
        assert info.error is None
    assert scanner.scans > 0
    return {"passes": gc_report["passes"], "scans": scanner.scans, "elapsed": elapsed,
            "snapshots": len(snaps["made"]), "vdis": len(vdis)}


def test_eight_parallel_downloads_with_gc_loop(tmp_path, images, reliability_case):
    case = reliability_case(
        "R5", "8 downloads of different images (chains 1-4 deep) in parallel processes into "
        "one SR while a GC loop runs", "all succeed, chains intact and reading right, GC "
        "deletes nothing, no hidden childless VHD ever visible")
    stats = run_parallel(tmp_path, images)
    case.detail = "{passes} GC passes, {scans} lock-free scans, {vdis} VDIs, {elapsed:.1f} s" \
        .format(**stats)


def test_eight_parallel_downloads_with_gc_and_snapshots(tmp_path, images, reliability_case):
    case = reliability_case(
        "R5", "8 parallel downloads + GC loop + 8 snapshots of another VDI of the same SR",
        "all succeed, chains and snapshots intact, GC deletes nothing, no hidden childless VHD")
    stats = run_parallel(tmp_path, images, snapshot_count=8)
    assert stats["snapshots"] == 8
    case.detail = "{passes} GC passes, {scans} scans, {snapshots} snapshots, {vdis} VDIs, " \
        "{elapsed:.1f} s".format(**stats)
