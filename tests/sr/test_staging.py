import os
import signal
import subprocess

import pytest

from vhdport.errors import ChainError, SRError
from vhdport.sr import SR
from vhdport.vhd import VhdFile

from tests.sr.helpers import (FORMATS, make_chain, make_vhd, read_chain, staged_chain, suffix,
                              vhd_names)
from vhdport import disk
from tests.sr.proc import start

ROOT_ONLY = [".root.lock"]


def _staging_entries(sr_dir):
    return sorted(os.listdir(os.path.join(sr_dir, ".vhdport-staging")))


def test_staging_inside_sr_ignored_and_removed(tmp_path):
    sr_dir = str(tmp_path)
    sr = SR(sr_dir)
    keep = make_vhd(sr_dir)
    with sr.staging() as st:
        assert os.path.dirname(os.path.dirname(st.path)) == sr_dir
        assert os.stat(st.path).st_dev == os.stat(sr_dir).st_dev
        make_chain(st.path, 2)
        make_vhd(st.path, hidden=True)
        assert sorted(sr.vdis()) == [keep]
        assert sr.gc() == []
        with open(st.path + ".lock") as f:
            assert f.read().strip() == str(os.getpid())
        path = st.path
    assert not os.path.exists(path) and not os.path.exists(path + ".lock")
    assert _staging_entries(sr_dir) == ROOT_ONLY


def test_staging_removed_on_exception(tmp_path):
    sr = SR(str(tmp_path))
    with pytest.raises(RuntimeError):
        with sr.staging() as st:
            make_vhd(st.path)
            path = st.path
            raise RuntimeError("download failed")
    assert not os.path.exists(path)
    assert _staging_entries(str(tmp_path)) == ROOT_ONLY


def test_killed_owner_reclaimed_live_owner_kept(tmp_path):
    sr_dir = str(tmp_path)
    victim = start("hold-staging", sr_dir, stdout=subprocess.PIPE, universal_newlines=True)
    alive = start("hold-staging", sr_dir, stdout=subprocess.PIPE, universal_newlines=True)
    try:
        victim_dir = victim.stdout.readline().strip()
        alive_dir = alive.stdout.readline().strip()
        assert os.path.isfile(os.path.join(victim_dir, "0.vhd"))
        os.kill(victim.pid, signal.SIGKILL)
        victim.wait(30)
        assert os.path.isdir(victim_dir)          # a killed process cleans nothing
        sr = SR(sr_dir)
        with sr.staging() as st:                  # the next staging user reclaims it
            assert not os.path.exists(victim_dir)
            assert not os.path.exists(victim_dir + ".lock")
            assert os.path.isfile(os.path.join(alive_dir, "0.vhd"))
            assert sr.reclaim_staging() == []     # neither ours nor the live one
            assert os.path.isdir(st.path)
    finally:
        for p in (victim, alive):
            if p.poll() is None:
                p.kill()
            p.wait(30)
            p.stdout.close()
    assert sorted(SR(sr_dir).reclaim_staging()) == [alive_dir]
    assert _staging_entries(sr_dir) == ROOT_ONLY


def test_reclaim_removes_dirs_without_lock_file(tmp_path):
    sr_dir = str(tmp_path)
    sr = SR(sr_dir)
    with sr.staging():
        pass
    debris = os.path.join(sr_dir, ".vhdport-staging", "abc123")
    os.mkdir(debris)
    make_vhd(debris)
    assert sr.reclaim_staging() == [debris]


def test_link_chain_survives_deletion_from_sr(tmp_path):
    sr_dir = str(tmp_path)
    leaf, mid, base = make_chain(sr_dir, 3)
    sr = SR(sr_dir)
    data = read_chain(os.path.join(sr_dir, leaf + ".vhd"))
    with sr.staging() as st:
        links = st.link_chain(sr.chain_paths(leaf))
        assert [os.path.basename(p) for p in links] == ["0.vhd", "1.vhd", "2.vhd"]
        for name in (leaf, mid, base):
            os.unlink(os.path.join(sr_dir, name + ".vhd"))
        for link, name in zip(links, (leaf, mid, base)):
            with VhdFile.open(link) as d:
                assert d.footer.current_size > 0
        # relinking the staged copies by adoption reads the same data
        adopted = st.adopt(links)
        assert read_chain(adopted[0]) == data


