"""R13: hostile QCOW2 images -- every refusal class of issue #13 and decompression / size bombs.

Each case starts from a valid image (ours, or qemu's compressed one), changes a few bytes, and
opens / reads / maps / checks it.  Expected: the specific typed error naming the field, within
CASE_SECONDS and MAX_PEAK bytes of Python memory (tracemalloc), and the file unchanged
(sha256 before and after).  A backing or data file named by a hostile image is never opened.
"""

import hashlib
import os
import struct
import time
import tracemalloc
import zlib

import pytest

from tests.qcow2.qemu import qemu_img, require_qemu
from vhdport.errors import ChainError, Qcow2CorruptError, Qcow2UnsupportedError, VhdportError
from vhdport.qcow2 import Qcow2Chain, Qcow2File
from vhdport.qcow2.check import check_image
from vhdport.qcow2.create import create
from vhdport.qcow2.format import tables as t

KiB, MiB = 1024, 1024 * 1024
CASE_SECONDS = 5.0
MAX_PEAK = 100 * MiB
CS = 64 * KiB


def u32(v):
    return struct.pack(">I", v)


def u64(v):
    return struct.pack(">Q", v)


@pytest.fixture(scope="module")
def base(tmp_path_factory):
    """A valid 8 MiB image with data in two L2-mapped places; its bytes and key offsets."""
    d = tmp_path_factory.mktemp("r13")
    path = str(d / "base.qcow2")
    create(path, 8 * MiB)
    with Qcow2Chain.open(path, writable=True) as chain:
        chain.write(0, b"A" * 100 * KiB)
        chain.write(5 * MiB, b"B" * KiB)
        l1 = chain.leaf.header.l1_table_offset
        l2 = chain.leaf.l1_entry(0) & t.OFFSET_MASK
        data = chain.leaf.cluster_entry(0)[0] & t.OFFSET_MASK
        rt = chain.leaf.header.refcount_table_offset
    with open(path, "rb") as f:
        raw = f.read()
    return dict(raw=raw, l1=l1, l2=l2, data=data, rt=rt)


