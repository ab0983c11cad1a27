"""check_image agrees with qemu-img check: clean images have no defect, damage is named."""

import json
import os
import struct

import pytest

from tests.qcow2.qemu import alone, qemu_img, qemu_io, require_qemu
from vhdport.qcow2 import Qcow2File
from vhdport.qcow2.check import check_image
from vhdport.qcow2.create import create
from vhdport.qcow2.format import tables as t

MiB = 1024 * 1024


@pytest.fixture(autouse=True)
def _qemu():
    require_qemu()


def qemu_check(path):
    proc = qemu_img("check", "--output=json", "json:" + alone(path), check=False)
    return json.loads(proc.stdout) if proc.stdout.strip() else {}


@pytest.mark.parametrize("options", ["compat=0.10", "cluster_size=512,refcount_bits=2",
                                     "refcount_bits=64", "extended_l2=on",
                                     "preallocation=metadata", "lazy_refcounts=on"])
def test_qemu_images_are_clean(tmp_path, options):
    path = str(tmp_path / "a.qcow2")
    qemu_img("create", "-q", "-f", "qcow2", "-o", options, path, "8M")
    qemu_io(path, "write -P 1 0 100k", "write -P 2 3M 1", "write -z 4M 1M")
    qemu_img("snapshot", "-c", "s1", path)
    qemu_io(path, "write -P 3 0 64k")
    assert check_image(path) == []


def test_compressed_and_bitmaps_are_clean(tmp_path):
    raw = str(tmp_path / "a.raw")
    with open(raw, "wb") as f:
        f.write(b"abc" * MiB)
    path = str(tmp_path / "c.qcow2")
    qemu_img("convert", "-c", "-f", "raw", "-O", "qcow2", raw, path)
    qemu_img("bitmap", "--add", path, "b0")
    qemu_io(path, "write -P 4 1M 64k")
    assert check_image(path) == []


def damaged(tmp_path):
    path = str(tmp_path / "d.qcow2")
    create(path, 8 * MiB)
    with Qcow2File.open(path, writable=True) as image:
        image.write(0, b"x" * 70000)
    return path


def test_leak_is_found(tmp_path):
    path = damaged(tmp_path)
    with Qcow2File.open(path, writable=True) as image:
        image._begin_write()
        spare = image.allocate(1)          # counted, referenced by nothing
        image.pwrite(spare, bytes(image.cluster_size))
    defects = check_image(path)
    assert [(d.field, d.offset) for d in defects] == [("leak", spare)]
    assert qemu_check(path)["leaks"] == 1


def test_refcount_past_the_end_of_the_file_is_a_leak(tmp_path):
    path = damaged(tmp_path)
    with Qcow2File.open(path, writable=True) as image:
        image._begin_write()
        image.allocate(1)                  # counted, never written: past EOF
        block = image._refblock_offset(0)
    assert [(d.field, d.offset) for d in check_image(path)] == [("leak", block)]


def test_missing_refcount_is_a_corruption(tmp_path):
    path = damaged(tmp_path)
    with Qcow2File.open(path) as image:
        host = image.cluster_entry(0)[0] & t.OFFSET_MASK
    with Qcow2File.open(path, writable=True) as image:
        image._begin_write()
        image.set_refcount(host // image.cluster_size, 0)
    fields = {(d.field, d.offset) for d in check_image(path)}
    assert ("refcount", host) in fields
    assert ("copied_flag", image.header.l1_table_offset) not in fields
    assert qemu_check(path)["corruptions"] >= 1


def test_shared_cluster_is_found(tmp_path):
    path = damaged(tmp_path)
    with Qcow2File.open(path) as image:
        first = image.cluster_entry(0)[0]
        l2 = image.cluster_entry(0)[2]
    with open(path, "r+b") as f:
        f.seek(l2 + 8)
        f.write(struct.pack(">Q", first))    # guest cluster 1 also points at cluster 0's data
    defects = check_image(path)
    assert any(d.field == "refcount" and d.offset == first & t.OFFSET_MASK for d in defects)
    assert any(d.field == "leak" for d in defects)       # cluster 1's old data


def test_unopenable_file_is_one_defect(tmp_path):
    path = str(tmp_path / "x.qcow2")
    create(path, MiB)
    with open(path, "r+b") as f:
        f.seek(32)
        f.write(struct.pack(">I", 1))
    defects = check_image(path)
    assert [(d.field, d.offset) for d in defects] == [("crypt_method", 32)]
    assert "encrypted" in defects[0].message


def test_check_chain(tmp_path):
    from vhdport.qcow2 import check_chain, create_snapshot

    base, top = str(tmp_path / "base.qcow2"), str(tmp_path / "top.qcow2")
    create(base, MiB, cluster_size=4096)
    create_snapshot(top, "base.qcow2")
    assert check_chain(top) == []
    with Qcow2File.open(base, writable=True) as image:
        image._begin_write()
        spare = image.allocate(1)
        image.pwrite(spare, bytes(4096))
    assert [(d.field, d.path) for d in check_chain(top)] == [("leak", base)]
    os.unlink(base)
    defects = check_chain(top)
    assert len(defects) == 1 and "not found" in defects[0].message


def test_header_sanity(tmp_path):
    path = str(tmp_path / "h.qcow2")
    create(path, MiB)
    with open(path, "r+b") as f:
        f.seek(95)
        f.write(b"\x81")              # bitmaps bit without extension + unknown bit 7
        f.seek(106)
        f.write(b"\x01")              # header padding
    fields = sorted(d.field for d in check_image(path))
    assert fields == ["autoclear_features", "autoclear_features", "header_length"]


def test_stale_bitmaps_agree_with_qemu(tmp_path):
    """Bitmaps whose autoclear bit was cleared (a writer without bitmap support): qemu counts
    their clusters as leaks, and so do we."""
    path = str(tmp_path / "b.qcow2")
    create(path, 4 * MiB)
    qemu_img("bitmap", "--add", path, "b0")
    qemu_io(path, "write -P 1 0 64k")
    with open(path, "r+b") as f:
        f.seek(88)
        f.write(bytes(8))
    defects = check_image(path)
    leaks = qemu_check(path)["leaks"]
    assert leaks and sum(d.field == "leak" for d in defects) == leaks
    assert any(d.field == "autoclear_features" for d in defects)
