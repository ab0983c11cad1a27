"""The VHD checksum: one's complement of the byte sum, checksum field taken as zero."""


def ones_complement(buf, skip_offset=None, skip_size=4):
    """Return the u32 checksum of ``buf``, ignoring ``skip_size`` bytes at ``skip_offset``."""
    total = sum(buf)
    if skip_offset is not None:
        total -= sum(buf[skip_offset:skip_offset + skip_size])
    return (~total) & 0xFFFFFFFF
