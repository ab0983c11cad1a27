import os

import pytest

from vhdport.errors import ChainError, SRError
from vhdport.sr import SR
from vhdport.vhd import create_dynamic, set_parent

from tests.sr.helpers import SIZE, make_chain, make_vhd, new_uuid


def test_graph_of_chains_and_ignored_names(tmp_path):
    sr_dir = str(tmp_path)
    leaf, mid, base = make_chain(sr_dir, 3)
    lone = make_vhd(sr_dir)
    # a second leaf on the same base (a snapshot shape)
    twin = make_vhd(sr_dir, parent=mid)
    # names and places scans must ignore
    os.mkdir(os.path.join(sr_dir, "sub"))
    make_vhd(os.path.join(sr_dir, "sub"))
    create_dynamic(os.path.join(sr_dir, "not-a-uuid.vhd"), SIZE)
    with open(os.path.join(sr_dir, new_uuid() + ".raw"), "wb") as f:
        f.write(b"x")
    os.mkdir(os.path.join(sr_dir, new_uuid() + ".vhd"))   # a directory with a VDI-like name

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
    assert vdis[leaf].path == os.path.join(sr_dir, leaf + ".vhd")
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


def test_child_of_unreadable_parent_breaks_chain(tmp_path):
    sr_dir = str(tmp_path)
    leaf, base = make_chain(sr_dir, 2)
    with open(os.path.join(sr_dir, base + ".vhd"), "r+b") as f:
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
