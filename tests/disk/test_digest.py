"""The content digest: the same for a raw file, a VHD chain and a QCOW2 chain of the same
contents; different for different contents or sizes; holes never read.

Expected values come from a naive reference (hash every block's bytes) over a raw file
written independently, so a digest that is wrong in the same way for every format fails.
"""

import hashlib
import os
import subprocess
import threading

import pytest

from tests.helpers import make_chain, write_through
from tests.peers.require import require_qemu_img
from vhdport import disk
from vhdport.disk import digest as dg
from vhdport.errors import FormatError
from vhdport.qcow2 import Qcow2Chain, local_backing

MiB = 1 << 20
SIZE = 40 * MiB + 512 * 3       # a short last block
#: per chain level (base first): (offset, length, fill byte); overlaps so later levels win
LEVELS = [
    [(0, 3 * MiB, 0x11), (9 * MiB + 512, 5 * MiB, 0x22), (SIZE - 1024, 1024, 0x33)],
    [(MiB, 512, 0x44), (12 * MiB, 4 * MiB, 0x00), (30 * MiB, 2 * MiB, 0x55)],
    [(2 * MiB + 4096, 8 * MiB, 0x66), (31 * MiB, 4096, 0x77)],
]


def reference(raw_path):
    """The documented construction, done the slow obvious way over every byte."""
    size = os.path.getsize(raw_path)
    outer = hashlib.blake2b(digest_size=32)
    outer.update("vhdport content digest\nalgorithm=blake2b-256\nblock_size={}\nvirtual_size={}\n"
                 .format(4 * MiB, size).encode())
    with open(raw_path, "rb") as f:
        while True:
            block = f.read(4 * MiB)
            if not block:
                break
            outer.update(hashlib.blake2b(block, digest_size=32).digest())
    return "blake2b-256/4MiB:" + outer.hexdigest()


def write_raw(path, size, levels):
    with open(path, "wb") as f:
        f.truncate(size)
        for writes in levels:
            for offset, length, byte in writes:
                f.seek(offset)
                f.write(bytes([byte]) * length)


def vhd_chain(directory, levels, size=SIZE):
    def fill(level, path):
        write_through(path, [(o, bytes([b]) * n) for o, n, b in levels[level]])
    return make_chain(str(directory), len(levels), size, fill=fill)[0]


def qemu(*args):
    proc = subprocess.run([require_qemu_img()] + [str(a) for a in args], stdout=subprocess.PIPE,
                          stderr=subprocess.PIPE, universal_newlines=True)
    assert proc.returncode == 0, proc.stderr
    return proc.stdout


def qcow2_chain(directory, levels, size=SIZE):
    """A backing chain made by qemu-img (create -b) and written by qemu-io, leaf path."""
    qemu_io = os.path.join(os.path.dirname(require_qemu_img()), "qemu-io")
    path = None
    for level, writes in enumerate(levels):
        name = os.path.join(str(directory), "l{}.qcow2".format(level))
        if path is None:
            qemu("create", "-f", "qcow2", name, size)
        else:
            qemu("create", "-f", "qcow2", "-F", "qcow2", "-b", os.path.basename(path), name)
        cmds = []
        for offset, length, byte in writes:
            cmds += ["-c", "write -P {} {} {}".format(byte, offset, length)]
        subprocess.run([qemu_io, "-f", "qcow2"] + cmds + [name], check=True,
                       stdout=subprocess.DEVNULL)
        path = name
    return path


@pytest.fixture
def raw(tmp_path):
    path = str(tmp_path / "disk.raw")
    write_raw(path, SIZE, LEVELS)
    return path


def test_raw_matches_the_reference(raw):
    assert str(disk.content_digest(raw)) == reference(raw)


def test_vhd_chain_equals_raw(tmp_path, raw):
    leaf = vhd_chain(tmp_path, LEVELS)
    assert str(disk.content_digest(leaf)) == reference(raw)


def test_qcow2_chain_made_by_qemu_equals_raw(tmp_path, raw):
    leaf = qcow2_chain(tmp_path, LEVELS)
    with Qcow2Chain.open(leaf, backing=local_backing) as chain:
        assert chain.depth == 3
        assert str(disk.content_digest(chain)) == reference(raw)


def test_qcow2_chain_by_path_through_the_face(tmp_path, raw):
    leaf = qcow2_chain(tmp_path, LEVELS)
    assert disk.for_path(leaf).name == "qcow2"
    assert str(disk.content_digest(leaf)) == reference(raw)
    # a QCOW2 without a .qcow2 name is still one (by magic), not raw bytes
    renamed = str(tmp_path / "leaf.img")
    os.rename(leaf, renamed)
    assert str(disk.content_digest(renamed)) == reference(raw)


def test_qemu_img_conversions_of_raw_agree(tmp_path, raw):
    vpc = str(tmp_path / "c.vhd")
    qcow2 = str(tmp_path / "c.qcow2")
    qemu("convert", "-f", "raw", "-O", "vpc", "-o", "subformat=dynamic,force_size=on", raw, vpc)
    qemu("convert", "-f", "raw", "-O", "qcow2", raw, qcow2)
    with Qcow2Chain.open(qcow2) as chain:
        got_qcow2 = str(disk.content_digest(chain))
    assert str(disk.content_digest(vpc)) == got_qcow2 == reference(raw)


def test_different_contents_differ(tmp_path, raw):
    other = str(tmp_path / "other.raw")
    write_raw(other, SIZE, LEVELS + [[(20 * MiB + 7, 1, 0x01)]])
    assert str(disk.content_digest(other)) != str(disk.content_digest(raw))
    assert str(disk.content_digest(other)) == reference(other)


