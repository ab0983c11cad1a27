"""Raw import (file and stream) and sparse raw export."""

import hashlib
import io
import json
import os
import random
import tracemalloc

import pytest

from vhdport.errors import FormatError, IntegrityError
from vhdport.vhd import (Chain, VhdFile, create_dynamic, create_snapshot, export_raw, import_raw,
                         import_raw_stream)
from vhdport.vhd.check import check_chain

KiB, MiB = 1024, 1024 * 1024


def pattern(seed, length):
    return random.Random(seed).getrandbits(8 * length).to_bytes(length, "little")


def assert_clean(path):
    found = check_chain(path)
    assert found == [], "\n".join(str(d) for d in found)


def sample_raw(size=7 * MiB + 1234):
    """Data, an all-zero 2 MiB-aligned block, and a tail that is not a multiple of 512."""
    raw = bytearray(size)
    raw[0:5000] = pattern(1, 5000)
    raw[2 * MiB - 10:2 * MiB + 10] = b"\x01" * 20      # blocks 0 and 1 both touched
    # block 2 (4..6 MiB) stays zero in the default size
    tail = 6 * MiB + 3 if size > 6 * MiB + 3 else size * 3 // 4 + 3
    raw[tail:] = pattern(2, size - tail)
    return bytes(raw)


class Trickle(object):
    """A reader returning at most ``step`` bytes per read, like a socket."""

    def __init__(self, data, step=100000):
        self.buf = io.BytesIO(data)
        self.step = step

    def read(self, n):
        return self.buf.read(min(n, self.step))


def padded(raw):
    return raw + bytes(-len(raw) % 512)


def virtual(path):
    with Chain.open(path) as chain:
        return bytes(chain.read(0, chain.virtual_size))


@pytest.mark.parametrize("fixed", [False, True])
def test_import_raw_round_trips(tmp_path, fixed):
    raw = sample_raw()
    (tmp_path / "in.raw").write_bytes(raw)
    vhd = str(tmp_path / "out.vhd")
    new_uuid = import_raw(str(tmp_path / "in.raw"), vhd, fixed=fixed)
    with VhdFile.open(vhd) as disk:
        assert disk.uuid == new_uuid
        assert disk.virtual_size == len(padded(raw))
        assert disk.type_name == ("fixed" if fixed else "dynamic")
        if not fixed:
            assert list(disk.bat.entries[2:3]) == [0xFFFFFFFF]   # the zero block is skipped
            assert disk.allocated_blocks == 3
            assert disk.batmap is not None and disk.batmap[0] & 0x80   # block 0 full
    assert virtual(vhd) == padded(raw)
    if fixed:
        assert os.path.getsize(vhd) == len(padded(raw)) + 512
    assert_clean(vhd)
    export_raw(vhd, str(tmp_path / "back.raw"))
    assert (tmp_path / "back.raw").read_bytes() == padded(raw)


def test_import_raw_stream_from_a_trickling_reader(tmp_path):
    raw = sample_raw(3 * MiB + 7)
    vhd = str(tmp_path / "s.vhd")
    import_raw_stream(Trickle(raw, 65537), vhd, len(raw))
    assert virtual(vhd) == padded(raw)
    assert_clean(vhd)


def test_all_zero_stream_allocates_nothing(tmp_path):
    vhd = str(tmp_path / "z.vhd")
    import_raw_stream(Trickle(bytes(9 * MiB), MiB), vhd, 9 * MiB)
    with VhdFile.open(vhd) as disk:
        assert disk.allocated_blocks == 0
    assert os.path.getsize(vhd) < 64 * KiB


def test_block_size_option(tmp_path):
    raw = sample_raw(MiB + 512)
    vhd = str(tmp_path / "b.vhd")
    import_raw_stream(io.BytesIO(raw), vhd, len(raw), block_size=64 * KiB)
    with VhdFile.open(vhd) as disk:
        assert disk.block_size == 64 * KiB
    assert virtual(vhd) == raw


@pytest.mark.parametrize("got,declared", [(1000, 2000), (5 * MiB, 5 * MiB + 1), (0, 4096),
                                          (3000, 2000), (2 * MiB + 1, 2 * MiB)])
def test_stream_of_wrong_length_leaves_no_file(tmp_path, got, declared):
    vhd = str(tmp_path / "short.vhd")
    with pytest.raises(IntegrityError) as err:
        import_raw_stream(Trickle(b"\x07" * got), vhd, declared)
    assert "short.vhd" in str(err.value)
    assert not os.path.exists(vhd)