@pytest.fixture(scope="module")
def compressed(tmp_path_factory):
    require_qemu()
    d = tmp_path_factory.mktemp("r13c")
    src = str(d / "src.raw")
    with open(src, "wb") as f:
        f.write((b"compress me " * (CS // 12 + 1))[:CS])
    path = str(d / "c.qcow2")
    qemu_img("convert", "-c", "-f", "raw", "-O", "qcow2", src, path)
    with Qcow2File.open(path) as image:
        entry, _bm, l2 = image.cluster_entry(0)
    with open(path, "rb") as f:
        return dict(raw=f.read(), entry=entry, l2=l2)


def patched(raw, *edits):
    buf = bytearray(raw)
    for offset, data in edits:
        if offset + len(data) > len(buf):
            buf += bytes(offset + len(data) - len(buf))
        buf[offset:offset + len(data)] = data
    return bytes(buf)


def sha(path):
    with open(path, "rb") as f:
        return hashlib.sha256(f.read()).hexdigest()


def exercise(path):
    """Everything a reader does: open, map, read it all (the file alone), check, open as a
    chain (which refuses a backing file: no resolver)."""
    with Qcow2File.open(path) as image:
        list(image.map(0, image.virtual_size))
        size = image.virtual_size
        pos = 0
        while pos < size:
            n = min(4 * MiB, size - pos)
            image.read(pos, n)
            pos += n
    defects = check_image(path)
    with Qcow2Chain.open(path) as chain:
        list(chain.extents())
    if defects:
        raise _Defects(defects)


class _Defects(VhdportError):
    """check_image found what reading did not touch (refcount structures)."""

    def __init__(self, defects):
        super().__init__("; ".join(str(d) for d in defects))
        self.defects = defects


def run_case(tmp_path, raw, reliability_case, name, error, field, match=None):
    case = reliability_case("R13", name, "{} naming {}; <5 s, <100 MiB, file unchanged".format(
        error.__name__, field))
    path = str(tmp_path / "hostile.qcow2")
    with open(path, "wb") as f:
        f.write(raw)
    before = sha(path)
    tracemalloc.start()
    start = time.monotonic()
    try:
        with pytest.raises(VhdportError) as info:
            exercise(path)
    finally:
        elapsed = time.monotonic() - start
        peak = tracemalloc.get_traced_memory()[1]
        tracemalloc.stop()
    err = info.value
    if isinstance(err, _Defects):
        assert err.defects[0].field == field, err.defects
        err = error(str(err.defects[0]), field=field)
    assert isinstance(err, error), "got {!r}".format(err)
    assert err.fields.get("field") == field, "field {!r} in {}".format(err.fields.get("field"), err)
    if match:
        assert match in str(err)
    assert elapsed < CASE_SECONDS and peak < MAX_PEAK, (elapsed, peak)
    assert sha(path) == before
    case.detail = "{} ({:.2f} s, {:.1f} MiB)".format(err, elapsed, peak / MiB)


HEADER_CASES = [
    ("magic", [(0, b"QFI\x00")], Qcow2CorruptError, "magic"),
    ("version 1", [(4, u32(1))], Qcow2UnsupportedError, "version"),
    ("version 4", [(4, u32(4))], Qcow2UnsupportedError, "version"),
    ("AES encryption", [(32, u32(1))], Qcow2UnsupportedError, "crypt_method"),
    ("LUKS encryption", [(32, u32(2))], Qcow2UnsupportedError, "crypt_method"),
    ("external data file bit", [(72, u64(4))], Qcow2UnsupportedError, "incompatible_features"),
    ("unknown incompatible bit 5", [(72, u64(1 << 5))], Qcow2UnsupportedError,
     "incompatible_features"),
    ("unknown incompatible bit 63", [(72, u64(1 << 63))], Qcow2UnsupportedError,
     "incompatible_features"),
    ("corrupt bit", [(72, u64(2))], Qcow2CorruptError, "incompatible_features"),
    ("zstd compression type", [(72, u64(8)), (104, b"\x01")], Qcow2UnsupportedError,
     "compression_type"),
    ("cluster_bits 8", [(20, u32(8))], Qcow2CorruptError, "cluster_bits"),
    ("cluster_bits 22", [(20, u32(22))], Qcow2CorruptError, "cluster_bits"),
    ("cluster_bits 2**32-1", [(20, u32(0xFFFFFFFF))], Qcow2CorruptError, "cluster_bits"),
    ("refcount_order 7", [(96, u32(7))], Qcow2CorruptError, "refcount_order"),
    ("header_length not a multiple of 8", [(100, u32(109))], Qcow2CorruptError,
     "header_length"),
    ("header_length past the cluster", [(100, u32(0x20000))], Qcow2CorruptError,
     "header_length"),
    ("extension length 2**32-1", [(112 + 4, u32(0xFFFFFFFF))], Qcow2CorruptError, "extensions"),
    ("data file name extension", [(112, u32(0x44415441) + u32(8) + b"/etc/pas")],
     Qcow2UnsupportedError, "extensions"),
    ("encryption header extension", [(112, u32(0x0537BE77) + u32(16) + bytes(16))],
     Qcow2UnsupportedError, "extensions"),
    ("backing name past the first cluster", [(8, u64(CS - 4)), (16, u32(100))],
     Qcow2CorruptError, "backing_file_offset"),
    ("backing name 2**32-1 bytes", [(8, u64(600)), (16, u32(0xFFFFFFFF))], Qcow2CorruptError,
     "backing_file_size"),
    ("virtual size 2**63 (L1 too small)", [(24, u64(1 << 63))], Qcow2CorruptError, "l1_size"),
    ("L1 of 2**32-1 entries", [(36, u32(0xFFFFFFFF))], Qcow2CorruptError, "l1_table"),
    ("L1 unaligned", [(40, u64(3 * CS + 8))], Qcow2CorruptError, "l1_table"),
    ("L1 past EOF", [(40, u64(1 << 40))], Qcow2CorruptError, "l1_table"),
    ("L1 on the header", [(40, u64(0))], Qcow2CorruptError, "l1_table"),
    ("L1 on the refcount table", [(40, u64(CS))], Qcow2CorruptError, "refcount_table"),
    ("refcount table unaligned", [(48, u64(CS + 512))], Qcow2CorruptError, "refcount_table"),
    ("refcount table past EOF", [(48, u64(1 << 50))], Qcow2CorruptError, "refcount_table"),
    ("refcount table of 2**32-1 clusters", [(56, u32(0xFFFFFFFF))], Qcow2CorruptError,
     "refcount_table"),
    ("refcount table of 0 clusters", [(56, u32(0))], Qcow2CorruptError,
     "refcount_table_clusters"),
    ("2**32-1 snapshots", [(60, u32(0xFFFFFFFF)), (64, u64(CS))], Qcow2CorruptError,
     "nb_snapshots"),
    ("snapshot table past EOF", [(60, u32(3)), (64, u64(1 << 40))], Qcow2CorruptError,
     "snapshots_offset"),
]


@pytest.mark.parametrize("name,edits,error,field", HEADER_CASES,
                         ids=[c[0] for c in HEADER_CASES])
def test_header_refusals(tmp_path, base, reliability_case, name, edits, error, field):
    if name == "magic":
        error = Qcow2CorruptError.__bases__[0]      # Qcow2FormatError: not a QCOW2 at all
    run_case(tmp_path, patched(base["raw"], *edits), reliability_case, name, error, field)


def test_backing_file_is_not_followed(tmp_path, base, reliability_case):
    case = reliability_case("R13", "backing file /etc/passwd named by a store image",
                            "ChainError; the named file is never opened")
    name = b"/etc/passwd"
    raw = patched(base["raw"], (8, u64(1024)), (16, u32(len(name))), (1024, name))
    path = str(tmp_path / "b.qcow2")
    with open(path, "wb") as f:
        f.write(raw)
    with pytest.raises(ChainError, match="not followed") as info:
        Qcow2Chain.open(path)
    case.detail = str(info.value)


def table_cases(base):
    l1, l2, data, rt = base["l1"], base["l2"], base["data"], base["rt"]
    size = len(base["raw"])
    return [
        ("L1 entry reserved bits", [(l1, u64(l2 | 1))], "l1_entry"),
        ("L1 entry: L2 unaligned", [(l1, u64(l2 + 512))], "l1_entry"),
        ("L1 entry: L2 past EOF", [(l1, u64(1 << 45))], "l1_entry"),
        ("L1 entry: L2 on the refcount table", [(l1, u64(rt))], "l1_entry"),
        ("L1 entry: L2 on the L1", [(l1, u64(l1))], "l1_entry"),
        ("L1 entry beyond the virtual size", [(36, u32(2)), (l1 + 8, u64(l2))], "l1_entry"),
        ("L2 entry: data unaligned", [(l2, u64(t.COPIED | (data + 4096)))], "l2_entry"),
        ("L2 entry: data past EOF", [(l2, u64(t.COPIED | (size + 10 * CS) // CS * CS))],
         "l2_entry"),
        ("L2 entry: data on the header", [(l2, u64(t.COPIED))], "l2_entry"),
        ("L2 entry: data on the refcount table", [(l2, u64(t.COPIED | rt))], "l2_entry"),
        ("L2 entry reserved bits", [(l2, u64(t.COPIED | data | 2))], "l2_entry"),
        ("refcount table entry unaligned", [(rt, u64(2 * CS + 1))], "refcount_table"),
        ("refcount block on the L1 table", [(rt, u64(l1))], "refcount_table"),
        ("refcount block past EOF", [(rt, u64(1 << 44))], "refcount_table"),
        ("L1 entry: L2 on a refcount block", [(l1, u64(2 * CS))], "l1_entry"),
        ("L2 entry: data on a refcount block", [(l2, u64(t.COPIED | 2 * CS))], "l2_entry"),
        ("refcount block named by every refcount table entry (check bomb)",
         [(rt, u64(2 * CS) * 8192)], "refcount_table"),
        ("L2 entries: one data cluster for every guest cluster (read bomb)",
         [(l2, u64(t.COPIED | data) * 128)], "l2_entry"),
    ]


@pytest.mark.parametrize("index", range(18))
def test_table_refusals(tmp_path, base, reliability_case, index):
    name, edits, field = table_cases(base)[index]
    error = Qcow2CorruptError
    run_case(tmp_path, patched(base["raw"], *edits), reliability_case, name, error, field)


def test_shared_l2_table_is_refused(tmp_path, reliability_case):
    """Every L1 entry naming one L2 table: a 100 KiB file that would read as 16 TiB of data."""
    path = str(tmp_path / "src.qcow2")
    create(path, 17589500641280, cluster_size=512 * KiB)
    with Qcow2File.open(path, writable=True) as image:
        image.write(0, b"x" * 512 * KiB)
        l1, l2 = image.header.l1_table_offset, image.l1_entry(0)
        entries = image.header.l1_size
    with open(path, "rb") as f:
        raw = patched(f.read(), (l1, u64(l2) * entries))
    run_case(tmp_path, raw, reliability_case, "one L2 table named by all 512 L1 entries "
             "(16 TiB from 1 MiB)", Qcow2CorruptError, "l1_entry")


def test_compressed_span_larger_than_a_cluster(tmp_path, compressed, reliability_case):
    entry, l2 = compressed["entry"], compressed["l2"]
    x = 62 - (16 - 8)
    huge = (entry & ~(((1 << 8) - 1) << x)) | (((1 << 8) - 1) << x)   # 256 sectors: 128 KiB
    raw = patched(compressed["raw"], (l2, u64(huge)))
    run_case(tmp_path, raw, reliability_case, "compressed cluster spanning 128 KiB",
             Qcow2CorruptError, "l2_entry")


def test_compressed_garbage(tmp_path, compressed, reliability_case):
    off, _span = t.compressed_fields(compressed["entry"], 16)
    raw = patched(compressed["raw"], (off, b"\xff" * 64))
    run_case(tmp_path, raw, reliability_case, "compressed cluster that does not inflate",
             Qcow2CorruptError, "compressed_cluster")


def test_decompression_bomb_is_bounded(tmp_path, compressed, reliability_case):
    """A deflate stream that would inflate to 64 MiB yields one cluster, no more."""
    case = reliability_case("R13", "deflate bomb (16 MiB of zeros in one compressed cluster)",
                            "reads one cluster of zeros; <5 s, <100 MiB")
    engine = zlib.compressobj(9, zlib.DEFLATED, -12)
    bomb = engine.compress(bytes(16 * MiB)) + engine.flush()
    entry, l2 = compressed["entry"], compressed["l2"]
    off, _span = t.compressed_fields(entry, 16)
    keep = bomb
    assert len(keep) < CS - 512
    new_entry = t.pack_compressed(off, len(keep), 16)
    raw = patched(compressed["raw"], (l2, u64(new_entry)), (off, keep))
    path = str(tmp_path / "bomb.qcow2")
    with open(path, "wb") as f:
        f.write(raw)
    tracemalloc.start()
    start = time.monotonic()
    with Qcow2Chain.open(path) as chain:
        data = chain.read(0, chain.virtual_size)
    elapsed, peak = time.monotonic() - start, tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    assert bytes(data[:CS]) == bytes(CS)
    assert elapsed < CASE_SECONDS and peak < MAX_PEAK
    case.detail = "read {} bytes in {:.2f} s, peak {:.1f} MiB".format(len(data), elapsed,
                                                                     peak / MiB)


def test_huge_sparse_image_opens_in_bounded_memory(tmp_path, reliability_case):
    case = reliability_case("R13", "16 TiB sparse image: open, map, check",
                            "fast, bounded memory")
    path = str(tmp_path / "big.qcow2")
    create(path, 17589500641280, cluster_size=512 * KiB)
    tracemalloc.start()
    start = time.monotonic()
    with Qcow2Chain.open(path) as chain:
        runs = list(chain.extents())
    defects = check_image(path)
    elapsed, peak = time.monotonic() - start, tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    assert runs == [(0, 17589500641280, t.ZERO_KIND)] and defects == []
    assert elapsed < CASE_SECONDS and peak < MAX_PEAK
    case.detail = "{:.2f} s, {:.1f} MiB".format(elapsed, peak / MiB)


def _snapshot_table(l1_offsets, l1_size):
    out = b""
    for i, off in enumerate(l1_offsets):
        ident = str(i).encode()
        entry = struct.pack(">QIHHIIQII", off, l1_size, len(ident), len(ident), 0, 0, 0, 0, 16)
        entry += bytes(16) + ident + ident
        out += entry + bytes(-len(entry) % 8)
    return out


def _with_snapshots(raw, cs, count, shared_l1):
    """``raw`` plus ``count`` snapshots (copies of its L1, or one shared copy) after its end."""
    l1_off = struct.unpack(">Q", raw[40:48])[0]
    l1_size = struct.unpack(">I", raw[36:40])[0]
    end = (len(raw) + cs - 1) // cs * cs
    l1_copy = raw[l1_off:l1_off + l1_size * 8]
    step = (len(l1_copy) + cs - 1) // cs * cs
    edits, offsets = [], []
    for i in range(count):
        off = end if shared_l1 else end + i * step
        offsets.append(off)
        edits.append((off, l1_copy))
    table_at = end + (1 if shared_l1 else count) * step
    edits.append((table_at, _snapshot_table(offsets, l1_size)))
    edits += [(60, u32(count)), (64, u64(table_at))]
    return patched(raw, *edits)


def test_snapshots_sharing_one_l1_are_refused(tmp_path, base, reliability_case):
    raw = _with_snapshots(base["raw"], CS, 1000, shared_l1=True)
    run_case(tmp_path, raw, reliability_case, "1000 snapshots naming one L1 table (walk bomb)",
             Qcow2CorruptError, "snapshot_l1")


def test_many_snapshots_sharing_l2_tables_check_fast(tmp_path, reliability_case):
    """2000 snapshots, each its own L1 copy, all reaching the same L2 tables: check walks
    each L2 table once (weighted), so time follows the file, not snapshots x tables."""
    case = reliability_case("R13", "2000 snapshots sharing L2 tables (check bomb)",
                            "typed defects (refcounts not raised); <5 s, <100 MiB")
    path = str(tmp_path / "src.qcow2")
    create(path, 4 * MiB, cluster_size=512)
    with Qcow2Chain.open(path, writable=True) as chain:
        for off in range(0, 4 * MiB, 32 * KiB):
            chain.write(off, b"d" * 512)
    with open(path, "rb") as f:
        raw = _with_snapshots(f.read(), 512, 2000, shared_l1=False)
    with open(path, "wb") as f:
        f.write(raw)
    before = sha(path)

    def read_and_check():
        with Qcow2Chain.open(path) as chain:
            assert len(chain.leaf.snapshots) == 2000
            chain.read(0, chain.virtual_size)
        return check_image(path)

    start = time.monotonic()
    defects = read_and_check()              # timed alone: tracemalloc slows Python code
    elapsed = time.monotonic() - start
    tracemalloc.start()
    read_and_check()
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    assert defects and {d.field for d in defects} <= {"refcount", "copied_flag", "leak"}
    assert elapsed < CASE_SECONDS and peak < MAX_PEAK and sha(path) == before
    case.detail = "{} defects in {:.2f} s, peak {:.1f} MiB".format(len(defects), elapsed,
                                                                  peak / MiB)


# ---------------------------------------------------------------- mutation fuzzing

from hypothesis import HealthCheck, given, settings, strategies as st  # noqa: E402

FUZZ_EXAMPLES = int(os.environ.get("VHDPORT_FUZZ_EXAMPLES", "150"))


@pytest.fixture(scope="module")
def fuzz_seeds(tmp_path_factory, base, compressed):
    """Valid images to mutate: ours (64 KiB), a 512 B / 1-bit one with a backing name and the
    hidden flag, qemu's compressed one, and an extended-L2 one."""
    from vhdport.qcow2 import set_hidden
    d = tmp_path_factory.mktemp("r13f")
    small = str(d / "small.qcow2")
    create(small, 300 * KiB, cluster_size=512, refcount_bits=1, backing_name="parent.qcow2")
    with Qcow2File.open(small, writable=True) as image:
        image.write(1000, b"s" * 5000)
    set_hidden(small, True)
    ext = str(d / "ext.qcow2")
    create(ext, MiB, cluster_size=16 * KiB, extended_l2=True)
    with Qcow2File.open(ext, writable=True) as image:
        image.write(3, b"e" * 40000)
    seeds = [base["raw"], compressed["raw"]]
    for path in (small, ext):
        with open(path, "rb") as f:
            seeds.append(f.read())
    return seeds


def _regions(raw):
    """Metadata regions worth mutating: header cluster start, L1, L2s, refcount structures."""
    cs = 1 << struct.unpack(">I", raw[20:24])[0]
    regions = [(0, min(cs, 1024))]
    l1 = struct.unpack(">Q", raw[40:48])[0]
    rt = struct.unpack(">Q", raw[48:56])[0]
    regions += [(l1, 64), (rt, 64)]
    for i in range(4):
        entry = struct.unpack(">Q", raw[l1 + i * 8:l1 + i * 8 + 8])[0] & t.OFFSET_MASK
        if entry:
            regions.append((entry, 256))
    entry = struct.unpack(">Q", raw[rt:rt + 8])[0]
    if entry:
        regions.append((entry, 64))
    return [(s, n) for s, n in regions if s + n <= len(raw)]


@settings(max_examples=FUZZ_EXAMPLES, deadline=None, derandomize=True, database=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow,
                                 HealthCheck.data_too_large])
@given(data=st.data())
def test_mutated_images_only_raise_typed_errors(tmp_path, fuzz_seeds, data):
    raw = bytearray(data.draw(st.sampled_from(fuzz_seeds), label="seed"))
    regions = _regions(bytes(raw))
    for _ in range(data.draw(st.integers(1, 4), label="mutations")):
        start, n = data.draw(st.sampled_from(regions), label="region")
        at = start + data.draw(st.integers(0, n - 1), label="at")
        kind = data.draw(st.sampled_from(["byte", "u32", "u64"]), label="kind")
        width = {"byte": 1, "u32": 4, "u64": 8}[kind]
        value = data.draw(st.sampled_from([0, 1, 0xFF, 0x80, 0x7FFFFFFF, 0xFFFFFFFF,
                                           (1 << 63), (1 << 64) - 1, 512, 65536,
                                           len(raw), len(raw) + 512]), label="value")
        value &= (1 << (8 * width)) - 1
        raw[at:at + width] = value.to_bytes(width, "big")[:len(raw) - at]
    if data.draw(st.booleans(), label="truncate"):
        raw = raw[:data.draw(st.integers(0, len(raw)), label="length")]
    path = str(tmp_path / "m.qcow2")
    with open(path, "wb") as f:
        f.write(raw)
    before = sha(path)
    start = time.monotonic()
    try:
        exercise(path)
    except VhdportError:
        pass
    except _Defects:
        pass
    assert time.monotonic() - start < CASE_SECONDS
    assert sha(path) == before


def test_declared_snapshot_count_does_not_size_reads(tmp_path, reliability_case):
    """65536 (empty) snapshots then 64 MiB more: the table is read through a window, so
    memory is the window plus the snapshot list, not the file's tail."""
    case = reliability_case("R13", "65536 snapshots in front of 64 MiB",
                            "opens; memory a window + the list, not the tail")
    path = str(tmp_path / "s.qcow2")
    create(path, MiB)
    entry = struct.pack(">QIHHIIQII", 0, 0, 0, 0, 0, 0, 0, 0, 16) + bytes(16)
    with open(path, "r+b") as f:
        f.seek(60)
        f.write(u32(65536) + u64(4 * CS))
        f.seek(4 * CS)
        f.write(entry * 65536)
        f.truncate(4 * CS + 64 * MiB)
    tracemalloc.start()
    start = time.monotonic()
    with Qcow2File.open(path) as image:
        count = len(image.snapshots)
    elapsed, peak = time.monotonic() - start, tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    assert count == 65536
    assert elapsed < CASE_SECONDS and peak < 40 * MiB, (elapsed, peak)
    case.detail = "{:.2f} s, {:.1f} MiB".format(elapsed, peak / MiB)


def test_bitmap_tables_walked_again_and_again(tmp_path, reliability_case):
    """1000 bitmap directory entries naming one table as large as the file: check stops
    once the tables add up to more than the file (a defect), instead of walking it 1000x."""
    from vhdport.qcow2.format.header import EXT_BITMAPS, Extension

    case = reliability_case("R13", "1000 bitmaps sharing one file-sized table (check bomb)",
                            "one 'bitmaps' defect; <5 s, <100 MiB")
    path = str(tmp_path / "bm.qcow2")
    create(path, 64 * MiB, cluster_size=512)
    with Qcow2Chain.open(path, writable=True) as chain:
        chain.write(0, b"d" * 4 * MiB)
    size = os.path.getsize(path)
    dir_off = (size + 511) // 512 * 512
    entry = struct.pack(">QIIBBHI", 512, (size - 512) // 8, 0, 1, 16, 1, 0) + b"b" + bytes(7)
    with Qcow2File.open(path, writable=True) as image:
        image.header.extensions.append(Extension(EXT_BITMAPS, struct.pack(
            ">IIQQ", 1000, 0, 1000 * len(entry), dir_off)))
        image.header.autoclear_features = 1
        image.write_header()
        image.pwrite(88, u64(1))
        image.pwrite(dir_off, entry * 1000)
    start = time.monotonic()
    defects = check_image(path)
    elapsed = time.monotonic() - start
    assert [d for d in defects if d.field == "bitmaps"]
    assert elapsed < CASE_SECONDS, elapsed
    case.detail = "{} defects in {:.2f} s".format(len(defects), elapsed)
