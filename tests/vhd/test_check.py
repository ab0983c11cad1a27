"""check_file / check_chain: our own files pass; each hand-made defect is reported by name."""

import hashlib
import os
import struct
import time
import uuid

import pytest

from tests.peers.require import require_qemu_img
from vhdport.errors import ChainError, LimitError
from vhdport.format import batmap as batmaps
from vhdport.format.footer import Footer, to_vhd_time
from vhdport.format.header import DynamicHeader
from vhdport.format.locator import LOCATOR_SIZE
from vhdport.vhd import (Chain, Defect, VhdFile, check_chain, check_file, create_dynamic,
                         create_fixed, create_snapshot, info, set_hidden, set_parent)

MIB = 1 << 20


def digest(path):
    with open(path, "rb") as f:
        return hashlib.sha256(f.read()).hexdigest(), os.stat(path).st_mtime_ns


def fields(defects):
    return {d.field for d in defects}


def edit_footers(path, **changes):
    """Set footer fields in both copies, checksums recomputed (a consistent but wrong file)."""
    size = os.path.getsize(path)
    with open(path, "r+b") as f:
        f.seek(size - 512)
        footer = Footer.parse(f.read(512))
        for name, value in changes.items():
            setattr(footer, name, value)
        raw = footer.pack()
        f.seek(size - 512)
        f.write(raw)
        if footer.is_dynamic:
            f.seek(0)
            f.write(raw)


def edit_header(path, change):
    with open(path, "r+b") as f:
        f.seek(512)
        header = DynamicHeader.parse(f.read(1024))
        change(header)
        f.seek(512)
        f.write(header.pack())


def poke(path, offset, data):
    with open(path, "r+b") as f:
        f.seek(offset)
        f.write(data)


@pytest.fixture
def dyn(tmp_path):
    """A 16 MiB dynamic disk with blocks 0 (full), 1 (partial) and 7 (partial) written."""
    path = str(tmp_path / "d.vhd")
    create_dynamic(path, 16 * MIB)
    with Chain.open(path, writable=True) as chain:
        chain.write(0, b"\x11" * 2 * MIB)
        chain.write(2 * MIB + 4096, b"\x22" * 4096)
        chain.write(15 * MIB, b"\x33" * 512)
    return path


@pytest.fixture
def chain3(tmp_path):
    base = str(tmp_path / "base.vhd")
    create_dynamic(base, 8 * MIB)
    mid, leaf = str(tmp_path / "mid.vhd"), str(tmp_path / "leaf.vhd")
    create_snapshot(mid, "base.vhd")
    create_snapshot(leaf, "mid.vhd")
    with Chain.open(leaf, writable=True) as chain:
        chain.write(MIB + 100, b"leaf data")
    return base, mid, leaf


# ------------------------------------------------------------- valid files


def test_created_files_pass(tmp_path, dyn, chain3):
    fixed = str(tmp_path / "f.vhd")
    create_fixed(fixed, 3 * MIB)
    with Chain.open(fixed, writable=True) as chain:
        chain.write(1000, b"abc")
    small = str(tmp_path / "s.vhd")
    create_dynamic(small, 7 * 512, block_size=4096)
    with Chain.open(small, writable=True) as chain:
        chain.write(0, b"\x01" * 7 * 512)
    sub = tmp_path / "sub"
    sub.mkdir()
    far = str(sub / "far.vhd")
    create_snapshot(far, "../leaf.vhd")
    set_hidden(chain3[0], True)
    for path in [fixed, small, dyn, far] + list(chain3):
        assert check_file(path) == [], path
        assert check_chain(path) == [], path
    assert info(far)["depth"] == 4


def test_batmap_bit_of_a_full_block_is_valid(dyn):
    with VhdFile.open(dyn) as disk:
        assert disk.batmap is not None and batmaps.test(disk.batmap, 0)
        assert not batmaps.test(disk.batmap, 1)


