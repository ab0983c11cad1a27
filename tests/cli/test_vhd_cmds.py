"""`vhdport vhd ...` on real files: create, snapshot, write/read, info, check, set-*, convert."""

import json
import os
import shutil
import uuid

import pytest

from tests.cli.helpers import assert_failed_cleanly, assert_usage_error, last_line, run
from vhdport.vhd import Chain, VhdFile

MIB = 1 << 20


def ok(*args, **kwargs):
    result = run(*args, **kwargs)
    assert result.exit_code == 0, (result.exit_code, result.stdout, result.stderr)
    return result


def patterned(n, seed=7):
    return bytes((i * 31 + seed + (i >> 9)) & 0xFF for i in range(n))


def test_create_dynamic_fixed_and_block_size(tmp_path):
    dyn = tmp_path / "dyn.vhd"
    printed = last_line(ok("vhd", "create", dyn, "--size", "20M").stdout)
    with VhdFile.open(str(dyn)) as disk:
        assert str(disk.uuid) == str(uuid.UUID(printed))
        assert disk.type_name.lower().startswith("dyn") and disk.virtual_size == 20 * MIB
        assert disk.block_size == 2 * MIB
    fixed = tmp_path / "fixed.vhd"
    ok("vhd", "create", fixed, "--size", "3M", "--fixed")
    with VhdFile.open(str(fixed)) as disk:
        assert disk.type_name.lower().startswith("fix") and disk.virtual_size == 3 * MIB
    small = tmp_path / "small.vhd"
    ok("vhd", "create", small, "--size", "8M", "--block-size", "512K")
    with VhdFile.open(str(small)) as disk:
        assert disk.block_size == 512 * 1024
    assert run("vhd", "create", tmp_path / "f2.vhd", "--size", "1M", "--fixed",
               "--block-size", "1M").exit_code == 2


def test_create_refuses_limits_and_existing(tmp_path):
    path = tmp_path / "a.vhd"
    ok("vhd", "create", path, "--size", "1M")
    before = path.read_bytes()
    assert_failed_cleanly(run("vhd", "create", path, "--size", "1M"))
    assert path.read_bytes() == before
    # bad values are usage errors (exit 2), refused before any file is made
    assert_usage_error(run("vhd", "create", tmp_path / "huge.vhd", "--size", "3000G"),
                       "'--size'", "exceeds XenServer's VHD limit of 2040 GiB")
    assert_usage_error(run("vhd", "create", tmp_path / "odd.vhd", "--size", "8M",
                           "--block-size", "3M"), "'--block-size'", "not a power of two")
    assert not (tmp_path / "huge.vhd").exists() and not (tmp_path / "odd.vhd").exists()


@pytest.mark.parametrize("size", ["0", "1000", "0M"])
def test_create_size_zero_or_unaligned_is_a_usage_error_without_placeholder(tmp_path, size):
    """Was: `vhdport: error: <bytes>: virtual size 0 ...`, exit 1 (a placeholder leaked)."""
    path = tmp_path / "x.vhd"
    last = assert_usage_error(run("vhd", "create", path, "--size", size),
                              "Invalid value for '--size'", "positive multiple of 512")
    assert "<bytes>" not in last and not path.exists()


def test_snapshot_write_read_round_trip(tmp_path):
    base, child = tmp_path / "base.vhd", tmp_path / "sub" / "child.vhd"
    child.parent.mkdir()
    ok("vhd", "create", base, "--size", "16M")
    lower = patterned(3 * MIB + 100, seed=1)
    (tmp_path / "lower").write_bytes(lower)
    assert last_line(ok("vhd", "write", base, "--offset", "1M", "--from",
                        tmp_path / "lower").stdout) == str(len(lower))
    snap_uuid = last_line(ok("vhd", "snapshot", child, "--parent", "../base.vhd").stdout)
    upper = patterned(MIB + 1234, seed=2)
    (tmp_path / "upper").write_bytes(upper)
    ok("vhd", "write", child, "--offset", str(2 * MIB + 17), "--from", tmp_path / "upper")

    expected = bytearray(16 * MIB)
    expected[MIB:MIB + len(lower)] = lower
    expected[2 * MIB + 17:2 * MIB + 17 + len(upper)] = upper
    whole = ok("vhd", "read", child).stdout_bytes
    assert whole == bytes(expected)
    part = ok("vhd", "read", child, "--offset", str(2 * MIB), "--length", "100K").stdout_bytes
    assert part == bytes(expected[2 * MIB:2 * MIB + 100 * 1024])
    out = tmp_path / "out.bin"
    ok("vhd", "read", child, "--offset", "1M", "--length", "4M", "--out", out)
    assert out.read_bytes() == bytes(expected[MIB:5 * MIB])
    # the base is untouched by writes to the child
    assert ok("vhd", "read", base, "--offset", str(2 * MIB + 17), "--length",
              str(len(upper))).stdout_bytes == lower[MIB + 17:MIB + 17 + len(upper)]
    with VhdFile.open(str(child)) as disk:
        assert str(disk.uuid) == snap_uuid and disk.is_differencing


