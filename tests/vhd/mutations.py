"""How the VHD fuzz tests read and mutate files: structure regions, checksums, wild values.

Shared by tests/vhd/test_fuzz.py and the R2 hostile fuzzing (tests/hostile/).
"""

import os
import struct

from hypothesis import strategies as st

from vhdport.vhd import VhdFile
from vhdport.vhd.format.checksum import ones_complement

MIB = 1 << 20
READ_LIMIT = 32 * MIB


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
