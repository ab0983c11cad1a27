"""Parent locators: entry layout, data space units, path payloads as vhd-util writes them."""

import pytest
from hypothesis import given, strategies as st

from vhdport.errors import CorruptError, FormatError
from vhdport.vhd.format import locator as loc


def test_entry_round_trip():
    entry = loc.ParentLocator(loc.CODE_W2RU, 512, 24, 4096, reserved=0)
    raw = entry.pack()
    assert len(raw) == loc.LOCATOR_SIZE
    again = loc.ParentLocator.parse(raw)
    assert (again.code, again.data_space, again.data_length, again.data_offset) == \
        (loc.CODE_W2RU, 512, 24, 4096)
    assert again.in_use and again.name == "W2ru"
    assert not loc.ParentLocator().in_use
    assert loc.ParentLocator(0x41424344).name == "0x41424344"


def test_codes_are_the_ascii_names():
    assert loc.CODE_MACX.to_bytes(4, "big") == b"MacX"
    assert loc.CODE_W2KU.to_bytes(4, "big") == b"W2ku"
    assert loc.CODE_W2RU.to_bytes(4, "big") == b"W2ru"


@pytest.mark.parametrize("space,expected", [(1, 512), (2, 1024), (511, 511 * 512), (512, 512),
                                            (1024, 1024)])
def test_space_below_512_counts_sectors(space, expected):
    assert loc.ParentLocator(loc.CODE_MACX, space).space_bytes == expected


def test_payloads_as_vhd_util_writes_them():
    assert loc.encode_path(loc.CODE_MACX, "base.vhd") == b"file://./base.vhd"
    assert loc.encode_path(loc.CODE_W2KU, "base.vhd") == ".\\base.vhd".encode("utf-16-le")
    assert loc.encode_path(loc.CODE_W2RU, "b.vhd") == b".\x00\\\x00b\x00.\x00v\x00h\x00d\x00"
    with pytest.raises(FormatError):
        loc.encode_path(0x41424344, "x")


def test_decode_paths():
    assert loc.decode_path(loc.CODE_MACX, b"file://./base.vhd\x00\x00") == "./base.vhd"
    assert loc.decode_path(loc.CODE_W2KU, ".\\sub\\b.vhd".encode("utf-16-le")) == "./sub/b.vhd"
    assert loc.decode_path(loc.CODE_W2RU, "C:\\x\\b.vhd".encode("utf-16-le")) == "/x/b.vhd"
    assert loc.decode_path(0x41424344, b"whatever") is None
    with pytest.raises(CorruptError):
        loc.decode_path(loc.CODE_MACX, b"\xff\xfe\xfd")
    with pytest.raises(CorruptError):
        loc.decode_path(loc.CODE_W2KU, b"abc")   # odd length is not UTF-16


relative = st.text(st.characters(whitelist_categories=("Ll", "Lu", "Nd"), whitelist_characters="-_."),
                   min_size=1, max_size=60)


@given(st.sampled_from([loc.CODE_MACX, loc.CODE_W2KU, loc.CODE_W2RU]), relative)
def test_encode_decode_round_trip(code, name):
    assert loc.decode_path(code, loc.encode_path(code, name)) == "./" + name


@given(st.integers(0, 2 ** 32 - 1), st.integers(0, 2 ** 32 - 1), st.integers(0, 2 ** 32 - 1),
       st.integers(0, 2 ** 64 - 1), st.integers(0, 2 ** 32 - 1))
def test_entry_round_trip_property(code, space, length, offset, reserved):
    entry = loc.ParentLocator(code, space, length, offset, reserved)
    assert loc.ParentLocator.parse(entry.pack()).pack() == entry.pack()
