"""Reading qemu-made images of every kind through a chain, against ``qemu-img convert -O raw``."""

import os

import pytest

from tests.qcow2.qemu import qemu_img, qemu_io, require_qemu, to_raw
from vhdport.errors import ChainError, LimitError
from vhdport.qcow2 import Qcow2Chain, local_backing
from vhdport.qcow2.format import tables as t

KiB, MiB = 1024, 1024 * 1024
SIZE = 3 * MiB + 512          # not a cluster multiple
WRITES = ["write -P 0xa1 0 1", "write -P 0xb2 511 2", "write -P 0xc3 4095 10000",
          "write -P 0xd4 1M 65537", "write -P 0xe5 3M 512"]


@pytest.fixture(autouse=True)
def _qemu():
    require_qemu()


def make(path, options="", size=SIZE, backing=None):
    args = ["create", "-q", "-f", "qcow2"]
    if options:
        args += ["-o", options]
    if backing:
        args += ["-F", "qcow2", "-b", backing]
    qemu_img(*(args + [path, str(size)]))
    return path


def ours(path, follow=True):
    with Qcow2Chain.open(path, backing=local_backing if follow else None) as chain:
        return bytes(chain.read(0, chain.virtual_size))


def assert_same(tmp_path, path):
    assert ours(path) == to_raw(path, str(tmp_path / "expected.raw"))


@pytest.mark.parametrize("options", [
    "compat=0.10", "compat=1.1", "cluster_size=512", "cluster_size=1024", "cluster_size=4096",
    "cluster_size=2M", "refcount_bits=1", "refcount_bits=2", "refcount_bits=4",
    "refcount_bits=8", "refcount_bits=32", "refcount_bits=64",
    "extended_l2=on", "extended_l2=on,cluster_size=16k", "lazy_refcounts=off",
    "preallocation=metadata", "preallocation=full,cluster_size=64k",
])
def test_qemu_images_read_like_qemu(tmp_path, options):
    path = make(str(tmp_path / "a.qcow2"), options)
    qemu_io(path, *WRITES)
    assert_same(tmp_path, path)


@pytest.mark.parametrize("options", ["compat=1.1", "extended_l2=on"])
def test_zero_clusters_and_subclusters(tmp_path, options):
    base = make(str(tmp_path / "base.qcow2"), options)
    qemu_io(base, "write -P 0x77 0 2M")
    top = make(str(tmp_path / "top.qcow2"), options, backing="base.qcow2")
    qemu_io(top, "write -z 0 64k", "write -z 100k 4k", "write -P 0x12 130k 3k",
            "write -z 1M 512k")
    assert_same(tmp_path, top)
    with Qcow2Chain.open(top, backing=local_backing) as chain:
        kinds = {kind for _o, _n, kind in chain.extents()}
        assert t.ZERO_KIND in kinds and t.DATA in kinds


@pytest.mark.parametrize("cluster", ["512", "4k", "64k", "2M"])
def test_compressed_clusters(tmp_path, cluster):
    raw = str(tmp_path / "src.raw")
    with open(raw, "wb") as f:
        f.truncate(SIZE)
        f.seek(5000)
        f.write(b"compressible " * 20000)
        f.seek(2 * MiB)
        f.write(os.urandom(70000))
    path = str(tmp_path / "c.qcow2")
    qemu_img("convert", "-c", "-f", "raw", "-O", "qcow2", "-o", "cluster_size=" + cluster,
             raw, path)
    with open(raw, "rb") as f:
        expected = f.read()
    assert ours(path) == expected
    with Qcow2Chain.open(path) as chain:
        kinds = {run[2] for run in chain.leaf.map(0, SIZE)}
    assert t.COMPRESSED_KIND in kinds


def test_compressed_writes_by_qemu_io(tmp_path):
    path = make(str(tmp_path / "c.qcow2"))
    qemu_io(path, "write -c -P 0x3c 0 64k", "write -c -P 0x4d 128k 64k")
    assert_same(tmp_path, path)


@pytest.mark.parametrize("depth", [1, 2, 5, 30])
def test_chains(tmp_path, depth):
    prev = None
    for level in range(depth):
        name = "l{}.qcow2".format(level)
        path = make(str(tmp_path / name), backing=prev, size=SIZE + level * 64 * KiB)
        qemu_io(path, "write -P {} {} {}".format(level + 1, level * 97 * KiB, 70 * KiB))
        prev = name
    assert_same(tmp_path, path)
    with Qcow2Chain.open(path, backing=local_backing) as chain:
        assert chain.depth == depth


def test_chain_deeper_than_30_is_refused(tmp_path):
    prev = None
    for level in range(31):
        name = "l{}.qcow2".format(level)
        make(str(tmp_path / name), backing=prev, size=MiB)
        prev = name
    with pytest.raises(LimitError, match="deeper than 30"):
        Qcow2Chain.open(str(tmp_path / prev), backing=local_backing)


