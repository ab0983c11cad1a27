import json
import os
import time

import pytest

from vhdport.errors import ChainError, SRError
from vhdport.sr import SR
from vhdport.vhd import VhdFile

from tests.sr.helpers import FORMATS, make_vhd, read_chain, staged_chain, suffix, vhd_names
from tests.sr.proc import start


@pytest.mark.parametrize("fmt", FORMATS)
def test_publish_moves_chain_and_cleans_staging(tmp_path, fmt):
    sr_dir = str(tmp_path)
    sr = SR(sr_dir)
    with sr.staging() as st:
        staged, data = staged_chain(st.path, 3, fmt=fmt)
        adopted = st.adopt(staged)
        final = sr.publish(adopted)
        assert os.listdir(st.path) == []
    assert final == [os.path.join(sr_dir, os.path.basename(p)) for p in adopted]
    uuids = [os.path.basename(p)[:-len(suffix(fmt))] for p in final]
    assert sr.chain_paths(uuids[0]) == final
    assert sr.leaves() == [uuids[0]]
    assert read_chain(final[0]) == data
    assert sr.gc() == []


@pytest.mark.parametrize("fmt", FORMATS)
def test_publish_collision_leaves_nothing_behind(tmp_path, fmt):
    sr_dir = str(tmp_path)
    sr = SR(sr_dir)
    with sr.staging() as st:
        staged, data = staged_chain(st.path, 3, fmt=fmt)
        adopted = st.adopt(staged)
        # someone else takes the middle uuid between adopt and publish
        taken = os.path.basename(adopted[1])[:-len(suffix(fmt))]
        make_vhd(sr_dir, name=taken, fmt=fmt)
        before = os.stat(os.path.join(sr_dir, taken + suffix(fmt)))
        with pytest.raises(SRError, match="already exists"):
            sr.publish(adopted)
        assert vhd_names(sr_dir) == [taken + suffix(fmt)]
        after = os.stat(os.path.join(sr_dir, taken + suffix(fmt)))
        assert (before.st_ino, before.st_size) == (after.st_ino, after.st_size)
        assert all(os.path.exists(p) for p in adopted)     # back in staging, intact
        assert read_chain(adopted[0]) == data
    assert vhd_names(sr_dir) == [taken + suffix(fmt)]


@pytest.mark.parametrize("fmt", FORMATS)
def test_publish_refuses_unadopted_or_bad_chains(tmp_path, fmt):
    sr_dir = str(tmp_path)
    sr = SR(sr_dir)
    with sr.staging() as st:
        staged, _ = staged_chain(st.path, 3, fmt=fmt)
        with pytest.raises(SRError, match="adopt"):
            sr.publish(staged)
        adopted = st.adopt(staged)
        with pytest.raises(SRError, match="hidden leaf"):
            sr.publish(list(reversed(adopted)))
        with pytest.raises(ChainError, match="in order"):
            sr.publish([adopted[0], adopted[2], adopted[1]])
        with pytest.raises(ChainError, match="down to the base"):
            sr.publish(adopted[:1])
        with pytest.raises(SRError, match="empty"):
            sr.publish([])
    assert vhd_names(sr_dir) == []


def _stop(procs, stopfile):
    with open(stopfile, "w"):
        pass
    for p in procs:
        try:
            p.wait(60)
        finally:
            if p.poll() is None:
                p.kill()
                p.wait(10)


def _seed_garbage(sr_dir, count):
    return set(make_vhd(sr_dir, hidden=True) for _ in range(count))


