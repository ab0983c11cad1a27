"""Cross-check with qemu-img (format ``vpc``): it reads our disks as we do, and we read its disks."""

import json
import os
import random
import subprocess

import pytest

from tests.peers.require import require_qemu_img
from vhdport.vhd import Chain, VhdFile, create_dynamic, create_fixed, export_raw, import_raw

QEMU_IMG = "/usr/bin/qemu-img"
KiB, MiB = 1024, 1024 * 1024



@pytest.fixture(autouse=True)
def _qemu_img_present():
    require_qemu_img()

# (offset, length): unaligned, crossing sectors and 2 MiB / 512 KiB block boundaries
ODD_WRITES = [(0, 1), (511, 2), (4095, 10000), (2 * MiB - 7, 20), (512 * KiB + 3, 700000),
              (5 * MiB + 1, 3 * 512 - 1)]


def pattern(seed, length):
    return random.Random(seed).getrandbits(8 * length).to_bytes(length, "little")


def qemu(*args):
    proc = subprocess.run([QEMU_IMG] + list(args), stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                          universal_newlines=True)
    assert proc.returncode == 0, "qemu-img {} failed: {}".format(" ".join(args), proc.stderr)
    return proc.stdout


def qemu_info(path):
    return json.loads(qemu("info", "-f", "vpc", "--output=json", path))


def ours_with_writes(path, kind, size, block_size=2 * MiB):
    """One of our disks with ODD_WRITES applied; return the expected raw contents."""
    if kind == "fixed":
        create_fixed(path, size)
    else:
        create_dynamic(path, size, block_size=block_size)
    expected = bytearray(size)
    with Chain.open(path, writable=True) as chain:
        for i, (off, n) in enumerate(ODD_WRITES):
            if off >= size:
                continue
            n = min(n, size - off)
            data = pattern(i, n)
            chain.write(off, data)
            expected[off:off + n] = data
        chain.write(size - 3, b"end")
        expected[size - 3:] = b"end"
    return bytes(expected)


@pytest.mark.parametrize("kind,size,block_size", [
    ("dynamic", 8 * MiB, 2 * MiB),
    ("dynamic", 6 * MiB + 4096 + 512, 512 * KiB),   # size not a multiple of the block size
    ("dynamic", 7 * MiB, 64 * KiB),
    ("fixed", 6 * MiB + 1536, None),
])
def test_qemu_reads_our_disks(tmp_path, kind, size, block_size):
    vhd = str(tmp_path / "ours.vhd")
    expected = ours_with_writes(vhd, kind, size, block_size)
    raw = tmp_path / "expected.raw"
    raw.write_bytes(expected)
    qemu("compare", "-f", "vpc", vhd, "-F", "raw", str(raw))
    out = tmp_path / "qemu.raw"
    qemu("convert", "-f", "vpc", "-O", "raw", vhd, str(out))
    assert out.read_bytes() == expected
    assert qemu_info(vhd)["virtual-size"] == size


def test_qemu_compare_detects_a_difference(tmp_path):
    """The comparison above can fail: one changed byte is seen."""
    vhd = str(tmp_path / "ours.vhd")
    expected = bytearray(ours_with_writes(vhd, "dynamic", 4 * MiB))
    expected[3 * MiB + 5] ^= 1
    (tmp_path / "bad.raw").write_bytes(bytes(expected))
    proc = subprocess.run([QEMU_IMG, "compare", "-f", "vpc", vhd, "-F", "raw",
                           str(tmp_path / "bad.raw")], stdout=subprocess.PIPE,
                          stderr=subprocess.PIPE)
    assert proc.returncode == 1


