"""One file: open-time validation, reads, read-only safety (mapping: test_mapping.py)."""

import os

import pytest

from vhdport.errors import Qcow2CorruptError, Qcow2FormatError, ReadOnlyError
from vhdport.qcow2 import Qcow2File, create
from vhdport.qcow2.format import tables as t

KiB, MiB = 1024, 1024 * 1024


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
