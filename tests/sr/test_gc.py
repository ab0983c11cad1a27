import os

import pytest

from vhdport.errors import SRError
from vhdport.sr import SR, coalesceable, leaf_coalesceable

from tests.sr.helpers import FORMATS, make_chain, make_vhd, new_uuid, suffix, vhd_names


@pytest.mark.parametrize("fmt", FORMATS)
def test_hidden_childless_deleted_recursively(tmp_path, fmt):
    sr_dir = str(tmp_path)
    # a chain whose leaf was deleted: mid and base are hidden and become garbage in turn
    leaf, mid, base = make_chain(sr_dir, 3, fmt=fmt)
    os.unlink(os.path.join(sr_dir, leaf + suffix(fmt)))
    # a live chain sharing nothing
    live_leaf, live_base = make_chain(sr_dir, 2, fmt=fmt)
    # a hidden base with one live child and one dead (hidden childless) child
    shared = make_vhd(sr_dir, hidden=True, fmt=fmt)
    keep = make_vhd(sr_dir, parent=shared, fmt=fmt)
    dead = make_vhd(sr_dir, parent=shared, hidden=True, fmt=fmt)
    sr = SR(sr_dir)
    deleted = sr.gc()
    assert deleted.index(mid) < deleted.index(base)      # children before parents
    assert sorted(deleted) == sorted([mid, base, dead])
    assert sorted(sr.vdis()) == sorted([live_leaf, live_base, shared, keep])
    assert sr.gc() == []


@pytest.mark.parametrize("fmt", FORMATS)
def test_non_hidden_orphans_kept(tmp_path, fmt):
    sr_dir = str(tmp_path)
    lone = make_vhd(sr_dir, fmt=fmt)
    leaf, base = make_chain(sr_dir, 2, hidden_parents=False, fmt=fmt)
    os.unlink(os.path.join(sr_dir, leaf + suffix(fmt)))
    assert SR(sr_dir).gc() == []
    assert vhd_names(sr_dir) == sorted([lone + suffix(fmt), base + suffix(fmt)])


@pytest.mark.parametrize("fmt", FORMATS)
def test_missing_parent_aborts_with_nothing_deleted(tmp_path, fmt):
    sr_dir = str(tmp_path)
    garbage = make_vhd(sr_dir, hidden=True, fmt=fmt)
    leaf, base = make_chain(sr_dir, 2, fmt=fmt)
    os.unlink(os.path.join(sr_dir, base + suffix(fmt)))
    before = vhd_names(sr_dir)
    with pytest.raises(SRError) as err:
        SR(sr_dir).gc()
    assert base in str(err.value) and leaf in str(err.value)
    assert "nothing deleted" in str(err.value)
    assert vhd_names(sr_dir) == before and garbage + suffix(fmt) in before


def test_unreadable_vhd_aborts(tmp_path):
    sr_dir = str(tmp_path)
    garbage = make_vhd(sr_dir, hidden=True)
    bad = new_uuid()
    with open(os.path.join(sr_dir, bad + ".vhd"), "wb") as f:
        f.write(b"junk" * 300)
    with pytest.raises(SRError, match=bad):
        SR(sr_dir).gc()
    assert os.path.exists(os.path.join(sr_dir, garbage + ".vhd"))


@pytest.mark.parametrize("fmt", FORMATS)
def test_dry_run_deletes_nothing(tmp_path, fmt):
    sr_dir = str(tmp_path)
    leaf, mid, base = make_chain(sr_dir, 3, fmt=fmt)
    os.unlink(os.path.join(sr_dir, leaf + suffix(fmt)))
    before = vhd_names(sr_dir)
    sr = SR(sr_dir)
    assert sr.gc(dry_run=True) == [mid, base]
    assert vhd_names(sr_dir) == before
    assert sr.gc() == [mid, base]
    assert vhd_names(sr_dir) == []


def test_gc_ignores_staging(tmp_path):
    sr_dir = str(tmp_path)
    sr = SR(sr_dir)
    with sr.staging() as st:
        make_vhd(st.path, hidden=True)
        garbage = make_vhd(sr_dir, hidden=True)
        assert sr.gc() == [garbage]
        assert len(vhd_names(st.path)) == 1


def test_gc_waits_for_the_sr_lock(tmp_path):
    sr_dir = str(tmp_path)
    make_vhd(sr_dir, hidden=True)
    holder = SR(sr_dir)
    with holder.locked():
        with pytest.raises(SRError, match="locked by another vhdport operation"):
            SR(sr_dir, lock_timeout=0.3).gc()
    assert len(SR(sr_dir).gc()) == 1


@pytest.mark.parametrize("fmt", FORMATS)
def test_coalesceable_as_sms_gc_judges_it(tmp_path, fmt):
    """cleanup.py: a hidden node with children whose parent has it as its only child is
    coalesced; a visible leaf that is its parent's only child may be leaf-coalesced."""
    sr_dir = str(tmp_path)
    leaf, mid, base = make_chain(sr_dir, 3, fmt=fmt)          # mid: coalesceable into base
    shared = make_vhd(sr_dir, hidden=True, fmt=fmt)
    one = make_vhd(sr_dir, parent=shared, fmt=fmt)
    two = make_vhd(sr_dir, parent=shared, fmt=fmt)           # shared has two children
    vdis = SR(sr_dir).vdis()
    assert coalesceable(vdis) == [mid]
    assert leaf_coalesceable(vdis) == [leaf]
    assert one not in leaf_coalesceable(vdis) and two not in leaf_coalesceable(vdis)
    with open(os.path.join(sr_dir, base + suffix(fmt)), "r+b") as f:
        f.truncate(100)                                      # a scan error: SM skips it
    vdis = SR(sr_dir).vdis()
    assert coalesceable(vdis) == [] and leaf_coalesceable(vdis) == [leaf]
