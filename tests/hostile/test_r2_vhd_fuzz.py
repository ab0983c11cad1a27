"""R2: hypothesis-driven mutation of valid VHDs through open / info / check / read / export.

Per example: only VhdportError may escape any operation, the whole example finishes within
CASE_SECONDS (a SIGALRM timer raising a BaseException the engine cannot swallow), and no
input file changes (sha256 of every file in the directory before and after; export writes
only its own output, elsewhere).  Mutations: bytes changed inside one structure (footer,
backup footer, header, BAT, batmap, locator, bitmap, data) with or without recomputed
checksums; wild numeric fields; structured BAT and locator edits; truncation and growth;
a damaged parent under an intact child; the CLI's vhd commands on mutated files.

tests/vhd/test_fuzz.py fuzzes the engine calls already; its region map, checksum fixer and
field table are imported here, and this suite adds export, the CLI, the time bound per
example and the structured edits.  Long runs: VHDPORT_FUZZ_EXAMPLES=5000, or `make fuzz`.
"""

import hashlib
import os
import shutil
import signal
import struct
import time
from collections import Counter

import pytest
from hypothesis import HealthCheck, given, settings, strategies as st

from tests.vhd.mutations import FIELDS, INTERESTING, fix_checksums, read_disk, regions
from vhdport.errors import VhdportError
from vhdport.vhd import (Chain, VhdFile, check_chain, check_file, create_dynamic, create_fixed,
                         create_snapshot, export_raw, info)

MIB = 1 << 20
CASE_SECONDS = float(os.environ.get("VHDPORT_FUZZ_CASE_SECONDS", "10"))
EXAMPLES = int(os.environ.get("VHDPORT_FUZZ_EXAMPLES", "60"))
FUZZ = settings(max_examples=EXAMPLES, deadline=None, derandomize=True, database=None,
                suppress_health_check=[HealthCheck.function_scoped_fixture,
                                       HealthCheck.too_slow, HealthCheck.data_too_large])

pytestmark = pytest.mark.timeout(300)


class CaseTimeout(BaseException):
    """Raised by the alarm: not an Exception, so no ``except Exception`` in the engine eats it."""


def _alarm(signum, frame):
    raise CaseTimeout("example exceeded {:g} s".format(CASE_SECONDS))


def _digest_dir(directory):
    out = {}
    for name in sorted(os.listdir(directory)):
        path = os.path.join(directory, name)
        if os.path.isfile(path):
            with open(path, "rb") as f:
                out[name] = hashlib.sha256(f.read()).hexdigest()
    return out


OPERATIONS = ("open", "info", "check_file", "check_chain", "read", "export")


def _operations(path, export_dir):
    def do_open():
        VhdFile.open(path).close()

    def do_read():
        with Chain.open(path) as chain:
            read_disk(chain)

    def do_export():
        out = os.path.join(export_dir, "out.raw")
        try:
            export_raw(path, out)
        finally:
            if os.path.exists(out):
                os.unlink(out)

    def do_check(fn):
        def run():
            for defect in fn(path):
                text = str(defect)
                assert "\n" not in text and isinstance(defect.offset, int), text
        return run

    return [("open", do_open), ("info", lambda: info(path)),
            ("check_file", do_check(check_file)), ("check_chain", do_check(check_chain)),
            ("read", do_read), ("export", do_export)]


class Tally(object):
    """Outcome counts per test, for the reliability report's detail column."""

    def __init__(self):
        self.examples = 0
        self.outcomes = Counter()
        self.slowest = 0.0

    def line(self):
        refused = sum(n for (op, ok), n in self.outcomes.items() if not ok)
        accepted = sum(n for (op, ok), n in self.outcomes.items() if ok)
        return "{} examples, {} operation runs: {} accepted, {} refused with VhdportError; " \
               "slowest example {:.2f} s".format(self.examples, refused + accepted, accepted,
                                                 refused, self.slowest)


def exercise(path, export_dir, tally):
    """Run every operation on ``path``; only VhdportError; time-bounded; inputs unchanged."""
    directory = os.path.dirname(path)
    before = _digest_dir(directory)
    started = time.monotonic()
    previous = signal.signal(signal.SIGALRM, _alarm)
    signal.setitimer(signal.ITIMER_REAL, CASE_SECONDS)
    try:
        for name, op in _operations(path, export_dir):
            try:
                op()
                tally.outcomes[(name, True)] += 1
            except VhdportError as err:
                assert "\n" not in str(err).strip() or name == "check_chain", str(err)
                tally.outcomes[(name, False)] += 1
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)
    tally.examples += 1
    tally.slowest = max(tally.slowest, time.monotonic() - started)
    assert _digest_dir(directory) == before, "an input file changed while only reading"
    assert os.listdir(export_dir) == []


