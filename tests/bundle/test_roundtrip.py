"""write_bundle -> GNU tar / extract_bundle, with real VHDs (qemu-img, vhd-util fixtures)."""

import gzip
import io
import os
import subprocess
import tarfile
import tracemalloc

import pytest

from tests.allowed_skips import allowed_skip

from vhdport.bundle import compressor_name, extract_bundle, write_bundle
from vhdport.bundle import tarfmt
from vhdport.errors import BundleError
from tests.bundle.helpers import CountingReader, MIB, copy_as, make_vhd, read


def _chain_members(fixtures, staging):
    """The fixture chain hard-linked the way the upload side stages it."""
    members = []
    for i, name in enumerate(["leaf", "mid", "base"]):
        dst = os.path.join(staging, "{}.vhd".format(i))
        os.link(os.path.join(fixtures, "chain", name + ".vhd"), dst)
        members.append(("{}.vhd".format(i), dst))
    return members


def _write(path, stream):
    with open(path, "wb") as out:
        for piece in stream:
            assert isinstance(piece, bytes)
            out.write(piece)
    return path


@pytest.mark.parametrize("engine", ["zlib", "isal"])
def test_gnu_tar_extracts_what_we_write(fixtures, tmp_path, engine):
    if engine == "isal":
        try:
            import isal  # noqa: F401
        except ImportError:
            allowed_skip("isal")
    up = tmp_path / "up"
    up.mkdir()
    members = _chain_members(fixtures, str(up))
    out = _write(str(tmp_path / "b.tgz"), write_bundle(members, engine=engine))
    dest = tmp_path / "gnu"
    dest.mkdir()
    subprocess.check_call(["tar", "-xzf", out, "-C", str(dest)])
    assert sorted(os.listdir(str(dest))) == ["0.vhd", "1.vhd", "2.vhd"]
    for arcname, path in members:
        assert read(str(dest / arcname)) == read(path)
    listing = subprocess.check_output(["tar", "-tzf", out], universal_newlines=True).split()
    assert listing == ["0.vhd", "1.vhd", "2.vhd"]  # order kept: leaf first
    assert subprocess.call(["gzip", "-t", out]) == 0


def test_round_trip_through_extract_bundle(fixtures, tmp_path, qemu_vhds):
    up = tmp_path / "up"
    up.mkdir()
    members = [("0.vhd", copy_as(qemu_vhds["dynamic"], str(up), "0.vhd")),
               ("1.vhd", copy_as(qemu_vhds["fixed"], str(up), "1.vhd")),
               ("2.vhd", copy_as(qemu_vhds["empty"], str(up), "2.vhd"))]
    for level in (0, 1, 6, 9):
        data = b"".join(write_bundle(members, level=level))
        staging = tmp_path / "stage{}".format(level)
        staging.mkdir()
        paths = extract_bundle(CountingReader(data), str(staging))
        assert paths == [str(staging / "{}.vhd".format(i)) for i in range(3)]
        for (arcname, src), got in zip(members, paths):
            assert read(got) == read(src), (level, arcname)
        assert sorted(os.listdir(str(staging))) == ["0.vhd", "1.vhd", "2.vhd"]
        assert (data[:2] == b"\x1f\x8b") == (level != 0)


def test_uncompressed_and_tar_size(qemu_vhds, tmp_path):
    members = [("0.vhd", qemu_vhds["fixed"])]
    stream = write_bundle(members, compression=None)
    data = b"".join(stream)
    assert len(data) == stream.tar_size
    assert stream.compression is None
    with tarfile.open(fileobj=io.BytesIO(data), mode="r:") as tar:
        info = tar.getmember("0.vhd")
        assert info.isfile() and info.size == os.path.getsize(qemu_vhds["fixed"])
    gz = write_bundle(members, level=1)
    assert len(gzip.decompress(b"".join(gz))) == gz.tar_size


def test_chunks_are_bounded(qemu_vhds):
    """No piece of the plain stream is larger than chunk_size (plus a header)."""
    members = [("0.vhd", qemu_vhds["fixed"]), ("1.vhd", qemu_vhds["dynamic"])]
    sizes = [len(p) for p in write_bundle(members, level=0, chunk_size=64 * 1024)]
    assert max(sizes) <= 64 * 1024
    assert sum(sizes) > 5 * MIB


def test_member_header_past_8_gib_uses_pax_size():
    size = 10 * (1 << 30) + 512
    blocks = tarfmt.member_header("0.vhd", size, 1700000000)
    assert len(blocks) == 3 * 512
    stream = io.BytesIO(blocks + bytes(1024))
    with tarfile.open(fileobj=stream, mode="r|") as tar:
        info = tar.next()
        assert info.name == "0.vhd" and info.size == size and info.isfile()
    # and our own parser agrees on the ustar part
    assert tarfmt.parse_header(blocks[1024:], 1024).name == "0.vhd"


