"""Downloads (and uploads) while XenServer's GC rule runs in a loop in another process, and a
lock-free scanner in a third process watches for a hidden VHD without children.

Controls make the adversaries prove they work: garbage seeded in the SR must be
deleted by the GC loop (and nothing else), and the scanner must report that
garbage while it is still there.
"""

import json
import os
import subprocess
import sys
import time

import pytest

from tests.transfer.helpers import (FORMATS, MiB, assert_chain_clean, build_chain, make_sr,
                                    staging_leftovers, vdi_file, vdi_sha256)
from vhdport import transfer
from vhdport.qcow2 import set_hidden as qcow2_set_hidden
from vhdport.sr import SR
from vhdport.stores.local import LocalStore
from vhdport.vhd import set_hidden as vhd_set_hidden

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


class Loop(object):
    """One adversary process of tests.transfer.loops; stopped through its stop file."""

    def __init__(self, kind, sr_path, workdir):
        self.stop_file = os.path.join(workdir, kind + ".stop")
        self.out = os.path.join(workdir, kind + ".json")
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "tests.transfer.loops", kind, sr_path, self.stop_file,
             self.out], cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
            universal_newlines=True)

    def wait_ready(self, timeout=20):
        deadline = time.monotonic() + timeout
        while not os.path.exists(self.out + ".ready"):
            if self.proc.poll() is not None:
                raise AssertionError("loop died: " + self.proc.stderr.read())
            assert time.monotonic() < deadline, "loop did not start"
            time.sleep(0.01)

    def finish(self):
        with open(self.stop_file, "w"):
            pass
        try:
            _, err = self.proc.communicate(timeout=30)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.communicate()
            raise
        assert self.proc.returncode == 0, err
        with open(self.out) as f:
            return json.load(f)

    def kill(self):
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.communicate()


def seed_garbage(sr_path, fmt="vhd"):
    """A lone hidden childless disk and a hidden two-deep chain: 3 disks the GC must delete."""
    lone = "0aaaaaaa-0000-4000-8000-000000000001"
    base = "0aaaaaaa-0000-4000-8000-000000000002"
    child = "0aaaaaaa-0000-4000-8000-000000000003"
    build_chain(sr_path, 1, 4 * MiB, names=[lone], fmt=fmt, seed=41)
    build_chain(sr_path, 2, 4 * MiB, names=[child, base], fmt=fmt, seed=42)   # base hidden
    set_hidden = qcow2_set_hidden if fmt == "qcow2" else vhd_set_hidden
    for u in (lone, child):
        set_hidden(vdi_file(sr_path, u), True)
    return {lone, base, child}


@pytest.fixture(params=FORMATS)
def images(tmp_path, request):
    """Five images (chains of depth 1..5, of each format in turn) in a local store, with their
    expected contents; ``fmt`` the format."""
    fmt = request.param
    src = make_sr(tmp_path / "src")
    store = LocalStore(str(tmp_path / "store"))
    made = []
    for depth in range(1, 6):
        uuids, model = build_chain(src, depth, (8 + 4 * depth) * MiB, dense=depth % 2 == 0,
                                   seed=100 + depth, fmt=fmt)
        image_id = transfer.upload(src, uuids[0], store, name="race-{}".format(depth))
        made.append((image_id, depth, model.sha256()))
    return store, made, fmt


def test_downloads_under_gc_and_scanner(tmp_path, images):
    store, made, fmt = images
    sr_path = make_sr(tmp_path / "dst")
    keep, keep_model = build_chain(sr_path, 3, 8 * MiB, seed=1, fmt=fmt)   # an existing VM disk
    garbage = seed_garbage(sr_path, fmt)
    work = str(tmp_path)

    scanner = Loop("scan", sr_path, work)
    gc = None
    try:
        scanner.wait_ready()          # its first scan saw the seeded garbage
        gc = Loop("gc", sr_path, work)
        gc.wait_ready()
        landed = []
        for round_ in range(2):
            for image_id, depth, expected in made:
                result = transfer.download(store, image_id, sr_path)
                assert len(result["chain"]) == depth
                landed.append((result, expected))
        # the other pipeline too: upload a downloaded chain while the GC runs
        reup = transfer.upload(sr_path, landed[-1][0]["root"]["uuid"], store, name="reup")
        time.sleep(0.2)               # let the GC pass over the final state a few times
        gc_report = gc.finish()
        scan_report = scanner.finish()
    finally:
        for loop in (gc, scanner):
            if loop is not None:
                loop.kill()

    # the GC ran many passes, deleted exactly the seeded garbage, and never aborted
    assert gc_report["errors"] == []
    assert gc_report["passes"] >= 5, gc_report
    assert sorted(gc_report["deleted"]) == sorted(garbage)
    # the scanner worked (it saw the garbage) and never saw any other hidden childless VHD
    assert scan_report["scans"] >= 5
    seen = set(v["uuid"] for v in scan_report["violations"])
    assert garbage & seen, "the scanner never saw the seeded garbage: it proves nothing"
    assert seen <= garbage, [v for v in scan_report["violations"] if v["uuid"] not in garbage]

    vdis = SR(sr_path).vdis()
    for result, expected in landed:
        assert set(result["chain"]) <= set(vdis)
        assert vdi_sha256(sr_path, result["root"]["uuid"]) == expected
        assert_chain_clean(sr_path, result["root"]["uuid"])
    assert set(keep) <= set(vdis)
    assert vdi_sha256(sr_path, keep[0]) == keep_model.sha256()
    assert not garbage & set(vdis)
    assert staging_leftovers(sr_path) == []
    # the uploaded copy is the chain it came from
    out = make_sr(tmp_path / "check")
    again = transfer.download(store, reup, out)
    assert vdi_sha256(out, again["root"]["uuid"]) == landed[-1][1]


def test_gc_after_downloads_deletes_nothing(tmp_path, images):
    """A plain control: one GC pass over a SR of freshly downloaded chains deletes nothing."""
    store, made, _fmt = images
    sr_path = make_sr(tmp_path / "dst")
    for image_id, _, _ in made:
        transfer.download(store, image_id, sr_path)
    before = sorted(SR(sr_path).vdis())
    assert SR(sr_path).gc() == []
    assert sorted(SR(sr_path).vdis()) == before


def test_two_downloads_racing_for_the_same_uuids(tmp_path, images):
    """Both ask for the same VDI uuids: exactly one chain lands, the loser lands nothing."""
    import threading
    from tests.transfer.helpers import new_uuid
    from vhdport.errors import SRError
    store, made, _fmt = images
    image_id, depth, expected = made[3]
    sr_path = make_sr(tmp_path / "dst")
    wanted = [new_uuid() for _ in range(depth)]
    barrier = threading.Barrier(2)
    outcomes = []

    def run():
        barrier.wait()
        try:
            outcomes.append(transfer.download(store, image_id, sr_path, uuids=wanted))
        except SRError as e:
            outcomes.append(e)
    threads = [threading.Thread(target=run) for _ in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    wins = [o for o in outcomes if isinstance(o, dict)]
    losses = [o for o in outcomes if isinstance(o, SRError)]
    assert len(wins) == 1 and len(losses) == 1, outcomes
    assert wins[0]["chain"] == wanted
    assert sorted(SR(sr_path).vdis()) == sorted(wanted)
    assert vdi_sha256(sr_path, wanted[0]) == expected
    assert_chain_clean(sr_path, wanted[0])
    assert staging_leftovers(sr_path) == []
