"""raw <-> QCOW2 and chain -> raw, against qemu-img convert / compare; VHD chains as sources."""

import io
import os

import pytest

from tests.qcow2.qemu import check, compare_raw, pattern, qemu_img, qemu_io, require_qemu
from vhdport.qcow2 import Qcow2Chain, local_backing
from vhdport.qcow2.convert import (RawFile, copy_disk, export_raw, import_disk, import_raw,
                                   import_raw_stream, nonzero_spans)
from vhdport.qcow2.create import create, create_snapshot
from vhdport.vhd import Chain as VhdChain, create_dynamic

KiB, MiB = 1024, 1024 * 1024


@pytest.fixture(autouse=True)
def _qemu():
    require_qemu()


def sparse_raw(path, size=12 * MiB + 512):
    with open(path, "wb") as f:
        f.truncate(size)
        for seed, off, n in [(1, 0, 1), (2, 70 * KiB, 200 * KiB), (3, 5 * MiB - 3, 7),
                             (4, 12 * MiB, 512)]:
            f.seek(off)
            f.write(pattern(seed, n))
        f.seek(8 * MiB)
        f.write(bytes(MiB))          # written zeros: must not be allocated
    with open(path, "rb") as f:
        return f.read()


def test_nonzero_spans():
    data = bytes(10) + b"x" + bytes(200) + b"y"
    assert nonzero_spans(data, 64) == [(0, 64), (192, 212)]
    assert nonzero_spans(bytes(100), 64) == []


@pytest.mark.parametrize("cluster_size", [512, 64 * KiB, 2 * MiB])
def test_import_raw(tmp_path, cluster_size):
    raw = str(tmp_path / "a.raw")
    expected = sparse_raw(raw)
    out = str(tmp_path / "a.qcow2")
    import_raw(raw, out, cluster_size=cluster_size)
    result = check(out)
    compare_raw(out, raw)
    data_clusters = result["allocated-clusters"]
    assert data_clusters * cluster_size <= 300 * KiB + 4 * cluster_size
    with Qcow2Chain.open(out) as chain:
        assert bytes(chain.read(0, chain.virtual_size)) == expected


def test_import_raw_preallocated(tmp_path):
    raw = str(tmp_path / "a.raw")
    sparse_raw(raw, 4 * MiB)
    out = str(tmp_path / "a.qcow2")
    import_raw(raw, out, preallocate=True)
    check(out)
    compare_raw(out, raw)


def test_import_stream(tmp_path):
    raw = str(tmp_path / "a.raw")
    expected = sparse_raw(raw)
    out = str(tmp_path / "s.qcow2")
    import_raw_stream(io.BytesIO(expected), out, len(expected))
    check(out)
    compare_raw(out, raw)


def test_export_chain_to_raw(tmp_path):
    os.chdir(str(tmp_path))
    qemu_img("create", "-q", "-f", "qcow2", "base.qcow2", "6M")
    qemu_io("base.qcow2", "write -P 1 0 3M", "write -c -P 5 4M 64k")
    create_snapshot("top.qcow2", "base.qcow2")
    qemu_io("top.qcow2", "write -P 2 1M 10k", "write -z 2M 1M")
    export_raw("top.qcow2", "out.raw", backing=local_backing)
    qemu_img("convert", "-f", "qcow2", "-O", "raw", "top.qcow2", "qemu.raw")
    with open("out.raw", "rb") as a, open("qemu.raw", "rb") as b:
        assert a.read() == b.read()
    assert os.stat("out.raw").st_blocks * 512 < 4 * MiB      # holes stay holes
    compare_raw("top.qcow2", "out.raw")


def test_vhd_chain_to_qcow2_and_back(tmp_path):
    vhd = str(tmp_path / "a.vhd")
    create_dynamic(vhd, 9 * MiB)
    with VhdChain.open(vhd, writable=True) as chain:
        chain.write(3, pattern(7, 300 * KiB))
        chain.write(7 * MiB, pattern(8, 5000))
    out = str(tmp_path / "a.qcow2")
    with VhdChain.open(vhd) as source:
        import_disk(source, out)
        expected = bytes(source.read(0, source.virtual_size))
    check(out)
    vhd2 = str(tmp_path / "b.vhd")
    create_dynamic(vhd2, 9 * MiB)
    with Qcow2Chain.open(out) as source, VhdChain.open(vhd2, writable=True) as target:
        copy_disk(source, target)
    with VhdChain.open(vhd2) as back:
        assert bytes(back.read(0, back.virtual_size)) == expected


def test_raw_file_ranges(tmp_path):
    raw = str(tmp_path / "r.raw")
    sparse_raw(raw)
    source = RawFile(raw)
    try:
        ranges = source.allocated_ranges()
        assert ranges[0][0] == 0 and sum(n for _o, n in ranges) < 8 * MiB
    finally:
        source.close()


def test_export_refuses_existing_output(tmp_path):
    path = str(tmp_path / "a.qcow2")
    create(path, MiB)
    out = str(tmp_path / "out.raw")
    open(out, "w").close()
    with pytest.raises(Exception, match="cannot create"):
        export_raw(path, out)


class _Failing(object):
    virtual_size = 64 * MiB

    def allocated_ranges(self):
        return [(0, self.virtual_size)]

    def read(self, offset, length):
        if offset >= 8 * MiB:
            raise OSError("disk gone at {}".format(offset))
        return b"\x01" * length


class _Sink(object):
    def __init__(self):
        self.written = 0

    def write(self, offset, data):
        self.written += len(data)


def test_prefetch_passes_the_readers_error_on():
    sink = _Sink()
    with pytest.raises(OSError, match="disk gone at 8388608"):
        copy_disk(_Failing(), sink)
    assert sink.written == 8 * MiB


def test_consumer_error_stops_the_prefetch_thread():
    import threading

    class Boom(_Sink):
        def write(self, offset, data):
            raise ValueError("target full")

    with pytest.raises(ValueError, match="target full"):
        copy_disk(_Failing(), Boom())
    assert not [t for t in threading.enumerate() if t.name == "qcow2-prefetch"]


def test_memory_stays_flat(tmp_path):
    """A 2 GiB disk with data spread over it: import and export peak at a few chunks."""
    import tracemalloc

    raw = str(tmp_path / "big.raw")
    with open(raw, "wb") as f:
        f.truncate(2048 * MiB)
        for i in range(0, 2048, 97):
            f.seek(i * MiB + 12345)
            f.write(pattern(i, 3 * MiB))
    out, back = str(tmp_path / "big.qcow2"), str(tmp_path / "back.raw")
    tracemalloc.start()
    import_raw(raw, out)
    export_raw(out, back)
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    assert peak < 40 * MiB, peak / MiB
    compare_raw(out, raw)
