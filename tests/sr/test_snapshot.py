import json
import os

import pytest

from vhdport.errors import LimitError, SRError
from vhdport.sr import SR
from vhdport.vhd import Chain, VhdFile

from tests.sr.helpers import FORMATS, make_chain, make_vhd, new_uuid, read_vdi, suffix, vhd_names


def _write(sr_dir, u, offset, data):
    with Chain.open(os.path.join(sr_dir, u + ".vhd"), writable=True) as chain:
        chain.write(offset, data)
        chain.flush()


def test_snapshot_of_a_base_vdi(tmp_path):
    sr_dir = str(tmp_path)
    vdi = make_vhd(sr_dir, writes=[(0, b"A" * 4096), (1 << 20, b"B" * 1000)])
    before = read_vdi(sr_dir, vdi)
    with VhdFile.open(os.path.join(sr_dir, vdi + ".vhd")) as d:
        old_vhd_uuid = d.uuid
    sr = SR(sr_dir)
    snap, base = sr.snapshot(vdi)
    vdis = sr.vdis()
    assert sorted(vdis) == sorted([vdi, snap, base])
    assert vdis[base].hidden and vdis[base].vhd_uuid == str(old_vhd_uuid)
    assert vdis[base].children == sorted([vdi, snap])
    assert not vdis[vdi].hidden and not vdis[snap].hidden
    assert vdis[vdi].type == vdis[snap].type == "differencing"
    assert read_vdi(sr_dir, vdi) == before
    assert read_vdi(sr_dir, snap) == before
    assert sr.chain_paths(vdi) == [vdis[vdi].path, vdis[base].path]
    assert sr.gc() == []
    assert os.listdir(os.path.join(sr_dir, ".vhdport-staging")) == [".root.lock"]

    # writes to the VDI do not show in the snapshot, nor the other way round
    _write(sr_dir, vdi, 0, b"Z" * 512)
    _write(sr_dir, snap, 1 << 20, b"Y" * 512)
    assert read_vdi(sr_dir, vdi, 0, 512) == b"Z" * 512
    assert read_vdi(sr_dir, snap, 0, 512) == b"A" * 512
    assert read_vdi(sr_dir, vdi, 1 << 20, 512) == b"B" * 512
    assert read_vdi(sr_dir, snap, 1 << 20, 512) == b"Y" * 512


@pytest.mark.parametrize("fmt", FORMATS)
def test_snapshot_deepens_an_existing_chain(tmp_path, fmt):
    sr_dir = str(tmp_path)
    leaf, mid, base = make_chain(sr_dir, 3, fmt=fmt)
    before = read_vdi(sr_dir, leaf)
    sr = SR(sr_dir)
    snap, new_base = sr.snapshot(leaf)
    assert len(sr.chain_paths(leaf)) == 4 and len(sr.chain_paths(snap)) == 4
    assert sr.vdis()[new_base].parent_uuid == mid
    assert read_vdi(sr_dir, leaf) == before == read_vdi(sr_dir, snap)
    # deleting the snapshot leaves nothing to collect (the base still has the VDI)
    os.unlink(os.path.join(sr_dir, snap + suffix(fmt)))
    assert sr.gc() == []
    # deleting the VDI too makes the whole hidden chain garbage
    os.unlink(os.path.join(sr_dir, leaf + suffix(fmt)))
    assert sr.gc() == [new_base, mid, base]


@pytest.mark.parametrize("fmt", FORMATS)
def test_snapshot_refusals(tmp_path, fmt):
    sr_dir = str(tmp_path)
    leaf, base = make_chain(sr_dir, 2, fmt=fmt)
    sr = SR(sr_dir)
    names = vhd_names(sr_dir)
    with pytest.raises(SRError, match="hidden"):
        sr.snapshot(base)
    with pytest.raises(SRError, match="not found"):
        sr.snapshot("00000000-0000-0000-0000-000000000000")
    assert vhd_names(sr_dir) == names


@pytest.mark.parametrize("fmt", FORMATS)
def test_snapshot_refuses_depth_beyond_30(tmp_path, fmt):
    sr_dir = str(tmp_path)
    names = make_chain(sr_dir, 30, fmt=fmt)
    sr = SR(sr_dir)
    before = vhd_names(sr_dir)
    with pytest.raises(LimitError, match="30"):
        sr.snapshot(names[0])
    assert vhd_names(sr_dir) == before


def test_snapshot_29_deep_allowed(tmp_path):
    sr_dir = str(tmp_path)
    names = make_chain(sr_dir, 29)
    snap, base = SR(sr_dir).snapshot(names[0])
    assert len(SR(sr_dir).chain_paths(snap)) == 30


