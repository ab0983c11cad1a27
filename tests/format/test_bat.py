"""BAT: big-endian u32 entries padded to a sector."""

import struct

import pytest
from hypothesis import given, strategies as st

from vhdport.errors import CorruptError
from vhdport.format import bat


def test_padded_size():
    assert bat.padded_size(0) == 0
    assert bat.padded_size(1) == 512
    assert bat.padded_size(128) == 512
    assert bat.padded_size(129) == 1024


def test_empty_and_pack():
    table = bat.Bat.empty(3)
    assert list(table.entries) == [bat.UNUSED] * 3 and list(table.allocated()) == []
    table[1] = 0x01020304
    raw = table.pack()
    assert len(raw) == 512
    assert raw[:12] == b"\xff\xff\xff\xff\x01\x02\x03\x04\xff\xff\xff\xff"
    assert raw[12:] == bytes(500)
    assert table.pack(padded=False) == raw[:12]
    assert table.pack_entry(1) == b"\x01\x02\x03\x04"
    assert list(table.allocated()) == [1] and len(table) == 3 and table[1] == 0x01020304


def test_parse_is_big_endian_and_checks_length():
    raw = struct.pack(">3I", 7, bat.UNUSED, 0x80000000)
    assert list(bat.Bat.parse(raw, 3).entries) == [7, bat.UNUSED, 0x80000000]
    with pytest.raises(CorruptError) as err:
        bat.Bat.parse(raw, 4, "x.vhd", 1536)
    assert err.value.fields["field"] == "bat" and err.value.fields["offset"] == 1536


@given(st.lists(st.integers(0, 2 ** 32 - 1), max_size=600))
def test_round_trip_property(values):
    raw = struct.pack(">{}I".format(len(values)), *values)
    table = bat.Bat.parse(raw + bytes(17), len(values))
    assert list(table.entries) == values
    assert table.pack(padded=False) == raw
    assert len(table.pack()) == bat.padded_size(len(values))
    assert list(table.allocated()) == [i for i, v in enumerate(values) if v != bat.UNUSED]
