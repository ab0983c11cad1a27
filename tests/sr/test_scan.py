import os

import pytest

from vhdport.errors import ChainError, SRError
from vhdport.sr import SR
from vhdport.vhd import create_dynamic, set_parent

from tests.qcow2.qemu import qemu_img, require_qemu
from tests.sr.helpers import FORMATS, SIZE, make_chain, make_vhd, new_uuid, suffix


@pytest.mark.parametrize("fmt", FORMATS)
def test_graph_of_chains_and_ignored_names(tmp_path, fmt):
    sr_dir = str(tmp_path)
    leaf, mid, base = make_chain(sr_dir, 3, fmt=fmt)
    lone = make_vhd(sr_dir, fmt=fmt)
    # a second leaf on the same base (a snapshot shape)
    twin = make_vhd(sr_dir, parent=mid, fmt=fmt)
    # names and places scans must ignore
    os.mkdir(os.path.join(sr_dir, "sub"))
    make_vhd(os.path.join(sr_dir, "sub"), fmt=fmt)
    create_dynamic(os.path.join(sr_dir, "not-a-uuid" + suffix(fmt)), SIZE)
    with open(os.path.join(sr_dir, new_uuid() + ".raw"), "wb") as f:
        f.write(b"x")
    os.mkdir(os.path.join(sr_dir, new_uuid() + suffix(fmt)))   # a directory with a VDI-like name

    sr = SR(sr_dir)
    vdis = sr.vdis()
    assert sorted(vdis) == sorted([leaf, mid, base, lone, twin])
    assert vdis[base].parent_uuid is None and vdis[base].type == "dynamic"
    assert vdis[mid].parent_uuid == base and vdis[leaf].parent_uuid == mid
    assert vdis[mid].children == sorted([leaf, twin])
    assert vdis[base].children == [mid]
    assert vdis[base].hidden and vdis[mid].hidden and not vdis[leaf].hidden
    assert vdis[leaf].type == "differencing" and vdis[leaf].virtual_size == SIZE
    assert vdis[leaf].physical_size == os.path.getsize(vdis[leaf].path)
    assert vdis[leaf].path == os.path.join(sr_dir, leaf + suffix(fmt))
    assert all(v.error is None for v in vdis.values())
    assert sr.leaves() == sorted([leaf, lone, twin])
    assert sr.base_copies() == sorted([mid, base])
    assert sr.chain_paths(leaf) == [vdis[u].path for u in (leaf, mid, base)]
    assert sr.chain_paths(lone) == [vdis[lone].path]


def test_broken_file_listed_with_error_not_crashing(tmp_path):
    sr_dir = str(tmp_path)
    good = make_vhd(sr_dir)
    bad = new_uuid()
    with open(os.path.join(sr_dir, bad + ".vhd"), "wb") as f:
        f.write(b"\0" * 4096)
    vdis = SR(sr_dir).vdis()
    assert vdis[bad].error and "cookie" in vdis[bad].error
    assert vdis[bad].type is None
    assert vdis[good].error is None
    with pytest.raises(ChainError):
        SR(sr_dir).chain_paths(bad)


@pytest.mark.parametrize("fmt", FORMATS)
def test_child_of_unreadable_parent_breaks_chain(tmp_path, fmt):
    sr_dir = str(tmp_path)
    leaf, base = make_chain(sr_dir, 2, fmt=fmt)
    with open(os.path.join(sr_dir, base + suffix(fmt)), "r+b") as f:
        f.truncate(100)
    sr = SR(sr_dir)
    vdis = sr.vdis()
    assert vdis[leaf].parent_uuid == base and vdis[base].error
    with pytest.raises(ChainError, match=base):
        sr.chain_paths(leaf)


def test_missing_parent_and_wrong_uuid_link(tmp_path):
    sr_dir = str(tmp_path)
    leaf, base = make_chain(sr_dir, 2)
    other = make_vhd(sr_dir)
    sr = SR(sr_dir)
    # the locator names <other>.vhd but the child records base's VHD uuid: broken, not guessed
    os.rename(os.path.join(sr_dir, base + ".vhd"), os.path.join(str(tmp_path), "away"))
    os.rename(os.path.join(sr_dir, other + ".vhd"), os.path.join(sr_dir, base + ".vhd"))
    vdis = sr.vdis()
    assert vdis[leaf].parent_uuid == base
    assert "broken link" in vdis[leaf].error
    with pytest.raises(ChainError, match="broken link"):
        sr.chain_paths(leaf)
    os.unlink(os.path.join(sr_dir, base + ".vhd"))
    vdis = sr.vdis()
    assert vdis[leaf].parent_uuid == base and base not in vdis and vdis[leaf].error is None
    with pytest.raises(ChainError, match="missing"):
        sr.chain_paths(leaf)
    with pytest.raises(ChainError, match="not found"):
        sr.chain_paths(new_uuid())


