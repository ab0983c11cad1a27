"""The fast chain -> raw export: windows, fallbacks and errors; outputs against qemu-img convert."""

import os
import struct
import threading

import pytest

from tests.qcow2.qemu import compare_raw, qemu_img, qemu_io, require_qemu
from vhdport.errors import Qcow2CorruptError
from vhdport.qcow2 import Qcow2Chain, local_backing
from vhdport.qcow2 import export
from vhdport.qcow2.convert import export_raw
from vhdport.qcow2.create import create_snapshot
from vhdport.qcow2.format import tables as t

KiB, MiB = 1024, 1024 * 1024
D, C, Z, U = t.DATA, t.COMPRESSED_KIND, t.ZERO_KIND, t.UNALLOCATED


@pytest.fixture(autouse=True)
def _qemu():
    require_qemu()


def _no_workers_left():
    return not [th for th in threading.enumerate() if th.name == "qcow2-export"]


def test_windows_coalesce_split_and_stop_at_zeros():
    runs = [(0, 3 * MiB, D, 0, 10 * MiB),            # split: 2 MiB + 1 MiB
            (3 * MiB, 64 * KiB, D, 1, 900 * MiB),    # another level, guest-contiguous: joins
            (3 * MiB + 64 * KiB, 64 * KiB, Z, 0, None),
            (4 * MiB, 64 * KiB, U, 0, None),
            (5 * MiB, 64 * KiB, D, 0, 0)]
    got = list(export.windows(iter(runs), 2 * MiB))
    assert got == [
        (0, 2 * MiB, [(0, 2 * MiB, D, 0, 10 * MiB)]),
        (2 * MiB, MiB + 64 * KiB, [(2 * MiB, MiB, D, 0, 12 * MiB),
                                   (3 * MiB, 64 * KiB, D, 1, 900 * MiB)]),
        (5 * MiB, 64 * KiB, [(5 * MiB, 64 * KiB, D, 0, 0)])]


def test_windows_keep_compressed_clusters_whole():
    cs = 64 * KiB
    runs = [(0, 2 * MiB - 32 * KiB, D, 0, 0),
            (2 * MiB - 32 * KiB, cs, C, 0, (7777, 100)),     # does not fit: next window
            (2 * MiB + 32 * KiB, cs, C, 0, (9999, 100)),
            (2 * MiB + 96 * KiB, 2 * MiB, D, 0, 5 * MiB)]    # fills the rest, then splits
    got = list(export.windows(iter(runs), 2 * MiB))
    assert [(s, n) for s, n, _r in got] == [(0, 2 * MiB - 32 * KiB),
                                           (2 * MiB - 32 * KiB, 2 * MiB),
                                           (4 * MiB - 32 * KiB, 128 * KiB)]
    assert got[1][2][:2] == [runs[1], runs[2]]
    assert got[1][2][2] == (2 * MiB + 96 * KiB, 2 * MiB - 128 * KiB, D, 0, 5 * MiB)
    assert got[2][2] == [(4 * MiB - 32 * KiB, 128 * KiB, D, 0, 7 * MiB - 128 * KiB)]


def test_windows_break_at_guest_gaps():
    runs = [(0, 64 * KiB, D, 0, 0), (128 * KiB, 64 * KiB, D, 0, 64 * KiB)]
    assert [s for s, _n, _r in export.windows(iter(runs))] == [0, 128 * KiB]


def test_host_contiguous_clusters_read_in_one_call(tmp_path):
    """A sequential qemu write lands in contiguous host clusters: one run per window."""
    path = str(tmp_path / "a.qcow2")
    qemu_img("create", "-q", "-f", "qcow2", path, "8M")
    qemu_io(path, "write -P 3 0 6M")
    with Qcow2Chain.open(path) as chain:
        got = list(export.windows(chain.resolve(0, chain.virtual_size)))
    assert [(s, n, len(r)) for s, n, r in got] == [(0, 2 * MiB, 1), (2 * MiB, 2 * MiB, 1),
                                                   (4 * MiB, 2 * MiB, 1)]


def test_nonzero_spans_look_past_a_zero_first_byte():
    g = 64 * KiB
    data = bytearray(4 * g + 100)
    data[g + 5] = 1                  # starts with zero, data later
    data[3 * g] = 2                  # first byte non-zero
    data[-1] = 3                     # short tail granule
    assert export.nonzero_spans(memoryview(data)) == [(g, 2 * g), (3 * g, 4 * g + 100)]
    assert export.nonzero_spans(bytes(g + 1)) == []


def test_pread_into_reads_zeros_past_the_end_of_the_file(tmp_path):
    path = tmp_path / "f"
    path.write_bytes(b"abcdef")
    fd = os.open(str(path), os.O_RDONLY)
    try:
        view = memoryview(bytearray(b"\xff" * 8))
        export.pread_into(fd, view, 2, 6)
        assert bytes(view) == b"cdef" + bytes(4)
        view[:] = b"\xff" * 8
        export.pread_into(fd, view, 9, 6)
        assert bytes(view) == bytes(8)
    finally:
        os.close(fd)


