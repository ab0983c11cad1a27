"""A QCOW2 child as it travels in a bundle names its parent's member; nothing else changes."""

import os
import shutil

import pytest

from tests.transfer import qcow2_chains as q
from tests.transfer.helpers import MiB, build_chain, chain_sha256
from vhdport.disk.qcow2_bundle import member_head
from vhdport.errors import Qcow2FormatError
from vhdport.qcow2 import Qcow2File, set_hidden


def _as_member(src, dst, parent_member):
    """Copy ``src`` to ``dst`` with the start the bundle would send instead."""
    shutil.copyfile(src, dst)
    with open(src, "rb") as f:
        head = member_head(f, src, parent_member)
        assert f.tell() == 0
    if head is not None:
        with open(dst, "r+b") as f:
            f.write(head)
    return head


@pytest.mark.parametrize("absolute", [False, True])
def test_unpacked_members_form_the_chain(tmp_path, absolute):
    sr = str(tmp_path / "0ab2c3d4-0000-4000-8000-00000000c0de")
    os.makedirs(sr)
    uuids, model = build_chain(sr, 3, 8 * MiB, seed=3, fmt="qcow2")
    if absolute:            # as SM's GC leaves a relinked child
        q.sm_relink_absolute(os.path.join(sr, uuids[0] + ".qcow2"), uuids[1])
    out = str(tmp_path / "unpacked")
    os.makedirs(out)
    paths = [os.path.join(sr, u + ".qcow2") for u in uuids]
    heads = [_as_member(p, os.path.join(out, "{}.qcow2".format(i)), "{}.qcow2".format(i + 1))
             for i, p in enumerate(paths)]
    assert heads[2] is None                  # the base names no parent: sent as it is
    assert all(len(h) <= 4096 for h in heads[:2])
    leaf = os.path.join(out, "0.qcow2")
    assert q.backing_names(leaf) == ["1.qcow2", "2.qcow2", None]
    assert [os.path.getsize(os.path.join(out, "{}.qcow2".format(i))) for i in range(3)] == \
        [os.path.getsize(p) for p in paths]
    # hidden flags (SM's extension, before the name) kept; qemu reads the same disk
    assert [Qcow2File.open(os.path.join(out, "{}.qcow2".format(i))).hidden
            for i in range(3)] == [False, True, True]
    for i in range(3):
        q.qemu_check(os.path.join(out, "{}.qcow2".format(i)))
    assert chain_sha256(leaf) == model.sha256()
    if not absolute:
        assert q.qemu_compare(leaf, paths[0])
    # the source files are untouched
    assert q.backing_names(paths[1]) == [uuids[2] + ".qcow2", None]


def test_name_already_right_is_left_alone(tmp_path):
    uuids, _ = build_chain(str(tmp_path), 2, 4 * MiB, seed=4, fmt="qcow2")
    with open(os.path.join(str(tmp_path), uuids[0] + ".qcow2"), "rb") as f:
        assert member_head(f, f.name, uuids[1] + ".qcow2") is None


def test_a_longer_name_that_does_not_fit_is_refused(tmp_path):
    base = str(tmp_path / "b.qcow2")
    q.sm_create(base, 4 * MiB)
    child = str(tmp_path / "c.qcow2")
    q.sm_snapshot(child, "b.qcow2")
    set_hidden(base, True)
    with open(child, "rb") as f:
        head = member_head(f, child, "1.qcow2")          # longer than "b.qcow2": fits in zeros
        assert head is not None and head.endswith(b"1.qcow2")
        with pytest.raises(Qcow2FormatError, match="no room"):
            member_head(f, child, "x" * 70000)
