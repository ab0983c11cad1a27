"""blktap batmap: header layout, checksum of the map, bit order."""

import struct

import pytest
from hypothesis import given, strategies as st

from vhdport.errors import ChecksumError, CorruptError
from vhdport.vhd.format import batmap


def test_header_layout():
    h = batmap.BatmapHeader(map_offset=2560, map_sectors=1, checksum=0xFFFFFFFF, marker=1)
    raw = h.pack()
    assert len(raw) == 512 and raw[:8] == b"tdbatmap"
    assert struct.unpack_from(">QIII", raw, 8) == (2560, 1, 0x00010002, 0xFFFFFFFF)
    assert raw[28] == 1 and raw[29:] == bytes(483)
    again = batmap.BatmapHeader.parse(raw)
    assert (again.map_offset, again.map_sectors, again.checksum, again.marker) == (2560, 1, 0xFFFFFFFF, 1)
    assert again.pack() == raw


def test_probe_and_errors():
    assert batmap.BatmapHeader.probe(bytes(512)) is None
    assert batmap.BatmapHeader.probe(batmap.BatmapHeader().pack()) is not None
    with pytest.raises(CorruptError):
        batmap.BatmapHeader.parse(b"tdbatmap" + bytes(10))
    with pytest.raises(CorruptError):
        batmap.BatmapHeader.parse(b"tdbatmaX" + bytes(504))


def test_map_sectors():
    assert batmap.map_sectors(0) == 1
    assert batmap.map_sectors(4096) == 1
    assert batmap.map_sectors(4097) == 2


def test_checksum_and_verify():
    data = bytearray(512)
    assert batmap.checksum(bytes(data)) == 0xFFFFFFFF
    batmap.set_bit(data, 0)
    batmap.set_bit(data, 9)
    assert data[:2] == b"\x80\x40"
    assert batmap.test(data, 0) and batmap.test(data, 9) and not batmap.test(data, 1)
    h = batmap.BatmapHeader(checksum=batmap.checksum(bytes(data)))
    batmap.verify(h, bytes(data))
    h.checksum ^= 1
    with pytest.raises(ChecksumError):
        batmap.verify(h, bytes(data))


@given(st.binary(min_size=1, max_size=1024))
def test_checksum_is_ones_complement_of_byte_sum(data):
    assert batmap.checksum(data) == (~sum(data)) & 0xFFFFFFFF


@given(st.sets(st.integers(0, 4095)))
def test_set_bits_are_exactly_the_tested_ones(blocks):
    data = bytearray(512)
    for b in blocks:
        batmap.set_bit(data, b)
    assert {b for b in range(4096) if batmap.test(data, b)} == blocks
