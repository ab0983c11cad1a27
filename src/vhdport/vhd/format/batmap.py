"""blktap's batmap: one bit per block, set when the block is fully allocated.

It sits right after the (padded) BAT: a 512-byte header, then the map.  tapdisk uses
it to skip bitmap reads; vhd-util check verifies its checksum.
"""

import struct

from ...errors import ChecksumError, CorruptError
from .checksum import ones_complement

COOKIE = b"tdbatmap"
VERSION = 0x00010002
HEADER_SIZE = 512


def map_sectors(block_count):
    """Sectors the map takes: one bit per block, at least one sector."""
    return max(1, (block_count + 4095) // 4096)


class BatmapHeader(object):
    __slots__ = ("cookie", "map_offset", "map_sectors", "version", "checksum",
                 "marker", "raw")

    def __init__(self, map_offset=0, map_sectors=1, version=VERSION, checksum=0,
                 marker=0, raw=None):
        self.cookie = COOKIE
        self.map_offset = map_offset
        self.map_sectors = map_sectors
        self.version = version
        self.checksum = checksum
        self.marker = marker
        self.raw = raw

    @classmethod
    def probe(cls, buf):
        """Return a header if ``buf`` starts with the batmap cookie, else None."""
        if bytes(buf[:8]) != COOKIE:
            return None
        return cls.parse(buf)

    @classmethod
    def parse(cls, buf, path="<bytes>", offset=0):
        if len(buf) < HEADER_SIZE:
            raise CorruptError("batmap header truncated", path=path, offset=offset, field="batmap")
        cookie, map_offset, sectors, version, checksum = struct.unpack_from(">8sQIII", buf)
        if cookie != COOKIE:
            raise CorruptError("bad batmap cookie at offset {}".format(offset),
                               path=path, offset=offset, field="batmap")
        return cls(map_offset, sectors, version, checksum, buf[28], bytes(buf[:HEADER_SIZE]))

    def pack(self):
        base = self.raw if self.raw is not None else bytes(HEADER_SIZE)
        head = struct.pack(">8sQIIIB", COOKIE, self.map_offset, self.map_sectors,
                           self.version, self.checksum, self.marker)
        return head + base[len(head):]


def checksum(map_bytes):
    return ones_complement(map_bytes)


def verify(header, map_bytes, path="<bytes>"):
    computed = checksum(map_bytes)
    if computed != header.checksum:
        raise ChecksumError(path=path, what="batmap", offset=header.map_offset,
                            stored=header.checksum, computed=computed)


def test(map_bytes, block):
    return bool(map_bytes[block >> 3] & (0x80 >> (block & 7)))


def set_bit(map_bytes, block):
    """Set the bit of ``block`` in a bytearray map."""
    map_bytes[block >> 3] |= 0x80 >> (block & 7)
