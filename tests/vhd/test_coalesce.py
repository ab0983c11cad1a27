"""coalesce(): merge a child's present sectors into its parent, safely under interruption."""

import hashlib
import json
import os
import random
import shutil
import subprocess
import sys

import pytest

from vhdport.errors import ChainError
from vhdport.vhd import (Chain, VhdFile, coalesce, create_dynamic, create_fixed, create_snapshot,
                         set_parent)
from vhdport.vhd.check import check_chain
from vhdport.vhd.coalesce import CRASH_ENV

KiB, MiB = 1024, 1024 * 1024


def pattern(seed, length):
    return random.Random(seed).getrandbits(8 * length).to_bytes(length, "little")


def read_all(path):
    with Chain.open(path) as chain:
        return bytes(chain.read(0, chain.virtual_size))


def write(path, offset, data):
    with Chain.open(path, writable=True) as chain:
        chain.write(offset, data)


def assert_clean(path):
    found = check_chain(path)
    assert found == [], "\n".join(str(d) for d in found)


# writes at unaligned, block-crossing offsets (for disks of >= 4 MiB)
CHILD_WRITES = [(0, 700), (65536 - 100, 300), (MiB - 3, 2 * MiB + 10), (4 * MiB - 513, 513)]


def make_pair(tmp_path, parent_kind="dynamic", parent_bs=2 * MiB, child_bs=2 * MiB,
              size=4 * MiB):
    parent = str(tmp_path / "parent.vhd")
    child = str(tmp_path / "child.vhd")
    if parent_kind == "fixed":
        create_fixed(parent, size)
    else:
        create_dynamic(parent, size, block_size=parent_bs)
    write(parent, 1000, pattern(1, 5000))
    write(parent, 3 * MiB + 7, pattern(2, 100000))
    create_snapshot(child, "parent.vhd", block_size=child_bs)
    for i, (off, n) in enumerate(CHILD_WRITES):
        write(child, off, pattern(10 + i, min(n, size - off)))
    return parent, child


@pytest.mark.parametrize("parent_kind,parent_bs,child_bs", [
    ("dynamic", 2 * MiB, 2 * MiB),
    ("dynamic", 64 * KiB, 2 * MiB),
    ("dynamic", 2 * MiB, 128 * KiB),
    ("dynamic", 512 * KiB, 1 * MiB),
    ("fixed", None, 256 * KiB),
])
def test_coalesce_makes_parent_read_as_child(tmp_path, parent_kind, parent_bs, child_bs):
    parent, child = make_pair(tmp_path, parent_kind, parent_bs, child_bs)
    expected = read_all(child)
    assert read_all(parent) != expected
    result = coalesce(child)
    assert os.path.samefile(result, parent)
    assert read_all(parent) == expected
    assert read_all(child) == expected   # the child is untouched and still valid
    assert_clean(parent)


def test_only_present_sectors_are_copied(tmp_path):
    """Sectors the child does not hold keep the parent's data, even inside a child block."""
    parent, child = make_pair(tmp_path)
    before = read_all(parent)
    coalesce(child)
    after = read_all(parent)
    # bytes 1000..6000 of the parent: the child overwrote 0..700 only
    assert after[700:6000] == before[700:6000]
    assert after[:700] == pattern(10, 700)


def test_full_child_block_sets_parent_batmap(tmp_path):
    parent = str(tmp_path / "p.vhd")
    child = str(tmp_path / "c.vhd")
    create_dynamic(parent, 4 * MiB, block_size=MiB)
    create_snapshot(child, "p.vhd", block_size=MiB)
    write(child, MiB, pattern(3, MiB))
    coalesce(child)
    with VhdFile.open(parent) as disk:
        assert disk.batmap is not None   # a valid batmap (checksum verified on open)
        assert disk.batmap[0] & 0x40     # block 1 is full
        assert disk.allocated_blocks == 1
    assert read_all(parent)[MiB:2 * MiB] == pattern(3, MiB)
    assert_clean(parent)


