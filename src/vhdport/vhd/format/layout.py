"""Where things go in a file laid out as blktap writes it, and how big a file may be.

Pure arithmetic on footer and header values, shared by the writer (create), the
checker, and the bundle reader (which bounds a tar member by its own metadata).
"""

from .bat import padded_size
from .batmap import HEADER_SIZE as BATMAP_HEADER_SIZE, map_sectors
from .bitmap import bitmap_bytes
from .footer import FOOTER_SIZE
from . import SECTOR
from .header import HEADER_SIZE

DATA_ALIGN = 4096
HEADER_OFFSET = FOOTER_SIZE
TABLE_OFFSET = HEADER_OFFSET + HEADER_SIZE
LOCATOR_SLOTS = 3


def block_count(virtual_size, block_size):
    return (virtual_size + block_size - 1) // block_size


def batmap_offset(table_offset, entries):
    return table_offset + padded_size(entries)


def metadata_end(entries, with_locators):
    """End of footer copy, header, BAT, batmap header and map, and locator slots."""
    end = batmap_offset(TABLE_OFFSET, entries) + BATMAP_HEADER_SIZE
    end += map_sectors(entries) * SECTOR
    if with_locators:
        end += LOCATOR_SLOTS * SECTOR
    return end


def first_block_sector(metadata_end_bytes, block_size):
    """Sector of the first block's bitmap so that its data starts 4 KiB aligned."""
    bm = bitmap_bytes(block_size // SECTOR)
    data = (metadata_end_bytes + bm + DATA_ALIGN - 1) // DATA_ALIGN * DATA_ALIGN
    return (data - bm) // SECTOR


def block_span(block_size):
    """Bytes one allocated block takes on disk, 4 KiB alignment padding included."""
    bm = bitmap_bytes(block_size // SECTOR)
    return (bm + block_size + DATA_ALIGN - 1) // DATA_ALIGN * DATA_ALIGN


def max_file_size(footer, header=None, metadata_end_bytes=None):
    """Largest file the metadata allows: used to stop reading an oversized member early.

    Generous (alignment between every block, full metadata) but finite: a member
    declared larger than this cannot be the VHD it claims to be.
    """
    if not footer.is_dynamic:
        return footer.current_size + FOOTER_SIZE
    entries = header.max_table_entries
    meta = max(metadata_end_bytes or 0, metadata_end(entries, True),
               header.table_offset + padded_size(entries) + BATMAP_HEADER_SIZE
               + map_sectors(entries) * SECTOR)
    for loc in header.locators:
        if loc.in_use:
            meta = max(meta, loc.data_offset + loc.space_bytes)
    return meta + DATA_ALIGN + entries * block_span(header.block_size) + FOOTER_SIZE
