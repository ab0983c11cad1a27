"""Footer: pack/parse round trips, checksum, 511-byte legacy footers, hidden-flag rules."""

import struct
import uuid

import pytest
from hypothesis import given, strategies as st

from vhdport.errors import ChecksumError, CorruptError
from vhdport.vhd.format import footer as ftr
from vhdport.vhd.format.checksum import ones_complement


def make(**fields):
    base = dict(data_offset=512, timestamp=12345, original_size=1 << 30, current_size=1 << 30,
                geometry=(2080, 16, 63), disk_type=ftr.DISK_DYNAMIC,
                uuid=uuid.UUID("12345678-1234-5678-1234-567812345678"))
    base.update(fields)
    return ftr.Footer(**base)


def test_layout_matches_spec_offsets():
    raw = make(hidden=1, saved_state=1).pack()
    assert len(raw) == 512
    assert raw[:8] == b"conectix"
    assert struct.unpack_from(">I", raw, 8)[0] == ftr.FEATURES_RESERVED
    assert struct.unpack_from(">I", raw, 12)[0] == 0x00010000
    assert struct.unpack_from(">Q", raw, 16)[0] == 512
    assert struct.unpack_from(">I", raw, 24)[0] == 12345
    assert raw[28:32] == b"tap\x00"
    assert struct.unpack_from(">Q", raw, 48)[0] == 1 << 30
    assert struct.unpack_from(">I", raw, 56)[0] == (2080 << 16) | (16 << 8) | 63
    assert struct.unpack_from(">I", raw, 60)[0] == 3
    assert raw[68:84] == uuid.UUID("12345678-1234-5678-1234-567812345678").bytes
    assert raw[84] == 1 and raw[85] == 1
    assert raw[86:] == bytes(426)


def test_checksum_is_ones_complement_of_byte_sum_without_field():
    raw = make().pack()
    stored = struct.unpack_from(">I", raw, 64)[0]
    zeroed = raw[:64] + bytes(4) + raw[68:]
    assert stored == (~sum(zeroed)) & 0xFFFFFFFF
    assert stored == ones_complement(raw, 64)


def test_parse_round_trip_and_equality():
    original = make(hidden=1)
    parsed = ftr.Footer.parse(original.pack())
    assert parsed == original
    assert parsed.uuid == original.uuid and parsed.geometry == (2080, 16, 63)
    assert parsed.type_name == "dynamic" and parsed.is_dynamic
    assert parsed.copy() == parsed and parsed.copy() is not parsed


def test_hidden_is_covered_by_the_checksum():
    raw = bytearray(make().pack())
    raw[ftr.HIDDEN_OFFSET] = 1
    with pytest.raises(ChecksumError) as err:
        ftr.Footer.parse(bytes(raw), "x.vhd", 100)
    assert err.value.fields["what"] == "footer" and err.value.fields["offset"] == 100
    assert ftr.Footer.parse(bytes(raw), verify=False).hidden == 1


def test_bad_cookie_and_wrong_length():
    raw = bytearray(make().pack())
    raw[0:8] = b"CONECTIX"
    with pytest.raises(CorruptError) as err:
        ftr.Footer.parse(bytes(raw))
    assert err.value.fields["field"] == "cookie"
    with pytest.raises(CorruptError):
        ftr.Footer.parse(make().pack()[:500])


def test_511_byte_legacy_footer_parses():
    full = make(disk_type=ftr.DISK_FIXED, data_offset=ftr.NO_DATA_OFFSET).pack()
    assert full[-1] == 0
    assert ftr.Footer.parse(full[:511]) == ftr.Footer.parse(full)


def test_old_tapdisk_keeps_hidden_in_backup():
    assert make(creator_version=0x00010001).keeps_hidden_in_backup()
    assert make(creator_version=0x00000001).keeps_hidden_in_backup()
    assert not make().keeps_hidden_in_backup()
    assert not make(creator_app=b"qemu", creator_version=0x00010001).keeps_hidden_in_backup()


def test_vhd_time_epoch():
    assert ftr.to_vhd_time(946684800) == 0
    assert ftr.from_vhd_time(3600) == 946684800 + 3600
    assert ftr.to_vhd_time(0) == 0     # before 2000 clamps rather than wrapping


footers = st.builds(
    make,
    features=st.integers(0, 0xFFFFFFFF),
    data_offset=st.integers(0, 2 ** 64 - 1),
    timestamp=st.integers(0, 0xFFFFFFFF),
    creator_app=st.binary(min_size=4, max_size=4),
    creator_version=st.integers(0, 0xFFFFFFFF),
    original_size=st.integers(0, 2 ** 64 - 1),
    current_size=st.integers(0, 2 ** 64 - 1),
    geometry=st.tuples(st.integers(0, 65535), st.integers(0, 255), st.integers(0, 255)),
    disk_type=st.integers(0, 0xFFFFFFFF),
    uuid=st.uuids(),
    saved_state=st.integers(0, 255),
    hidden=st.integers(0, 255),
    reserved=st.binary(min_size=426, max_size=426),
)


@given(footers)
def test_round_trip_property(footer):
    raw = footer.pack()
    again = ftr.Footer.parse(raw)
    assert again == footer
    assert again.pack() == raw


@given(footers, st.integers(0, 511), st.integers(1, 255))
def test_any_single_byte_change_is_detected(footer, position, delta):
    raw = bytearray(footer.pack())
    raw[position] = (raw[position] + delta) & 0xFF
    if raw[:8] != b"conectix":
        with pytest.raises(CorruptError):
            ftr.Footer.parse(bytes(raw))
    else:
        with pytest.raises(ChecksumError):
            ftr.Footer.parse(bytes(raw))