def test_import_does_not_overwrite(tmp_path):
    (tmp_path / "in.raw").write_bytes(b"x" * 4096)
    (tmp_path / "out.vhd").write_bytes(b"precious")
    with pytest.raises(FormatError):
        import_raw(str(tmp_path / "in.raw"), str(tmp_path / "out.vhd"))
    assert (tmp_path / "out.vhd").read_bytes() == b"precious"


def test_import_missing_or_empty_raw(tmp_path):
    with pytest.raises(FormatError):
        import_raw(str(tmp_path / "nope.raw"), str(tmp_path / "a.vhd"))
    (tmp_path / "empty.raw").write_bytes(b"")
    with pytest.raises(FormatError):
        import_raw(str(tmp_path / "empty.raw"), str(tmp_path / "b.vhd"))
    assert not os.path.exists(str(tmp_path / "b.vhd"))


def test_memory_stays_constant(tmp_path):
    size = 48 * MiB

    class Patterned(object):
        def __init__(self):
            self.left = size

        def read(self, n):
            n = min(n, self.left, MiB)
            self.left -= n
            return b"\xa5" * n

    vhd = str(tmp_path / "big.vhd")
    tracemalloc.start()
    try:
        import_raw_stream(Patterned(), vhd, size)
        export_raw(vhd, str(tmp_path / "big.raw"))
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert peak < 16 * MiB
    assert os.path.getsize(str(tmp_path / "big.raw")) == size


def test_export_through_a_chain_is_sparse(tmp_path):
    base, leaf = str(tmp_path / "base.vhd"), str(tmp_path / "leaf.vhd")
    create_dynamic(base, 64 * MiB)
    with Chain.open(base, writable=True) as chain:
        chain.write(3, pattern(1, 1000))
        chain.write(40 * MiB - 5, pattern(2, 10))
    create_snapshot(leaf, "base.vhd", block_size=512 * KiB)
    with Chain.open(leaf, writable=True) as chain:
        chain.write(40 * MiB - 100, pattern(3, 50))
        chain.write(63 * MiB, bytes(MiB))            # allocated but zero: not written out
    out = str(tmp_path / "out.raw")
    assert export_raw(leaf, out) == 64 * MiB
    data = open(out, "rb").read()
    assert data == virtual(leaf)
    assert data[40 * MiB - 100:40 * MiB - 50] == pattern(3, 50)
    assert os.stat(out).st_blocks * 512 <= 512 * KiB   # 64 KiB holes (with fs slack)


def test_export_refuses_existing_output(tmp_path):
    vhd = str(tmp_path / "d.vhd")
    create_dynamic(vhd, MiB)
    (tmp_path / "o.raw").write_bytes(b"keep")
    with pytest.raises(FormatError):
        export_raw(vhd, str(tmp_path / "o.raw"))
    assert (tmp_path / "o.raw").read_bytes() == b"keep"


@pytest.mark.parametrize("name", ["dynamic.vhd", "chain/leaf.vhd", "chain/mid.vhd",
                                  "chain/base.vhd", "fixed.vhd", "fixed511.vhd"])
def test_export_vhd_util_fixtures_matches_manifest(tmp_path, vhd_fixtures, name):
    manifest = json.loads((vhd_fixtures / "manifest.json").read_text())
    out = str(tmp_path / "out.raw")
    export_raw(str(vhd_fixtures / name), out)
    with open(out, "rb") as f:
        assert hashlib.sha256(f.read()).hexdigest() == manifest[name]["contents_sha256"]


def test_append_full_block_refuses_allocated_block(tmp_path):
    vhd = str(tmp_path / "a.vhd")
    create_dynamic(vhd, 2 * MiB, block_size=MiB)
    with VhdFile.open(vhd, writable=True) as disk:
        disk.append_full_block(1, b"\x01" * MiB)
        with pytest.raises(FormatError):
            disk.append_full_block(1, b"\x02" * MiB)
        with pytest.raises(FormatError):
            disk.append_full_block(0, b"\x02" * (MiB + 512))
    assert virtual(vhd) == bytes(MiB) + b"\x01" * MiB


def test_failing_reader_leaves_no_file(tmp_path):
    class Broken(object):
        def __init__(self):
            self.calls = 0

        def read(self, n):
            self.calls += 1
            if self.calls > 3:
                raise OSError("connection reset")
            return b"\x01" * min(n, 100000)

    vhd = str(tmp_path / "b.vhd")
    with pytest.raises(OSError):
        import_raw_stream(Broken(), vhd, 8 * MiB)
    assert not os.path.exists(vhd)
