"""Sector bitmaps (MSB first) against a naive per-bit reference."""

from hypothesis import given, strategies as st

from vhdport.vhd.format import bitmap


def bit(bm, n):
    return bool(bm[n >> 3] & (0x80 >> (n & 7)))


def test_bitmap_bytes_padded_to_a_sector():
    assert bitmap.bitmap_bytes(4096) == 512      # 2 MiB block
    assert bitmap.bitmap_bytes(8) == 512         # tiny blocks still take a sector
    assert bitmap.bitmap_bytes(8192) == 1024


def test_msb_first():
    bm = bitmap.set_range(bytes(2), 0, 1)
    assert bm == b"\x80\x00"
    assert bitmap.set_range(bytes(2), 9, 10) == b"\x00\x40"


def test_all_set_partial_byte():
    assert bitmap.all_set(b"\xff\xe0", 11)
    assert not bitmap.all_set(b"\xff\xc0", 11)
    assert bitmap.all_set(b"\xff\xff", 16) and not bitmap.all_set(b"\xff\xfe", 16)


def test_old_tapdisk_order():
    # sector n was bit n of a little-endian integer: sector 0 = LSB of byte 0
    assert bitmap.from_le_words(b"\x01\x00") == b"\x80\x00"
    assert bitmap.from_le_words(b"\x00\x80") == b"\x00\x01"


bitmaps = st.binary(min_size=1, max_size=64)


@given(bitmaps, st.data())
def test_runs_match_reference(bm, data):
    nbits = len(bm) * 8
    start = data.draw(st.integers(0, nbits))
    end = data.draw(st.integers(start, nbits))
    runs = list(bitmap.runs(bm, start, end))
    expanded = []
    for first, count, present in runs:
        assert count > 0
        expanded.extend([present] * count)
        assert first == start + len(expanded) - count
    assert expanded == [bit(bm, n) for n in range(start, end)]
    for a, b in zip(runs, runs[1:]):
        assert a[2] != b[2]


@given(bitmaps, st.data())
def test_set_range_matches_reference(bm, data):
    nbits = len(bm) * 8
    start = data.draw(st.integers(0, nbits))
    end = data.draw(st.integers(start, nbits))
    out = bitmap.set_range(bm, start, end)
    assert len(out) == len(bm)
    for n in range(nbits):
        assert bit(out, n) == (bit(bm, n) or start <= n < end)


@given(bitmaps, st.data())
def test_counts_match_reference(bm, data):
    nbits = data.draw(st.integers(0, len(bm) * 8))
    assert bitmap.count_set(bm, nbits) == sum(bit(bm, n) for n in range(nbits))
    assert bitmap.all_set(bm, nbits) == all(bit(bm, n) for n in range(nbits))


@given(bitmaps)
def test_le_words_is_a_per_byte_bit_reversal(bm):
    out = bitmap.from_le_words(bm)
    for n in range(len(bm) * 8):
        assert bit(out, n) == bool(bm[n >> 3] & (1 << (n & 7)))
