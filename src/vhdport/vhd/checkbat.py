"""The BAT and batmap checks of :mod:`vhdport.vhd.check`, in memory and time bounded by the file.

A BAT may hold millions of entries (a 2040 GiB disk in 512 KiB blocks, or a hostile
header): nothing here keeps a Python object per entry.  Entries are scanned once,
in-range block offsets go into an ``array('I')`` (4 bytes each), sorted in bounded
runs and merged to find overlaps; each kind of defect is counted, and only the first
few are described.  Verifying the batmap reads one bitmap per set bit, and stops
after a few wrong ones (a hostile map would otherwise cost a read per bit).
"""

import array
import heapq
import itertools
import operator

from ..format import bitmap as bitmaps
from ..format.bat import UNUSED

SECTOR = 512
#: entries sorted at once (a list of Python ints); more are sorted in runs and merged
SORT_RUN = 1 << 18


def _where(predicate_maps, limit):
    """First ``limit`` indices where every map yields true (iterated in C, lazily)."""
    flags = predicate_maps[0] if len(predicate_maps) == 1 \
        else map(operator.and_, *predicate_maps)
    return list(itertools.islice(itertools.compress(itertools.count(), flags), limit))


class _Budget(object):
    """Describes the first defects of a field, only counts the rest (no text per entry)."""

    def __init__(self, report, field):
        self.report, self.field = report, field
        self.left = report.room(field)
        self.extra = 0

    def add(self, offset, text, *args):
        if self.left > 0:
            self.left -= 1
            self.report.add(self.field, offset, text.format(*args))
        else:
            self.extra += 1

    def close(self):
        self.report.count_more(self.field, self.extra)


def check_bat(disk, report, end_of_metadata, need):
    """Every allocated block inside [end of metadata, footer) and none overlapping another.

    Classifying the entries runs in C (filter / map / count over the array); Python code
    runs only for the few defects described and for the in-range blocks.
    """
    header = disk.header
    entries = disk.bat.entries
    span = disk.bitmap_size + header.block_size
    first_ok = (end_of_metadata + SECTOR - 1) // SECTOR
    last_ok = (disk.footer_offset - span) // SECTOR    # may be negative: nothing fits
    table = header.table_offset
    budget = _Budget(report, "bat")
    tail = entries[need:]
    beyond = len(tail) - tail.count(UNUSED)
    if beyond:
        shown = _where([map(UNUSED.__ne__, tail)], budget.left)
        for index in shown:
            budget.add(table + (need + index) * 4, "block {} lies beyond the virtual size yet "
                       "is allocated", need + index)
        budget.extra += beyond - len(shown)
    low = sum(map(first_ok.__gt__, entries))
    if low:
        shown = _where([map(first_ok.__gt__, entries)], budget.left)
        for index in shown:
            budget.add(table + index * 4, "block {} at offset {} overlaps the metadata ending "
                       "at {}", index, entries[index] * SECTOR, end_of_metadata)
        budget.extra += low - len(shown)
    in_range = array.array("I", filter(last_ok.__ge__, filter(first_ok.__le__, entries)))
    if last_ok >= UNUSED:   # a file past 2 TiB: UNUSED itself lies "in range"
        in_range = array.array("I", filter(UNUSED.__ne__, in_range))
    high = len(entries) - entries.count(UNUSED) - low - len(in_range)
    if high:
        shown = _where([map(last_ok.__lt__, entries), map(UNUSED.__ne__, entries)], budget.left)
        for index in shown:
            budget.add(table + index * 4, "block {} at offset {} ends beyond the footer at {}",
                       index, entries[index] * SECTOR, disk.footer_offset)
        budget.extra += high - len(shown)
    _check_overlaps(disk, budget, in_range, (span + SECTOR - 1) // SECTOR)
    budget.close()


def _sorted_stream(values):
    """``values`` in ascending order, sorting at most SORT_RUN of them at a time."""
    if len(values) <= SORT_RUN:
        return iter(sorted(values))
    runs = [array.array("I", sorted(values[i:i + SORT_RUN]))
            for i in range(0, len(values), SORT_RUN)]
    return heapq.merge(*runs)


def _check_overlaps(disk, budget, starts, span_sectors):
    entries = disk.bat.entries
    table = disk.header.table_offset
    prev = None
    for sector in _sorted_stream(starts):
        if prev is not None and sector < prev + span_sectors:
            if budget.left > 0:
                # name the blocks: a few C-level scans of the BAT, only for what is shown
                index = _index_after(entries, sector, prev) if sector == prev \
                    else entries.index(sector)
                budget.add(table + index * 4, "block {} at offset {} overlaps block {}",
                           index, sector * SECTOR, entries.index(prev))
            else:
                budget.extra += 1
        prev = sector


def _index_after(entries, sector, prev):
    """The second block at ``sector`` (the first is the one it overlaps)."""
    first = entries.index(prev)
    try:
        return entries.index(sector, first + 1)
    except ValueError:
        return first


def check_batmap_bits(disk, reader, report, hdr):
    """A set batmap bit promises a fully written block: read that block's bitmap to verify."""
    header = disk.header
    entries = header.max_table_entries
    data = reader.read(hdr.map_offset, hdr.map_sectors * SECTOR)
    spb = header.block_size // SECTOR
    budget = _Budget(report, "batmap")
    reads_left = budget.left
    for byte_index, value in enumerate(data):
        if not value:
            continue
        for bit in range(8):
            if not value & (0x80 >> bit):
                continue
            block = byte_index * 8 + bit
            where = hdr.map_offset + byte_index
            if block >= entries:
                budget.add(where, "bit set for block {} beyond the {} BAT entries", block, entries)
                continue
            entry = disk.bat[block]
            if entry == UNUSED:
                budget.add(where, "marks unallocated block {} full", block)
                continue
            if reads_left <= 0:
                continue   # enough wrong bits shown: no read per bit of a hostile map
            bm = reader.read(entry * SECTOR, disk.bitmap_size)
            if len(bm) != disk.bitmap_size or not bitmaps.all_set(bm, spb):
                reads_left -= 1
                budget.add(where, "marks block {} full but its bitmap has {} of {} sectors",
                           block, bitmaps.count_set(bm, spb) if bm else 0, spb)
    if reads_left <= 0:
        budget.add(hdr.map_offset, "further set bits not verified (too many wrong ones)")
    budget.close()
