"""Damaged and random inputs: the engine raises only VhdportError, never hangs, never writes.

Every mutation is run through VhdFile.open, Chain.open plus a read of the disk,
check_file, check_chain and info.  Mutations: truncation at every structural
boundary, byte changes inside each structure (optionally with the checksums
recomputed so that the code behind the checksum checks runs too), random files.
"""

import hashlib
import os
import shutil
import struct

import pytest
from hypothesis import HealthCheck, event, given, settings, strategies as st

from vhdport.errors import VhdportError
from vhdport.format.checksum import ones_complement
from vhdport.vhd import (Chain, VhdFile, check_chain, check_file, create_dynamic, create_fixed,
                         create_snapshot, info)

MIB = 1 << 20
READ_LIMIT = 32 * MIB
# VHDPORT_FUZZ_EXAMPLES=5000 VHDPORT_FUZZ_RANDOM=1 for a longer, non-reproducible hunt
FUZZ = settings(max_examples=int(os.environ.get("VHDPORT_FUZZ_EXAMPLES", "150")), deadline=10000,
                derandomize=not os.environ.get("VHDPORT_FUZZ_RANDOM"),
                suppress_health_check=[HealthCheck.function_scoped_fixture,
                                       HealthCheck.too_slow, HealthCheck.data_too_large])

pytestmark = pytest.mark.timeout(600)


def sha(path):
    with open(path, "rb") as f:
        return hashlib.sha256(f.read()).hexdigest()


def note(text):
    """Record an outcome in hypothesis' statistics (--hypothesis-show-statistics), if inside one."""
    try:
        event(text)
    except Exception:    # called from a plain test: nothing to record into
        pass


def read_disk(chain):
    """Read the disk through the chain: all of it when small, else what is allocated (bounded)."""
    size = chain.virtual_size
    if size <= READ_LIMIT:
        for _ in chain.iter_blocks():
            pass
        return
    budget = READ_LIMIT
    for offset, length in chain.allocated_ranges():
        length = min(length, budget, size - offset)
        if length <= 0:
            break
        chain.read(offset, length)
        budget -= length
    chain.read(size - 1, 1)


def exercise(path):
    """Everything a user can do to ``path`` without writing; only VhdportError may escape."""
    try:
        VhdFile.open(path).close()
    except VhdportError:
        pass
    try:
        with Chain.open(path) as chain:
            read_disk(chain)
        note("chain read")
    except VhdportError as e:
        note("chain refused: {}".format(type(e).__name__))
    for defect in check_file(path) + check_chain(path):
        assert isinstance(defect.field, str) and isinstance(defect.offset, int)
        assert "\n" not in str(defect)
    try:
        info(path)
    except VhdportError:
        pass


def exercise_unchanged(path, others=()):
    watched = [path] + list(others)
    before = [sha(p) for p in watched]
    exercise(path)
    assert [sha(p) for p in watched] == before


# ----------------------------------------------------------------- sources


def _write_pattern(path, writes):
    with Chain.open(path, writable=True) as chain:
        for offset, length, byte in writes:
            chain.write(offset, bytes([byte]) * length)


@pytest.fixture(scope="module")
def sources(tmp_path_factory, request):
    """name -> (directory, file name): valid disks of every kind, parents beside them."""
    made = tmp_path_factory.mktemp("fuzz-sources")
    d = str(made)
    create_dynamic(os.path.join(d, "dyn.vhd"), 6 * MIB)
    _write_pattern(os.path.join(d, "dyn.vhd"), [(0, 2 * MIB, 1), (2 * MIB + 512, 4096, 2),
                                                (6 * MIB - 512, 512, 3)])
    create_snapshot(os.path.join(d, "diff.vhd"), "dyn.vhd")
    _write_pattern(os.path.join(d, "diff.vhd"), [(MIB, 8192, 4), (4 * MIB, 2 * MIB, 5)])
    create_dynamic(os.path.join(d, "tiny.vhd"), 40 * 512, block_size=4096)
    _write_pattern(os.path.join(d, "tiny.vhd"), [(0, 4096, 6), (5000, 600, 7)])
    create_fixed(os.path.join(d, "fixed.vhd"), MIB)
    _write_pattern(os.path.join(d, "fixed.vhd"), [(0, 4096, 8)])
    found = {name: (d, name) for name in ("dyn.vhd", "diff.vhd", "tiny.vhd", "fixed.vhd")}
    fx = request.getfixturevalue("vhd_fixtures")
    for name in ("dynamic.vhd", "chain/mid.vhd", "chain/leaf.vhd", "fixed511.vhd"):
        found["fx:" + name] = (str(fx / os.path.dirname(name)), os.path.basename(name))
    return found