@pytest.mark.parametrize("fmt", FORMATS)
def test_link_vdi_and_link_chain_refuse_a_changed_chain(tmp_path, fmt):
    sr_dir = str(tmp_path)
    leaf, base = make_chain(sr_dir, 2, fmt=fmt)
    other = make_vhd(sr_dir, fmt=fmt)
    sr = SR(sr_dir)
    with sr.staging() as st:
        links = st.link_vdi(leaf)
        assert [os.path.basename(p) for p in links] == ["0" + suffix(fmt), "1" + suffix(fmt)]
    with sr.staging() as st:
        with pytest.raises(ChainError, match="changed"):
            st.link_chain([os.path.join(sr_dir, leaf + suffix(fmt)),
                           os.path.join(sr_dir, other + suffix(fmt))])
        assert os.listdir(st.path) == []
        with pytest.raises(SRError, match="vanished"):
            st.link_chain([os.path.join(sr_dir, "gone" + suffix(fmt))])
        with pytest.raises(ChainError, match="whole chain"):
            st.link_chain([os.path.join(sr_dir, leaf + suffix(fmt))])


# ----------------------------------------------------------------------- adopt

def _staged_chain(st, depth=3, fmt="vhd"):
    return staged_chain(st.path, depth, fmt=fmt)


def test_adopt_fresh_uuids_relinks_and_reads_identically(tmp_path):
    sr = SR(str(tmp_path))
    with sr.staging() as st:
        staged, data = _staged_chain(st)
        vhd_uuids = []
        for p in staged:
            with VhdFile.open(p) as d:
                vhd_uuids.append(d.uuid)
        adopted = st.adopt(staged)
        names = [os.path.basename(p)[:-4] for p in adopted]
        assert len(set(names)) == 3 and all(os.path.dirname(p) == st.path for p in adopted)
        assert not any(os.path.exists(p) for p in staged)
        assert read_chain(adopted[0]) == data
        for i, p in enumerate(adopted):
            with VhdFile.open(p) as d:
                assert d.uuid == vhd_uuids[i]                   # internal uuid kept
                if i + 1 < len(adopted):
                    assert d.parent_uuid == vhd_uuids[i + 1]
                    assert d.parent_name == names[i + 1] + ".vhd"
                    assert os.path.basename(d.locator_paths()[0]) == names[i + 1] + ".vhd"


@pytest.mark.parametrize("fmt", FORMATS)
def test_adopt_honours_given_uuids(tmp_path, fmt):
    sr = SR(str(tmp_path))
    wanted = ["11111111-2222-4333-8444-555555555555", "AAAAAAAA-BBBB-4CCC-8DDD-EEEEEEEEEEEE"]
    with sr.staging() as st:
        staged, data = _staged_chain(st, 2, fmt)
        adopted = st.adopt(staged, uuids=wanted)
        assert [os.path.basename(p) for p in adopted] == [wanted[0] + suffix(fmt),
                                                          wanted[1].lower() + suffix(fmt)]
        assert read_chain(adopted[0]) == data
        final = sr.publish(adopted)
    assert sorted(SR(str(tmp_path)).vdis()) == sorted(u.lower() for u in wanted)
    assert read_chain(final[0]) == data


@pytest.mark.parametrize("uuids, match", [
    (["11111111-2222-4333-8444-555555555555"], "2 files"),
    (["11111111-2222-4333-8444-555555555555"] * 2, "more than once"),
    (["11111111-2222-4333-8444-555555555555", "not-a-uuid"], "not a uuid"),
    (["11111111-2222-4333-8444-555555555555", "../../etc/passwd"], "not a uuid"),
    (["11111111222243338444555555555555", "11111111-2222-4333-8444-555555555556"], "not a uuid"),
])
def test_adopt_refuses_bad_uuid_lists(tmp_path, uuids, match):
    sr = SR(str(tmp_path))
    with sr.staging() as st:
        staged, _ = _staged_chain(st, 2)
        with pytest.raises(SRError, match=match):
            st.adopt(staged, uuids=uuids)
        assert all(os.path.exists(p) for p in staged)


