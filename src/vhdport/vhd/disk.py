"""One VHD file: open and validate its metadata, map virtual sectors to file offsets, write.

Reading through a chain lives in :mod:`vhdport.vhd.chain`; this module answers,
for one file, "where are sectors S..S+N, if I have them?" and performs writes
with the ordering blktap uses: data before the metadata that makes it visible.
"""

import errno
import os
import uuid as uuidlib

from ..errors import ChecksumError, CorruptError, FormatError, NoSpaceError, ReadOnlyError
from ..fsutil import open_disk_file
from .format import SECTOR
from .format import bitmap as bitmaps
from .format import batmap as batmaps
from .format.bat import UNUSED, Bat
from .format.footer import (COOKIE as FOOTER_COOKIE, CREATOR_TAP, DISK_DIFFERENCING,
                             DISK_DYNAMIC, DISK_FIXED, FOOTER_SIZE, HIDDEN_OFFSET, Footer)
from .format.header import HEADER_SIZE, DynamicHeader
from .format.layout import (DATA_ALIGN, MAX_LOCATOR_BYTES, MAX_VIRTUAL_SIZE, batmap_offset,
                            dynamic_limits_problem)
from .format.locator import CODE_MACX, decode_path
from .bulkwrite import BulkWrites
_BITMAP_CACHE = 64


def _full_read(fileobj, offset, length):
    """Up to ``length`` bytes at ``offset``; short (or empty) past EOF, never a huge buffer.

    Offsets and lengths come from untrusted metadata: clamp them to the file size
    so a bogus u64 offset cannot overflow seek() nor a bogus count allocate GiBs.
    """
    size = os.fstat(fileobj.fileno()).st_size
    if offset < 0 or offset >= size or length <= 0:
        return b""
    fileobj.seek(offset)
    data = fileobj.read(min(length, size - offset))
    return data if data is not None else b""