def test_write_from_stdin_and_out_of_range(tmp_path):
    path = tmp_path / "a.vhd"
    ok("vhd", "create", path, "--size", "2M")
    ok("vhd", "write", path, "--offset", "1000", "--from", "-", input=b"hello")
    assert ok("vhd", "read", path, "--offset", "1000", "--length", "5").stdout_bytes == b"hello"
    (tmp_path / "big").write_bytes(b"x" * 4096)
    before = path.read_bytes()
    assert_failed_cleanly(run("vhd", "write", path, "--offset", str(2 * MIB - 100),
                              "--from", tmp_path / "big"), "nothing written")
    assert path.read_bytes() == before
    # from a pipe the size is unknown up front: staged, refused before anything is written
    assert_failed_cleanly(run("vhd", "write", path, "--offset", str(2 * MIB - 100),
                              "--from", "-", input=b"y" * 4096), "nothing written")
    assert path.read_bytes() == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a.vhd", "big"]
    assert_failed_cleanly(run("vhd", "read", path, "--offset", "1M", "--length", "2M"),
                          "outside the virtual size")


def test_set_hidden_and_set_parent(tmp_path):
    base, child = tmp_path / "base.vhd", tmp_path / "child.vhd"
    ok("vhd", "create", base, "--size", "4M")
    (tmp_path / "data").write_bytes(b"B" * 5000)
    ok("vhd", "write", base, "--offset", "0", "--from", tmp_path / "data")
    ok("vhd", "snapshot", child, "--parent", str(base))
    ok("vhd", "set-hidden", base, "1")
    with VhdFile.open(str(base)) as disk:
        assert disk.hidden
    ok("vhd", "set-hidden", base, "0")
    with VhdFile.open(str(base)) as disk:
        assert not disk.hidden

    moved = tmp_path / "elsewhere"
    moved.mkdir()
    shutil.move(str(base), str(moved / "base.vhd"))
    assert_failed_cleanly(run("vhd", "read", child, "--length", "10"), "not found")
    ok("vhd", "set-parent", child, "elsewhere/base.vhd")
    with Chain.open(str(child)) as chain:
        assert chain.depth == 2 and chain.read(0, 5000) == b"B" * 5000
    # a non-differencing disk has no parent to set
    assert_failed_cleanly(run("vhd", "set-parent", moved / "base.vhd", str(child)))


def test_info_json_and_table(tmp_path):
    base, child = tmp_path / "base.vhd", tmp_path / "child.vhd"
    base_uuid = last_line(ok("vhd", "create", base, "--size", "8M").stdout)
    child_uuid = last_line(ok("vhd", "snapshot", child, "--parent", "base.vhd").stdout)
    ok("vhd", "set-hidden", base, "1")
    doc = json.loads(ok("vhd", "info", child, "--json").stdout)
    assert set(doc) >= {"type", "virtual_size", "physical_size", "uuid", "hidden", "parent",
                        "parent_uuid", "depth", "allocated_blocks", "block_size"}
    assert doc["uuid"] == child_uuid and doc["parent_uuid"] == base_uuid
    assert doc["virtual_size"] == 8 * MIB and doc["depth"] == 2 and doc["hidden"] is False
    assert os.path.samefile(doc["parent"], str(base))
    base_doc = json.loads(ok("vhd", "info", base, "--json").stdout)
    assert base_doc["hidden"] is True and base_doc["parent"] is None and base_doc["depth"] == 1
    table = ok("vhd", "info", child).stdout
    assert child_uuid in table and "virtual_size" in table


def _corrupt_copy(src, dst):
    """A copy of ``src`` with one byte of the footer's original-size field flipped."""
    data = bytearray(src.read_bytes())
    data[len(data) - 512 + 40] ^= 0x10
    dst.write_bytes(bytes(data))


