"""One file: open-time validation, mapping, on-demand L2 cache, reads, read-only safety."""

import os
import struct

import pytest

from tests.qcow2.qemu import qemu_img, qemu_io, require_qemu
from vhdport.errors import Qcow2CorruptError, Qcow2FormatError, ReadOnlyError
from vhdport.qcow2 import Qcow2File, create
from vhdport.qcow2.format import tables as t
from vhdport.qcow2 import image as image_module

KiB, MiB = 1024, 1024 * 1024


def test_map_kinds_and_merge(tmp_path):
    require_qemu()
    path = str(tmp_path / "a.qcow2")
    qemu_img("create", "-q", "-f", "qcow2", "-o", "cluster_size=4k", path, "1M")
    qemu_io(path, "write -P 1 0 12k", "write -z 64k 8k")
    with Qcow2File.open(path) as image:
        runs = list(image.map(0, MiB))
    assert runs[0][:3] == (0, 12 * KiB, t.DATA)
    assert (64 * KiB, 8 * KiB, t.ZERO_KIND, None) in runs
    assert runs[-1][2] == t.UNALLOCATED and runs[-1][0] + runs[-1][1] == MiB


def test_l2_tables_are_cached_not_all_loaded(tmp_path, monkeypatch):
    monkeypatch.setattr(image_module, "L2_CACHE_BYTES", 4 * 512)
    path = str(tmp_path / "a.qcow2")
    create(path, 4 * MiB, cluster_size=512)
    with Qcow2File.open(path, writable=True) as image:
        for i in range(0, 4 * MiB, 64 * 512):
            image.write(i, b"x")           # one L2 table per 32 KiB of guest space
    with Qcow2File.open(path) as image:
        assert image.read(0, 4 * MiB).count(b"x") == 128
        assert len(image._l2_cache) <= 4


def test_read_only_open_refuses_writes(tmp_path):
    path = str(tmp_path / "a.qcow2")
    create(path, MiB)
    with Qcow2File.open(path) as image:
        with pytest.raises(ReadOnlyError, match="opened read-only"):
            image.write(0, b"x")


def test_missing_and_fifo(tmp_path):
    with pytest.raises(Qcow2FormatError, match="no such QCOW2 file"):
        Qcow2File.open(str(tmp_path / "nope.qcow2"))
    fifo = str(tmp_path / "fifo")
    os.mkfifo(fifo)
    with pytest.raises(Qcow2FormatError, match="not a regular file"):
        Qcow2File.open(fifo)


def test_truncated_l2_table_is_refused_at_open(tmp_path):
    path = str(tmp_path / "a.qcow2")
    create(path, MiB)
    with Qcow2File.open(path, writable=True) as image:
        image.write(0, b"x")
        l2 = image.l1_entry(0) & t.OFFSET_MASK
    os.truncate(path, l2 + 100)
    with pytest.raises(Qcow2CorruptError) as info:
        Qcow2File.open(path)
    assert info.value.fields["field"] == "l1_entry"


def test_read_outside_the_disk(tmp_path):
    path = str(tmp_path / "a.qcow2")
    create(path, MiB)
    with Qcow2File.open(path) as image:
        with pytest.raises(Qcow2FormatError, match="outside the virtual size"):
            image.read(MiB - 1, 2)


def test_v2_zero_flag_is_corrupt(tmp_path):
    path = str(tmp_path / "a.qcow2")
    create(path, MiB, version=2)
    with Qcow2File.open(path, writable=True) as image:
        image.write(0, b"x" * 65536)
        l2 = image.l1_entry(0) & t.OFFSET_MASK
    with open(path, "r+b") as f:
        f.seek(l2)
        f.write(struct.pack(">Q", t.ZERO))
    with Qcow2File.open(path) as image:
        with pytest.raises(Qcow2CorruptError, match="version 2"):
            image.read(0, 10)


def _mapped(path, offset, length):
    with Qcow2File.open(path) as image:
        return list(image.map(offset, length))


def test_span_mapping_matches_cluster_by_cluster(tmp_path, monkeypatch):
    """Long regular runs are mapped as one span; the result is what classify gives alone."""
    require_qemu()
    path = str(tmp_path / "a.qcow2")
    qemu_img("create", "-q", "-f", "qcow2", "-o", "cluster_size=4k", path, str(3 * MiB + 512))
    qemu_io(path, "write -P 1 0 1M", "write -z 1M 200k", "write -P 2 1100k 12k",
            "write -c -P 3 1200k 4k", "write -P 4 2M 12k", "write -P 5 1300k 40k",
            "write -P 6 {} 512".format(3 * MiB))
    cases = [(0, 3 * MiB + 512), (5, 3 * MiB), (1023 * KiB + 7, 300 * KiB), (2 * MiB + 1, 9)]
    fast = [_mapped(path, off, n) for off, n in cases]
    monkeypatch.setattr(Qcow2File, "_plain_span", lambda self, cluster, stop: None)
    assert fast == [_mapped(path, off, n) for off, n in cases]
    assert fast[0][0][:3] == (0, MiB, t.DATA)
    assert fast[0][1] == (MiB, 76 * KiB, t.ZERO_KIND, None)


def test_span_past_the_end_names_the_first_bad_cluster(tmp_path):
    """A contiguous data run whose tail lies past EOF: refused at its first such cluster."""
    require_qemu()
    path = str(tmp_path / "a.qcow2")
    qemu_img("create", "-q", "-f", "qcow2", path, "4M")
    qemu_io(path, "write -P 1 0 2M")
    with Qcow2File.open(path) as image:
        (_g, _n, kind, host), = image.map(0, 2 * MiB)
        size = image.file_size
    assert kind == t.DATA and host + 2 * MiB == size      # data last in the file
    with open(path, "r+b") as f:
        f.truncate(size - 3 * 64 * KiB)
    with Qcow2File.open(path) as image:
        with pytest.raises(Qcow2CorruptError, match="guest cluster 29 maps to host"):
            list(image.map(0, 2 * MiB))
        assert list(image.map(0, 29 * 64 * KiB)) == [(0, 29 * 64 * KiB, t.DATA, host)]
