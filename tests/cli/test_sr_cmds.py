"""`vhdport sr ls|gc|snapshot` on a real SR directory."""

import json
import os
import uuid

import pytest

from tests.cli.helpers import assert_failed_cleanly, last_line, run


from vhdport.vhd import Chain, create_dynamic  # noqa: E402


def ok(*args, **kwargs):
    result = run(*args, **kwargs)
    assert result.exit_code == 0, (result.exit_code, result.stdout, result.stderr)
    return result


@pytest.fixture
def sr_with_vdi(tmp_path):
    sr = tmp_path / "sr"
    sr.mkdir()
    vdi = str(uuid.uuid4())
    path = str(sr / (vdi + ".vhd"))
    create_dynamic(path, 8 << 20)
    with Chain.open(path, writable=True) as chain:
        chain.write(4096, b"before snapshot" * 100)
    return sr, vdi


def by_uuid(sr):
    return {doc["uuid"]: doc for doc in json.loads(ok("sr", "ls", sr, "--json").stdout)}


def test_snapshot_ls_gc(sr_with_vdi):
    sr, vdi = sr_with_vdi
    snap = last_line(ok("sr", "snapshot", sr, vdi).stdout)
    assert str(uuid.UUID(snap)) == snap
    vdis = by_uuid(sr)
    assert len(vdis) == 3
    base = vdis[vdi]["parent_uuid"]
    assert vdis[snap]["parent_uuid"] == base
    assert vdis[base]["hidden"] is True and vdis[base]["role"] == "base"
    assert sorted(vdis[base]["children"]) == sorted([vdi, snap])
    assert vdis[vdi]["role"] == vdis[snap]["role"] == "leaf"
    table = ok("sr", "ls", sr).stdout
    for u in (vdi, snap, base):
        assert u in table

    # nothing is garbage while leaves hang on the base
    assert ok("sr", "gc", sr, "--dry-run").stdout.strip() == ""
    # remove both leaves: the hidden base becomes garbage
    os.unlink(str(sr / (vdi + ".vhd")))
    os.unlink(str(sr / (snap + ".vhd")))
    assert last_line(ok("sr", "gc", sr, "--dry-run").stdout) == base
    assert (sr / (base + ".vhd")).exists(), "dry run deletes nothing"
    doc = json.loads(ok("sr", "gc", sr, "--json").stdout)
    assert doc == {"dry_run": False, "removed": [base]}
    assert not (sr / (base + ".vhd")).exists()


def test_snapshot_json_and_unknown_vdi(sr_with_vdi):
    sr, vdi = sr_with_vdi
    doc = json.loads(ok("sr", "snapshot", sr, vdi, "--json").stdout)
    assert doc["vdi"] == vdi and doc["snapshot"] != doc["base"]
    assert_failed_cleanly(run("sr", "snapshot", sr, str(uuid.uuid4())), "not found")


def test_gc_aborts_on_missing_parent(sr_with_vdi):
    sr, vdi = sr_with_vdi
    ok("sr", "snapshot", sr, vdi)
    base = by_uuid(sr)[vdi]["parent_uuid"]
    os.unlink(str(sr / (base + ".vhd")))
    before = sorted(os.listdir(str(sr)))
    assert_failed_cleanly(run("sr", "gc", sr), "nothing deleted")
    assert sorted(os.listdir(str(sr))) == before


def test_sr_must_exist(tmp_path):
    assert run("sr", "ls", tmp_path / "nope").exit_code == 2


def test_ls_shows_the_format_of_each_vdi(sr_with_vdi):
    from vhdport import disk
    sr, vdi = sr_with_vdi
    qcow = str(uuid.uuid4())
    disk.by_name("qcow2").create(str(sr / (qcow + ".qcow2")), 8 << 20)
    snap = last_line(ok("sr", "snapshot", sr, qcow).stdout)
    vdis = by_uuid(sr)
    assert vdis[vdi]["format"] == "vhd"
    assert vdis[qcow]["format"] == vdis[snap]["format"] == "qcow2"
    base = vdis[qcow]["parent_uuid"]
    assert vdis[base]["format"] == "qcow2" and vdis[base]["role"] == "base"
    assert not any(doc["coalesceable"] for doc in vdis.values())    # base has two children
    os.unlink(str(sr / (snap + ".qcow2")))
    assert by_uuid(sr)[qcow]["coalesceable"] is True                 # its parent's only child
    lines = ok("sr", "ls", sr).stdout.splitlines()
    header = next(line for line in lines if "uuid" in line and "format" in line)
    assert header.split()[:3] == ["uuid", "format", "parent"]
    rows = dict((line.split()[0], line.split()[1]) for line in lines
                if line.split() and line.split()[0] in vdis)
    assert rows[vdi] == "vhd" and rows[qcow] == rows[base] == "qcow2"