def test_check_never_writes(dyn, chain3):
    edit_footers(dyn, hidden=2)
    paths = [dyn] + list(chain3)
    before = [digest(p) for p in paths]
    for p in paths:
        check_file(p)
        check_chain(p)
        try:
            info(p)
        except Exception:
            pass
    assert [digest(p) for p in paths] == before


def test_defect_is_one_line(tmp_path):
    d = Defect("bat", 1536, "block 3 overlaps block 2", "/x/y.vhd")
    assert str(d) == "/x/y.vhd: bat at offset 1536: block 3 overlaps block 2"
    assert Defect("hidden", 85, "m").path is None


# ------------------------------------------------------- unreadable inputs


def test_missing_directory_and_empty(tmp_path):
    assert fields(check_file(str(tmp_path / "nope.vhd"))) == {"file"}
    assert fields(check_file(str(tmp_path))) == {"file"}
    empty = tmp_path / "empty.vhd"
    empty.write_bytes(b"")
    assert check_file(str(empty))
    fifo = str(tmp_path / "fifo")
    os.mkfifo(fifo)
    assert fields(check_file(fifo)) == {"file"}
    assert check_chain(str(tmp_path / "nope.vhd"))


# --------------------------------------------------------- footer defects


def test_future_timestamp(dyn):
    edit_footers(dyn, timestamp=to_vhd_time(time.time() + 1000))
    assert check_file(dyn) == []        # within vhd-util's 30 minutes of slack
    edit_footers(dyn, timestamp=to_vhd_time(time.time() + 86400))
    assert fields(check_file(dyn)) == {"timestamp"}


def test_hidden_must_be_0_or_1(dyn):
    edit_footers(dyn, hidden=2)
    defects = check_file(dyn)
    assert "hidden" in fields(defects)
    assert all(d.offset in (85, os.path.getsize(dyn) - 512 + 85) for d in defects)


@pytest.mark.parametrize("change,field", [
    (dict(features=0), "features"),
    (dict(features=0x102), "features"),
    (dict(version=0x00020000), "format version"),
    (dict(data_offset=1024), "cookie"),        # no header there
    (dict(geometry=(65535, 16, 255)), "geometry"),
    (dict(saved_state=3), "saved state"),
    (dict(uuid=uuid.UUID(int=0)), "uuid"),
    (dict(reserved=b"\x01" + bytes(425)), "reserved"),
    (dict(creator_version=0x00020000), "creator version"),
])
def test_footer_field_defects(dyn, change, field):
    edit_footers(dyn, **change)
    assert field in fields(check_file(dyn))


def test_fixed_disk_defects(tmp_path):
    path = str(tmp_path / "f.vhd")
    create_fixed(path, MIB)
    edit_footers(path, data_offset=512)
    assert "data offset" in fields(check_file(path))
    edit_footers(path, data_offset=2 ** 64 - 1, current_size=MIB - 4096)
    assert "size" in fields(check_file(path))        # data area bigger than the disk
    edit_footers(path, current_size=2 * MIB)
    assert "size" in fields(check_file(path))        # truncated data area


def test_primary_and_backup_footer_differ(dyn):
    with open(dyn, "r+b") as f:
        footer = Footer.parse(f.read(512))
        footer.hidden = 1
        f.seek(0)
        f.write(footer.pack())
    assert "backup footer" in fields(check_file(dyn))


# --------------------------------------------------------- header defects


def test_non_power_of_two_block_size(dyn):
    edit_header(dyn, lambda h: setattr(h, "block_size", 3 * MIB))
    assert "block_size" in fields(check_file(dyn))


@pytest.mark.parametrize("change,field", [
    (lambda h: setattr(h, "version", 0x00010001), "header version"),
    (lambda h: setattr(h, "data_offset", 0), "header data offset"),
    (lambda h: setattr(h, "table_offset", 1000), "table offset"),
    (lambda h: setattr(h, "table_offset", 512), "bat"),   # the header read as a BAT
    (lambda h: setattr(h, "reserved1", b"\x00\x00\x00\x01"), "header reserved"),
    (lambda h: setattr(h, "parent_uuid", uuid.uuid4()), "parent uuid"),
    (lambda h: setattr(h, "parent_name", "x.vhd"), "parent name"),
    (lambda h: setattr(h, "max_table_entries", 2), "max_table_entries"),
])
def test_header_field_defects(dyn, change, field):
    edit_header(dyn, change)
    assert field in fields(check_file(dyn))


