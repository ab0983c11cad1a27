"""The face's conversions (vhdport.disk.convert): SM's format-by-size rule, any -> any copies,
store images adopted or rewritten into SM's layout -- against the real qemu-img / qemu-io."""

import hashlib
import os
import time

import pytest

from tests.qcow2.qemu import compare_raw, qemu_img, qemu_io, require_qemu
from tests.qcow2.qemu import check as qemu_check
from vhdport import disk
from vhdport.disk import convert
from vhdport.errors import FormatError, LimitError, NoSpaceError, VhdportError
from vhdport.qcow2 import Qcow2File
from vhdport.qcow2.format.header import EXT_HIDDEN
from vhdport.qcow2.untrusted import StoreImage, sm_layout_problems
from vhdport.vhd import Chain

MiB, GiB, TiB = 1 << 20, 1 << 30, 1 << 40


@pytest.fixture(autouse=True)
def _qemu():
    require_qemu()


def qcow2():
    fmt = disk.by_name("qcow2")
    assert fmt is not None, "the QCOW2 format is not in the disk face's registry"
    return fmt


def test_format_for_size_follows_sm_preference():
    assert convert.format_for_size(GiB) is disk.by_name("vhd")
    assert convert.format_for_size(disk.by_name("vhd").max_virtual_size) is disk.by_name("vhd")
    assert convert.format_for_size(disk.by_name("vhd").max_virtual_size + 512) is qcow2()
    assert convert.format_for_size(GiB, "qcow2") is qcow2()
    with pytest.raises(LimitError) as e:
        convert.format_for_size(3 * TiB, "vhd", "image I")
    assert "image I" in str(e.value)
    with pytest.raises(LimitError):
        convert.format_for_size(17 * TiB)
    with pytest.raises(VhdportError) as e:
        convert.format_for_size(GiB, "vmdk")
    assert "vmdk" in str(e.value)


def sha_of_chain(chain):
    digest = hashlib.sha256()
    for _offset, data in chain.iter_blocks():
        digest.update(data)
    return digest.hexdigest()


def sha_of_raw(path):
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for data in iter(lambda: f.read(MiB), b""):
            digest.update(data)
    return digest.hexdigest()


def source_image(tmp_path, name, *options, size="48M", compressed=False):
    """A qemu-made QCOW2 with data, zero clusters and holes; also its contents as raw."""
    path = str(tmp_path / name)
    args = ["create", "-f", "qcow2"]
    for opt in options:
        args += ["-o", opt]
    qemu_img(*(args + [path, size]))
    writes = ["write -P 0x11 0 1M", "write -P 0x22 5M 300k", "write -P 0x33 20M 64k",
              "write -P 0 30M 2M"]
    if "compat=0.10" not in options:
        writes.append("write -z 5M 64k")      # a zero cluster over data (v3 only)
    qemu_io(path, *writes)
    if compressed:
        out = path + ".c"
        qemu_img("convert", "-c", "-O", "qcow2", *(sum((["-o", o] for o in options), []) +
                                                    [path, out]))
        os.replace(out, path)
    raw = str(tmp_path / (name + ".raw"))
    qemu_img("convert", "-f", "qcow2", "-O", "raw", path, raw)
    return path, raw


def assert_sm_layout(path):
    with StoreImage(path, "landed") as image:
        assert sm_layout_problems(image) == []
        ext = image.image.header.extension(EXT_HIDDEN)
        assert ext is not None and ext.data == bytes(8)
    qemu_check(path)


CASES = [
    ("default", [], False),
    ("compressed", [], True),
    ("v2", ["compat=0.10"], False),
    ("v2-compressed", ["compat=0.10"], True),
    ("4k-clusters", ["cluster_size=4096"], False),
    ("2m-clusters", ["cluster_size=2M"], False),
    ("refcount-64", ["refcount_bits=64"], False),
    ("lazy", ["lazy_refcounts=on"], False),
    ("extended-l2", ["cluster_size=128k", "extended_l2=on"], False),
]


@pytest.mark.parametrize("label, options, compressed", CASES, ids=[c[0] for c in CASES])
def test_store_qcow2_lands_in_sm_layout(tmp_path, label, options, compressed):
    src, raw = source_image(tmp_path, "src.qcow2", *options, compressed=compressed)
    spooled = str(tmp_path / "spool.part")
    os.link(src, spooled)
    out = str(tmp_path / "0.qcow2")
    how = convert.land_store_image(spooled, qcow2(), qcow2(), out, "image " + label)
    assert how == ("adopted" if label == "default" else "rewritten")
    assert not os.path.exists(spooled)
    assert_sm_layout(out)
    compare_raw(out, raw)


def test_adopted_hidden_image_lands_visible(tmp_path):
    src, raw = source_image(tmp_path, "h.qcow2")
    qcow2().set_hidden(src, True)
    out = str(tmp_path / "0.qcow2")
    assert convert.land_store_image(src, qcow2(), qcow2(), out, "h") == "adopted"
    assert_sm_layout(out)
    compare_raw(out, raw)


@pytest.mark.parametrize("options, compressed", [([], True), (["compat=0.10"], False),
                                                 (["cluster_size=2M"], False)])