def regions(path):
    """(name, start, end) byte ranges of every structure of a valid VHD file."""
    size = os.path.getsize(path)
    with VhdFile.open(path) as disk:
        found = [("footer", disk.footer_offset, size)]
        if not disk.footer.is_dynamic:
            return found
        h = disk.header
        found += [("backup footer", 0, 512), ("header", 512, 1536),
                  ("bat", h.table_offset, h.table_offset + 4 * h.max_table_entries)]
        if disk.batmap_header is not None:
            found += [("batmap header", disk.batmap_offset, disk.batmap_offset + 512),
                      ("batmap", disk.batmap_header.map_offset,
                       disk.batmap_header.map_offset + 512 * disk.batmap_header.map_sectors)]
        for loc in h.locators:
            if loc.in_use:
                found.append(("locator", loc.data_offset, loc.data_offset + loc.data_length))
        for entry in disk.bat.entries:
            if entry != 0xFFFFFFFF:
                found.append(("bitmap", entry * 512, entry * 512 + disk.bitmap_size))
    return found


def fix_checksums(buf):
    """Recompute footer, backup footer and header checksums after a mutation."""
    for at in (0, len(buf) - 512):
        if at >= 0 and buf[at:at + 8] == b"conectix":
            struct.pack_into(">I", buf, at + 64, 0)
            struct.pack_into(">I", buf, at + 64, ones_complement(bytes(buf[at:at + 512])))
    if len(buf) >= 1536 and buf[512:520] == b"cxsparse":
        struct.pack_into(">I", buf, 512 + 36, 0)
        struct.pack_into(">I", buf, 512 + 36, ones_complement(bytes(buf[512:1536])))


@pytest.fixture
def workdir(sources, tmp_path):
    """Copy every source directory into tmp so mutations sit beside intact parents."""
    dirs = {}
    for name, (d, _base) in sources.items():
        if d not in dirs:
            dst = tmp_path / "w{}".format(len(dirs))
            shutil.copytree(d, str(dst))
            dirs[d] = str(dst)
    return {name: (dirs[d], base) for name, (d, base) in sources.items()}


def parents_of(directory, base):
    return [os.path.join(directory, f) for f in os.listdir(directory)
            if f.endswith(".vhd") and f != base]


# ----------------------------------------------------------------- tests


