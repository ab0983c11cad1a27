"""The streamed flat QCOW2 against the real qemu-img: check clean, compare equal, XAPI's layout."""

import os
import struct
import time
import tracemalloc

import pytest

from tests.helpers import make_chain, write_through
from tests.qcow2.qemu import check, info, qemu_img, qemu_io, require_qemu
from vhdport.errors import ChainError, Qcow2FormatError
from vhdport.qcow2 import Qcow2Chain, local_backing
from vhdport.qcow2.flatstream import FlatQcow2, cluster_runs, flat_qcow2
from vhdport.qcow2.format.header import Header
from vhdport.vhd import Chain

KiB, MiB, GiB, TiB = 1 << 10, 1 << 20, 1 << 30, 1 << 40


@pytest.fixture(autouse=True)
def _qemu():
    require_qemu()


def make(path, size, writes=(), options="", backing=None):
    args = ["create", "-q", "-f", "qcow2"]
    if options:
        args += ["-o", options]
    if backing:
        args += ["-F", "qcow2", "-b", backing]
    qemu_img(*(args + [path, str(size)]))
    if writes:
        qemu_io(path, *writes)
    return path


def stream_to(image, path):
    """Write the stream out; return the bytes written (the stream's own count)."""
    written = 0
    with open(path, "wb") as out:
        for chunk in image:
            assert isinstance(chunk, bytes)
            out.write(chunk)
            written += len(chunk)
    return written


def flatten_qcow2(tmp_path, leaf, **kw):
    """Flatten the qemu-made chain at ``leaf``; check the result; return (image, path)."""
    out = str(tmp_path / "flat.qcow2")
    with Qcow2Chain.open(leaf, backing=local_backing) as chain:
        image = flat_qcow2(chain, **kw)
        assert stream_to(image, out) == image.size == os.path.getsize(out)
    assert check(out)["check-errors"] == 0
    assert check(out).get("leaks", 0) == 0 and check(out).get("corruptions", 0) == 0
    proc = qemu_img("compare", "-f", "qcow2", "-F", "qcow2", leaf, out, check=False)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    return image, out