def test_check_valid_and_corrupted(tmp_path):
    good = tmp_path / "good.vhd"
    ok("vhd", "create", good, "--size", "8M")
    (tmp_path / "data").write_bytes(patterned(3 * MIB))
    ok("vhd", "write", good, "--offset", "1M", "--from", tmp_path / "data")
    result = ok("vhd", "check", good)
    assert "valid" in result.stdout
    doc = json.loads(ok("vhd", "check", good, "--json").stdout)
    assert doc["valid"] is True and doc["defects"] == []

    bad = tmp_path / "bad.vhd"
    _corrupt_copy(good, bad)
    result = run("vhd", "check", bad)
    assert result.exit_code == 1
    assert result.stdout.strip(), "defects are listed on stdout"
    assert "defect" in result.stderr and "Traceback" not in result.stderr
    result = run("vhd", "check", bad, "--json")
    assert result.exit_code == 1
    doc = json.loads(result.stdout)
    assert doc["valid"] is False and doc["defects"]
    assert all({"field", "offset", "message"} <= set(d) for d in doc["defects"])


def test_check_refuses_a_non_vhd(tmp_path):
    junk = tmp_path / "junk.vhd"
    junk.write_bytes(b"\x01" * 8192)
    result = run("vhd", "check", junk)
    assert result.exit_code == 1 and "Traceback" not in result.stderr
    assert result.stderr.startswith("vhdport: error: ")


def test_check_chain(tmp_path):
    base, child = tmp_path / "base.vhd", tmp_path / "child.vhd"
    ok("vhd", "create", base, "--size", "4M")
    ok("vhd", "snapshot", child, "--parent", "base.vhd")
    ok("vhd", "check", child, "--chain")
    # a corrupted ancestor fails the chain check, not the parent's own check of the leaf file
    _corrupt_copy(base, tmp_path / "bad-base.vhd")
    os.replace(str(tmp_path / "bad-base.vhd"), str(base))
    result = run("vhd", "check", child, "--chain", "--json")
    assert result.exit_code == 1
    assert json.loads(result.stdout)["defects"]
    # replace the parent by an unrelated disk of another uuid: the link is broken
    base.unlink()
    ok("vhd", "create", base, "--size", "4M")
    result = run("vhd", "check", child, "--chain", "--json")
    assert result.exit_code == 1
    assert any("uuid" in d["message"] for d in json.loads(result.stdout)["defects"])


def test_coalesce(tmp_path):
    base, child = tmp_path / "base.vhd", tmp_path / "child.vhd"
    ok("vhd", "create", base, "--size", "6M")
    (tmp_path / "a").write_bytes(b"a" * (3 * MIB))
    ok("vhd", "write", base, "--offset", "0", "--from", tmp_path / "a")
    ok("vhd", "snapshot", child, "--parent", "base.vhd")
    (tmp_path / "b").write_bytes(b"b" * (MIB + 3))
    ok("vhd", "write", child, "--offset", "1M", "--from", tmp_path / "b")
    expected = ok("vhd", "read", child).stdout_bytes
    printed = last_line(ok("vhd", "coalesce", child).stdout)
    assert os.path.samefile(printed, str(base))
    assert ok("vhd", "read", base).stdout_bytes == expected
    assert_failed_cleanly(run("vhd", "coalesce", base))  # nothing to merge into


@pytest.mark.parametrize("fixed", [False, True])
def test_import_export_round_trip(tmp_path, fixed):
    raw = tmp_path / "disk.raw"
    data = bytearray(10 * MIB)
    data[:MIB] = patterned(MIB, 3)
    data[7 * MIB + 5:7 * MIB + 5 + 4096] = b"z" * 4096
    raw.write_bytes(bytes(data))
    vhd = tmp_path / "disk.vhd"
    args = ["vhd", "import", raw, vhd] + (["--fixed"] if fixed else [])
    printed = last_line(ok(*args).stdout)
    with VhdFile.open(str(vhd)) as disk:
        assert str(disk.uuid) == printed
        assert disk.virtual_size >= len(data)
        assert disk.type_name.lower().startswith("fix" if fixed else "dyn")
    out = tmp_path / "back.raw"
    ok("vhd", "export", vhd, out)
    back = out.read_bytes()
    assert back[:len(data)] == bytes(data) and not back[len(data):].strip(b"\0")


def test_check_on_a_non_vhd_names_the_offset_once(tmp_path):
    """Was: `cookie at offset 488: bad footer cookie at offset 488: not a VHD file`."""
    junk = tmp_path / "odd.raw"
    junk.write_bytes(b"\x01" * 1000)
    result = run("vhd", "check", junk)
    assert result.exit_code == 1
    assert result.stdout.strip() == "{}: cookie: bad footer cookie at offset 488: not a VHD file" \
        .format(junk), result.stdout
    assert result.stdout.count("offset 488") == 1


