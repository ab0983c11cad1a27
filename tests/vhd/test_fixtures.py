"""The engine against disks made by blktap's vhd-util (the reference implementation)."""

import hashlib
import json
import os
import shutil

import pytest

from vhdport.errors import ChainError, FormatError
from vhdport.vhd import Chain, check_chain, check_file, info

DISKS = ["dynamic.vhd", "chain/base.vhd", "chain/mid.vhd", "chain/leaf.vhd", "fixed.vhd",
         "fixed511.vhd"]

# corrupt fixture -> does this defect name what is wrong with it?
CORRUPT = {
    "footer-checksum.vhd": lambda d: d.field == "footer checksum",
    "backup-footer.vhd": lambda d: d.field.startswith("backup footer"),
    "header-checksum.vhd": lambda d: d.field == "header checksum",
    "bat-beyond-eof.vhd": lambda d: d.field == "bat",
    "bad-cookie.vhd": lambda d: d.field == "cookie",
    "truncated.vhd": lambda d: d.field == "size" and "truncated" in d.message,
    "wrong-parent/leaf.vhd": lambda d: d.field == "parent uuid",
}


def sha256_file(path):
    with open(path, "rb") as f:
        return hashlib.sha256(f.read()).hexdigest()


@pytest.fixture(scope="module")
def manifest(vhd_fixtures):
    return json.loads((vhd_fixtures / "manifest.json").read_text())


@pytest.fixture
def corrupt_copy(vhd_fixtures, tmp_path):
    """A private copy of corrupt/ (checks must not write, but never risk the shared one)."""
    dst = tmp_path / "corrupt"
    shutil.copytree(str(vhd_fixtures / "corrupt"), str(dst))
    return dst


@pytest.mark.parametrize("name", DISKS)
def test_contents_match_libvhd(vhd_fixtures, manifest, name):
    digest = hashlib.sha256()
    with Chain.open(str(vhd_fixtures / name)) as chain:
        for _offset, data in chain.iter_blocks():
            digest.update(data)
    assert digest.hexdigest() == manifest[name]["contents_sha256"]


@pytest.mark.parametrize("name", DISKS)
def test_reference_disks_pass_the_checks(vhd_fixtures, name):
    path = str(vhd_fixtures / name)
    assert check_file(path) == []
    assert check_chain(path) == []


@pytest.mark.parametrize("name", [n for n in DISKS if n.startswith("chain/") or n == "dynamic.vhd"])
def test_info_hidden_and_parents(vhd_fixtures, manifest, name):
    path = vhd_fixtures / name
    facts = info(str(path))
    entry = manifest[name]
    assert facts["hidden"] is bool(entry["hidden"])
    if entry.get("parent"):
        assert facts["parent"] == str(path.parent / entry["parent"])
        assert facts["type"] == "differencing"
        assert facts["parent_uuid"] == info(facts["parent"])["uuid"]
    else:
        assert facts["parent"] is None and facts["parent_uuid"] is None
    assert facts["depth"] == {"dynamic.vhd": 1, "chain/base.vhd": 1, "chain/mid.vhd": 2,
                              "chain/leaf.vhd": 3}[name]
    assert facts["virtual_size"] == 24 * 1024 * 1024
    assert facts["physical_size"] == os.path.getsize(str(path))
    assert facts["block_size"] == 2 * 1024 * 1024
    assert facts["allocated_blocks"] > 0


def test_fixed511_reads_like_fixed(vhd_fixtures):
    a, b = info(str(vhd_fixtures / "fixed.vhd")), info(str(vhd_fixtures / "fixed511.vhd"))
    assert a["type"] == b["type"] == "fixed"
    assert a["virtual_size"] == b["virtual_size"] and a["uuid"] == b["uuid"]
    assert b["physical_size"] == a["physical_size"] - 1
    assert b["block_size"] is None and b["allocated_blocks"] == 0
    with Chain.open(str(vhd_fixtures / "fixed511.vhd")) as chain:
        assert chain.read(0, 8) == (0).to_bytes(8, "little")


@pytest.mark.parametrize("name", sorted(CORRUPT))
def test_corrupt_files_are_refused_naming_the_defect(corrupt_copy, name):
    path = str(corrupt_copy / name)
    before = sha256_file(path)
    for defects in (check_file(path), check_chain(path)):
        assert defects, "{} passed the check".format(name)
        assert any(CORRUPT[name](d) for d in defects), [str(d) for d in defects]
        assert all(str(d).startswith(path + ": ") and "\n" not in str(d) for d in defects)
    assert sha256_file(path) == before


@pytest.mark.parametrize("name", sorted(CORRUPT))
def test_corrupt_files_are_refused_by_the_reader(corrupt_copy, name):
    with pytest.raises((FormatError, ChainError)):
        Chain.open(str(corrupt_copy / name)).close()


def test_wrong_parent_field_is_the_parent_uuid(corrupt_copy):
    defects = check_chain(str(corrupt_copy / "wrong-parent" / "leaf.vhd"))
    assert [d.field for d in defects] == ["parent uuid"]
    assert defects[0].offset == 512 + 40
    with pytest.raises(ChainError):
        info(str(corrupt_copy / "wrong-parent" / "leaf.vhd"))