def assert_xapi_layout(path):
    """What qcow-stream-tool accepts: v3, 16-bit refcounts, header length 112, no extensions,
    and every structure after the one before it: refcount table, refblocks, L1, L2, data
    (data clusters in guest order)."""
    with open(path, "rb") as f:
        raw = f.read()
    h = Header.parse(raw)
    assert (h.version, h.refcount_order, h.header_length) == (3, 4, 112)
    assert h.extensions == [] and h.backing_name is None and h.incompatible_features == 0
    assert h.autoclear_features == 0 and h.compatible_features == 0
    cs = h.cluster_size
    reftable = struct.unpack_from(">{}Q".format(h.refcount_table_clusters * cs // 8), raw,
                                  h.refcount_table_offset)
    blocks = [e for e in reftable if e]
    assert blocks == sorted(blocks) and blocks[0] > h.refcount_table_offset
    l1 = struct.unpack_from(">{}Q".format(h.l1_size), raw, h.l1_table_offset)
    l2s = [e & 0x00FFFFFFFFFFFE00 for e in l1 if e]
    assert all(b < h.l1_table_offset for b in blocks)
    assert l2s == sorted(l2s) and all(o > h.l1_table_offset for o in l2s)
    data = []
    for off in l2s:
        entries = struct.unpack_from(">{}Q".format(cs // 8), raw, off)
        data.extend(e & 0x00FFFFFFFFFFFE00 for e in entries if e)
        assert all(e >> 63 for e in entries if e), "OFLAG_COPIED on every entry"
    assert data == sorted(data) and (not data or data[0] > max(l2s))
    assert all(b - a == cs for a, b in zip(data, data[1:])), "data clusters back to back"
    return h


@pytest.mark.parametrize("size, writes", [
    (0, []),                                                               # no L1 at all
    (64 * KiB, []),                                                        # empty, one cluster
    (3 * MiB + 512, []),                                                   # empty, odd size
    (3 * MiB + 512, ["write -P 0xe5 3M 512"]),                             # the partial cluster
    (4 * MiB, ["write -P 0x5a 0 4M"]),                                     # full
    (3 * MiB + 512, ["write -P 0xa1 0 1", "write -P 0xb2 511 2", "write -P 0xc3 4095 10000",
                     "write -P 0xd4 1M 65537", "write -P 0xe5 3M 512"]),   # sparse, unaligned
    (5 * MiB, ["write -P 1 64k 64k", "write -P 2 192k 64k", "write -P 3 4M 1M"]),
])
def test_flat_equals_source_and_checks_clean(tmp_path, size, writes):
    leaf = make(str(tmp_path / "a.qcow2"), size, writes)
    image, out = flatten_qcow2(tmp_path, leaf)
    assert_xapi_layout(out)
    assert info(out)["virtual-size"] == size
    if not writes:      # header, refcount table and block, L1 (none for an empty disk)
        assert image.data_clusters == 0 and image.size == (4 if size else 3) * 64 * KiB


def test_backing_chain_three_deep_flattens(tmp_path):
    make(str(tmp_path / "base.qcow2"), 8 * MiB, ["write -P 0x11 0 8M"])
    make(str(tmp_path / "mid.qcow2"), 8 * MiB, ["write -P 0x22 1M 100k",
                                                       "write -z 3M 1M"], backing="base.qcow2")
    leaf = make(str(tmp_path / "leaf.qcow2"), 8 * MiB, ["write -P 0x33 1050k 1k",
                                                         "write -P 0x44 7M 4k"], backing="mid.qcow2")
    image, out = flatten_qcow2(tmp_path, leaf)
    assert info(out).get("backing-filename") is None
    assert_xapi_layout(out)


def test_several_l2_tables_at_64k_clusters(tmp_path):
    # one L2 table maps 512 MiB: data in four of them, none in between
    writes = ["write -P 7 0 64k", "write -P 8 600M 128k", "write -P 9 1100M 64k",
              "write -P 10 {} 64k".format(2 * GiB - 64 * KiB)]
    leaf = make(str(tmp_path / "a.qcow2"), 2 * GiB, writes)
    image, out = flatten_qcow2(tmp_path, leaf)
    assert len(image.l2_indices) == 4 and image.l1_size == 4
    assert_xapi_layout(out)


def test_several_refcount_blocks_and_table_clusters(tmp_path):
    # 512-byte clusters: a refblock counts 256 clusters, a table cluster lists 64 blocks
    leaf = make(str(tmp_path / "a.qcow2"), 12 * MiB,
                ["write -P 0x3c 0 9M", "write -P 0x3d 10M 1k", "write -P 0x3e {} 512".format(
                    12 * MiB - 512)])
    image, out = flatten_qcow2(tmp_path, leaf, cluster_bits=9)
    assert image.refcount_blocks > 64 and image.refcount_table_clusters >= 2
    assert len(image.l2_indices) > 100
    assert_xapi_layout(out)


def huge_chain(tmp_path, size):
    base = make(str(tmp_path / "base.qcow2"), size,
                ["write -P 1 0 1M", "write -P 2 1T 64k", "write -P 3 {} 64k".format(size - 64 * KiB)])
    return make(str(tmp_path / "leaf.qcow2"), size,
                ["write -P 4 1536G 2M", "write -P 5 100k 4k"], backing=os.path.basename(base))


def test_two_and_a_half_tib_sparse_chain_is_fast_and_small(tmp_path):
    size = 5 * TiB // 2
    leaf = huge_chain(tmp_path, size)
    started = time.monotonic()
    image, out = flatten_qcow2(tmp_path, leaf)
    assert time.monotonic() - started < 10        # about half a second here
    assert image.size < 8 * MiB and info(out)["virtual-size"] == size
    assert image.l1_clusters == 1
    assert_xapi_layout(out)


def test_memory_stays_flat_at_sms_largest_size(tmp_path):
    size = 17589500641280                          # SM's QCOW2 limit, just under 16 TiB
    leaf = make(str(tmp_path / "a.qcow2"), size, ["write -P 1 0 1M", "write -P 4 1536G 2M",
                                                  "write -P 3 {} 64k".format(size - 64 * KiB)])
    tracemalloc.start()
    try:
        with Qcow2Chain.open(leaf) as chain:
            image = flat_qcow2(chain)
            sent = sum(len(chunk) for chunk in image)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert sent == image.size < 8 * MiB and image.l1_clusters == 4
    assert peak < 16 * MiB                         # a 4 MiB chunk, a 256 KiB L1, a few runs


def test_vhd_chain_flattens(tmp_path):
    size = 9 * MiB + 512 * 3

    def fill(level, path):
        write_through(path, [(level * MiB + 7, bytes([0x40 + level]) * 70000),
                             (size - 1000, bytes([0x50 + level]) * 1000)])

    leaf = make_chain(str(tmp_path), 3, size, fill=fill)[0]
    raw = str(tmp_path / "expected.raw")
    with Chain.open(leaf) as chain, open(raw, "wb") as f:
        f.truncate(size)
        for off, n in chain.allocated_ranges():
            f.seek(off)
            f.write(chain.read(off, n))
        image = flat_qcow2(chain)
        out = str(tmp_path / "flat.qcow2")
        stream_to(image, out)
    assert check(out)["check-errors"] == 0
    proc = qemu_img("compare", "-f", "qcow2", "-F", "raw", out, raw, check=False)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert_xapi_layout(out)


class _Watched(object):
    """A real chain, counting its data reads."""

    def __init__(self, chain):
        self.chain, self.reads = chain, 0
        self.virtual_size = chain.virtual_size

    def allocated_ranges(self):
        return self.chain.allocated_ranges()

    def read_into(self, offset, view):
        self.reads += 1
        self.chain.read_into(offset, view)


def test_size_is_known_before_any_data_is_read(tmp_path):
    leaf = make(str(tmp_path / "a.qcow2"), 16 * MiB, ["write -P 9 1M 9M"])
    with Qcow2Chain.open(leaf) as chain:
        watched = _Watched(chain)
        image = FlatQcow2(watched)
        assert image.size == (4 + 1 + 144) * 64 * KiB and watched.reads == 0
        chunks = iter(image)
        head = next(chunks)
        assert head[:4] == b"QFI\xfb" and watched.reads == 0
        assert sum(len(c) for c in chunks) + len(head) == image.size and watched.reads == 3


def test_cluster_runs_merge_clip_and_refuse_disorder():
    cs = 64 * KiB
    runs = cluster_runs([(0, 1), (100, 10), (cs, cs), (3 * cs + 5, 2 * cs), (9 * cs, cs)], cs, 6)
    assert list(runs) == [0, 2, 3, 3]
    with pytest.raises(ChainError, match="out of order"):
        cluster_runs([(4 * cs, cs), (0, cs)], cs, 10)


def test_cluster_bits_outside_qcow2s_range_are_refused(tmp_path):
    leaf = make(str(tmp_path / "a.qcow2"), MiB)
    with Qcow2Chain.open(leaf) as chain:
        for bits in (8, 22):
            with pytest.raises(Qcow2FormatError, match="cluster_bits {} outside 9..21".format(bits)):
                FlatQcow2(chain, cluster_bits=bits)
