"""Dynamic header: layout, checksum, parent name encoding, round trips."""

import struct
import uuid

import pytest
from hypothesis import given, strategies as st

from vhdport.errors import ChecksumError, CorruptError
from vhdport.vhd.format import header as hdr
from vhdport.vhd.format.checksum import ones_complement
from vhdport.vhd.format.locator import CODE_MACX, CODE_W2KU, ParentLocator


def make(**fields):
    base = dict(max_table_entries=12, block_size=2 << 20)
    base.update(fields)
    return hdr.DynamicHeader(**base)


def test_layout_matches_spec_offsets():
    parent = uuid.uuid4()
    h = make(parent_uuid=parent, parent_timestamp=77, parent_name="base.vhd")
    h.locators[0] = ParentLocator(CODE_MACX, 512, 17, 3072)
    raw = h.pack()
    assert len(raw) == 1024 and raw[:8] == b"cxsparse"
    assert struct.unpack_from(">QQIII", raw, 8) == (2 ** 64 - 1, 1536, 0x00010000, 12, 2 << 20)
    assert raw[40:56] == parent.bytes
    assert struct.unpack_from(">I", raw, 56)[0] == 77
    assert raw[64:64 + 16] == "base.vhd".encode("utf-16-be")
    assert struct.unpack_from(">IIIIQ", raw, 576) == (CODE_MACX, 512, 17, 0, 3072)
    assert raw[576 + 8 * 24:] == bytes(256)
    assert struct.unpack_from(">I", raw, 36)[0] == ones_complement(raw, 36)


def test_round_trip_and_has_parent():
    h = make(parent_uuid=uuid.uuid4(), parent_name="ä/b.vhd")
    again = hdr.DynamicHeader.parse(h.pack())
    assert again.parent_uuid == h.parent_uuid and again.parent_name == "ä/b.vhd"
    assert again.has_parent and not make().has_parent
    assert again.pack() == h.pack()


def test_checksum_and_cookie_errors():
    raw = bytearray(make().pack())
    raw[28] ^= 1
    with pytest.raises(ChecksumError) as err:
        hdr.DynamicHeader.parse(bytes(raw), "x.vhd", 512)
    assert err.value.fields["what"] == "dynamic header"
    raw = bytearray(make().pack())
    raw[0] = ord("X")
    with pytest.raises(CorruptError):
        hdr.DynamicHeader.parse(bytes(raw))
    with pytest.raises(CorruptError):
        hdr.DynamicHeader.parse(make().pack()[:1000])


def test_parent_name_limits():
    assert len(hdr.encode_name("a" * 256)) == 512
    with pytest.raises(CorruptError):
        hdr.encode_name("a" * 257)


names = st.text(st.characters(blacklist_categories=("Cs",), blacklist_characters="\x00"),
                max_size=100).filter(lambda s: len(s.encode("utf-16-be")) <= 512)
locators = st.builds(ParentLocator, st.sampled_from([0, CODE_MACX, CODE_W2KU, 0x12345678]),
                     st.integers(0, 2 ** 32 - 1), st.integers(0, 2 ** 32 - 1),
                     st.integers(0, 2 ** 64 - 1), st.integers(0, 2 ** 32 - 1))


@given(st.integers(0, 2 ** 64 - 1), st.integers(0, 2 ** 32 - 1), st.integers(0, 2 ** 32 - 1),
       st.uuids(), st.integers(0, 2 ** 32 - 1), names, st.lists(locators, min_size=8, max_size=8))
def test_round_trip_property(table, entries, block, parent, ts, name, locs):
    h = make(table_offset=table, max_table_entries=entries, block_size=block,
             parent_uuid=parent, parent_timestamp=ts, parent_name=name, locators=locs)
    raw = h.pack()
    again = hdr.DynamicHeader.parse(raw)
    assert again.pack() == raw
    assert (again.table_offset, again.max_table_entries, again.block_size) == (table, entries, block)
    assert again.parent_name == name and again.parent_uuid == parent
    assert [l.pack() for l in again.locators] == [l.pack() for l in locs]