def test_gnu_tar_reads_big_header_listing(tmp_path):
    """GNU tar honours our pax size record (listing a truncated stream shows it)."""
    size = 9 * (1 << 30)
    path = tmp_path / "h.tar"
    path.write_bytes(tarfmt.member_header("0.vhd", size, 1700000000))
    proc = subprocess.Popen(["tar", "-tvf", str(path)], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, universal_newlines=True)
    out, _ = proc.communicate()
    assert str(size) in out and "0.vhd" in out


def test_bad_arguments_fail_before_streaming(tmp_path, qemu_vhds):
    with pytest.raises(BundleError):
        write_bundle([("../0.vhd", qemu_vhds["fixed"])])
    with pytest.raises(BundleError):
        write_bundle([("notes.txt", qemu_vhds["fixed"])])
    with pytest.raises(BundleError):
        write_bundle([("0.vhd", qemu_vhds["fixed"])], level=12)
    with pytest.raises(BundleError):
        write_bundle([])
    with pytest.raises(FileNotFoundError):
        write_bundle([("0.vhd", qemu_vhds["fixed"]), ("1.vhd", str(tmp_path / "missing"))])


def test_shrinking_member_is_an_error(tmp_path, qemu_vhds):
    victim = copy_as(qemu_vhds["fixed"], str(tmp_path), "0.vhd")
    stream = write_bundle([("0.vhd", victim)], level=0, chunk_size=1 * MIB)
    next(stream)  # header
    os.truncate(victim, 2 * MIB)
    with pytest.raises(BundleError, match="shrank"):
        for _ in stream:
            pass


def test_close_releases_files(qemu_vhds):
    stream = write_bundle([("0.vhd", qemu_vhds["fixed"])])
    next(stream)
    stream.close()
    assert all(m.file.closed for m in stream._opened)


def test_compressor_choice():
    assert compressor_name(0) is None
    assert compressor_name(6, compression=None) is None
    assert compressor_name(6, engine="zlib") == "zlib"
    try:
        import isal  # noqa: F401
        assert compressor_name(6) == "isal"
    except ImportError:
        assert compressor_name(6) == "zlib"


def test_memory_does_not_grow_with_member_size(tmp_path):
    big = make_vhd(str(tmp_path / "big.vhd"), 96, "fixed", seed=3)
    data_path = str(tmp_path / "big.tgz")
    tracemalloc.start()
    try:
        _write(data_path, write_bundle([("0.vhd", big)], level=1))
        _, write_peak = tracemalloc.get_traced_memory()
        tracemalloc.reset_peak() if hasattr(tracemalloc, "reset_peak") else None
        staging = tmp_path / "stage"
        staging.mkdir()
        with open(data_path, "rb") as f:
            extract_bundle(f, str(staging))
        _, read_peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert write_peak < 8 * MIB, write_peak
    assert read_peak < 8 * MIB, read_peak
    assert read(str(staging / "0.vhd")) == read(big)


def test_threaded_output_is_identical(qemu_vhds):
    members = [("0.vhd", qemu_vhds["dynamic"]), ("1.vhd", qemu_vhds["fixed"])]
    plain = b"".join(write_bundle(members, engine="zlib", threaded=False))
    threaded = b"".join(write_bundle(members, engine="zlib", threaded=True, chunk_size=4096))
    assert plain == threaded


def test_threaded_errors_reach_the_consumer(tmp_path, qemu_vhds):
    import threading
    victim = copy_as(qemu_vhds["fixed"], str(tmp_path), "0.vhd")
    stream = write_bundle([("0.vhd", victim)], level=1, engine="zlib", threaded=True)
    os.truncate(victim, 1 * MIB)
    with pytest.raises(BundleError, match="shrank"):
        for _ in stream:
            pass
    assert not [t for t in threading.enumerate() if t.name == "bundle-writer"]


def test_threaded_close_midway_stops_the_worker(qemu_vhds):
    import threading
    stream = write_bundle([("0.vhd", qemu_vhds["fixed"])], level=1, engine="zlib",
                          threaded=True, chunk_size=4096)
    next(stream)
    stream.close()
    assert not [t for t in threading.enumerate() if t.name == "bundle-writer"]
    assert all(m.file.closed for m in stream._opened)


class _OddReader(object):
    """Returns more than asked (some stream wrappers do) or one byte at a time."""

    def __init__(self, data, mode):
        self._data, self._pos, self._mode = data, 0, mode

    def read(self, n):
        size = 3 * n + 7 if self._mode == "greedy" else 1
        out = self._data[self._pos:self._pos + size]
        self._pos += len(out)
        return out


@pytest.mark.parametrize("mode", ["greedy", "trickle"])
@pytest.mark.parametrize("level", [0, 6])
def test_odd_readers(qemu_vhds, tmp_path, mode, level):
    members = [("0.vhd", qemu_vhds["empty"])]
    data = b"".join(write_bundle(members, level=level))
    staging = tmp_path / "s"
    staging.mkdir()
    paths = extract_bundle(_OddReader(data, mode), str(staging))
    assert read(paths[0]) == read(qemu_vhds["empty"])