def test_failed_snapshot_leaves_the_vdi_as_it_was(tmp_path, monkeypatch):
    """A failure after the VDI name was switched puts the original file back."""
    sr_dir = str(tmp_path)
    vdi = make_vhd(sr_dir, writes=[(0, b"Q" * 512)])
    path = os.path.join(sr_dir, vdi + ".vhd")
    ino = os.stat(path).st_ino
    import vhdport.sr.repo as repo

    def boom(p, hidden):
        raise OSError(5, "injected I/O error")
    monkeypatch.setattr(repo, "set_hidden", boom)
    with pytest.raises(OSError, match="injected"):
        SR(sr_dir).snapshot(vdi)
    assert vhd_names(sr_dir) == [vdi + ".vhd"]
    assert os.stat(path).st_ino == ino
    vdis = SR(sr_dir).vdis()
    assert not vdis[vdi].hidden and vdis[vdi].type == "dynamic"
    assert read_vdi(sr_dir, vdi, 0, 512) == b"Q" * 512


@pytest.mark.parametrize("fmt", FORMATS)
@pytest.mark.parametrize("crash_after", [1, 2, 3, 4, 99])
def test_crash_at_any_step_keeps_data_and_no_garbage_visible(tmp_path, crash_after, fmt):
    """SIGKILL-like death after each directory fsync: the VDI still reads the same, no hidden
    childless VHD exists (so XenServer's GC deletes nothing), staging is reclaimed."""
    from tests.sr.proc import run
    sr_dir = str(tmp_path)
    leaf, base = make_chain(sr_dir, 2, fmt=fmt)
    before = read_vdi(sr_dir, leaf)
    result = run("crash-snapshot", sr_dir, leaf, crash_after)
    if crash_after == 99:
        assert result.returncode == 0, result.stderr
    else:
        assert result.returncode == 9, result.stderr
    sr = SR(sr_dir)
    vdis = sr.vdis()
    assert [u for u, v in vdis.items() if v.hidden and not v.children] == []
    assert all(v.error is None for v in vdis.values())
    assert read_vdi(sr_dir, leaf) == before
    assert sr.gc() == []
    assert read_vdi(sr_dir, leaf) == before
    with sr.staging():      # reclaims the dead snapshot's staging: recovery runs
        pass
    assert os.listdir(os.path.join(sr_dir, ".vhdport-staging")) == [".root.lock"]
    # recovery finished or undid it: every parent is a hidden base copy (a visible one
    # could be attached and written under its children)
    assert all(v.hidden for v in sr.vdis().values() if v.children)
    assert read_vdi(sr_dir, leaf) == before


def test_qcow2_snapshot_is_what_sm_makes(tmp_path):
    """Relative ``<base>.qcow2`` backing names, backing format qcow2, the VDI's cluster size,
    the base hidden by SM's extension; qemu-img finds every file clean and the chains as the
    SR scan does."""
    from tests.qcow2.qemu import check, qemu_img, qemu_io, require_qemu
    from vhdport import disk
    require_qemu()
    sr_dir = str(tmp_path)
    vdi = new_uuid()
    path = os.path.join(sr_dir, vdi + ".qcow2")
    disk.by_name("qcow2").create(path, 8 << 20, block_size=128 * 1024)
    qemu_io(path, "write -P 0x61 0 300k", "write -P 0x62 5M 64k")
    sr = SR(sr_dir)
    snap, base = sr.snapshot(vdi)
    vdis = sr.vdis()
    assert vdis[base].hidden and vdis[base].children == sorted([vdi, snap])
    assert {vdis[u].format for u in (vdi, snap, base)} == {"qcow2"}
    for leaf in (vdi, snap):
        leaf_path = os.path.join(sr_dir, leaf + ".qcow2")
        chain = json.loads(qemu_img("info", "--backing-chain", "--output=json", "-f", "qcow2",
                                    leaf_path).stdout)
        assert [os.path.basename(c["filename"]) for c in chain] == \
            [os.path.basename(p) for p in sr.chain_paths(leaf)]
        assert chain[0]["backing-filename"] == base + ".qcow2"
        assert chain[0]["backing-filename-format"] == "qcow2"
        assert chain[0]["cluster-size"] == 128 * 1024
        check(leaf_path, with_backing=True)
        qemu_io(leaf_path, "read -P 0x61 0 300k", "read -P 0x62 5M 64k")
    check(os.path.join(sr_dir, base + ".qcow2"))
    assert os.listdir(os.path.join(sr_dir, ".vhdport-staging")) == [".root.lock"]
    assert sr.gc() == []