def _mixed_chain(cluster_size, extra=()):
    """base: data, compressed, zeros; mid and top overwrite parts; an unaligned tail."""
    cs = cluster_size
    size = 12 * MiB + 3 * 512                       # not a multiple of the cluster
    opts = ["-o", "cluster_size={}".format(cs)] + list(extra)
    qemu_img("create", "-q", "-f", "qcow2", *(opts + ["base.qcow2", str(size)]))
    qemu_io("base.qcow2", "write -P 1 0 3M", "write -c -P 5 4M {}".format(cs),
            "write -c -P 6 {} {}".format(4 * MiB + 2 * cs, cs),
            "write -P 7 10M 512k", "write -z 10M 128k",
            "write -P 9 {} 1536".format(size - 1536))
    create_snapshot("mid.qcow2", "base.qcow2")
    qemu_io("mid.qcow2", "write -P 2 1M 10k", "write -z 2M 512k", "write -P 8 6M 100k")
    create_snapshot("top.qcow2", "mid.qcow2")
    qemu_io("top.qcow2", "write -P 4 {} 512".format(4 * MiB + cs // 2),
            "write -c -P 3 6M {}".format(cs))


def _export_and_compare(name="top.qcow2"):
    export_raw(name, "out.raw", backing=local_backing)
    qemu_img("convert", "-f", "qcow2", "-O", "raw", name, "qemu.raw")
    with open("out.raw", "rb") as a, open("qemu.raw", "rb") as b:
        assert a.read() == b.read()
    # as sparse as qemu's (whose zero detection is finer: 4 KiB against our 64 KiB)
    assert os.stat("out.raw").st_blocks <= os.stat("qemu.raw").st_blocks + 4 * 64 * KiB // 512
    compare_raw(name, "out.raw")
    assert _no_workers_left()


@pytest.mark.parametrize("cluster_size", [512, 64 * KiB, 2 * MiB])
def test_chain_with_compressed_zero_and_backing_runs(tmp_path, cluster_size):
    os.chdir(str(tmp_path))
    _mixed_chain(cluster_size)
    with Qcow2Chain.open("top.qcow2", backing=local_backing) as chain:
        seen = {(k, level) for _g, _n, k, level, _h in chain.resolve(0, chain.virtual_size)}
    assert {(C, 0), (C, 2), (D, 0), (D, 1), (D, 2)} <= seen
    if cluster_size <= 64 * KiB:        # qemu writes a partial cluster's zeros as data
        assert {(Z, 1), (Z, 2)} <= seen
    _export_and_compare()


def test_extended_l2_subclusters(tmp_path):
    os.chdir(str(tmp_path))
    _mixed_chain(64 * KiB, ["-o", "extended_l2=on"])
    _export_and_compare()


def test_python36_and_no_fadvise_fallbacks(tmp_path, monkeypatch):
    """Without os.preadv (3.6) and posix_fadvise (not Linux) the output is the same."""
    os.chdir(str(tmp_path))
    _mixed_chain(64 * KiB)
    monkeypatch.setattr(export, "_preadv", None)
    monkeypatch.setattr(export, "_fadvise", None)
    _export_and_compare()


def test_a_worker_error_reaches_the_caller(tmp_path):
    """A compressed cluster that does not inflate: typed error, no output, no thread left."""
    os.chdir(str(tmp_path))
    qemu_img("create", "-q", "-f", "qcow2", "a.qcow2", "8M")
    qemu_io("a.qcow2", "write -P 1 0 4M", "write -c -P 5 6M 64k")
    with Qcow2Chain.open("a.qcow2") as chain:
        (off, span), = [h for _g, _n, k, _l, h in chain.resolve(0, chain.virtual_size)
                        if k == C]
    with open("a.qcow2", "r+b") as f:
        f.seek(off)
        f.write(b"\xff" * span)
    with pytest.raises(Qcow2CorruptError, match="does not inflate"):
        export_raw("a.qcow2", "out.raw")
    assert not os.path.exists("out.raw")
    assert _no_workers_left()


def test_a_mapping_error_stops_the_workers(tmp_path):
    """An L2 entry past the end of the file, found while mapping (the caller's thread)."""
    os.chdir(str(tmp_path))
    qemu_img("create", "-q", "-f", "qcow2", "a.qcow2", "8M")
    qemu_io("a.qcow2", "write -P 1 0 8M")
    with Qcow2Chain.open("a.qcow2") as chain:
        l2 = chain.leaf.l1_entry(0) & t.OFFSET_MASK
        size = chain.leaf.file_size
    with open("a.qcow2", "r+b") as f:
        f.seek(l2 + 100 * 8)
        f.write(struct.pack(">Q", t.COPIED | (size + 64 * KiB)))
    with pytest.raises(Qcow2CorruptError, match="past the end"):
        export_raw("a.qcow2", "out.raw")
    assert not os.path.exists("out.raw")
    assert _no_workers_left()


def test_a_worker_that_cannot_start_its_buffer_does_not_hang_the_export(tmp_path, monkeypatch):
    """A worker failing before its loop (no memory for its window) must still fail the
    export: otherwise the caller waits forever on a full queue nobody drains."""
    os.chdir(str(tmp_path))
    qemu_img("create", "-q", "-f", "qcow2", "a.qcow2", "64M")
    qemu_io("a.qcow2", "write -P 1 0 40M")

    def no_memory(*_args):
        raise MemoryError("no window")

    monkeypatch.setattr(export.mmap, "mmap", no_memory)
    outcome = []

    def run():
        try:
            export_raw("a.qcow2", "out.raw")
        except MemoryError as e:
            outcome.append(e)

    worker = threading.Thread(target=run, daemon=True)
    worker.start()
    worker.join(20)
    assert not worker.is_alive(), "export_raw hung after its workers failed to start"
    assert outcome and "no window" in str(outcome[0])
    assert not os.path.exists("out.raw")
