"""Writes into one file: allocation, refcount growth, in-place vs fresh clusters, zeroes."""

import pytest

from tests.qcow2.qemu import check, compare_raw, pattern, require_qemu
from vhdport.errors import Qcow2UnsupportedError
from vhdport.qcow2 import Qcow2File, check_image, create
from vhdport.qcow2.format import tables as t

KiB, MiB = 1024, 1024 * 1024


@pytest.fixture(autouse=True)
def _qemu():
    require_qemu()


def test_refcount_table_grows(tmp_path):
    """512-byte clusters with 64-bit refcounts: 64 clusters per block, 64 blocks per table
    cluster -- 4096 clusters fill the first table and force it to move."""
    path = str(tmp_path / "g.qcow2")
    create(path, 4 * MiB, cluster_size=512, refcount_bits=64)
    data = pattern(1, 3 * MiB)
    with Qcow2File.open(path, writable=True) as image:
        old_table = image.header.refcount_table_offset
        image.write(0, data)
        assert image.header.refcount_table_offset != old_table
    assert check_image(path) == []
    check(path)
    raw = str(tmp_path / "g.raw")
    with open(raw, "wb") as f:
        f.write(data + bytes(MiB))
    compare_raw(path, raw)


def test_overwrite_in_place_and_always_new(tmp_path):
    path = str(tmp_path / "a.qcow2")
    create(path, MiB)
    with Qcow2File.open(path, writable=True) as image:
        image.write(0, b"a" * 65536)
        first = image.cluster_entry(0)[0] & t.OFFSET_MASK
        image.write(10, b"b")
        assert image.cluster_entry(0)[0] & t.OFFSET_MASK == first
        image.always_new = True
        image.write(20, b"c")
        moved = image.cluster_entry(0)[0] & t.OFFSET_MASK
        assert moved != first and image.refcount(first // 65536) == 0
        assert bytes(image.read(0, 30)) == b"a" * 10 + b"b" + b"a" * 9 + b"c" + b"a" * 9
    assert check_image(path) == []
    check(path)


def test_write_zeroes_frees_whole_clusters(tmp_path):
    path = str(tmp_path / "z.qcow2")
    create(path, MiB, cluster_size=4096)
    with Qcow2File.open(path, writable=True) as image:
        image.write(0, b"q" * 20000)
        host = image.cluster_entry(1)[0] & t.OFFSET_MASK
        image.write_zeroes(4096, 8192 + 100)
        assert image.cluster_entry(1)[0] == 0 and image.refcount(host // 4096) == 0
        assert bytes(image.read(0, 20000)) == b"q" * 4096 + bytes(8292) + b"q" * (20000 - 12388)
    assert check_image(path) == []
    check(path)


def test_dirty_image_is_not_written(tmp_path):
    path = str(tmp_path / "d.qcow2")
    create(path, MiB)
    with open(path, "r+b") as f:
        f.seek(79)
        f.write(b"\x01")
    with Qcow2File.open(path, writable=True) as image:
        with pytest.raises(Qcow2UnsupportedError, match="dirty"):
            image.write(0, b"x")


def test_autoclear_bits_are_cleared_on_write(tmp_path):
    path = str(tmp_path / "b.qcow2")
    create(path, MiB)
    with open(path, "r+b") as f:
        f.seek(95)
        f.write(b"\x04")
    with Qcow2File.open(path, writable=True) as image:
        image.write(0, b"x")
    with Qcow2File.open(path) as image:
        assert image.header.autoclear_features == 0


def test_writes_over_preallocated_zero_clusters_free_them(tmp_path):
    from tests.qcow2.qemu import qemu_img, qemu_io

    path = str(tmp_path / "za.qcow2")
    qemu_img("create", "-q", "-f", "qcow2", "-o", "preallocation=metadata", path, "1M")
    qemu_io(path, "write -z 0 128k")          # zero clusters that keep their host cluster
    with Qcow2File.open(path) as image:
        kind, host = image.classify(0)[0][2:]
        assert kind == t.ZERO_KIND and host
    with Qcow2File.open(path, writable=True) as image:
        image.write(5, b"w")
        image.write_zeroes(65536, 65536)
        assert image.refcount(host // 65536) == 0
        assert bytes(image.read(0, 10)) == bytes(5) + b"w" + bytes(4)
    assert check_image(path) == []
    check(path)


def test_images_with_bitmaps_are_not_written(tmp_path):
    from tests.qcow2.qemu import qemu_img

    path = str(tmp_path / "bm.qcow2")
    create(path, 4 * MiB)
    qemu_img("bitmap", "--add", path, "b0")
    with open(path, "rb") as f:
        before = f.read()
    with Qcow2File.open(path, writable=True) as image:
        with pytest.raises(Qcow2UnsupportedError, match="dirty bitmaps"):
            image.write(0, b"x")
    with open(path, "rb") as f:
        assert f.read() == before
    check(path)


@pytest.mark.parametrize("opts,kind", [(dict(), t.ZERO_KIND),
                                       (dict(cluster_size=16 * KiB, extended_l2=True),
                                        t.ZERO_KIND),
                                       (dict(version=2), t.DATA)])
def test_write_zeroes_over_a_backing_file(tmp_path, opts, kind):
    from vhdport.qcow2 import Qcow2Chain, local_backing

    base, top = str(tmp_path / "base.qcow2"), str(tmp_path / "top.qcow2")
    create(base, MiB, **opts)
    with Qcow2Chain.open(base, writable=True) as chain:
        chain.write(0, b"b" * MiB)
    create(top, MiB, backing_name="base.qcow2", **opts)      # the child in the same layout
    with Qcow2Chain.open(top, writable=True, backing=local_backing) as chain:
        cs = chain.leaf.cluster_size
        chain.write_zeroes(cs, 2 * cs)
        assert {r[2] for r in chain.leaf.map(cs, 2 * cs)} == {kind}
        assert bytes(chain.read(0, 4 * cs)) == b"b" * cs + bytes(2 * cs) + b"b" * cs
    check(top, with_backing=True)