def test_three_deep_coalesce_then_relink(tmp_path):
    """Coalesce the middle of base <- mid <- leaf, relink leaf to base, drop mid."""
    base, mid, leaf = (str(tmp_path / n) for n in ("base.vhd", "mid.vhd", "leaf.vhd"))
    create_dynamic(base, 6 * MiB, block_size=512 * KiB)
    write(base, 0, pattern(1, 6 * MiB))
    create_snapshot(mid, "base.vhd")
    write(mid, 12345, pattern(2, 3 * MiB))
    create_snapshot(leaf, "mid.vhd", block_size=256 * KiB)
    write(leaf, 2 * MiB - 1, pattern(3, 777777))
    expected_leaf, expected_mid = read_all(leaf), read_all(mid)
    assert coalesce(mid) == os.path.abspath(base)
    assert read_all(base) == expected_mid
    set_parent(leaf, "base.vhd")
    os.unlink(mid)
    assert read_all(leaf) == expected_leaf
    with Chain.open(leaf) as chain:
        assert chain.depth == 2
    assert_clean(leaf)


def test_coalesce_into_differencing_parent(tmp_path):
    base, mid, leaf = (str(tmp_path / n) for n in ("base.vhd", "mid.vhd", "leaf.vhd"))
    create_dynamic(base, 4 * MiB)
    write(base, 0, pattern(1, 4 * MiB))
    create_snapshot(mid, "base.vhd")
    write(mid, 4096 + 3, pattern(2, 9000))
    create_snapshot(leaf, "mid.vhd")
    write(leaf, 8000, pattern(3, 2 * MiB))
    expected = read_all(leaf)
    coalesce(leaf)
    assert read_all(mid) == expected
    assert_clean(mid)


def test_vhd_util_chain_coalesces_to_manifest_contents(tmp_path, vhd_fixtures):
    chain_dir = tmp_path / "chain"
    shutil.copytree(str(vhd_fixtures / "chain"), str(chain_dir))
    manifest = json.loads((vhd_fixtures / "manifest.json").read_text())
    leaf_sha = manifest["chain/leaf.vhd"]["contents_sha256"]
    coalesce(str(chain_dir / "leaf.vhd"))
    assert hashlib.sha256(read_all(str(chain_dir / "mid.vhd"))).hexdigest() == leaf_sha
    coalesce(str(chain_dir / "mid.vhd"))
    assert hashlib.sha256(read_all(str(chain_dir / "base.vhd"))).hexdigest() == leaf_sha
    assert_clean(str(chain_dir / "base.vhd"))


def test_refuses_non_differencing(tmp_path):
    path = str(tmp_path / "d.vhd")
    create_dynamic(path, MiB)
    with pytest.raises(ChainError, match="no parent"):
        coalesce(path)


def test_refuses_smaller_parent(tmp_path):
    create_dynamic(str(tmp_path / "small.vhd"), MiB)
    create_dynamic(str(tmp_path / "big.vhd"), 2 * MiB)
    child = str(tmp_path / "c.vhd")
    create_snapshot(child, "big.vhd")
    write(child, 0, b"x" * 4096)
    set_parent(child, "small.vhd")
    before = open(str(tmp_path / "small.vhd"), "rb").read()
    with pytest.raises(ChainError, match="smaller"):
        coalesce(child)
    assert open(str(tmp_path / "small.vhd"), "rb").read() == before


def test_refuses_wrong_parent(tmp_path):
    parent = str(tmp_path / "p.vhd")
    create_dynamic(parent, MiB)
    child = str(tmp_path / "c.vhd")
    create_snapshot(child, "p.vhd")
    write(child, 0, b"x" * 4096)
    os.unlink(parent)
    create_dynamic(parent, MiB)   # same name, another uuid
    with pytest.raises(ChainError, match="uuid"):
        coalesce(child)
    assert read_all(parent) == bytes(MiB)


# ------------------------------------------------------------ interruption


