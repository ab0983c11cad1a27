"""Layout arithmetic shared by create, check and the bundle reader."""

import os

from hypothesis import given, settings, strategies as st

from vhdport.vhd.format import layout
from vhdport.vhd.format.bat import UNUSED
from vhdport.vhd import Chain, VhdFile, create_dynamic, create_snapshot

MIB = 1 << 20


def test_constants_match_blktap():
    assert layout.HEADER_OFFSET == 512 and layout.TABLE_OFFSET == 1536


def test_block_count_rounds_up():
    assert layout.block_count(24 * MIB, 2 * MIB) == 12
    assert layout.block_count(24 * MIB + 512, 2 * MIB) == 13
    assert layout.block_count(0, 2 * MIB) == 0


def test_metadata_end_and_first_block():
    # 12 entries: BAT 1 sector, batmap header + 1 map sector, 3 locator slots
    assert layout.batmap_offset(1536, 12) == 2048
    assert layout.metadata_end(12, False) == 3072
    assert layout.metadata_end(12, True) == 3072 + 1536
    first = layout.first_block_sector(4608, 2 * MIB)
    assert (first * 512 + 512) % 4096 == 0 and first * 512 >= 4608
    assert layout.block_span(2 * MIB) == 2 * MIB + 4096
    assert layout.block_span(4096) == 8192


def test_created_files_follow_the_layout(tmp_path):
    base, child = str(tmp_path / "b.vhd"), str(tmp_path / "c.vhd")
    create_dynamic(base, 24 * MIB)
    create_snapshot(child, "b.vhd")
    with Chain.open(child, writable=True) as chain:
        chain.write(5 * MIB, b"x" * 512)
    with VhdFile.open(child) as disk:
        entries = disk.header.max_table_entries
        sector = disk.bat[2]
        assert sector == layout.first_block_sector(layout.metadata_end(entries, True), 2 * MIB)
        assert disk.batmap_offset == layout.batmap_offset(1536, entries)
        assert os.path.getsize(child) <= layout.max_file_size(disk.footer, disk.header)


@settings(max_examples=25, deadline=None)
@given(st.integers(1, 64).map(lambda n: n * 64 * 1024), st.sampled_from([4096, 65536, 2 * MIB]),
       st.data())
def test_max_file_size_bounds_fully_written_disks(tmp_path_factory, size, block_size, data):
    path = str(tmp_path_factory.mktemp("layout") / "d.vhd")
    create_dynamic(path, size, block_size=block_size)
    blocks = layout.block_count(size, block_size)
    chosen = data.draw(st.sets(st.integers(0, blocks - 1), max_size=blocks))
    with Chain.open(path, writable=True) as chain:
        for block in sorted(chosen):
            start = block * block_size
            chain.write(start, b"\x01" * min(block_size, size - start))
    with VhdFile.open(path) as disk:
        assert sum(1 for e in disk.bat.entries if e != UNUSED) == len(chosen)
        assert os.path.getsize(path) <= layout.max_file_size(disk.footer, disk.header)
