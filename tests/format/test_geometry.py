"""CHS geometry by the VHD spec algorithm, against values qemu-img and vhd-util write."""

import os
import subprocess

import pytest
from hypothesis import given, strategies as st

from tests.peers.require import require_qemu_img
from vhdport.format import geometry as geo
from vhdport.format.footer import Footer

# (current size, geometry) pairs read from footers qemu-img 'vpc' and vhd-util wrote
KNOWN = [
    (1079296, (31, 4, 17)),
    (25165824, (722, 4, 17)),          # vhd-util fixture dynamic.vhd (24 MiB)
    (25171968, (723, 4, 17)),
    (104865792, (1004, 12, 17)),
    (1073741824, (2080, 16, 63)),      # 1 GiB: the classic 1073479680-byte CHS size
    (1073995776, (2081, 16, 63)),
    (4295467008, (8323, 16, 63)),
    (42951106560, (20561, 16, 255)),
    (136365219840, (65279, 16, 255)),
    (214748364800, (65535, 16, 255)),  # beyond CHS: capped
]


@pytest.mark.parametrize("size,expected", KNOWN)
def test_known_geometries(size, expected):
    assert geo.chs_for_size(size) == expected


def test_one_gib_rounds_down_to_chs_size():
    assert geo.chs_size(geo.chs_for_size(1 << 30)) == 1073479680


def test_pack_unpack():
    assert geo.pack_geometry((2080, 16, 63)) == 0x0820103F
    assert geo.unpack_geometry(0x0820103F) == (2080, 16, 63)


@given(st.integers(0, geo.MAX_CHS_SECTORS * 512))
def test_never_larger_than_the_size(size):
    cyl, heads, spt = geo.chs_for_size(size)
    assert geo.chs_size((cyl, heads, spt)) <= size
    assert cyl <= 65535 and 1 <= heads <= 16 and spt in (17, 31, 63, 255)


@given(st.integers(0, 2 ** 44))
def test_pack_round_trip(size):
    g = geo.chs_for_size(size)
    assert geo.unpack_geometry(geo.pack_geometry(g)) == g


@pytest.mark.peer
@pytest.mark.parametrize("size", ["3M", "17M", "300M", "2G", "33G", "130G", "1T"])
def test_same_as_qemu_img(tmp_path, size):
    require_qemu_img()
    path = str(tmp_path / "g.vhd")
    subprocess.check_call(["qemu-img", "create", "-q", "-f", "vpc", path, size])
    with open(path, "rb") as f:
        footer = Footer.parse(f.read(512))
    os.unlink(path)
    assert geo.chs_for_size(footer.current_size) == footer.geometry