def test_backing_not_followed_unless_asked(tmp_path):
    make(str(tmp_path / "base.qcow2"))
    top = make(str(tmp_path / "top.qcow2"), backing="base.qcow2")
    with pytest.raises(ChainError, match="not followed"):
        Qcow2Chain.open(top)
    asked = []

    def resolver(child, name, fmt):
        asked.append((name, fmt))
        return local_backing(child, name, fmt)

    with Qcow2Chain.open(top, backing=resolver) as chain:
        assert (chain.path, chain.backing) == (top, "base.qcow2")
        assert chain.parent_path == str(tmp_path / "base.qcow2")
    assert asked == [("base.qcow2", "qcow2")]


def test_absolute_backing_name(tmp_path):
    base = make(str(tmp_path / "base.qcow2"))
    qemu_io(base, "write -P 9 0 100k")
    top = make(str(tmp_path / "top.qcow2"), backing=base)
    qemu_io(top, "write -P 8 50k 1k")
    assert_same(tmp_path, top)


def test_internal_snapshots_read_the_active_layer(tmp_path):
    path = make(str(tmp_path / "s.qcow2"))
    qemu_io(path, "write -P 1 0 200k")
    qemu_img("snapshot", "-c", "snap1", path)
    qemu_io(path, "write -P 2 64k 64k")
    qemu_img("snapshot", "-c", "snap2", path)
    qemu_io(path, "write -P 3 100k 10")
    assert_same(tmp_path, path)
    with Qcow2Chain.open(path) as chain:
        assert [s.name for s in chain.leaf.snapshots] == ["snap1", "snap2"]


def test_cycle_is_refused(tmp_path):
    make(str(tmp_path / "a.qcow2"), size=MiB)
    make(str(tmp_path / "b.qcow2"), size=MiB, backing="a.qcow2")
    qemu_img("rebase", "-u", "-F", "qcow2", "-b", "b.qcow2", str(tmp_path / "a.qcow2"))
    with pytest.raises(ChainError, match="cycle"):
        Qcow2Chain.open(str(tmp_path / "b.qcow2"), backing=local_backing)


def test_extents_cover_the_disk_in_order(tmp_path):
    path = make(str(tmp_path / "a.qcow2"))
    qemu_io(path, *WRITES)
    with Qcow2Chain.open(path) as chain:
        runs = list(chain.extents())
        data = bytes(chain.read(0, chain.virtual_size))
    pos = 0
    for off, n, kind in runs:
        assert off == pos
        if kind == t.ZERO_KIND:
            assert data[off:off + n] == bytes(n)
        pos += n
    assert pos == SIZE


@pytest.mark.parametrize("options", ["compat=1.1", "compat=0.10", "cluster_size=512",
                                     "extended_l2=on", "refcount_bits=1,cluster_size=4k"])
def test_our_writes_into_qemu_chains(tmp_path, options):
    """Odd writes through a qemu-made chain (COW from data, zero and compressed clusters
    below): qemu-img check is clean and qemu reads what we read."""
    from tests.qcow2.qemu import check, compare_raw, pattern

    base = make(str(tmp_path / "base.qcow2"), options)
    qemu_io(base, "write -P 0x31 0 1M", "write -c -P 0x32 2M 64k")
    top = make(str(tmp_path / "top.qcow2"), options, backing="base.qcow2")
    qemu_io(top, "write -z 512k 64k", "write -P 0x33 1M 5k")
    model = bytearray(to_raw(top, str(tmp_path / "before.raw")))
    with Qcow2Chain.open(top, writable=True, backing=local_backing) as chain:
        for seed, (off, n) in enumerate([(0, 1), (511, 2), (4095, 10000), (512 * KiB + 7, 70000),
                                         (2 * MiB + 100, 3000), (SIZE - 3, 3)]):
            data = pattern(seed, n)
            chain.write(off, data)
            model[off:off + n] = data
        chain.write_zeroes(64 * KiB, 130 * KiB)
        model[64 * KiB:194 * KiB] = bytes(130 * KiB)
        assert bytes(chain.read(0, SIZE)) == bytes(model)
    check(top)
    raw = str(tmp_path / "model.raw")
    with open(raw, "wb") as f:
        f.write(model)
    compare_raw(top, raw)


def test_allocated_ranges_are_mapped_lazily(tmp_path):
    """The digest and the converters walk a chain's ranges as they read: a fragmented
    16 TiB chain must not have its whole map held as a list first."""
    require_qemu()
    path = str(tmp_path / "a.qcow2")
    qemu_img("create", "-q", "-f", "qcow2", "-o", "cluster_size=512", path, "1M")
    # three L2 tables (32 KiB of guest each) far apart
    qemu_io(path, "write -P 1 0 512", "write -P 2 512k 512", "write -P 3 900k 512")
    with Qcow2Chain.open(path) as chain:
        ranges = iter(chain.allocated_ranges())
        assert next(ranges) == (0, 512)
        # merging runs looks one run ahead: at most the next table is loaded, not all
        assert bin(int.from_bytes(bytes(chain.leaf._scanned_l2), "little")).count("1") <= 2
        assert list(ranges) == [(512 * 1024, 512), (900 * 1024, 512)]