# ----------------------------------------------------------------------------- sources


def _fill(path, writes):
    with Chain.open(path, writable=True) as chain:
        for offset, data in writes:
            chain.write(offset, data)


@pytest.fixture(scope="module")
def sources(tmp_path_factory, vhd_fixtures):
    """name -> (directory, file): valid VHDs of every kind, parents beside their children."""
    d = str(tmp_path_factory.mktemp("r2-sources"))
    create_dynamic(os.path.join(d, "dyn.vhd"), 6 * MIB)
    _fill(os.path.join(d, "dyn.vhd"), [(0, b"\x01" * MIB), (3 * MIB, os.urandom(8192))])
    create_snapshot(os.path.join(d, "diff.vhd"), "dyn.vhd")
    _fill(os.path.join(d, "diff.vhd"), [(512, b"\x02" * 4096), (5 * MIB, b"\x03" * 65536)])
    create_dynamic(os.path.join(d, "small-blocks.vhd"), 64 * 1024, block_size=4096)
    _fill(os.path.join(d, "small-blocks.vhd"), [(0, b"\x04" * 4096), (9000, b"\x05" * 700)])
    create_fixed(os.path.join(d, "fixed.vhd"), MIB)
    _fill(os.path.join(d, "fixed.vhd"), [(4096, b"\x06" * 4096)])
    found = {n: (d, n) for n in ("dyn.vhd", "diff.vhd", "small-blocks.vhd", "fixed.vhd")}
    fx = str(vhd_fixtures)
    for name in ("dynamic.vhd", "chain/mid.vhd", "chain/leaf.vhd", "fixed511.vhd"):
        found["fx:" + name] = (os.path.join(fx, os.path.dirname(name)), os.path.basename(name))
    return found


@pytest.fixture
def work(sources, tmp_path):
    """Private copies of every source directory, plus an export dir; one Tally per test."""
    copies = {}
    out = {}
    for name, (d, base) in sorted(sources.items()):
        if d not in copies:
            copies[d] = str(tmp_path / "w{}".format(len(copies)))
            shutil.copytree(d, copies[d])
        out[name] = (copies[d], base)
    export_dir = str(tmp_path / "export")
    os.mkdir(export_dir)
    return out, export_dir, Tally()


def _mutant(directory, data, name="mut.vhd"):
    path = os.path.join(directory, name)
    with open(path, "wb") as f:
        f.write(bytes(data))
    return path


def _original(work_map, name):
    directory, base = work_map[name]
    path = os.path.join(directory, base)
    with open(path, "rb") as f:
        return directory, path, bytearray(f.read())


# ----------------------------------------------------------------------------- tests

STRUCTURES = ["footer", "backup footer", "header", "bat", "batmap", "locator", "bitmap", "data"]


def _data_regions(path):
    """Stored data blocks (after each bitmap) of a dynamic disk; the body of a fixed one."""
    with VhdFile.open(path) as disk:
        if not disk.footer.is_dynamic:
            return [("data", 0, disk.footer_offset)]
        found = []
        for entry in disk.bat.entries:
            if entry != 0xFFFFFFFF:
                start = entry * 512 + disk.bitmap_size
                found.append(("data", start, start + disk.block_size))
        return found


@pytest.mark.parametrize("structure", STRUCTURES)
def test_bytes_changed_in_structure(structure, work, reliability_case):
    work_map, export_dir, tally = work
    case = reliability_case("R2", "bytes changed in the {} (checksums fixed or not)".format(
        structure), "only VhdportError; < {:g} s per example; inputs unchanged".format(CASE_SECONDS))
    candidates = sorted(n for n in work_map if any(
        r[0] == structure for r in regions(os.path.join(*work_map[n])) + _data_regions(
            os.path.join(*work_map[n]))))
    assert candidates, structure

    @FUZZ
    @given(st.data())
    def run(data):
        name = data.draw(st.sampled_from(candidates), label="source")
        directory, path, buf = _original(work_map, name)
        spans = [r for r in regions(path) + _data_regions(path) if r[0] == structure]
        _r, start, end = data.draw(st.sampled_from(spans), label="span")
        end = min(end, len(buf))
        edits = data.draw(st.lists(st.tuples(st.integers(start, max(start, end - 1)),
                                             st.integers(0, 255)), min_size=1, max_size=8))
        for offset, value in edits:
            buf[offset] = value
        if data.draw(st.booleans(), label="fix checksums"):
            fix_checksums(buf)
        exercise(_mutant(directory, buf), export_dir, tally)

    run()
    case.detail = tally.line()


