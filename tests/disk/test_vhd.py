"""The VHD engine behind the disk face: a VHD parent is found by locator and uuid under
either backing policy, so both give the same chain."""

import os

import pytest

from vhdport import disk

V = disk.by_name("vhd")
MIB = 1 << 20


def _outside_chain(tmp_path):
    (tmp_path / "vm").mkdir()
    (tmp_path / "images").mkdir()
    base = str(tmp_path / "images" / "base.vhd")
    V.create(base, 4 * MIB)
    with V.open_chain(base, writable=True) as chain:
        chain.write(0, b"\x5a" * 4096)
        chain.flush()
    child = str(tmp_path / "vm" / "top.vhd")
    V.snapshot(child, "../images/base.vhd")
    return child, base


@pytest.mark.parametrize("policy", [disk.SR_DIRECTORY, disk.LOCAL_FILES])
def test_both_policies_follow_the_locator(tmp_path, policy):
    child, base = _outside_chain(tmp_path)
    with V.open_chain(child, backing=policy) as chain:
        assert [os.path.normpath(p) for p in chain.paths()] == [child, base]
        assert bytes(chain.read(0, 2)) == b"\x5a\x5a"
    assert V.info(child, backing=policy)["depth"] == 2
    assert V.check_file(child, backing=policy) == []
    assert V.check_chain(child, backing=policy) == []
    out = str(tmp_path / "out-{}.raw".format(policy))
    V.export_raw(child, out, backing=policy)
    with open(out, "rb") as f:
        assert f.read(2) == b"\x5a\x5a"


def test_an_unknown_backing_policy_is_refused(tmp_path):
    child, _base = _outside_chain(tmp_path)
    for call in (V.open_chain, V.info, V.check_chain, V.check_file, V.coalesce):
        with pytest.raises(ValueError, match="unknown backing policy"):
            call(child, backing="anywhere")
    with pytest.raises(ValueError, match="unknown backing policy"):
        V.relink(child, "../images/base.vhd", backing="anywhere")
