"""Parallel deflate: one ordinary gzip member that gzip, GNU tar and Python read back exactly."""

import gzip
import os
import random
import subprocess
import threading
import zlib

import pytest

from vhdport.bundle import codec, pgzip, write_bundle
from vhdport.bundle.pgzip import ParallelGzip, crc32_combine
from vhdport.errors import BundleError
from tests.allowed_skips import allowed_skip
from tests.bundle.helpers import MIB, make_vhd, pattern, read
from tests.peers.require import require_qemu_img


def _mixed(size, seed=1):
    """Compressible text, random and zero runs: what VHD data looks like to deflate."""
    rng = random.Random(seed)
    parts, n = [], 0
    while n < size:
        kind = rng.random()
        length = rng.randint(1, 300) * 1024
        if kind < 0.5:
            part = pattern(length, seed=rng.randint(0, 10 ** 6))
        elif kind < 0.75:
            part = bytes(rng.getrandbits(8) for _ in range(4096)) * (length // 4096 + 1)
            part = part[:length]
        else:
            part = bytes(length)
        parts.append(part)
        n += length
    return b"".join(parts)[:size]


def _compress(data, piece, **kw):
    comp = ParallelGzip(**kw)
    out = [comp.compress(data[i:i + piece]) for i in range(0, len(data), piece)]
    out.append(comp.flush())
    return b"".join(out)


def test_crc32_combine_equals_crc32_of_the_concatenation():
    rng = random.Random(5)
    data = bytes(rng.getrandbits(8) for _ in range(20000))
    for cut in (0, 1, 511, 4096, 19999, 20000):
        a, b = data[:cut], data[cut:]
        assert crc32_combine(zlib.crc32(a), zlib.crc32(b), len(b)) == zlib.crc32(data), cut


@pytest.mark.parametrize("engine", ["zlib", "isal"])
@pytest.mark.parametrize("threads", [1, 3])
def test_python_gzip_reads_back_the_input(engine, threads):
    if engine == "isal" and not codec.isal_installed():
        allowed_skip("isal")
    data = _mixed(3 * MIB + 12345)
    out = _compress(data, 100003, level=6, threads=threads, engine=engine,
                    block_size=pgzip.MIN_BLOCK_SIZE)
    assert gzip.decompress(out) == data
    # one member: a single decompressor reaches its end with nothing left over
    inflater = zlib.decompressobj(31)
    assert inflater.decompress(out) == data and inflater.eof and not inflater.unused_data


@pytest.mark.parametrize("threads", [1, 2, 4])
def test_output_does_not_depend_on_threads_or_input_pieces(threads):
    data = _mixed(2 * MIB)
    one = _compress(data, len(data), level=6, threads=1, engine="zlib", block_size=128 << 10)
    other = _compress(data, 7777, level=6, threads=threads, engine="zlib", block_size=128 << 10)
    assert one == other


def test_empty_and_tiny_inputs():
    for data in (b"", b"x", bytes(100)):
        assert gzip.decompress(_compress(data, 10, threads=2, engine="zlib")) == data


def test_size_within_two_percent_of_single_stream_zlib():
    data = _mixed(6 * MIB, seed=9)
    ours = _compress(data, MIB, level=6, threads=2, engine="zlib")
    single = zlib.compressobj(6, zlib.DEFLATED, 31)
    reference = single.compress(data) + single.flush()
    assert len(ours) <= 1.02 * len(reference), (len(ours), len(reference))


def test_gzip_t_accepts_the_member(tmp_path):
    path = str(tmp_path / "x.gz")
    with open(path, "wb") as f:
        f.write(_compress(_mixed(2 * MIB), 65536, threads=2, engine="zlib",
                          block_size=pgzip.MIN_BLOCK_SIZE))
    assert subprocess.call(["gzip", "-t", path]) == 0
    assert subprocess.check_output(["gzip", "-dc", path]) == _mixed(2 * MIB)


def test_queue_stays_bounded():
    comp = ParallelGzip(6, threads=2, engine="zlib", block_size=pgzip.MIN_BLOCK_SIZE,
                        in_flight=3)
    data = _mixed(MIB)
    out = []
    for i in range(0, len(data), 200000):
        out.append(comp.compress(data[i:i + 200000]))
        assert len(comp._queued) <= 3
        assert comp._pending < pgzip.MIN_BLOCK_SIZE
    out.append(comp.flush())
    assert gzip.decompress(b"".join(out)) == data


def test_close_midway_stops_the_workers():
    before = set(threading.enumerate())
    comp = ParallelGzip(1, threads=3, engine="zlib", block_size=pgzip.MIN_BLOCK_SIZE)
    comp.compress(_mixed(MIB))
    comp.close()
    assert not [t for t in threading.enumerate() if t not in before and t.is_alive()]


def test_bad_arguments_are_refused():
    with pytest.raises(BundleError, match="threads must be a positive integer"):
        ParallelGzip(6, threads=0)
    with pytest.raises(BundleError, match="level 0 is outside 1..9"):
        ParallelGzip(0)
    with pytest.raises(BundleError, match="block size 4096 is below"):
        ParallelGzip(6, block_size=4096)
    comp = ParallelGzip(6, threads=1)
    comp.flush()
    with pytest.raises(BundleError, match="after flush"):
        comp.compress(b"more")


# ------------------------------------------------ a real bundle, read the original way

@pytest.fixture(scope="module")
def members(tmp_path_factory):
    require_qemu_img()
    root = str(tmp_path_factory.mktemp("pgzip-members"))
    return [("0.vhd", make_vhd(os.path.join(root, "a.vhd"), 6, "dynamic", seed=4)),
            ("1.vhd", make_vhd(os.path.join(root, "b.vhd"), 5, "fixed", seed=5))]


@pytest.mark.parametrize("threads", [1, 2, 4])
def test_gnu_tar_reads_a_parallel_bundle(tmp_path, members, threads):
    bundle = str(tmp_path / "b.tgz")
    with open(bundle, "wb") as f:
        for piece in write_bundle(members, engine="zlib", threads=threads):
            f.write(piece)
    assert subprocess.call(["gzip", "-t", bundle]) == 0
    listing = subprocess.check_output(["tar", "-tzf", bundle], universal_newlines=True)
    assert listing.split() == ["0.vhd", "1.vhd"]
    out = tmp_path / "out"
    out.mkdir()
    with open(bundle, "rb") as f:   # as the original plugin did: the stream into tar -xz
        subprocess.check_call(["tar", "-xz", "-C", str(out)], stdin=f)
    for arcname, path in members:
        assert read(str(out / arcname)) == read(path)