def test_import_of_an_unaligned_raw_says_it_pads(tmp_path):
    """Was: a 1000-byte raw silently became a 1024-byte disk."""
    raw = tmp_path / "odd.raw"
    raw.write_bytes(b"\x07" * 1000)
    result = ok("vhd", "import", raw, tmp_path / "odd.vhd")
    assert result.stderr.strip() == ("vhdport: warning: {}: 1000 bytes is not a multiple of 512; "
                                     "the virtual disk is 1024 bytes, the last 24 bytes zeros"
                                     .format(raw))
    with Chain.open(str(tmp_path / "odd.vhd")) as chain:
        assert chain.virtual_size == 1024
        assert bytes(chain.read(0, 1024)) == b"\x07" * 1000 + b"\x00" * 24
    aligned = tmp_path / "ok.raw"
    aligned.write_bytes(b"\x07" * 1024)
    assert ok("vhd", "import", aligned, tmp_path / "ok.vhd").stderr == ""


def test_both_uuids_of_an_sr_file_are_labelled(tmp_path):
    """Was: `vhd import ... sr/<uuid>.vhd` printed the footer uuid with nothing saying that
    `sr ls` shows another one (the file name)."""
    raw = tmp_path / "d.raw"
    raw.write_bytes(b"\x01" * 4096)
    sr = tmp_path / "sr"
    sr.mkdir()
    vdi = str(uuid.uuid4())
    out = sr / (vdi + ".vhd")
    result = ok("vhd", "import", raw, out)
    footer_uuid = result.stdout.strip()
    assert footer_uuid != vdi
    assert ("printed the disk uuid {} (in the VHD footer); the file name uuid {} is the VDI uuid "
            "that `sr ls` shows".format(footer_uuid, vdi)) in result.stderr
    assert vdi in ok("sr", "ls", sr).stdout
    table = ok("vhd", "info", out).stdout
    assert "uuid (VHD footer)\t{}".format(footer_uuid) in table
    assert "file_uuid (VDI uuid, file name)\t{}".format(vdi) in table
    doc = json.loads(ok("vhd", "info", out, "--json").stdout)
    assert doc["uuid"] == footer_uuid and doc["file_uuid"] == vdi
    # a file not named by a uuid has one uuid only: nothing to explain
    plain = ok("vhd", "create", tmp_path / "plain.vhd", "--size", "1M")
    assert plain.stderr == "" and "file_uuid" not in ok("vhd", "info", tmp_path / "plain.vhd").stdout


def test_digest_of_a_vhd_chain_equals_its_raw_contents(tmp_path):
    import hashlib

    data = bytearray(9 * MIB + 512)
    data[MIB:2 * MIB] = patterned(MIB, 5)
    raw = tmp_path / "disk.img"          # no known name or magic: raw
    raw.write_bytes(bytes(data))
    base = tmp_path / "base.vhd"
    ok("vhd", "import", raw, base)
    ok("vhd", "snapshot", tmp_path / "top.vhd", "--parent", "base.vhd")
    ok("vhd", "write", tmp_path / "top.vhd", "--offset", 8 * MIB, "--from", "-", input=b"t" * 4096)
    data[8 * MIB:8 * MIB + 4096] = b"t" * 4096
    changed = tmp_path / "changed.img"
    changed.write_bytes(bytes(data))
    # the documented construction, by hand
    outer = hashlib.blake2b(digest_size=32)
    outer.update("vhdport content digest\nalgorithm=blake2b-256\nblock_size=4194304\n"
                 "virtual_size={}\n".format(len(data)).encode())
    for start in range(0, len(data), 4 * MIB):
        outer.update(hashlib.blake2b(bytes(data[start:start + 4 * MIB]), digest_size=32).digest())
    expected = "blake2b-256/4MiB:" + outer.hexdigest()
    top = tmp_path / "top.vhd"
    assert {last_line(ok(*verb, top).stdout)
            for verb in (["digest"], ["vhd", "digest"], ["disk", "digest"])} == {expected}
    assert last_line(ok("digest", changed).stdout) == expected
    assert last_line(ok("digest", raw).stdout) != expected
    doc = json.loads(ok("digest", top, "--json").stdout)
    assert doc == {"algorithm": "blake2b-256", "block_size": 4 * MIB,
                   "virtual_size": len(data), "digest": expected}


def test_digest_of_a_broken_chain_fails_cleanly(tmp_path):
    base = tmp_path / "base.vhd"
    ok("vhd", "create", base, "--size", "4M")
    ok("vhd", "snapshot", tmp_path / "top.vhd", "--parent", "base.vhd")
    os.unlink(str(base))
    assert_failed_cleanly(run("digest", tmp_path / "top.vhd"), "not found")
