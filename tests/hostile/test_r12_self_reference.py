"""R12: self-reference and ambiguity.

Issue 11, defect 8: a VHD that is its own parent (directly, or via a hard link) was valid
for `vhd check` and `vhd coalesce` "succeeded" into itself; `vhd write --from -` past the
end wrote 8 MiB before failing; `sr gc` deleted the parent a leaf really read through when
two SR files carried one VHD uuid and the leaf's locators disagreed.

Cases are generated per class.  Every case hashes the whole environment (the files, an
'outside' canary) before and after: refusals change nothing; gc removes only true garbage.
"""

import os
import shutil
import subprocess
import sys

import pytest

from tests.hostile.bombs import REPO
from tests.hostile.conftest import diff_digests, tree_digest
from tests.sr.helpers import make_chain, make_vhd, read_vdi, vhd_names
from vhdport.errors import ChainError
from vhdport.format.locator import encode_path
from vhdport.sr import SR
from vhdport.vhd import (Chain, VhdFile, check_chain, check_file, coalesce, create_dynamic,
                         create_snapshot, info, set_parent)

MIB = 1 << 20

pytestmark = pytest.mark.timeout(300)


def _env(tmp_path):
    root = str(tmp_path / "env")
    work = os.path.join(root, "work")
    os.makedirs(work)
    os.makedirs(os.path.join(root, "outside"))
    with open(os.path.join(root, "outside", "canary"), "wb") as f:
        f.write(b"must stay")
    return root, work


def _rewrite_parent(path, parent_uuid=None, names=None, parent_name=None):
    """Point ``path``'s header at ``parent_uuid`` and its locators (slot order) at ``names``,
    bypassing set_parent's checks, as a hostile writer would."""
    with VhdFile.open(path, writable=True) as disk:
        header = disk.header
        if parent_uuid is not None:
            header.parent_uuid = parent_uuid
        if names is not None:
            slots = [loc for loc in header.locators if loc.in_use]
            for loc, name in zip(slots, names):
                payload = encode_path(loc.code, name)
                disk.pwrite(loc.data_offset, payload + bytes(loc.space_bytes - len(payload)))
                loc.data_length = len(payload)
        if parent_name is not None:
            header.parent_name = parent_name
        disk.write_header()
        disk.flush()


# ------------------------------------------------------------ self-parent


def _self_direct(work):
    base = os.path.join(work, "base.vhd")
    create_dynamic(base, 4 * MIB)
    child = os.path.join(work, "c.vhd")
    create_snapshot(child, "base.vhd")
    with VhdFile.open(child) as d:
        own = d.uuid
    _rewrite_parent(child, own, ["c.vhd"] * 3, "c.vhd")
    return child


def _self_uuid_only(work):
    """The parent uuid is the disk's own, the locators still name a real other file."""
    base = os.path.join(work, "base.vhd")
    create_dynamic(base, 4 * MIB)
    child = os.path.join(work, "c.vhd")
    create_snapshot(child, "base.vhd")
    with VhdFile.open(child) as d:
        own = d.uuid
    _rewrite_parent(child, own)
    return child


def _self_hard_link(work):
    base = os.path.join(work, "base.vhd")
    create_dynamic(base, 4 * MIB)
    child = os.path.join(work, "c.vhd")
    create_snapshot(child, "base.vhd")
    with VhdFile.open(child) as d:
        own = d.uuid
    _rewrite_parent(child, own, ["p.vhd"] * 3, "p.vhd")
    os.link(child, os.path.join(work, "p.vhd"))
    return child


def _self_dotdot(work):
    os.makedirs(os.path.join(work, "sub"))
    base = os.path.join(work, "base.vhd")
    create_dynamic(base, 4 * MIB)
    child = os.path.join(work, "c.vhd")
    create_snapshot(child, "base.vhd")
    with VhdFile.open(child) as d:
        own = d.uuid
    _rewrite_parent(child, own, ["sub/../c.vhd"] * 3, "c.vhd")
    return child


def _self_symlink(work):
    base = os.path.join(work, "base.vhd")
    create_dynamic(base, 4 * MIB)
    child = os.path.join(work, "c.vhd")
    create_snapshot(child, "base.vhd")
    with VhdFile.open(child) as d:
        own = d.uuid
    _rewrite_parent(child, own, ["alias.vhd"] * 3, "alias.vhd")
    os.symlink("c.vhd", os.path.join(work, "alias.vhd"))
    return child


SELF_CASES = {
    "parent uuid and locators name the file itself": _self_direct,
    "parent uuid is its own (locators elsewhere)": _self_uuid_only,
    "locators name a hard link of itself": _self_hard_link,
    "locators reach itself through sub/..": _self_dotdot,
    "locators name a symlink to itself": _self_symlink,
}