def test_store_qcow2_lands_as_vhd(tmp_path, options, compressed):
    src, raw = source_image(tmp_path, "src.qcow2", *options, compressed=compressed)
    out = str(tmp_path / "0.vhd")
    vhd = disk.by_name("vhd")
    assert convert.land_store_image(src, qcow2(), vhd, out, "image V") == "rewritten"
    assert vhd.check_file(out) == []
    with Chain.open(out) as chain:
        assert chain.virtual_size == 48 * MiB
        assert sha_of_chain(chain) == sha_of_raw(raw)


def test_damaged_store_image_is_refused(tmp_path):
    src, _raw = source_image(tmp_path, "d.qcow2", compressed=True)
    with Qcow2File.open(src) as image:
        rt = image.header.refcount_table_offset
    with open(src, "r+b") as f:         # refcount block pointer dropped: every cluster "leaks"
        f.seek(rt)
        block = f.read(8)
        f.seek(rt)
        f.write(bytes(8))
        f.seek(rt + 8)
        f.write(block)
    out = str(tmp_path / "0.qcow2")
    with pytest.raises(FormatError) as e:
        convert.land_store_image(src, qcow2(), qcow2(), out, "image Z")
    assert "image Z" in str(e.value)
    assert not os.path.exists(out)


def test_rewrite_larger_than_free_space_is_refused(tmp_path):
    src, _raw = source_image(tmp_path, "f.qcow2", compressed=True)
    out = str(tmp_path / "0.qcow2")
    with pytest.raises(NoSpaceError):
        convert.land_store_image(src, qcow2(), qcow2(), out, "image F", free_bytes=MiB)
    assert not os.path.exists(out)


def test_too_large_for_vhd_is_refused(tmp_path):
    path = str(tmp_path / "big.qcow2")
    qemu_img("create", "-f", "qcow2", "-o", "compat=0.10", path, "3T")
    with pytest.raises(LimitError):
        convert.land_store_image(path, qcow2(), disk.by_name("vhd"), str(tmp_path / "0.vhd"),
                                 "image B")


def test_3tib_sparse_raw_to_qcow2_is_fast(tmp_path):
    raw = str(tmp_path / "big.raw")
    with open(raw, "wb") as f:
        f.truncate(3 * TiB)
        for at in (0, TiB + 5 * MiB, 3 * TiB - MiB):
            f.seek(at)
            f.write(os.urandom(MiB))
    target = convert.format_for_size(3 * TiB)
    assert target is qcow2()
    out = str(tmp_path / "0.qcow2")
    start = time.monotonic()
    convert.convert_raw(raw, target, out)
    assert time.monotonic() - start < 10
    assert_sm_layout(out)
    compare_raw(out, raw)


def test_3tib_sparse_qcow2_rewrite_is_fast(tmp_path):
    path = str(tmp_path / "big.qcow2")
    qemu_img("create", "-f", "qcow2", "-o", "cluster_size=2M", path, "3T")
    qemu_io(path, "write -P 7 0 1M", "write -P 8 2T 3M")
    spooled = str(tmp_path / "spool.part")
    os.link(path, spooled)
    out = str(tmp_path / "0.qcow2")
    start = time.monotonic()
    assert convert.land_store_image(spooled, qcow2(), qcow2(), out, "big") == "rewritten"
    assert time.monotonic() - start < 10
    assert_sm_layout(out)
    proc = qemu_img("compare", "-f", "qcow2", "-F", "qcow2", out, path, check=False)
    assert proc.returncode == 0


def test_convert_file_reads_through_a_chain(tmp_path):
    base, _raw = source_image(tmp_path, "base.qcow2")
    child = str(tmp_path / "child.qcow2")
    qemu_img("create", "-f", "qcow2", "-F", "qcow2", "-b", "base.qcow2", child)
    qemu_io(child, "write -P 0x77 6M 128k")
    raw = str(tmp_path / "child.raw")
    qemu_img("convert", "-f", "qcow2", "-O", "raw", child, raw)
    out = str(tmp_path / "out.vhd")
    convert.convert_file(child, disk.by_name("vhd"), out)
    with Chain.open(out) as chain:
        assert sha_of_chain(chain) == sha_of_raw(raw)


def test_a_rewrite_that_reads_differently_is_refused(tmp_path):
    from vhdport.errors import IntegrityError
    src, _raw = source_image(tmp_path, "src.qcow2")
    other, _ = source_image(tmp_path, "other.qcow2", size="48M")
    qemu_io(other, "write -P 0x99 40M 4k")          # one block differs
    with StoreImage(src, "image W") as image:
        with pytest.raises(IntegrityError) as e:
            convert._verify_rewrite(image, other, "image W", qcow2())
    assert "image W rewritten as qcow2" in str(e.value)
    assert not os.path.exists(other)


def test_leaked_clusters_are_rewritten_not_refused(tmp_path):
    import struct
    src, raw = source_image(tmp_path, "leak.qcow2")
    with open(src, "r+b") as f:
        end = f.seek(0, 2)
        f.write(b"\x55" * 65536)        # a cluster nobody maps, counted once: a leak
        f.seek(65536)
        block = struct.unpack(">Q", f.read(8))[0]
        f.seek(block + end // 65536 * 2)
        f.write(struct.pack(">H", 1))
    with StoreImage(src, "leak") as image:
        assert [d.field for d in image.defects()] == ["leak"]
    out = str(tmp_path / "0.qcow2")
    assert convert.land_store_image(src, qcow2(), qcow2(), out, "image K") == "rewritten"
    assert_sm_layout(out)
    compare_raw(out, raw)