def truncation_points(path):
    size = os.path.getsize(path)
    points = {0, 1, 8, 511, 512, 513, 1024, 1535, 1536, size - 513, size - 512, size - 511,
              size - 1}
    for _name, start, end in regions(path):
        points.update((start, start + 1, (start + end) // 2, end - 1, end, end + 1))
    return sorted(p for p in points if 0 <= p < size)


def test_truncated_at_every_boundary(workdir, tmp_path):
    for name, (directory, base) in sorted(workdir.items()):
        original = os.path.join(directory, base)
        data = open(original, "rb").read()
        target = os.path.join(directory, "cut.vhd")
        for length in truncation_points(original):
            with open(target, "wb") as f:
                f.write(data[:length])
            exercise_unchanged(target, parents_of(directory, "cut.vhd"))
            if length < len(data) - 511:
                assert check_file(target), "{} cut to {} passed the check".format(name, length)


@FUZZ
@given(st.data())
def test_truncated_anywhere(workdir, data):
    name = data.draw(st.sampled_from(sorted(workdir)))
    directory, base = workdir[name]
    raw = open(os.path.join(directory, base), "rb").read()
    length = data.draw(st.integers(0, len(raw) - 1))
    target = os.path.join(directory, "cut.vhd")
    with open(target, "wb") as f:
        f.write(raw[:length])
    exercise_unchanged(target, parents_of(directory, "cut.vhd"))


REGION_NAMES = ["footer", "backup footer", "header", "bat", "batmap header", "batmap", "locator",
                "bitmap"]


@FUZZ
@given(st.data())
def test_bytes_changed_in_each_structure(workdir, data):
    name = data.draw(st.sampled_from(sorted(workdir)), label="source")
    directory, base = workdir[name]
    original = os.path.join(directory, base)
    buf = bytearray(open(original, "rb").read())
    available = regions(original)
    wanted = data.draw(st.sampled_from(REGION_NAMES), label="region")
    chosen = [r for r in available if r[0] == wanted] or available
    _region, start, end = data.draw(st.sampled_from(chosen))
    changes = data.draw(st.lists(st.tuples(st.integers(start, max(start, end - 1)),
                                           st.integers(0, 255)), min_size=1, max_size=6))
    for offset, value in changes:
        buf[offset] = value
    if data.draw(st.booleans(), label="fix checksums"):
        fix_checksums(buf)
    target = os.path.join(directory, "mut.vhd")
    with open(target, "wb") as f:
        f.write(bytes(buf))
    exercise_unchanged(target, parents_of(directory, "mut.vhd"))


INTERESTING = st.sampled_from([0, 1, 2, 3, 4, 511, 512, 513, 1536, 4096, 0x7FFFFFFF, 0x80000000,
                               0xFFFFFFFE, 0xFFFFFFFF, 2 ** 63 - 1, 2 ** 63, 2 ** 64 - 1])
FIELDS = [  # (structure offset, struct format) of every numeric field worth a wild value
    ("footer", 8, ">I"), ("footer", 16, ">Q"), ("footer", 24, ">I"), ("footer", 32, ">I"),
    ("footer", 48, ">Q"), ("footer", 56, ">I"), ("footer", 60, ">I"), ("footer", 85, ">B"),
    ("header", 8, ">Q"), ("header", 16, ">Q"), ("header", 24, ">I"), ("header", 28, ">I"),
    ("header", 32, ">I"), ("header", 56, ">I"),
    ("header", 576, ">I"), ("header", 580, ">I"), ("header", 584, ">I"), ("header", 592, ">Q"),
    ("header", 600, ">I"), ("header", 604, ">I"), ("header", 616, ">Q"),
    ("batmap header", 8, ">Q"), ("batmap header", 16, ">I"), ("batmap header", 20, ">I"),
]


@FUZZ
@given(st.data())
def test_wild_field_values_with_valid_checksums(workdir, data):
    """Extreme numbers in offsets, sizes and counts, checksums fixed: no overflow, no huge buffer."""
    name = data.draw(st.sampled_from(sorted(n for n in workdir if "fixed" not in n)))
    directory, base = workdir[name]
    original = os.path.join(directory, base)
    buf = bytearray(open(original, "rb").read())
    starts = {r[0]: r[1] for r in regions(original)}
    for _ in range(data.draw(st.integers(1, 3))):
        struct_name, offset, fmt = data.draw(st.sampled_from(FIELDS))
        if struct_name not in starts:
            continue
        width = struct.calcsize(fmt)
        value = data.draw(INTERESTING) & ((1 << (8 * width)) - 1)
        at = starts[struct_name] + offset
        struct.pack_into(fmt, buf, at, value)
        if struct_name == "footer":       # keep the two copies equal
            struct.pack_into(fmt, buf, offset, value)
    fix_checksums(buf)
    target = os.path.join(directory, "wild.vhd")
    with open(target, "wb") as f:
        f.write(bytes(buf))
    exercise_unchanged(target, parents_of(directory, "wild.vhd"))


@FUZZ
@given(st.binary(max_size=4096), st.booleans())
def test_random_files(tmp_path_factory, body, with_cookie):
    path = str(tmp_path_factory.mktemp("rand") / "r.vhd")
    if with_cookie and len(body) >= 512:
        body = body[:-512] + b"conectix" + body[-504:]
    with open(path, "wb") as f:
        f.write(body)
    exercise_unchanged(path)
    assert check_file(path) or len(body) >= 511


def test_large_sparse_virtual_size_is_bounded(tmp_path):
    """A big claimed size with little data must open, check and read quickly (no whole-size work)."""
    path = str(tmp_path / "big.vhd")
    create_dynamic(path, 2040 * 1024 * MIB)
    with Chain.open(path, writable=True) as chain:
        chain.write(1000 * 1024 * MIB, b"x" * 512)
    exercise_unchanged(path)
    assert check_file(path) == []


@FUZZ
@given(st.data())
def test_damaged_parent_under_a_valid_child(workdir, data):
    """Reading through a chain whose parent is damaged (the leaf itself is intact)."""
    directory, _ = workdir["diff.vhd"]
    parent = os.path.join(directory, "dyn.vhd")
    pristine = parent + ".orig"
    if not os.path.exists(pristine):
        shutil.copyfile(parent, pristine)
    buf = bytearray(open(pristine, "rb").read())
    _name, start, end = data.draw(st.sampled_from(regions(pristine)))
    for offset, value in data.draw(st.lists(st.tuples(st.integers(start, end - 1),
                                                      st.integers(0, 255)), min_size=1, max_size=4)):
        buf[offset] = value
    if data.draw(st.booleans()):
        fix_checksums(buf)
    with open(parent, "wb") as f:
        f.write(bytes(buf))
    exercise_unchanged(os.path.join(directory, "diff.vhd"), [parent])