class VhdFile(BulkWrites):
    """An open VHD file.  Use :meth:`open`; close it (or use ``with``) when done."""

    def __init__(self, path, fileobj, writable):
        self.path = path
        self._f = fileobj
        self.writable = writable
        self.file_size = os.fstat(fileobj.fileno()).st_size
        self.footer = None
        self.footer_offset = None
        self.backup_footer = None
        self.header = None
        self.bat = None
        self.batmap_header = None
        self.batmap = None
        self._bitmaps = {}
        self._old_bitmap_order = False

    # ------------------------------------------------------------------ open

    @classmethod
    def open(cls, path, writable=False):
        """Open and validate the metadata needed to read ``path`` safely."""
        fileobj = open_disk_file(path, writable, lambda reason: FormatError(reason, path=path),
                                 "VHD")
        disk = cls(path, fileobj, writable)
        try:
            disk._load()
        except Exception:
            fileobj.close()
            raise
        return disk

    def _load(self):
        if self.file_size < 511:
            raise CorruptError("file is {} bytes, too small to hold a VHD footer".format(
                self.file_size), path=self.path, field="footer")
        self.footer, self.footer_offset = self._read_footer()
        if self.footer.is_dynamic:
            self._load_dynamic()
        elif self.footer.disk_type == DISK_FIXED:
            if self.footer_offset < self.footer.current_size:
                raise CorruptError("fixed disk of {} bytes holds only {} data bytes (truncated)".format(
                    self.footer.current_size, self.footer_offset), path=self.path, field="size")
        else:
            raise CorruptError("unknown disk type {}".format(self.footer.disk_type),
                               path=self.path, offset=self.footer_offset + 60, field="disk_type")

    def _read_footer(self):
        at = max(0, self.file_size - FOOTER_SIZE)
        tail = _full_read(self._f, at, FOOTER_SIZE)
        if len(tail) == FOOTER_SIZE and tail[:8] == FOOTER_COOKIE:
            return self._parse_footer(tail, at), at
        if tail[-511:][:8] == FOOTER_COOKIE:     # pre-2004 511-byte footer
            return self._parse_footer(tail[-511:], self.file_size - 511), self.file_size - 511
        head = _full_read(self._f, 0, FOOTER_SIZE)
        if head[:8] == FOOTER_COOKIE:
            short = self._truncation(head)
            if short:
                raise CorruptError(
                    "truncated: the file is {} bytes but its BAT references data up to byte {}"
                    .format(self.file_size, short), path=self.path, offset=at, field="size")
            raise CorruptError(
                "bad footer cookie at offset {} (footer damaged; the copy at offset 0 is "
                "intact -- the file needs repair, do not use it)".format(at),
                path=self.path, offset=at, field="cookie")
        raise CorruptError("bad footer cookie at offset {}: not a VHD file".format(at),
                           path=self.path, offset=at, field="cookie")

    def _truncation(self, head):
        """With only the copy at 0 intact: the end of data the BAT needs, if beyond EOF."""
        try:
            footer = Footer.parse(head, self.path, 0)
            raw = _full_read(self._f, footer.data_offset, HEADER_SIZE)
            header = DynamicHeader.parse(raw, self.path, footer.data_offset)
            if dynamic_limits_problem(footer.current_size, header, 1 << 62) is not None:
                return None
            bat = Bat.read(self._f, header.max_table_entries, self.path, header.table_offset)
        except FormatError:
            return None
        last = bat.last_used()
        if last is None:
            return None
        end = last * SECTOR + bitmaps.bitmap_bytes(header.block_size // SECTOR) \
            + header.block_size
        return end if end > self.file_size - FOOTER_SIZE else None

    def _parse_footer(self, buf, offset):
        try:
            return Footer.parse(buf, self.path, offset)
        except ChecksumError:
            footer = Footer.parse(buf, self.path, offset, verify=False)
            if not (footer.hidden and footer.keeps_hidden_in_backup()):
                raise
            # early td-util set the hidden byte without updating the checksum
            probe = bytearray(buf)
            probe[HIDDEN_OFFSET] = 0
            Footer.parse(bytes(probe), self.path, offset)
            return footer

    def _load_dynamic(self):
        footer = self.footer
        backup = _full_read(self._f, 0, FOOTER_SIZE)
        try:
            self.backup_footer = Footer.parse(backup, self.path, 0)
        except ChecksumError as e:
            raise ChecksumError(path=self.path, what="backup footer (copy at offset 0)",
                                field="backup footer", offset=0, stored=e.stored,
                                computed=e.computed)
        except CorruptError:
            raise CorruptError("backup footer (copy at offset 0) has a bad cookie",
                               path=self.path, offset=0, field="backup footer")
        if not self._footers_agree(self.backup_footer, footer):
            raise CorruptError("backup footer at offset 0 differs from the footer at offset {}".format(
                self.footer_offset), path=self.path, offset=0, field="backup footer")
        if footer.keeps_hidden_in_backup():
            footer.hidden = self.backup_footer.hidden
            self._old_bitmap_order = footer.creator_version == 0x00000001
        if footer.data_offset + HEADER_SIZE > self.footer_offset:
            raise CorruptError("dynamic header offset {} lies beyond the data".format(
                footer.data_offset), path=self.path, offset=16, field="data_offset")
        raw = _full_read(self._f, footer.data_offset, HEADER_SIZE)
        self.header = header = DynamicHeader.parse(raw, self.path, footer.data_offset)
        self._check_limits(footer.data_offset)
        bs = header.block_size
        self.bat = Bat.read(self._f, header.max_table_entries, self.path, header.table_offset)
        self.spb = bs // SECTOR
        self.bitmap_size = bitmaps.bitmap_bytes(self.spb)
        last = self.bat.last_used()
        if last is not None:
            end = last * SECTOR + self.bitmap_size + bs
            if end > self.footer_offset:
                raise CorruptError(
                    "BAT entry points at sector {} whose block ends at {} beyond the data end {}"
                    .format(last, end, self.footer_offset), path=self.path,
                    offset=header.table_offset, field="bat")
        self._load_batmap()

    def _check_limits(self, header_at):
        """Refuse declared sizes beyond what the virtual size needs, before reading them."""
        problem = dynamic_limits_problem(self.footer.current_size, self.header,
                                         self.footer_offset)
        if problem is not None:
            field, offset, message = problem
            at = self.footer_offset + 48 if offset is None else header_at + offset
            raise CorruptError(message, path=self.path, offset=at, field=field)

    @staticmethod
    def _footers_agree(a, b):
        if a == b:
            return True
        # Copies differing only in the hidden flag: old tapdisk kept it only in the copy
        # at 0 (see _load_dynamic), or a set_hidden was killed between its two writes
        # (EOF copy first; libvhd reads that copy, so do we; write_footers heals it).
        x, y = a.copy(), b.copy()
        x.hidden = y.hidden = x.checksum = y.checksum = 0
        return x == y

    def _load_batmap(self):
        if self.footer.creator_app != CREATOR_TAP or self.footer.creator_version < 0x00010002:
            return
        at = batmap_offset(self.header.table_offset, self.header.max_table_entries)
        if at + batmaps.HEADER_SIZE > self.footer_offset:
            return
        hdr = batmaps.BatmapHeader.probe(_full_read(self._f, at, batmaps.HEADER_SIZE))
        if hdr is None or hdr.map_sectors * SECTOR * 8 < self.header.max_table_entries \
                or hdr.map_sectors > batmaps.map_sectors(self.header.max_table_entries):
            return  # no map, or not sized for the BAT: a lost hint; `check` reports it
        size = hdr.map_sectors * SECTOR
        if hdr.map_offset + size > self.footer_offset:
            raise CorruptError("batmap at offset {} extends beyond the data".format(hdr.map_offset),
                               path=self.path, offset=at, field="batmap")
        data = bytearray(_full_read(self._f, hdr.map_offset, size))
        if batmaps.checksum(bytes(data)) != hdr.checksum:
            return  # an invalid batmap is only a hint lost; `check` reports it
        self.batmap_header, self.batmap = hdr, data
        self.batmap_offset = at

    # ----------------------------------------------------------------- facts

    @property
    def uuid(self):
        return self.footer.uuid

    @property
    def type_name(self):
        return self.footer.type_name

    @property
    def is_differencing(self):
        return self.footer.disk_type == DISK_DIFFERENCING

    @property
    def virtual_size(self):
        return self.footer.current_size

    @property
    def physical_size(self):
        return self.file_size

    @property
    def block_size(self):
        return self.header.block_size if self.header else None

    @property
    def hidden(self):
        return bool(self.footer.hidden)

    @property
    def parent_uuid(self):
        return self.header.parent_uuid if self.is_differencing else None

    @property
    def parent_name(self):
        return self.header.parent_name if self.is_differencing else None

    @property
    def allocated_blocks(self):
        if not self.footer.is_dynamic:
            return 0
        return self.bat.allocated_count()

    def locator_paths(self):
        """Parent paths named by the locators (MacX first), as written."""
        found = []
        if not self.is_differencing:
            return found
        ordered = sorted((loc for loc in self.header.locators if loc.in_use),
                         key=lambda loc: loc.code != CODE_MACX)
        for loc in ordered:
            if loc.data_length == 0 or loc.data_length > MAX_LOCATOR_BYTES \
                    or loc.data_offset + loc.data_length > self.footer_offset:
                continue   # unusable (`check` reports it): never a huge read
            raw = _full_read(self._f, loc.data_offset, loc.data_length)
            text = decode_path(loc.code, raw, self.path)
            if text:
                found.append(text)
        return found

    def parent_locator_path(self):
        """Absolute path of the parent: the first locator naming an existing file.

        Paths are resolved relative to this file's directory, as vhd-util writes them.
        """
        base = os.path.dirname(os.path.abspath(self.path))
        # a NUL would make os.stat raise ValueError on Python < 3.8: such a path names nothing
        candidates = [os.path.normpath(os.path.join(base, p)) for p in self.locator_paths()
                      if "\x00" not in p]
        for path in candidates:
            if os.path.isfile(path):
                return path
        if self.header and self.header.parent_name:
            beside = os.path.join(base, os.path.basename(self.header.parent_name))
            if os.path.isfile(beside):
                return beside
        return candidates[0] if candidates else None

    # --------------------------------------------------------------- mapping

    def _bitmap(self, block):
        cached = self._bitmaps.get(block)
        if cached is None:
            raw = _full_read(self._f, self.bat[block] * SECTOR, self.bitmap_size)
            if len(raw) != self.bitmap_size:
                raise CorruptError("bitmap of block {} truncated".format(block),
                                   path=self.path, offset=self.bat[block] * SECTOR)
            cached = bitmaps.from_le_words(raw) if self._old_bitmap_order else raw
            if len(self._bitmaps) >= _BITMAP_CACHE:
                self._bitmaps.clear()
            self._bitmaps[block] = cached
        return cached

    def _block_full(self, block):
        return self.batmap is not None and batmaps.test(self.batmap, block)

    def map_sectors(self, sector, count):
        """Yield (virtual_sector, count, file_offset or None) covering [sector, sector+count).

        None means "not in this file": zeros for a dynamic disk, the parent's data
        for a differencing one.
        """
        end = sector + count
        if end * SECTOR > self.virtual_size + SECTOR - 1:
            raise FormatError("read beyond the virtual size ({} bytes)".format(self.virtual_size),
                              path=self.path)
        if not self.footer.is_dynamic:
            yield sector, count, sector * SECTOR
            return
        spb = self.spb
        while sector < end:
            block, first = divmod(sector, spb)
            n = min(end - sector, spb - first)
            entry = self.bat[block]
            if entry == UNUSED:
                yield sector, n, None
            else:
                data = entry * SECTOR + self.bitmap_size
                if self._block_full(block):
                    yield sector, n, data + first * SECTOR
                else:
                    bm = self._bitmap(block)
                    for start, run, present in bitmaps.runs(bm, first, first + n):
                        yield (block * spb + start, run,
                               data + start * SECTOR if present else None)
            sector += n

    def read_into(self, offset, view):
        """Fill ``view`` with file bytes at ``offset``; a short file is corruption."""
        self._f.seek(offset)
        got = self._f.readinto(view)
        if got != len(view):
            raise CorruptError("short read of {} bytes at offset {}".format(len(view), offset),
                               path=self.path, offset=offset)

    def read(self, offset, length):
        """Virtual bytes of this file alone; sectors it does not hold read as zeros."""
        first, last = offset // SECTOR, (offset + length + SECTOR - 1) // SECTOR
        buf = bytearray((last - first) * SECTOR)
        view = memoryview(buf)
        for vs, n, at in self.map_sectors(first, last - first):
            if at is not None:
                pos = (vs - first) * SECTOR
                self.read_into(at, view[pos:pos + n * SECTOR])
        skip = offset - first * SECTOR
        return bytes(buf[skip:skip + length])

    # ---------------------------------------------------------------- writes

    def _need_writable(self, action):
        if not self.writable:
            raise ReadOnlyError(path=self.path, action=action)

    def pwrite(self, offset, data):
        try:
            self._f.seek(offset)
            written = self._f.write(data)
        except OSError as e:
            if e.errno in (errno.ENOSPC, errno.EDQUOT):
                raise NoSpaceError(path=self.path)
            raise
        if written != len(data):
            raise NoSpaceError(path=self.path)

    def write_footers(self):
        """Rewrite the footer at EOF (and the copy at 0 of a dynamic disk)."""
        self._need_writable("rewrite its footer")
        raw = self.footer.pack()
        self.pwrite(self.footer_offset, raw)
        if self.footer.is_dynamic:
            self.pwrite(0, raw)
            self.backup_footer = self.footer.copy()
        self.file_size = max(self.file_size, self.footer_offset + FOOTER_SIZE)

    def write_header(self):
        self._need_writable("rewrite its header")
        self.pwrite(self.footer.data_offset, self.header.pack())

    def _allocate(self, block):
        """Place a new block at the end of data; return its bitmap sector.

        The footer moves first (so the file always ends in a valid footer); the BAT
        entry is written by the caller only after data and bitmap are in place.
        """
        start = (self.footer_offset + SECTOR - 1) // SECTOR * SECTOR
        data = (start + self.bitmap_size + DATA_ALIGN - 1) // DATA_ALIGN * DATA_ALIGN
        bm_sector = (data - self.bitmap_size) // SECTOR
        new_footer = data + self.header.block_size
        self.pwrite(new_footer, self.footer.pack())
        self.footer_offset = new_footer
        self.file_size = new_footer + FOOTER_SIZE
        self._f.truncate(self.file_size)
        return bm_sector

    def _begin_write(self, sector, data):
        """Validate a whole-sector write; a fixed disk takes it at once (returns None)."""
        self._need_writable("write to it")
        view = memoryview(data)
        if sector * SECTOR + len(view) > self.virtual_size:
            raise FormatError("write beyond the virtual size ({} bytes)".format(self.virtual_size),
                              path=self.path)
        if not self.footer.is_dynamic:
            self.pwrite(sector * SECTOR, view)
            return None
        return view

    def write_sectors(self, sector, data, sync_before_metadata=False):
        """Write whole sectors into this file, allocating blocks as needed."""
        view = self._begin_write(sector, data)
        if view is None:
            return
        count = len(view) // SECTOR
        end, pos, spb = sector + count, 0, self.spb
        while sector < end:
            block, first = divmod(sector, spb)
            n = min(end - sector, spb - first)
            self._write_in_block(block, first, view[pos:pos + n * SECTOR], sync_before_metadata)
            sector += n
            pos += n * SECTOR

    def _write_in_block(self, block, first, chunk, sync):
        n = len(chunk) // SECTOR
        entry = self.bat[block]
        new = entry == UNUSED
        if new:
            entry = self._allocate(block)
            old = bytes(self.bitmap_size)
        else:
            old = self._bitmap(block)
        data_at = entry * SECTOR + self.bitmap_size
        self.pwrite(data_at + first * SECTOR, chunk)
        bm = bitmaps.set_range(old, first, first + n)
        if bm != old or new:
            if sync:
                os.fsync(self._f.fileno())
            raw = bitmaps.from_le_words(bm) if self._old_bitmap_order else bm
            self.pwrite(entry * SECTOR, raw)
            self._bitmaps[block] = bm
        if new:
            if sync:
                os.fsync(self._f.fileno())
            self.bat[block] = entry
            self.pwrite(self.header.table_offset + block * 4, self.bat.pack_entry(block))
        if self.batmap is not None and not batmaps.test(self.batmap, block) \
                and bitmaps.all_set(bm, self.spb):
            self._set_batmap_bit(block)

    def _set_batmap_bit(self, block):
        batmaps.set_bit(self.batmap, block)
        self.batmap_header.checksum = batmaps.checksum(bytes(self.batmap))
        byte = block >> 3
        self.pwrite(self.batmap_header.map_offset + byte, bytes(self.batmap[byte:byte + 1]))
        self.pwrite(self.batmap_offset, self.batmap_header.pack())

    def flush(self):
        if self.writable:
            os.fsync(self._f.fileno())

    def close(self):
        if self._f is not None:
            self._f.close()
            self._f = None

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    def __repr__(self):
        return "<VhdFile {} {} {}>".format(self.path, self.type_name, self.uuid)


def new_uuid(value=None):
    if value is None:
        return uuidlib.uuid4()
    return value if isinstance(value, uuidlib.UUID) else uuidlib.UUID(str(value))


__all__ = ["VhdFile", "DISK_DYNAMIC", "DISK_FIXED", "DISK_DIFFERENCING", "MAX_VIRTUAL_SIZE"]