# ------------------------------------------------------------ BAT defects


def bat_entries(path):
    with VhdFile.open(path) as disk:
        return disk.header.table_offset, list(disk.bat.entries)


def test_overlapping_bat_entries(dyn):
    table, entries = bat_entries(dyn)
    poke(dyn, table + 4, struct.pack(">I", entries[0] + 8))     # block 1 inside block 0
    defects = [d for d in check_file(dyn) if d.field == "bat"]
    assert any("overlaps block" in d.message for d in defects), defects


def test_duplicate_bat_entries(dyn):
    table, entries = bat_entries(dyn)
    poke(dyn, table + 7 * 4, struct.pack(">I", entries[1]))
    assert any("overlaps block" in d.message for d in check_file(dyn) if d.field == "bat")


def test_block_over_the_metadata(dyn):
    table, _entries = bat_entries(dyn)
    poke(dyn, table + 3 * 4, struct.pack(">I", 3))       # sector 3: inside the header
    assert any("metadata" in d.message for d in check_file(dyn) if d.field == "bat")


def test_block_beyond_the_virtual_size(tmp_path):
    path = str(tmp_path / "d.vhd")
    create_dynamic(path, 3 * MIB)                      # 2 blocks; round the BAT to 3
    with Chain.open(path, writable=True) as chain:
        chain.write(0, b"x" * 512)
    edit_header(path, lambda h: setattr(h, "max_table_entries", 3))
    table, entries = bat_entries(path)
    poke(path, table + 8, struct.pack(">I", entries[0]))
    assert any("beyond the virtual size" in d.message for d in check_file(path))


# --------------------------------------------------------- batmap defects


def batmap_state(path):
    with VhdFile.open(path) as disk:
        return disk.batmap_offset, disk.batmap_header, bytearray(disk.batmap)


def rewrite_batmap(path, at, header, data):
    header.checksum = batmaps.checksum(bytes(data))
    poke(path, header.map_offset, bytes(data))
    poke(path, at, header.pack())


def test_batmap_bit_for_a_partial_block(dyn):
    at, header, data = batmap_state(dyn)
    batmaps.set_bit(data, 1)
    rewrite_batmap(dyn, at, header, data)
    defects = check_file(dyn)
    assert any(d.field == "batmap" and "block 1" in d.message for d in defects), defects


def test_batmap_bit_for_an_unallocated_block(dyn):
    at, header, data = batmap_state(dyn)
    batmaps.set_bit(data, 4)
    rewrite_batmap(dyn, at, header, data)
    assert any("unallocated block 4" in d.message for d in check_file(dyn))


def test_batmap_checksum(dyn):
    at, header, data = batmap_state(dyn)
    poke(dyn, header.map_offset + 1, b"\x01")
    assert "batmap checksum" in fields(check_file(dyn))


def test_batmap_missing_or_too_small(dyn):
    at, header, data = batmap_state(dyn)
    header.map_sectors = 0
    poke(dyn, at, header.pack())
    assert "batmap" in fields(check_file(dyn))
    poke(dyn, at, b"notbmap!")
    assert "batmap" in fields(check_file(dyn))


# ------------------------------------------------------- locator defects


def test_bad_locator_code(chain3):
    _base, mid, _leaf = chain3

    def corrupt(h):
        h.locators[1].code = 0x41424344
    edit_header(mid, corrupt)
    defects = check_file(mid)
    assert any(d.field == "parent locator" and d.offset == 512 + 576 + LOCATOR_SIZE
               for d in defects), defects


