"""The block allocation table: one big-endian u32 sector offset per block."""

import array
import sys

from ..errors import CorruptError

UNUSED = 0xFFFFFFFF
ENTRY_SIZE = 4


def padded_size(entries):
    """Bytes the BAT occupies on disk (padded to a sector)."""
    return (entries * ENTRY_SIZE + 511) // 512 * 512


class Bat(object):
    """BAT entries in host order in an ``array('I')``: O(1) lookups, fast (de)serialization."""

    __slots__ = ("entries",)

    def __init__(self, entries):
        self.entries = entries

    @classmethod
    def empty(cls, count):
        return cls(array.array("I", [UNUSED]) * count)

    @classmethod
    def parse(cls, buf, count, path="<bytes>", offset=0):
        need = count * ENTRY_SIZE
        if len(buf) < need:
            raise CorruptError("BAT at offset {} truncated: {} of {} bytes".format(
                offset, len(buf), need), path=path, offset=offset, field="bat")
        entries = array.array("I")
        if entries.itemsize != 4:   # pragma: no cover - every CPython platform we run on
            entries = array.array("L")
        entries.frombytes(memoryview(buf)[:need])
        if sys.byteorder == "little":
            entries.byteswap()
        return cls(entries)

    @classmethod
    def read(cls, fileobj, count, path="<file>", offset=0):
        """Read ``count`` entries at ``offset`` of ``fileobj`` straight into the array.

        One buffer of 4 bytes per entry, no intermediate copy.  The caller bounds
        ``count`` (see :func:`vhdport.format.layout.dynamic_limits_problem`).
        """
        entries = array.array("I", [UNUSED]) * count
        view = memoryview(entries).cast("B")
        fileobj.seek(offset)
        got = 0
        while got < len(view):
            n = fileobj.readinto(view[got:])
            if not n:
                break
            got += n
        view.release()
        if got < count * ENTRY_SIZE:
            raise CorruptError("BAT at offset {} truncated: {} of {} bytes".format(
                offset, got, count * ENTRY_SIZE), path=path, offset=offset, field="bat")
        if sys.byteorder == "little":
            entries.byteswap()
        return cls(entries)

    def pack(self, padded=True):
        out = array.array(self.entries.typecode, self.entries)
        if sys.byteorder == "little":
            out.byteswap()
        raw = out.tobytes()
        if padded:
            raw += bytes(padded_size(len(self.entries)) - len(raw))
        return raw

    def pack_entry(self, index):
        """The 4 on-disk bytes of one entry (to rewrite it in place)."""
        return self.entries[index].to_bytes(4, "big")

    def __len__(self):
        return len(self.entries)

    def __getitem__(self, index):
        return self.entries[index]

    def __setitem__(self, index, value):
        self.entries[index] = value

    def allocated(self):
        """Indices of allocated blocks, in a compact array."""
        return array.array("I", (i for i, sector in enumerate(self.entries) if sector != UNUSED))

    def allocated_count(self):
        return len(self.entries) - self.entries.count(UNUSED)

    def last_used(self):
        """Largest allocated sector, or None (a C-level scan: no per-entry objects kept)."""
        return max(filter(UNUSED.__ne__, self.entries), default=None)