@pytest.mark.parametrize("name", sorted(SELF_CASES))
def test_self_parent_invalid_and_refused(name, tmp_path, reliability_case):
    case = reliability_case("R12", "self-parent: " + name,
                            "check: typed 'parent' cycle defect; Chain.open, info and "
                            "coalesce refuse; nothing changes")
    root, work = _env(tmp_path)
    child = SELF_CASES[name](work)
    before = tree_digest(root)
    defects = check_file(child)
    cycles = [d for d in defects if d.field == "parent" and "cycle" in d.message]
    assert cycles, defects
    assert any(d.field == "parent" and "cycle" in d.message for d in check_chain(child))
    with pytest.raises(ChainError, match="cycle"):
        Chain.open(child)
    with pytest.raises(ChainError, match="cycle"):
        info(child)
    with pytest.raises(ChainError, match="itself|cycle"):
        coalesce(child)
    after = tree_digest(root)
    assert before == after, diff_digests(before, after)[:5]
    case.detail = cycles[0].message


@pytest.mark.parametrize("depth", [2, 3, 5])
def test_deeper_cycle(depth, tmp_path, reliability_case):
    case = reliability_case("R12", "cycle through {} files".format(depth),
                            "check --chain: cycle defect; Chain.open refuses; unchanged")
    root, work = _env(tmp_path)
    create_dynamic(os.path.join(work, "x.vhd"), 4 * MIB)
    names = ["x.vhd"]
    for i in range(depth):
        name = "l{}.vhd".format(i)
        create_snapshot(os.path.join(work, name), names[-1])
        names.append(name)
    # the lowest differencing disk now names the leaf: l0 -> l(depth-1) -> ... -> l0
    set_parent(os.path.join(work, "l0.vhd"), names[-1])
    leaf = os.path.join(work, names[-1])
    before = tree_digest(root)
    defects = check_chain(leaf)
    assert any(d.field == "parent" and "cycle" in d.message for d in defects), defects
    with pytest.raises(ChainError, match="cycle"):
        Chain.open(leaf)
    assert tree_digest(root) == before
    case.detail = [d.message for d in defects if "cycle" in d.message][0]


# ------------------------------------------------------- write past the end


WRITE_CASES = [(8 * MIB, 0, 8 * MIB + 1), (8 * MIB, 8 * MIB - 100, 4096),
               (8 * MIB, MIB, 12 * MIB), (2 * MIB, 2 * MIB, 1), (4 * MIB, 0, 64 * MIB)]


@pytest.mark.parametrize("size,offset,length", WRITE_CASES)
def test_write_past_end_from_pipe(size, offset, length, tmp_path, reliability_case):
    case = reliability_case("R12", "vhd write --from - of {} bytes at {} into {}".format(
        length, offset, size), "refused, nothing written, no temporary left")
    root, work = _env(tmp_path)
    path = os.path.join(work, "a.vhd")
    create_dynamic(path, size)
    before = tree_digest(root)
    env = dict(os.environ, PYTHONPATH=os.path.join(REPO, "src"))
    proc = subprocess.Popen([sys.executable, "-m", "vhdport.cli.main", "vhd", "write", path,
                             "--offset", str(offset), "--from", "-"],
                            stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, env=env)
    out, err = proc.communicate(input=bytes([0x5A]) * length, timeout=60)
    assert proc.returncode == 1, (out, err)
    assert b"nothing written" in err and b"Traceback" not in err, err
    after = tree_digest(root)
    assert before == after, diff_digests(before, after)[:5]
    case.detail = err.decode().strip().splitlines()[-1][:160]


# ------------------------------------------------------------------- gc


def _dup_sr(sr_dir):
    """An SR with a live leaf on a hidden base B1, a byte-identical copy B2 (same VHD uuid,
    another name), and one unrelated hidden childless garbage file."""
    leaf, base = make_chain(sr_dir, 2)
    copy = make_vhd(sr_dir)  # reserve a fresh name
    os.unlink(os.path.join(sr_dir, copy + ".vhd"))
    shutil.copyfile(os.path.join(sr_dir, base + ".vhd"), os.path.join(sr_dir, copy + ".vhd"))
    garbage = make_vhd(sr_dir, hidden=True)
    return leaf, base, copy, garbage


def _gc_missing_dir_first(sr_dir, leaf, b1, b2):
    # MacX names B1 in a directory that does not exist; W2ku/W2ru name B2: the reader opens B2
    _rewrite_parent(os.path.join(sr_dir, leaf + ".vhd"),
                    names=["gone/{}.vhd".format(b1), b2 + ".vhd", b2 + ".vhd"])
    return b2


def _gc_disagreeing_existing(sr_dir, leaf, b1, b2):
    # MacX names B2, the others B1: vhdport reads B2, a slot-order reader too; B1 is ambiguous
    _rewrite_parent(os.path.join(sr_dir, leaf + ".vhd"),
                    names=[b2 + ".vhd", b1 + ".vhd", b1 + ".vhd"])
    return b2


