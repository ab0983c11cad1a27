"""vhd.fastio.SequentialWriter: same bytes as a plain write, holes for zeros, errors surface."""

import os
import threading

import pytest

from vhdport.vhd import fastio


def _content():
    parts = [os.urandom(100000), bytes(300 * 1024), os.urandom(4096 * 3 + 512),
             bytes(fastio.BUFFER_SIZE), b"x" * 777, bytes(2 * fastio.HOLE_GRAIN), b"end" * 171]
    data = b"".join(parts)
    return data + bytes(-len(data) % 512)   # whole sectors, but not whole 4 KiB pages


@pytest.mark.parametrize("direct", [True, False])
@pytest.mark.parametrize("chunk", [1, 4096, 1 << 20, 3 << 20])
def test_writes_the_same_bytes(tmp_path, direct, chunk):
    data = _content()
    path = str(tmp_path / "out")
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
    out = fastio.SequentialWriter(fd, direct=direct, buffer_size=1 << 20)
    try:
        step = chunk if chunk > 1 else 65537
        for pos in range(0, len(data), step):
            out.write(data[pos:pos + step])
        out.finish()
    finally:
        out.close()
    with open(path, "rb") as f:
        assert f.read() == data
    assert out.size == len(data)


def test_zero_pieces_become_holes(tmp_path):
    path = str(tmp_path / "sparse")
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
    out = fastio.SequentialWriter(fd)
    try:
        out.write(b"a" * 4096)
        out.write(bytes(64 << 20))
        out.write(b"b" * 4096)
        out.write(bytes(8 << 20))     # trailing zeros: the size still counts them
        out.finish()
    finally:
        out.close()
    st = os.stat(path)
    assert st.st_size == 8192 + (72 << 20)
    assert st.st_blocks * 512 < (4 << 20)
    with open(path, "rb") as f:
        assert f.read(4096) == b"a" * 4096
        f.seek(4096 + (64 << 20))
        assert f.read(4096) == b"b" * 4096


def test_worker_error_is_raised_to_the_caller(tmp_path):
    path = str(tmp_path / "ro")
    open(path, "wb").close()
    fd = os.open(path, os.O_RDONLY)     # writes fail with EBADF in the worker
    out = fastio.SequentialWriter(fd, buffer_size=1 << 20)
    with pytest.raises(OSError):
        try:
            for _ in range(8):
                out.write(b"z" * (1 << 20))
            out.finish()
        finally:
            out.close()
    assert not [t for t in threading.enumerate() if t.name == "vhd-writer" and t.is_alive()]


def test_buffered_fallback_when_direct_io_is_refused(tmp_path, monkeypatch):
    monkeypatch.setattr(fastio, "_set_direct", lambda fd, on: False)
    data = _content()
    path = str(tmp_path / "buffered")
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
    out = fastio.SequentialWriter(fd)
    try:
        out.write(data)
        out.finish()
    finally:
        out.close()
    with open(path, "rb") as f:
        assert f.read() == data


def test_background_sync_then_content(tmp_path):
    path = str(tmp_path / "synced")
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
    try:
        syncer = fastio.BackgroundSync(fd, every=1 << 20)
        for i in range(8):
            os.pwrite(fd, bytes([i + 1]) * (1 << 20), i << 20)
            syncer.wrote(1 << 20)
        syncer.wait()
    finally:
        os.close(fd)
    with open(path, "rb") as f:
        assert [f.read(1 << 20)[:1] for _ in range(8)] == [bytes([i + 1]) for i in range(8)]


def test_sparse_raw_import_skips_holes_and_round_trips(tmp_path):
    """A raw image with holes, data and written zeros: import skips holes, export matches."""
    from vhdport.vhd import Chain, export_raw, import_raw
    raw, vhd, back = (str(tmp_path / n) for n in ("in.raw", "out.vhd", "back.raw"))
    mib = 1 << 20
    with open(raw, "wb") as f:
        f.truncate(64 * mib + 3 * 512)          # not a whole number of blocks
        for at, data in ((5 * mib + 4096, os.urandom(mib)), (20 * mib, bytes(2 * mib)),
                         (63 * mib, os.urandom(mib + 3 * 512))):
            f.seek(at)
            f.write(data)
    import_raw(raw, vhd)
    with Chain.open(vhd) as chain:
        # the hole-only and zero-only blocks stay unallocated
        assert [off // (2 * mib) for off, _ in chain.allocated_ranges()] == [2, 31]
        buf = bytearray(mib)
        chain.read_into(5 * mib + 4096, memoryview(buf))
        with open(raw, "rb") as f:
            f.seek(5 * mib + 4096)
            assert bytes(buf) == f.read(mib)
    export_raw(vhd, back)
    with open(raw, "rb") as a, open(back, "rb") as b:
        assert a.read() == b.read()


def test_huge_sparse_raw_import_reads_only_its_data(tmp_path):
    """A 1 TiB raw image with 3 MiB of data: holes are jumped over (SEEK_DATA), not read."""
    from vhdport.vhd import Chain, import_raw
    raw, vhd = str(tmp_path / "big.raw"), str(tmp_path / "big.vhd")
    pieces = [(0, os.urandom(4096)), (300 << 30, os.urandom(1 << 20)),
              ((1 << 40) - (1 << 20), os.urandom(1 << 20))]
    with open(raw, "wb") as f:
        f.truncate(1 << 40)
        for at, data in pieces:
            f.seek(at)
            f.write(data)
    import_raw(raw, vhd)
    assert os.path.getsize(vhd) < 64 << 20
    with Chain.open(vhd) as chain:
        assert chain.virtual_size == 1 << 40
        assert len(chain.allocated_ranges()) == 3
        for at, data in pieces:
            assert bytes(chain.read(at, len(data))) == data
        assert bytes(chain.read(600 << 30, 4096)) == bytes(4096)