def test_wild_numeric_fields(work, reliability_case):
    work_map, export_dir, tally = work
    case = reliability_case("R2", "wild values in offsets / sizes / counts (checksums fixed)",
                            "only VhdportError; bounded time and memory; inputs unchanged")
    names = sorted(n for n in work_map if "fixed" not in n)

    @FUZZ
    @given(st.data())
    def run(data):
        directory, path, buf = _original(work_map, data.draw(st.sampled_from(names)))
        starts = {r[0]: r[1] for r in regions(path)}
        for _ in range(data.draw(st.integers(1, 4))):
            struct_name, offset, fmt = data.draw(st.sampled_from(FIELDS))
            if struct_name not in starts:
                continue
            value = data.draw(INTERESTING) & ((1 << (8 * struct.calcsize(fmt))) - 1)
            struct.pack_into(fmt, buf, starts[struct_name] + offset, value)
            if struct_name == "footer":
                struct.pack_into(fmt, buf, offset, value)
        fix_checksums(buf)
        exercise(_mutant(directory, buf), export_dir, tally)

    run()
    case.detail = tally.line()


def test_structured_bat_edits(work, reliability_case):
    """Entries pointing at metadata, past EOF, at each other (overlap), at sector 0."""
    work_map, export_dir, tally = work
    case = reliability_case("R2", "BAT entries aimed at metadata, EOF, each other, huge values",
                            "only VhdportError; inputs unchanged")
    names = sorted(n for n in work_map if "fixed" not in n)

    @FUZZ
    @given(st.data())
    def run(data):
        directory, path, buf = _original(work_map, data.draw(st.sampled_from(names)))
        with VhdFile.open(path) as disk:
            table, count = disk.header.table_offset, disk.header.max_table_entries
            used = [e for e in disk.bat.entries if e != 0xFFFFFFFF]
        targets = st.one_of(st.sampled_from([0, 1, 3, table // 512, len(buf) // 512 - 1,
                                             len(buf) // 512, 0xFFFFFFFE, 0x7FFFFFFF]),
                            st.sampled_from(used or [0]), st.integers(0, 0xFFFFFFFF))
        for _ in range(data.draw(st.integers(1, 4))):
            index = data.draw(st.integers(0, max(0, count - 1)))
            struct.pack_into(">I", buf, table + 4 * index, data.draw(targets))
        exercise(_mutant(directory, buf), export_dir, tally)

    run()
    case.detail = tally.line()


def test_structured_locator_edits(work, reliability_case):
    """Parent locators: codes, lengths, offsets, names and the parent uuid/name fields."""
    work_map, export_dir, tally = work
    case = reliability_case("R2", "parent locator and parent name/uuid edits in a child",
                            "only VhdportError; never opens a file outside the chain dir")
    names = [n for n in ("diff.vhd", "fx:chain/leaf.vhd", "fx:chain/mid.vhd") if n in work_map]

    @FUZZ
    @given(st.data())
    def run(data):
        directory, path, buf = _original(work_map, data.draw(st.sampled_from(names)))
        slot = data.draw(st.integers(0, 7))
        base = 512 + 576 + 24 * slot
        field = data.draw(st.sampled_from([(0, ">I"), (4, ">I"), (8, ">I"), (16, ">Q")]))
        value = data.draw(st.one_of(INTERESTING, st.sampled_from(
            [0x57326B75, 0x57327275, 0x4D616320, 0x4D616358, 0x57693272, 0x5769326B])))
        struct.pack_into(field[1], buf, base + field[0], value & (
            (1 << (8 * struct.calcsize(field[1]))) - 1))
        if data.draw(st.booleans(), label="garbage parent name"):
            name = data.draw(st.sampled_from(["../../../../etc/passwd", "/etc/shadow", "x" * 300,
                                              "\u0000evil", "dyn.vhd"]))
            raw = name.encode("utf-16-be")[:512]
            buf[512 + 64:512 + 64 + 512] = raw + bytes(512 - len(raw))
        if data.draw(st.booleans(), label="new parent uuid"):
            buf[512 + 40:512 + 56] = data.draw(st.binary(min_size=16, max_size=16))
        fix_checksums(buf)
        exercise(_mutant(directory, buf), export_dir, tally)

    run()
    case.detail = tally.line()


def test_truncated_or_grown(work, reliability_case):
    work_map, export_dir, tally = work
    case = reliability_case("R2", "truncated anywhere, or grown with garbage",
                            "only VhdportError; inputs unchanged")

    @FUZZ
    @given(st.data())
    def run(data):
        directory, _path, buf = _original(work_map, data.draw(st.sampled_from(sorted(work_map))))
        if data.draw(st.booleans(), label="truncate"):
            buf = buf[:data.draw(st.integers(0, len(buf) - 1))]
        else:
            buf += data.draw(st.binary(min_size=1, max_size=2048))
        exercise(_mutant(directory, buf), export_dir, tally)

    run()
    case.detail = tally.line()


def test_damaged_parent_of_intact_child(work, reliability_case):
    work_map, export_dir, tally = work
    case = reliability_case("R2", "a damaged parent under an intact child (read/export through)",
                            "only VhdportError; neither file changes")
    directory, _ = work_map["diff.vhd"]
    parent = os.path.join(directory, "dyn.vhd")
    with open(parent, "rb") as f:
        pristine = f.read()

    @FUZZ
    @given(st.data())
    def run(data):
        buf = bytearray(pristine)
        _n, start, end = data.draw(st.sampled_from(_regions_of_bytes(pristine, parent)))
        for offset, value in data.draw(st.lists(st.tuples(
                st.integers(start, max(start, min(end, len(buf)) - 1)), st.integers(0, 255)),
                min_size=1, max_size=4)):
            buf[offset] = value
        if data.draw(st.booleans()):
            fix_checksums(buf)
        with open(parent, "wb") as f:
            f.write(bytes(buf))
        exercise(os.path.join(directory, "diff.vhd"), export_dir, tally)

    try:
        run()
    finally:
        with open(parent, "wb") as f:
            f.write(pristine)
    case.detail = tally.line()


_REGION_CACHE = {}


def _regions_of_bytes(pristine, path):
    key = hashlib.sha256(pristine).hexdigest()
    if key not in _REGION_CACHE:
        _REGION_CACHE[key] = regions(path) + _data_regions(path)
    return _REGION_CACHE[key]


def test_cli_vhd_commands_on_mutants(work, reliability_case):
    """The surface: `vhdport vhd info/check/read/export` on mutants -> exit 0/1, one error line,
    never a traceback."""
    from click.testing import CliRunner
    from vhdport.cli.main import cli
    work_map, export_dir, tally = work
    case = reliability_case("R2", "CLI vhd info / check / read / export on mutants",
                            "exit 0 or 1; a one-line 'vhdport: error:' and no traceback")
    runner = CliRunner()
    outcomes = Counter()

    @settings(FUZZ, max_examples=max(10, EXAMPLES // 3))
    @given(st.data())
    def run(data):
        directory, path, buf = _original(work_map, data.draw(st.sampled_from(sorted(work_map))))
        spans = regions(path)
        _r, start, end = data.draw(st.sampled_from(spans))
        for offset, value in data.draw(st.lists(st.tuples(
                st.integers(start, max(start, min(end, len(buf)) - 1)), st.integers(0, 255)),
                min_size=1, max_size=4)):
            buf[offset] = value
        if data.draw(st.booleans()):
            fix_checksums(buf)
        mutant = _mutant(directory, buf)
        before = _digest_dir(directory)
        out = os.path.join(export_dir, "cli.raw")
        for args in (["vhd", "info", mutant], ["vhd", "check", mutant],
                     ["vhd", "read", mutant, "--length", "4096"],
                     ["vhd", "export", mutant, out]):
            result = runner.invoke(cli, args, catch_exceptions=True)
            if os.path.exists(out):
                os.unlink(out)
            assert result.exit_code in (0, 1), (args, result.exit_code, result.output,
                                                result.exception)
            assert "Traceback" not in result.output
            if result.exception is not None and not isinstance(result.exception, SystemExit):
                raise AssertionError("{} raised {!r}".format(args, result.exception))
            outcomes[result.exit_code] += 1
        assert _digest_dir(directory) == before

    run()
    case.detail = "exit codes: {}".format(dict(outcomes))