def _gc_unnamed_duplicate(sr_dir, leaf, b1, b2):
    # locators all name B1; B2 carries the VHD uuid the leaf records: ambiguous, kept
    return b1


def _gc_parent_name_fallback(sr_dir, leaf, b1, b2):
    # no locator names an existing file; the header's parent name (B2) beside the leaf does
    _rewrite_parent(os.path.join(sr_dir, leaf + ".vhd"),
                    names=["gone/{}.vhd".format(b1)] * 3, parent_name=b2 + ".vhd")
    return b2


GC_CASES = {
    "first locator names a missing path, the rest the copy": _gc_missing_dir_first,
    "locators name the original and the copy": _gc_disagreeing_existing,
    "copy named by no locator": _gc_unnamed_duplicate,
    "only the parent name resolves": _gc_parent_name_fallback,
}


@pytest.mark.parametrize("name", sorted(GC_CASES))
def test_gc_with_duplicate_uuids(name, tmp_path, reliability_case):
    case = reliability_case("R12", "sr gc, two files with one VHD uuid: " + name,
                            "the file the leaf reads through and every ambiguous one kept; "
                            "leaf reads the same; true garbage deleted")
    root = str(tmp_path / "env")
    sr_dir = os.path.join(root, "sr")
    os.makedirs(sr_dir)
    os.makedirs(os.path.join(root, "outside"))
    with open(os.path.join(root, "outside", "canary"), "wb") as f:
        f.write(b"must stay")
    leaf, b1, b2, garbage = _dup_sr(sr_dir)
    reads_through = GC_CASES[name](sr_dir, leaf, b1, b2)
    content = read_vdi(sr_dir, leaf)
    with Chain.open(os.path.join(sr_dir, leaf + ".vhd")) as chain:
        assert os.path.basename(chain.disks[1].path) == reads_through + ".vhd"
    outside_before = tree_digest(os.path.join(root, "outside"))
    deleted = SR(sr_dir).gc()
    assert deleted == [garbage], deleted
    assert set(vhd_names(sr_dir)) == {u + ".vhd" for u in (leaf, b1, b2)}
    assert read_vdi(sr_dir, leaf) == content
    assert tree_digest(os.path.join(root, "outside")) == outside_before
    case.detail = "deleted only the unrelated garbage; kept {} (read) and {}".format(
        reads_through[:8], (b1 if reads_through == b2 else b2)[:8])


def test_gc_parent_outside_sr_aborts(tmp_path, reliability_case):
    case = reliability_case("R12", "sr gc, leaf whose locator resolves outside the SR to a "
                                   "file named like an SR VDI",
                            "gc aborts, nothing deleted, nothing outside touched")
    root = str(tmp_path / "env")
    sr_dir = os.path.join(root, "sr")
    elsewhere = os.path.join(root, "outside")
    os.makedirs(sr_dir)
    os.makedirs(elsewhere)
    leaf, b1, b2, garbage = _dup_sr(sr_dir)
    shutil.copyfile(os.path.join(sr_dir, b1 + ".vhd"), os.path.join(elsewhere, b1 + ".vhd"))
    _rewrite_parent(os.path.join(sr_dir, leaf + ".vhd"),
                    names=["../outside/{}.vhd".format(b1)] * 3)
    with SR(sr_dir).locked():
        pass    # the SR lock file exists in a used SR: not a change gc may be blamed for
    before = tree_digest(root)
    from vhdport.errors import SRError
    with pytest.raises(SRError, match="nothing deleted"):
        SR(sr_dir).gc()
    after = tree_digest(root)
    assert before == after, diff_digests(before, after)[:5]
    case.detail = "aborted"



@pytest.mark.parametrize("via", ["same name", "hard link", "symlink", "copy with its uuid"])
def test_set_parent_refuses_itself(via, tmp_path, reliability_case):
    case = reliability_case("R12", "set-parent of a disk to itself ({})".format(via),
                            "ChainError; nothing changes")
    root, work = _env(tmp_path)
    create_dynamic(os.path.join(work, "base.vhd"), 4 * MIB)
    child = os.path.join(work, "c.vhd")
    create_snapshot(child, "base.vhd")
    target = {"same name": "c.vhd", "hard link": "h.vhd", "symlink": "s.vhd",
              "copy with its uuid": "copy.vhd"}[via]
    if via == "hard link":
        os.link(child, os.path.join(work, target))
    elif via == "symlink":
        os.symlink("c.vhd", os.path.join(work, target))
    elif via == "copy with its uuid":
        shutil.copyfile(child, os.path.join(work, target))
    before = tree_digest(root)
    with pytest.raises(ChainError, match="its own parent") as err:
        set_parent(child, target)
    assert tree_digest(root) == before
    case.detail = str(err.value)