def test_virtual_size_matters(tmp_path):
    sizes = [4 * MiB, 8 * MiB, 8 * MiB + 512]
    found = set()
    for size in sizes:
        path = str(tmp_path / "{}.raw".format(size))
        write_raw(path, size, [])
        result = disk.content_digest(path)
        assert (result.virtual_size, str(result)) == (size, reference(path))
        found.add(str(result))
    assert len(found) == len(sizes)


def test_written_zeros_hash_as_holes(tmp_path):
    sparse, dense = str(tmp_path / "sparse.raw"), str(tmp_path / "dense.raw")
    write_raw(sparse, 16 * MiB, [])
    write_raw(dense, 16 * MiB, [[(0, 16 * MiB, 0)]])
    allocated = vhd_chain(tmp_path, [[(0, 16 * MiB, 0)]], size=16 * MiB)
    with disk.by_name("vhd").open_chain(allocated) as chain:
        assert chain.allocated_ranges() == [(0, 16 * MiB)]     # really allocated
    assert os.stat(dense).st_blocks * 512 >= 16 * MiB
    expected = reference(dense)
    assert str(disk.content_digest(sparse)) == expected
    assert str(disk.content_digest(dense)) == expected
    assert str(disk.content_digest(allocated)) == expected


class Counting(object):
    """A chain-like wrapper that records every read."""

    def __init__(self, chain):
        self.chain, self.virtual_size, self.reads = chain, chain.virtual_size, []

    def allocated_ranges(self):
        return self.chain.allocated_ranges()

    def read_into(self, offset, view):
        self.reads.append((offset, len(view)))
        self.chain.read_into(offset, view)


def test_holes_are_not_read_vhd(tmp_path):
    size = 1 << 40      # 1 TiB virtual, 10 MiB written in two places
    writes = [[(5 * MiB, 6 * MiB, 0x5a), (size - 4 * MiB - 512, 4 * MiB, 0xa5)]]
    leaf = vhd_chain(tmp_path, writes, size=size)
    with disk.by_name("vhd").open_chain(leaf) as chain:
        counting = Counting(chain)
        got = disk.content_digest(counting)
    # blocks 1 and 2 hold the first write; the second spans the last two blocks
    last = size // (4 * MiB) - 1
    assert sorted(o // (4 * MiB) for o, _ in counting.reads) == [1, 2, last - 1, last]
    assert all(n == 4 * MiB for _, n in counting.reads)
    assert got.virtual_size == size and str(got).startswith("blake2b-256/4MiB:")


def test_holes_are_not_read_raw_and_equal_vhd(tmp_path):
    size = 64 * MiB
    writes = [[(33 * MiB, MiB, 0x42)]]
    raw = str(tmp_path / "sparse.raw")
    write_raw(raw, size, writes)
    with dg.RawDisk(raw) as source:
        ranges = list(source.allocated_ranges())
        counting = Counting(source)
        got = disk.content_digest(counting)
    assert sum(n for _, n in ranges) < size          # the filesystem reports holes
    assert [o // (4 * MiB) for o, _ in counting.reads] == [8]
    assert str(got) == reference(raw) == str(disk.content_digest(vhd_chain(tmp_path, writes,
                                                                             size=size)))


def test_unaligned_raw_size(tmp_path):
    path = str(tmp_path / "odd.raw")
    write_raw(path, 5 * MiB + 3, [[(5 * MiB, 3, 0x09)]])
    assert str(disk.content_digest(path)) == reference(path)


def test_workers_do_not_change_the_result(raw):
    assert {str(disk.content_digest(raw, workers=w)) for w in (0, 1, 2, 7)} == {reference(raw)}


def test_cancel_stops_the_digest(raw):
    cancel = threading.Event()
    cancel.set()
    with pytest.raises(dg.Cancelled):
        disk.content_digest(raw, cancel=cancel)


def test_missing_file_is_a_format_error(tmp_path):
    with pytest.raises(FormatError, match="cannot open"):
        disk.content_digest(str(tmp_path / "absent.raw"))


def test_result_describes_itself(raw):
    result = disk.content_digest(raw)
    doc = result.to_dict()
    assert doc == {"algorithm": "blake2b-256", "block_size": 4 * MiB, "virtual_size": SIZE,
                   "digest": str(result)}
    assert dg.is_comparable(str(result)) and len(result.hexdigest) == 64
    assert not dg.is_comparable("sha256/1MiB:" + "0" * 64)


def test_a_backing_file_elsewhere_needs_local_files(tmp_path, raw):
    """Paths are opened under SR safety unless the caller (the CLI) names LOCAL_FILES."""
    require_qemu_img()
    (tmp_path / "images").mkdir()
    (tmp_path / "vm").mkdir()
    base = str(tmp_path / "images" / "base.qcow2")
    subprocess.run(["qemu-img", "convert", "-f", "raw", "-O", "qcow2", raw, base], check=True,
                   stdout=subprocess.DEVNULL)
    leaf = str(tmp_path / "vm" / "leaf.qcow2")
    subprocess.run(["qemu-img", "create", "-f", "qcow2", "-F", "qcow2", "-b",
                    "../images/base.qcow2", leaf], check=True, stdout=subprocess.DEVNULL)
    with pytest.raises(FormatError, match="another directory"):
        disk.content_digest(leaf)
    assert str(disk.content_digest(leaf, backing=disk.LOCAL_FILES)) == reference(raw)
