"""Sector bitmaps: one bit per sector, most significant bit first (libvhd's test_bit).

Operations work on whole ranges through Python integers and regular expressions
so that no hot path loops over sectors in Python.
"""

import re

_RUNS = re.compile(r"1+|0+")


def bitmap_bytes(sectors_per_block):
    """Bytes of a block's bitmap on disk: one bit per sector, padded to a sector."""
    return (sectors_per_block // 8 + 511) // 512 * 512


def _bits(bitmap, nbits):
    return format(int.from_bytes(bitmap, "big"), "0{}b".format(len(bitmap) * 8))[:nbits]


def runs(bitmap, start, end):
    """Yield (first_sector, count, present) for the runs of equal bits in [start, end)."""
    bits = _bits(bitmap, end)[start:]
    for match in _RUNS.finditer(bits):
        yield start + match.start(), match.end() - match.start(), match.group()[0] == "1"


def set_range(bitmap, start, end):
    """Return a copy of ``bitmap`` with bits [start, end) set."""
    total = len(bitmap) * 8
    mask = ((1 << (end - start)) - 1) << (total - end)
    return (int.from_bytes(bitmap, "big") | mask).to_bytes(len(bitmap), "big")


def all_set(bitmap, nbits):
    """True when the first ``nbits`` bits are all set (a fully written block)."""
    full, rest = divmod(nbits, 8)
    if bitmap[:full].count(0xFF) != full:
        return False
    return rest == 0 or (bitmap[full] >> (8 - rest)) == (1 << rest) - 1


def count_set(bitmap, nbits):
    return _bits(bitmap, nbits).count("1")


def from_le_words(bitmap):
    """Convert an old tapdisk (0.1) bitmap, where sector n is bit n of a little-endian integer."""
    bits = format(int.from_bytes(bitmap, "little"), "0{}b".format(len(bitmap) * 8))
    return int(bits[::-1], 2).to_bytes(len(bitmap), "big")