@pytest.mark.parametrize("fixed", [False, True])
def test_qemu_reads_our_imports(tmp_path, fixed):
    raw = bytearray(5 * MiB + 1000)
    raw[100:200000] = pattern(7, 199900)
    raw[4 * MiB:4 * MiB + 1000] = pattern(8, 1000)
    (tmp_path / "in.raw").write_bytes(bytes(raw))
    vhd = str(tmp_path / "imp.vhd")
    import_raw(str(tmp_path / "in.raw"), vhd, fixed=fixed)
    padded = bytes(raw) + bytes(-len(raw) % 512)
    (tmp_path / "padded.raw").write_bytes(padded)
    qemu("compare", "-f", "vpc", vhd, "-F", "raw", str(tmp_path / "padded.raw"))
    assert qemu_info(vhd)["virtual-size"] == len(padded)


QEMU_KINDS = [("subformat=dynamic", "dynamic"), ("subformat=fixed", "fixed"),
              ("subformat=dynamic,force_size=on", "dynamic"),
              ("subformat=fixed,force_size=on", "fixed")]


@pytest.mark.parametrize("options,kind", QEMU_KINDS)
@pytest.mark.parametrize("size", [10 * MiB, 3333333])
def test_we_read_qemu_disks(tmp_path, options, kind, size):
    raw = bytearray(size)
    for i, (off, n) in enumerate(ODD_WRITES):
        if off >= size:
            continue
        n = min(n, size - off)
        raw[off:off + n] = pattern(40 + i, n)
    raw[-5:] = b"tail!"
    (tmp_path / "src.raw").write_bytes(bytes(raw))
    vhd = str(tmp_path / "qemu.vhd")
    qemu("convert", "-f", "raw", "-O", "vpc", "-o", options, str(tmp_path / "src.raw"), vhd)
    qemu_size = qemu_info(vhd)["virtual-size"]
    with VhdFile.open(vhd) as disk:
        assert disk.type_name == kind
        assert disk.virtual_size == qemu_size
        if "force_size" in options:
            assert qemu_size == (size + 511) // 512 * 512
    theirs = tmp_path / "theirs.raw"
    qemu("convert", "-f", "vpc", "-O", "raw", vhd, str(theirs))
    ours = tmp_path / "ours.raw"
    export_raw(vhd, str(ours))
    assert ours.read_bytes() == theirs.read_bytes()
    assert ours.read_bytes()[:size] == bytes(raw)


def test_qemu_made_empty_dynamic_disk(tmp_path):
    vhd = str(tmp_path / "empty.vhd")
    qemu("create", "-q", "-f", "vpc", "-o", "subformat=dynamic,force_size=on", vhd, "5M")
    export_raw(vhd, str(tmp_path / "out.raw"))
    assert (tmp_path / "out.raw").read_bytes() == bytes(5 * MiB)
    with VhdFile.open(vhd) as disk:
        assert disk.allocated_blocks == 0


def test_qemu_reads_a_base_after_interrupted_then_finished_coalesce(tmp_path, monkeypatch):
    """Our write path into an existing dynamic disk (orphaned blocks from the interrupted
    run included) leaves a file qemu reads exactly as we do."""
    from vhdport.vhd import coalesce, create_snapshot
    from vhdport.vhd.coalesce import CRASH_ENV
    base = str(tmp_path / "base.vhd")
    ours_with_writes(base, "dynamic", 8 * MiB, 512 * KiB)
    leaf = str(tmp_path / "leaf.vhd")
    create_snapshot(leaf, "base.vhd", block_size=128 * KiB)
    with Chain.open(leaf, writable=True) as chain:
        for i in range(12):
            chain.write(i * 640 * KiB + 333, pattern(100 + i, 200 * KiB))
        expected = bytes(chain.read(0, chain.virtual_size))
    monkeypatch.setenv(CRASH_ENV, "9")
    with pytest.raises(SystemExit):
        coalesce(leaf, batch_bytes=4 * 128 * KiB)
    monkeypatch.delenv(CRASH_ENV)
    coalesce(leaf)
    (tmp_path / "expected.raw").write_bytes(expected)
    qemu("compare", "-f", "vpc", base, "-F", "raw", str(tmp_path / "expected.raw"))
