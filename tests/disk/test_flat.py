"""Flat images through the disk face: raw and QCOW2 of VHD and QCOW2 chains, against qemu-img."""

import os
import shutil

import pytest

from tests.helpers import make_chain, write_through
from tests.peers.require import require_qemu_img
from tests.qcow2.qemu import qemu_img, qemu_io
from vhdport import disk
from vhdport.errors import ChainError, VhdportError
from vhdport.qcow2 import Qcow2Chain, local_backing
from vhdport.vhd import Chain

KiB, MiB = 1 << 10, 1 << 20
SIZE = 9 * MiB + 3 * 512          # not a multiple of a block or a cluster


@pytest.fixture(autouse=True)
def _qemu():
    require_qemu_img()


def fill(level, path):
    write_through(path, [(level * MiB + 7, bytes([0x40 + level]) * 70000),
                         (SIZE - 1000, bytes([0x50 + level]) * 1000)])


def expected_raw(leaf):
    """The chain's contents, written at their offsets into a sparse file of the virtual size."""
    with Chain.open(leaf) as chain:
        out = bytearray(chain.virtual_size)
        for off, n in chain.allocated_ranges():
            out[off:off + n] = chain.read(off, n)
    return bytes(out)


def streamed(image):
    data = b"".join(image)
    assert len(data) == image.size
    return data


class Watched(object):
    """A real chain that records which ranges were read."""

    def __init__(self, chain):
        self.chain, self.reads = chain, []
        self.virtual_size = chain.virtual_size

    def allocated_ranges(self):
        return self.chain.allocated_ranges()

    def read_into(self, offset, view):
        self.reads.append((offset, len(view)))
        self.chain.read_into(offset, view)

    def read(self, offset, length):
        self.reads.append((offset, length))
        return self.chain.read(offset, length)


def test_raw_is_the_virtual_disk_and_holes_are_not_read(tmp_path):
    paths = make_chain(str(tmp_path), 3, SIZE, fill=fill)
    leaf = paths[0]
    with disk.open_files(paths) as chain:
        watched = Watched(chain)
        image = disk.flat_image(watched, "raw")
        assert (image.size, image.disk_format, image.container_format) == (SIZE, "raw", "bare")
        assert watched.reads == []
        assert streamed(image) == expected_raw(leaf)
    allocated = sum(n for _off, n in chain.allocated_ranges())
    assert sum(n for _off, n in watched.reads) == allocated < SIZE - 3 * MiB


def test_qcow2_of_a_vhd_chain_compares_equal(tmp_path):
    leaf = make_chain(str(tmp_path), 2, SIZE, fill=fill)[0]
    raw = tmp_path / "expected.raw"
    raw.write_bytes(expected_raw(leaf))
    out = tmp_path / "flat.qcow2"
    with Chain.open(leaf) as chain:
        image = disk.flat_image(chain, "qcow2")
        assert (image.disk_format, image.container_format) == ("qcow2", "bare")
        out.write_bytes(streamed(image))
    qemu_img("check", "-f", "qcow2", str(out))
    qemu_img("compare", "-f", "qcow2", "-F", "raw", str(out), str(raw))


def test_raw_of_a_qcow2_chain_equals_qemu_convert(tmp_path):
    base, leaf = str(tmp_path / "base.qcow2"), str(tmp_path / "leaf.qcow2")
    qemu_img("create", "-q", "-f", "qcow2", base, str(SIZE))
    qemu_io(base, "write -P 0x11 0 3M", "write -P 0x12 {} 512".format(SIZE - 512))
    qemu_img("create", "-q", "-f", "qcow2", "-F", "qcow2", "-b", "base.qcow2", leaf, str(SIZE))
    qemu_io(leaf, "write -P 0x21 1M 64k", "write -z 2M 256k")
    qemu_img("convert", "-f", "qcow2", "-O", "raw", leaf, str(tmp_path / "q.raw"))
    with Qcow2Chain.open(leaf, backing=local_backing) as chain:
        assert streamed(disk.flat_image(chain, "raw")) == (tmp_path / "q.raw").read_bytes()


def test_open_files_reads_links_under_other_names(tmp_path):
    """Staging links are 0.vhd .. N.vhd: their locators do not resolve, the order given does."""
    sr, staged = tmp_path / "sr", tmp_path / "staged"
    sr.mkdir()
    staged.mkdir()
    paths = make_chain(str(sr), 3, SIZE, fill=fill)
    links = []
    for i, path in enumerate(paths):
        links.append(str(staged / disk.DEFAULT.file_name(i)))
        os.link(path, links[-1])
    expected = expected_raw(paths[0])
    shutil.rmtree(str(sr))
    with disk.open_files(links) as chain:
        assert chain.paths() == links
        assert streamed(disk.flat_image(chain, "raw")) == expected


def test_refusals(tmp_path):
    with pytest.raises(ChainError, match="no files"):
        disk.open_files([])
    leaf = make_chain(str(tmp_path), 1, SIZE)[0]
    with Chain.open(leaf) as chain:
        with pytest.raises(VhdportError, match="no flat image format 'vmdk'"):
            disk.flat_image(chain, "vmdk")
    other = tmp_path / "x.img"
    other.write_bytes(b"\0" * 4096)
    with pytest.raises(VhdportError, match="not a disk of a known format"):
        disk.open_files([leaf, str(other)])