@pytest.mark.slow
def test_publish_leaf_first_under_concurrent_gc_and_scanner(tmp_path):
    """A GC loop and a lock-free scanner in other processes while many chains arrive:
    GC deletes only the garbage that was there, the scanner never sees a hidden
    childless VHD of an arriving chain."""
    sr_dir = str(tmp_path / "sr")
    os.mkdir(sr_dir)
    stopfile = str(tmp_path / "stop")
    garbage = _seed_garbage(sr_dir, 3)
    gc_out, scan_out = str(tmp_path / "gc.json"), str(tmp_path / "scan.json")
    procs = [start("gc-loop", sr_dir, stopfile, gc_out),
             start("scan-loop", sr_dir, stopfile, scan_out)]
    published = []
    try:
        sr = SR(sr_dir)
        for i in range(40):
            with sr.staging() as st:
                staged, data = staged_chain(st.path, 3, tag=bytes([97 + i % 26]))
                final = sr.publish(st.adopt(staged))
                published.append((final, data))
            if i == 20:
                garbage |= _seed_garbage(sr_dir, 2)   # GC keeps working during the run
        time.sleep(0.5)
    finally:
        _stop(procs, stopfile)
    with open(gc_out) as f:
        gc = json.load(f)
    with open(scan_out) as f:
        scan = json.load(f)
    assert gc["passes"] > 5 and scan["scans"] > 5
    assert gc["aborted"] == 0
    assert sorted(gc["deleted"]) == sorted(garbage)
    assert set(scan["hidden_childless"]) <= garbage
    vdis = SR(sr_dir).vdis()
    for final, data in published:
        assert all(os.path.exists(p) for p in final)
        assert read_chain(final[0]) == data
        assert vdis[os.path.basename(final[1])[:-4]].hidden


def _naive_publish(sr_dir, paths):
    """Base first, what publish must NOT do -- proves the scanner would notice."""
    for src in reversed(paths):
        os.rename(src, os.path.join(sr_dir, os.path.basename(src)))
        time.sleep(0.05)


@pytest.mark.slow
def test_scanner_detects_base_first_publishing(tmp_path):
    sr_dir = str(tmp_path / "sr")
    os.mkdir(sr_dir)
    stopfile = str(tmp_path / "stop")
    scan_out = str(tmp_path / "scan.json")
    procs = [start("scan-loop", sr_dir, stopfile, scan_out)]
    hidden_parents = set()
    try:
        sr = SR(sr_dir)
        time.sleep(0.3)
        for i in range(5):
            with sr.staging() as st:
                staged, _ = staged_chain(st.path, 3)
                adopted = st.adopt(staged)
                hidden_parents.update(os.path.basename(p)[:-4] for p in adopted[1:])
                _naive_publish(sr_dir, adopted)
    finally:
        _stop(procs, stopfile)
    with open(scan_out) as f:
        scan = json.load(f)
    assert set(scan["hidden_childless"]) & hidden_parents


def test_publish_fsyncs_and_keeps_file_contents(tmp_path):
    sr_dir = str(tmp_path)
    sr = SR(sr_dir)
    with sr.staging() as st:
        staged, _ = staged_chain(st.path, 2)
        adopted = st.adopt(staged)
        uuids = []
        for p in adopted:
            with VhdFile.open(p) as d:
                uuids.append(d.uuid)
        inodes = [os.stat(p).st_ino for p in adopted]
        final = sr.publish(adopted)
    assert [os.stat(p).st_ino for p in final] == inodes     # moved, not copied
    for p, u in zip(final, uuids):
        with VhdFile.open(p) as d:
            assert d.uuid == u


def test_published_qcow2_chain_is_what_qemu_img_reads(tmp_path):
    from tests.qcow2.qemu import check, qemu_img, require_qemu
    require_qemu()
    sr_dir = str(tmp_path)
    sr = SR(sr_dir)
    with sr.staging() as st:
        staged, data = staged_chain(st.path, 3, fmt="qcow2")
        final = sr.publish(st.adopt(staged))
    chain = json.loads(qemu_img("info", "--backing-chain", "--output=json", "-f", "qcow2",
                                final[0]).stdout)
    assert [os.path.basename(c["filename"]) for c in chain] == [os.path.basename(p) for p in final]
    assert [c["backing-filename"] for c in chain[:-1]] == [os.path.basename(p) for p in final[1:]]
    for p in final:
        check(p, with_backing=True)
    vdis = sr.vdis()
    assert [vdis[os.path.basename(p)[:-len(".qcow2")]].hidden for p in final] == \
        [False, True, True]
    assert read_chain(final[0]) == data