@pytest.mark.parametrize("change,words", [
    (lambda h: setattr(h.locators[5], "data_offset", 7), "not zeroed"),
    (lambda h: setattr(h.locators[0], "data_offset", 10 ** 12), "beyond"),
    (lambda h: setattr(h.locators[0], "data_offset", 1536), "overlaps the BAT"),
    (lambda h: setattr(h.locators[0], "data_length", 0), "data length"),
    (lambda h: setattr(h.locators[2], "code", h.locators[1].code), "duplicate"),
    (lambda h: setattr(h, "parent_name", "other.vhd"), "header names"),
])
def test_locator_defects(chain3, change, words):
    mid = chain3[1]
    edit_header(mid, change)
    defects = check_file(mid, check_parent=False)
    assert any(d.field == "parent locator" and words in d.message for d in defects), defects


# ---------------------------------------------------------- chain defects


def test_parent_uuid_mismatch(chain3):
    base, mid, leaf = chain3
    edit_header(mid, lambda h: setattr(h, "parent_uuid", uuid.uuid4()))
    assert fields(check_file(mid)) == {"parent uuid"}
    assert check_file(mid, check_parent=False) == []
    defects = check_chain(leaf)
    assert [(d.field, d.path) for d in defects] == [("parent uuid", mid)]


def test_missing_parent(chain3):
    base, mid, leaf = chain3
    os.rename(base, base + ".gone")
    assert fields(check_file(mid)) == {"parent"}
    assert [(d.field, d.path) for d in check_chain(leaf)] == [("parent", mid)]


def test_child_smaller_than_parent(tmp_path):
    base, child = str(tmp_path / "b.vhd"), str(tmp_path / "c.vhd")
    create_dynamic(base, 8 * MIB)
    create_snapshot(child, "b.vhd")
    edit_footers(child, current_size=4 * MIB, original_size=4 * MIB, geometry=(120, 4, 17))
    edit_header(child, lambda h: setattr(h, "max_table_entries", 2))
    assert check_file(child) == []
    assert "virtual size" in fields(check_chain(child))


def test_cycle(chain3):
    base, mid, leaf = chain3
    set_parent(mid, "leaf.vhd")
    defects = check_chain(leaf)
    assert any(d.field == "parent" and "cycle" in d.message for d in defects), defects
    with pytest.raises(ChainError):
        Chain.open(leaf)


def test_depth_limit(tmp_path):
    previous = "d0.vhd"
    create_dynamic(str(tmp_path / previous), MIB)
    for i in range(1, 31):
        name = "d{}.vhd".format(i)
        create_snapshot(str(tmp_path / name), previous)
        previous = name
    leaf = str(tmp_path / previous)          # 31 files deep
    assert "depth" in fields(check_chain(leaf))
    assert check_chain(str(tmp_path / "d29.vhd")) == []
    assert info(str(tmp_path / "d29.vhd"))["depth"] == 30
    with pytest.raises(LimitError):
        info(leaf)


# ------------------------------------------------- files other tools wrote


@pytest.mark.peer
@pytest.mark.parametrize("subformat,size", [("dynamic", "9M"), ("fixed", "5M"), ("dynamic", "300G")])
def test_qemu_img_files_pass(tmp_path, subformat, size):
    """Strict, but not stricter than the format: qemu's layout (no batmap, packed blocks) is valid."""
    require_qemu_img()
    import subprocess
    raw = tmp_path / "raw.img"
    with open(str(raw), "wb") as f:
        f.write(os.urandom(3 * MIB))
        f.truncate(4 * MIB + 512)
        f.write(b"tail" * 128)
    path = str(tmp_path / "q.vhd")
    if size == "300G":
        subprocess.check_call(["/usr/bin/qemu-img", "create", "-q", "-f", "vpc", path, size])
    else:
        subprocess.check_call(["/usr/bin/qemu-img", "convert", "-q", "-O", "vpc", "-o",
                               "subformat=" + subformat, str(raw), path])
    assert check_file(path) == [] and check_chain(path) == []
    assert info(path)["type"] == subformat
