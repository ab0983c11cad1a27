"""The header layout: parse / pack round trips, extensions kept byte for byte, refusals."""

import struct

import pytest

from vhdport.errors import Qcow2CorruptError, Qcow2FormatError, Qcow2UnsupportedError
from vhdport.qcow2.format.header import (EXT_BACKING_FORMAT, EXT_HIDDEN, V3_LENGTH, Extension,
                                         Header, feature_table)


def sample(**fields):
    h = Header(size=1 << 30, l1_size=2, l1_table_offset=3 << 16, refcount_table_offset=1 << 16,
               refcount_table_clusters=1, **fields)
    return h


def test_round_trip_keeps_unknown_extensions_and_padding():
    h = sample()
    h.extensions = [Extension(EXT_BACKING_FORMAT, b"qcow2"),
                    Extension(0x12345678, b"abc", padding=b"\x01\x02\x03\x04\x05"),
                    Extension(EXT_HIDDEN, b"\x01" + bytes(7))]
    h.backing_name = "parent.qcow2"
    raw = h.pack()
    again = Header.parse(raw + bytes(65536 - len(raw)))
    assert again.pack() == raw
    assert again.extension(0x12345678).padding == b"\x01\x02\x03\x04\x05"
    assert again.backing_name == "parent.qcow2" and again.backing_format == "qcow2"
    assert again.hidden is True
    assert again.backing_file_offset == again.extensions_end + 8


def test_v2_header():
    h = sample(version=2)
    h.extra = b""
    raw = h.pack()
    assert len(raw) == 72 + 8
    again = Header.parse(raw + bytes(1000))
    assert (again.version, again.refcount_bits, again.header_length) == (2, 16, 72)


def test_feature_table_is_qemus():
    table = feature_table()
    assert len(table) == 8 * 48
    assert table[:11] == b"\x00\x00dirty bit"


def test_hidden_needs_a_nonzero_first_byte():
    h = sample()
    h.extensions = [Extension(EXT_HIDDEN, bytes(8))]
    assert h.hidden is False
    h.extensions = [Extension(EXT_HIDDEN, b"\x02" + bytes(7))]
    assert h.hidden is True


@pytest.mark.parametrize("offset,value,error,field", [
    (4, 1, Qcow2UnsupportedError, "version"),
    (20, 8, Qcow2CorruptError, "cluster_bits"),
    (20, 22, Qcow2CorruptError, "cluster_bits"),
    (32, 2, Qcow2UnsupportedError, "crypt_method"),
    (100, 100, Qcow2CorruptError, "header_length"),
    (96, 7, Qcow2CorruptError, "refcount_order"),
])
def test_refusals_name_the_field(offset, value, error, field):
    raw = bytearray(sample().pack() + bytes(65536))
    raw[offset:offset + 4] = struct.pack(">I", value)
    with pytest.raises(error) as info:
        Header.parse(bytes(raw))
    assert info.value.fields["field"] == field and info.value.fields["offset"] == offset


def test_not_qcow2():
    with pytest.raises(Qcow2FormatError, match="not a QCOW2"):
        Header.parse(b"conectix" + bytes(100))


def test_too_long_for_the_cluster():
    h = sample(cluster_bits=9)
    h.extensions = [Extension(0x1, bytes(400))]
    with pytest.raises(Qcow2FormatError, match="do not fit"):
        h.pack()
    assert V3_LENGTH == 112