def test_parent_taken_from_locator_file_name(tmp_path):
    """The parent VDI is the <uuid>.vhd the locator names, even if renamed (relinked)."""
    sr_dir = str(tmp_path)
    leaf, base = make_chain(sr_dir, 2)
    renamed = new_uuid()
    os.rename(os.path.join(sr_dir, base + ".vhd"), os.path.join(sr_dir, renamed + ".vhd"))
    assert SR(sr_dir).vdis()[leaf].parent_uuid == base     # now missing
    set_parent(os.path.join(sr_dir, leaf + ".vhd"), renamed + ".vhd")
    vdis = SR(sr_dir).vdis()
    assert vdis[leaf].parent_uuid == renamed and vdis[leaf].error is None
    assert vdis[renamed].children == [leaf]


def test_sr_must_exist(tmp_path):
    with pytest.raises(SRError, match="does not exist"):
        SR(str(tmp_path / "nope"))


# ----------------------------------------------------------------------- QCOW2

def _qcow2(sr_dir, u):
    return os.path.join(sr_dir, u + ".qcow2")


def test_qcow2_parent_by_sm_absolute_backing_name(tmp_path):
    """SM's GC relinks with ``/var/run/sr-mount/<sr>/<uuid>.qcow2``: resolved in this SR."""
    require_qemu()
    sr_dir = str(tmp_path)
    leaf, base = make_chain(sr_dir, 2, fmt="qcow2")
    qemu_img("rebase", "-u", "-f", "qcow2", "-F", "qcow2", "-b",
             "/var/run/sr-mount/{}/{}.qcow2".format(new_uuid(), base), _qcow2(sr_dir, leaf))
    sr = SR(sr_dir)
    vdis = sr.vdis()
    assert vdis[leaf].parent_uuid == base and vdis[leaf].error is None
    assert vdis[leaf].format == vdis[base].format == "qcow2"
    assert sr.chain_paths(leaf) == [_qcow2(sr_dir, leaf), _qcow2(sr_dir, base)]


@pytest.mark.parametrize("backing", ["/etc/hostname", "../outside.qcow2", "sub/{}.qcow2",
                                     "/var/run/sr-mount/a/b/{}.qcow2", "{}.vhd"])
def test_qcow2_backing_outside_the_sr_is_an_error_and_gc_aborts(tmp_path, backing):
    require_qemu()
    sr_dir = str(tmp_path / "sr")
    os.mkdir(sr_dir)
    garbage = make_vhd(sr_dir, hidden=True, fmt="qcow2")
    target = new_uuid()
    make_vhd(sr_dir, name=target, fmt="qcow2")
    child = new_uuid()
    qemu_img("create", "-f", "qcow2", "-u", "-F", "qcow2", "-b", backing.format(target),
             _qcow2(sr_dir, child), SIZE)
    sr = SR(sr_dir)
    vdis = sr.vdis()
    assert vdis[child].error and "refused, nothing opened" in vdis[child].error
    assert vdis[child].parent_uuid is None
    with pytest.raises(SRError, match="nothing deleted"):
        sr.gc()
    assert os.path.exists(_qcow2(sr_dir, garbage))


def test_a_uuid_in_two_formats_is_an_error(tmp_path):
    sr_dir = str(tmp_path)
    u = make_vhd(sr_dir)
    make_vhd(sr_dir, name=u, fmt="qcow2")
    garbage = make_vhd(sr_dir, hidden=True, fmt="qcow2")
    sr = SR(sr_dir)
    vdis = sr.vdis()
    assert "both claim VDI" in vdis[u].error and vdis[u].path.endswith(".vhd")
    with pytest.raises(SRError, match="nothing deleted"):
        sr.gc()
    assert os.path.exists(_qcow2(sr_dir, garbage))


def test_by_extension_then_magic(tmp_path):
    """A VHD named ``.qcow2`` is read as QCOW2 (as SM does) and reported, not guessed."""
    sr_dir = str(tmp_path)
    u = new_uuid()
    create_dynamic(_qcow2(sr_dir, u), SIZE)
    vdis = SR(sr_dir).vdis()
    assert vdis[u].format == "qcow2" and "magic" in vdis[u].error


def test_a_mixed_link_is_broken(tmp_path):
    """A VHD child whose locator names a QCOW2 file: never a valid chain."""
    sr_dir = str(tmp_path)
    parent = make_vhd(sr_dir)
    child = make_vhd(sr_dir, parent=parent)
    os.rename(os.path.join(sr_dir, parent + ".vhd"), _qcow2(sr_dir, parent))
    set_parent(os.path.join(sr_dir, child + ".vhd"), parent + ".qcow2")
    vdis = SR(sr_dir).vdis()
    assert "mixing disk formats" in (vdis[child].error or "")
