"""Where things go in a file laid out as blktap writes it, and how big a file may be.

Pure arithmetic on footer and header values, shared by the writer (create), the
checker, and the bundle reader (which bounds a tar member by its own metadata).
"""

from .bat import padded_size
from .batmap import HEADER_SIZE as BATMAP_HEADER_SIZE, map_sectors
from .bitmap import bitmap_bytes
from .footer import FOOTER_SIZE
from .header import HEADER_SIZE

SECTOR = 512
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


# ----------------------------------------------------------------- limits
#
# Every size below comes from untrusted metadata and drives an allocation or a loop.
# These bounds keep memory and time proportional to what a real disk needs, whatever
# a header declares (issue 11: a 65 KB image declaring 2^26 BAT entries took 1.8 GB).

GIB = 1 << 30
#: XenServer's VHD limit (blktap, SM)
MAX_VIRTUAL_SIZE = 2040 * GIB
#: block sizes any writer uses lie far inside this; larger ones make per-block buffers huge
MIN_BLOCK_SIZE = SECTOR
MAX_BLOCK_SIZE = 64 << 20
#: XenServer's LVHD creates disks with ``vhd-util create -S 2 TiB``: a BAT preallocated for
#: 2 TiB whatever the virtual size (for fast resize).  Such BATs are legitimate.
PREALLOCATED_SIZE = 2048 * GIB
#: 2040 GiB in 512 KiB blocks fits; a 16 MiB BAT at most
MAX_BAT_ENTRIES = 1 << 22
#: a parent path (PATH_MAX 4096, up to 4 bytes a character) with room to spare
MAX_LOCATOR_BYTES = 64 << 10


def bat_entries_allowed(virtual_size, block_size):
    """Most BAT entries a disk of ``virtual_size`` may declare: what it needs, or a BAT
    preallocated for 2 TiB as XenServer's LVHD writes; never above MAX_BAT_ENTRIES."""
    need = block_count(virtual_size, block_size)
    return min(MAX_BAT_ENTRIES, max(need, PREALLOCATED_SIZE // block_size))


def dynamic_limits_problem(virtual_size, header, data_end):
    """Why a dynamic disk's declared sizes cannot be trusted, as (field, header offset,
    message), or None.  Checked before any BAT, batmap or locator is read.

    ``data_end`` is where the footer starts: the BAT must fit before it.
    """
    bs = header.block_size
    if bs < MIN_BLOCK_SIZE or bs > MAX_BLOCK_SIZE or bs & (bs - 1):
        return ("block_size", 32, "block size {} is not a power of two between {} and {} "
                "bytes".format(bs, MIN_BLOCK_SIZE, MAX_BLOCK_SIZE))
    if virtual_size > MAX_VIRTUAL_SIZE:
        return ("virtual size", None, "virtual size {} exceeds XenServer's limit of 2040 GiB"
                .format(virtual_size))
    need = block_count(virtual_size, bs)
    entries = header.max_table_entries
    if entries < need:
        return ("max_table_entries", 28, "BAT has {} entries, {} needed for {} bytes".format(
            entries, need, virtual_size))
    if need > MAX_BAT_ENTRIES:
        return ("max_table_entries", 28, "{} bytes in blocks of {} need {} BAT entries, more "
                "than the {} supported: use larger blocks".format(
                    virtual_size, bs, need, MAX_BAT_ENTRIES))
    allowed = bat_entries_allowed(virtual_size, bs)
    if entries > allowed:
        return ("max_table_entries", 28, "BAT declares {} entries but {} bytes in blocks of {} "
                "need {} (at most {} allowed): corrupt or hostile".format(
                    entries, virtual_size, bs, need, allowed))
    if header.table_offset + entries * 4 > data_end:
        return ("table_offset", 16, "BAT at offset {} ({} bytes) extends beyond the end of "
                "data at {}".format(header.table_offset, entries * 4, data_end))
    return None