def test_adopt_refuses_uuid_already_in_sr(tmp_path):
    sr_dir = str(tmp_path)
    existing = make_vhd(sr_dir)
    sr = SR(sr_dir)
    with sr.staging() as st:
        staged, _ = _staged_chain(st, 2)
        with pytest.raises(SRError, match="already in SR"):
            st.adopt(staged, uuids=["11111111-2222-4333-8444-555555555555", existing])


@pytest.mark.parametrize("fmt", FORMATS)
def test_adopt_refuses_hidden_leaf(tmp_path, fmt):
    sr = SR(str(tmp_path))
    with sr.staging() as st:
        staged, _ = _staged_chain(st, 2, fmt)
        disk.by_name(fmt).set_hidden(staged[0], True)
        with pytest.raises(SRError, match="hidden leaf refused"):
            st.adopt(staged)
    assert SR(str(tmp_path)).vdis() == {}


@pytest.mark.parametrize("fmt", FORMATS)
def test_adopt_refuses_wrong_order_and_incomplete_chain(tmp_path, fmt):
    sr = SR(str(tmp_path))
    with sr.staging() as st:
        staged, _ = _staged_chain(st, 3, fmt)
        with pytest.raises(ChainError):
            st.adopt([staged[0], staged[2], staged[1]])
    with sr.staging() as st:
        staged, _ = _staged_chain(st, 3, fmt)
        with pytest.raises(ChainError):
            st.adopt(staged[:2])
    with sr.staging() as st:
        with pytest.raises(SRError, match="not in staging"):
            st.adopt([os.path.join(str(tmp_path), "x.vhd")])
    assert vhd_names(str(tmp_path)) == []


@pytest.mark.parametrize("fmt", FORMATS)
def test_adopt_refuses_swapped_middles_before_renaming(tmp_path, fmt):
    """set_parent would happily relink a misordered chain; adopt checks recorded uuids first."""
    sr = SR(str(tmp_path))
    with sr.staging() as st:
        staged, _ = _staged_chain(st, 4, fmt)
        swapped = [staged[0], staged[2], staged[1], staged[3]]
        with pytest.raises(ChainError, match="out of order"):
            st.adopt(swapped)
        assert sorted(os.listdir(st.path)) == [str(i) + suffix(fmt) for i in range(4)]
        assert len(st.adopt(staged)) == 4


def test_adopt_rename_clash_puts_files_back(tmp_path):
    sr = SR(str(tmp_path))
    wanted = ["11111111-2222-4333-8444-555555555555", "11111111-2222-4333-8444-555555555556"]
    with sr.staging() as st:
        staged, data = _staged_chain(st, 2)
        with open(os.path.join(st.path, wanted[1] + ".vhd"), "wb") as f:
            f.write(b"in the way")
        with pytest.raises(SRError, match="already holds"):
            st.adopt(staged, uuids=wanted)
        assert all(os.path.exists(p) for p in staged)
        os.unlink(os.path.join(st.path, wanted[1] + ".vhd"))
        adopted = st.adopt(staged, uuids=wanted)
        assert read_chain(adopted[0]) == data


def test_adopt_relinks_qcow2_as_sm_names_parents(tmp_path):
    """A QCOW2 chain staged under bundle names gets SM's relative ``<uuid>.qcow2`` backing
    names; qemu-img follows them to the same files and reads the same data."""
    from tests.qcow2.qemu import check, info, require_qemu
    require_qemu()
    sr = SR(str(tmp_path))
    with sr.staging() as st:
        staged, data = _staged_chain(st, 3, "qcow2")
        adopted = st.adopt(staged)
        assert read_chain(adopted[0]) == data
        for child, parent in zip(adopted, adopted[1:]):
            assert info(child)["backing-filename"] == os.path.basename(parent)
        check(adopted[0], with_backing=True)
        final = sr.publish(adopted)
    assert sr.chain_paths(os.path.basename(final[0])[:-len(".qcow2")]) == final
    assert read_chain(final[0]) == data
