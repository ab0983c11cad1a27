"""The VHD checksum: one's complement of the byte sum, checksum field taken as zero."""

import struct


def ones_complement(buf, skip_offset=None, skip_size=4):
    """Return the u32 checksum of ``buf``, ignoring ``skip_size`` bytes at ``skip_offset``."""
    total = sum(buf)
    if skip_offset is not None:
        total -= sum(buf[skip_offset:skip_offset + skip_size])
    return (~total) & 0xFFFFFFFF


def seal(raw, offset):
    """Return (``raw`` with its u32 checksum stored at ``offset``, that checksum).

    The checksum is computed with the field taken as zero, as the spec defines it.
    """
    buf = bytearray(raw)
    buf[offset:offset + 4] = bytes(4)
    value = ones_complement(buf)
    struct.pack_into(">I", buf, offset, value)
    return bytes(buf), value
