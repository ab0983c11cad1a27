"""The registry: VHD then QCOW2 (SM's order), VHD the default, lookups by suffix and magic."""

import pytest

from vhdport import disk
from vhdport.errors import FormatError


def test_formats_in_sm_order_and_vhd_default():
    assert list(disk.FORMATS) == ["vhd", "qcow2"]
    assert disk.DEFAULT is disk.by_name("vhd")
    assert disk.suffixes() == (".vhd", ".qcow2")


def test_lookups_by_suffix():
    assert disk.for_file_name("a.qcow2") is disk.by_name("qcow2")
    assert disk.for_file_name("a.vhd") is disk.by_name("vhd")
    assert disk.for_file_name("a.qcow2.new") is None
    assert disk.stem_of("x.qcow2") == "x" and disk.stem_of("x.raw") is None


def test_sniff_and_for_path_by_magic(tmp_path):
    qcow = tmp_path / "noext"
    qcow.write_bytes(b"QFI\xfb" + bytes(200))
    assert disk.sniff(b"QFI\xfb\0\0\0\3") is disk.by_name("qcow2")
    assert disk.sniff(b"conectix") is disk.by_name("vhd")
    assert disk.for_path(str(qcow)) is disk.by_name("qcow2")
    other = tmp_path / "other"
    other.write_bytes(b"\0" * 512)
    with pytest.raises(FormatError, match="vhd, qcow2"):
        disk.for_path(str(other))


def test_for_tool_reads_content_then_name_then_default(tmp_path):
    named_vhd = tmp_path / "really-qcow2.vhd"
    named_vhd.write_bytes(b"QFI\xfb" + bytes(200))
    assert disk.for_tool(str(named_vhd)) is disk.by_name("qcow2")       # content wins
    fixed_like = tmp_path / "x.qcow2"
    fixed_like.write_bytes(bytes(512))
    assert disk.for_tool(str(fixed_like)) is disk.by_name("qcow2")      # then the name
    plain = tmp_path / "plain.img"
    plain.write_bytes(bytes(512))
    assert disk.for_tool(str(plain)) is disk.DEFAULT                    # then the default
    assert disk.for_tool(str(tmp_path / "missing.qcow2")) is disk.by_name("qcow2")
    assert disk.for_tool(str(plain), default=None) is None
