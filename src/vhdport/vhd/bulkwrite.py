"""Bulk writes for :class:`vhdport.vhd.disk.VhdFile`: batched (coalesce) and whole-block (import).

Kept apart from disk.py, which holds the per-write path; both share its allocator and
bitmap cache, so this is a mixin of VhdFile, not a separate object.
"""

import os

from ..errors import FormatError
from .format import SECTOR
from .format import batmap as batmaps
from .format import bitmap as bitmaps
from .format.bat import UNUSED


class BulkWrites(object):
    """Mixin of VhdFile; uses its _allocate, _bitmap, _bitmaps, bat, header, batmap."""

    #: block -> [bitmap sector, is new, bitmap] written by stage_sectors, not yet visible
    _staged = None

    def stage_sectors(self, sector, data):
        """Write whole sectors' data now, defer the metadata that makes it visible.

        Until :meth:`commit_staged` the file reads as before (and a crash leaves it
        so): new blocks lie past the old data, unreferenced by the BAT, and bitmaps
        are unchanged.  Sectors already present are overwritten in place.  Lets a
        bulk writer (coalesce) pay one fsync per batch of blocks, not per block.
        """
        view = self._begin_write(sector, data)
        if view is None:
            return
        count = len(view) // SECTOR
        if self._staged is None:
            self._staged = {}
        staged = self._staged
        end, pos, spb = sector + count, 0, self.spb
        while sector < end:
            block, first = divmod(sector, spb)
            n = min(end - sector, spb - first)
            state = staged.get(block)
            if state is None:
                entry = self.bat[block]
                if entry == UNUSED:
                    state = [self._allocate(block), True, bytes(self.bitmap_size)]
                else:
                    state = [entry, False, self._bitmap(block)]
                staged[block] = state
            self.pwrite(state[0] * SECTOR + self.bitmap_size + first * SECTOR,
                        view[pos:pos + n * SECTOR])
            state[2] = bitmaps.set_range(state[2], first, first + n)
            sector += n
            pos += n * SECTOR

    def commit_staged(self, sync=True):
        """Publish staged writes: data (and new blocks' bitmaps) durable, then the
        bitmaps of existing blocks and the BAT entries of new ones, then the batmap."""
        staged, self._staged = self._staged, None
        if not staged:
            return
        order = sorted(staged)
        for block in order:
            entry, new, bm = staged[block]
            if new:
                self._write_bitmap(block, entry, bm)
        if sync:
            os.fsync(self._f.fileno())
        full = []
        for block in order:
            entry, new, bm = staged[block]
            if not new and bm != self._bitmap(block):
                self._write_bitmap(block, entry, bm)
            if new:
                self.bat[block] = entry
                self.pwrite(self.header.table_offset + block * 4, self.bat.pack_entry(block))
            if self.batmap is not None and not batmaps.test(self.batmap, block) \
                    and bitmaps.all_set(bm, self.spb):
                full.append(block)
        self._set_batmap_bits(full)
        if sync:
            os.fsync(self._f.fileno())

    def _write_bitmap(self, block, entry, bm):
        raw = bitmaps.from_le_words(bm) if self._old_bitmap_order else bm
        self.pwrite(entry * SECTOR, raw)
        self._bitmaps[block] = bm

    def _set_batmap_bits(self, blocks):
        if not blocks or self.batmap is None:
            return
        for block in blocks:
            batmaps.set_bit(self.batmap, block)
        self.batmap_header.checksum = batmaps.checksum(bytes(self.batmap))
        lo, hi = min(blocks) >> 3, (max(blocks) >> 3) + 1
        self.pwrite(self.batmap_header.map_offset + lo, bytes(self.batmap[lo:hi]))
        self.pwrite(self.batmap_offset, self.batmap_header.pack())

    def append_full_block(self, block, data):
        """Fast path to fill a new file: place unallocated ``block`` at the end of data,
        write its bitmap and data, then its BAT entry (and batmap bit).

        ``data`` covers the block from its first sector (shorter only for the last
        block of the disk).  No fsync: the caller syncs once when the file is complete.
        """
        self._need_writable("write to it")
        n = len(data) // SECTOR
        if self.bat[block] != UNUSED or n > self.spb or len(data) % SECTOR \
                or (block * self.spb + n) * SECTOR > self.virtual_size:
            raise FormatError("append_full_block: block {} is allocated or {} bytes do not "
                              "fit it".format(block, len(data)), path=self.path)
        entry = self._allocate(block)
        bm = bitmaps.set_range(bytes(self.bitmap_size), 0, n)
        self.pwrite(entry * SECTOR + self.bitmap_size, data)
        self._write_bitmap(block, entry, bm)
        self.bat[block] = entry
        self.pwrite(self.header.table_offset + block * 4, self.bat.pack_entry(block))
        if n == self.spb:
            self._set_batmap_bits([block])