def crash_pair(tmp_path):
    """Parent with blocks already allocated, child touching existing and new parent blocks."""
    parent = str(tmp_path / "parent.vhd")
    child = str(tmp_path / "child.vhd")
    create_dynamic(parent, 8 * MiB, block_size=512 * KiB)
    write(parent, 100, pattern(1, 3 * MiB))        # existing blocks 0..6, partly filled
    create_snapshot(child, "parent.vhd", block_size=256 * KiB)
    for i in range(16):                             # 16 partial/straddling writes
        write(child, i * 512 * KiB - 1000 + (i == 0) * 1000, pattern(20 + i, 70000))
    return parent, child


def sectors_between(now, before, after):
    """Count sectors equal to after (and not before); fail on any matching neither."""
    changed = 0
    for s in range(0, len(now), 512):
        cur = now[s:s + 512]
        if cur == after[s:s + 512]:
            changed += cur != before[s:s + 512]
        else:
            assert cur == before[s:s + 512], "sector {} is neither old nor new".format(s // 512)
    return changed


@pytest.mark.parametrize("crash_after,batch_blocks", [(1, 1), (5, 2), (9, 4), (3, 100)])
def test_crash_midway_leaves_each_sector_old_or_new(tmp_path, monkeypatch, crash_after,
                                                     batch_blocks):
    parent, child = crash_pair(tmp_path)
    before, after = read_all(parent), read_all(child)
    total_changed = sectors_between(after, before, after)
    monkeypatch.setenv(CRASH_ENV, str(crash_after))
    with pytest.raises(SystemExit):
        coalesce(child, batch_bytes=batch_blocks * 256 * KiB)
    changed = sectors_between(read_all(parent), before, after)
    assert changed < total_changed
    assert_clean(parent)
    monkeypatch.delenv(CRASH_ENV)
    coalesce(child)    # a rerun finishes the job
    assert read_all(parent) == after
    assert_clean(parent)


def test_crash_before_first_commit_leaves_new_blocks_invisible(tmp_path, monkeypatch):
    parent, child = crash_pair(tmp_path)
    with VhdFile.open(parent) as disk:
        allocated = disk.allocated_blocks
    before = read_all(parent)
    monkeypatch.setenv(CRASH_ENV, "20")    # child blocks 0..19 reach new parent blocks 7..9
    with pytest.raises(SystemExit):
        coalesce(child, batch_bytes=64 * MiB)
    with VhdFile.open(parent) as disk:
        assert disk.allocated_blocks == allocated
    now = read_all(parent)
    sectors_between(now, before, read_all(child))
    # parent blocks 7.. did not exist: the staged data there stays invisible
    assert now[7 * 512 * KiB:] == before[7 * 512 * KiB:]
    assert now[:7 * 512 * KiB] != before[:7 * 512 * KiB]   # existing sectors overwritten in place


def test_hard_exit_in_a_subprocess(tmp_path):
    """os._exit (no cleanup at all) midway: the parent still opens and reads old-or-new."""
    parent, child = crash_pair(tmp_path)
    before, after = read_all(parent), read_all(child)
    env = dict(os.environ, **{CRASH_ENV: "7:exit"})
    code = "import sys; from vhdport.vhd import coalesce; coalesce(sys.argv[1], 3 * 256 * 1024)"
    proc = subprocess.run([sys.executable, "-c", code, child], env=env)
    assert proc.returncode == 75
    changed = sectors_between(read_all(parent), before, after)
    assert 0 < changed
    assert_clean(parent)


def test_progress_reports_committed_blocks(tmp_path):
    parent, child = crash_pair(tmp_path)
    with VhdFile.open(child) as disk:
        total = disk.allocated_blocks
    seen = []
    coalesce(child, batch_bytes=4 * 256 * KiB, progress=lambda done, all_: seen.append((done, all_)))
    assert seen[0] == (4, total) and seen[-1] == (total, total)
    assert [d for d, _ in seen] == sorted(d for d, _ in seen)
