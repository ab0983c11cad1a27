"""`vhdport vhd ...` / `vhdport disk ...` on QCOW2 files: format by magic, --format, extension."""

import json
import os

from tests.cli.helpers import assert_failed_cleanly, assert_usage_error, last_line, run
from tests.qcow2.qemu import check, require_qemu
from vhdport.qcow2 import Qcow2Chain, Qcow2File, local_backing
from vhdport.vhd import VhdFile

MIB = 1 << 20


def ok(*args, **kwargs):
    result = run(*args, **kwargs)
    assert result.exit_code == 0, (result.exit_code, result.stdout, result.stderr)
    return result


def test_create_picks_the_format(tmp_path):
    q = tmp_path / "a.qcow2"
    ok("vhd", "create", q, "--size", "20M")
    with Qcow2File.open(str(q)) as image:
        assert image.virtual_size == 20 * MIB and image.cluster_size == 65536
    other = tmp_path / "b.img"
    ok("disk", "create", other, "--size", "4M", "--format", "qcow2", "--block-size", "4K")
    with Qcow2File.open(str(other)) as image:
        assert image.cluster_size == 4096
    v = tmp_path / "c.vhd"
    ok("disk", "create", v, "--size", "4M")
    VhdFile.open(str(v)).close()


def test_sizes_past_the_vhd_limit(tmp_path):
    q = tmp_path / "big.qcow2"
    ok("disk", "create", q, "--size", "16380G")
    with Qcow2File.open(str(q)) as image:
        assert image.virtual_size == 16380 << 30
    result = run("disk", "create", tmp_path / "big.qcow2x", "--size", "17T", "--format",
                 "qcow2")
    assert result.exit_code == 2 and "QCOW2 limit" in result.stderr
    result = run("disk", "create", tmp_path / "x.qcow2", "--size", "1000")
    assert result.exit_code == 2 and "multiple of 512" in result.stderr


def test_chain_verbs_on_qcow2(tmp_path, monkeypatch):
    require_qemu()
    monkeypatch.chdir(str(tmp_path))
    ok("vhd", "create", "base.qcow2", "--size", "8M")
    ok("vhd", "snapshot", "top.qcow2", "--parent", "base.qcow2")
    data = b"hello qcow2 " * 1000
    with open("in.bin", "wb") as f:
        f.write(data)
    assert last_line(ok("vhd", "write", "top.qcow2", "--offset", "1000",
                        "--from", "in.bin").stdout) == str(len(data))
    ok("vhd", "read", "top.qcow2", "--offset", "1000", "--length", str(len(data)),
       "--out", "out.bin")
    with open("out.bin", "rb") as f:
        assert f.read() == data
    ok("vhd", "set-hidden", "base.qcow2", "1")
    doc = json.loads(ok("vhd", "info", "top.qcow2", "--json").stdout)
    assert (doc["format"], doc["depth"], doc["backing_file"]) == ("qcow2", 2, "base.qcow2")
    assert json.loads(ok("vhd", "info", "base.qcow2", "--json").stdout)["hidden"] is True
    assert "valid (whole chain)" in ok("vhd", "check", "top.qcow2", "--chain").stdout
    ok("vhd", "export", "top.qcow2", "top.raw")
    with open("top.raw", "rb") as f:
        assert f.read()[1000:1000 + len(data)] == data
    ok("vhd", "import", "top.raw", "again.qcow2")
    check("again.qcow2")
    assert last_line(ok("vhd", "coalesce", "top.qcow2").stdout) == str(tmp_path / "base.qcow2")
    with Qcow2Chain.open("base.qcow2", backing=local_backing) as chain:
        assert bytes(chain.read(1000, len(data))) == data
    ok("vhd", "set-parent", "top.qcow2", str(tmp_path / "again.qcow2"))
    with Qcow2File.open("top.qcow2") as image:
        assert image.backing_name == str(tmp_path / "again.qcow2")


def test_check_reports_defects(tmp_path):
    q = str(tmp_path / "a.qcow2")
    ok("vhd", "create", q, "--size", "1M")
    with open(q, "r+b") as f:
        f.seek(32)
        f.write(b"\x00\x00\x00\x01")
    result = run("vhd", "check", q)
    assert_failed_cleanly(result, "1 defect found")
    doc = json.loads(run("vhd", "check", q, "--json").stdout)
    assert doc["valid"] is False and doc["defects"][0]["field"] == "crypt_method"


def test_digest_of_a_qcow2_chain(tmp_path, monkeypatch):
    require_qemu()
    monkeypatch.chdir(str(tmp_path))
    ok("vhd", "create", "base.qcow2", "--size", "12M")
    ok("vhd", "write", "base.qcow2", "--offset", "4096", "--from", "-", input=b"b" * 65536)
    ok("disk", "snapshot", "top.qcow2", "--parent", "base.qcow2")
    ok("disk", "write", "top.qcow2", "--offset", str(9 * MIB), "--from", "-", input=b"t" * 512)
    ok("vhd", "export", "top.qcow2", "top.raw")
    expected = last_line(ok("digest", "top.raw").stdout)
    assert last_line(ok("digest", "top.qcow2").stdout) == expected
    assert last_line(ok("disk", "digest", "top.qcow2").stdout) == expected
    assert last_line(ok("disk", "digest", "base.qcow2").stdout) != expected
    doc = json.loads(ok("vhd", "digest", "top.qcow2", "--json").stdout)
    assert (doc["digest"], doc["virtual_size"]) == (expected, 12 * MIB)


def test_the_users_own_backing_files_are_followed_as_qemu_img_does(tmp_path):
    """A parent in another directory (``../images/base.qcow2``) is the user's choice here,
    though the SR layers never follow one."""
    require_qemu()
    (tmp_path / "images").mkdir()
    (tmp_path / "vm").mkdir()
    base, top = tmp_path / "images" / "base.qcow2", tmp_path / "vm" / "top.qcow2"
    ok("disk", "create", base, "--size", "4M")
    ok("disk", "write", base, "--offset", "0", "--from", "-", input=b"b" * 4096)
    assert last_line(ok("disk", "snapshot", top, "--parent", "../images/base.qcow2").stdout) \
        == str(top)
    check(str(top))
    ok("disk", "write", top, "--offset", "512", "--from", "-", input=b"t" * 512)
    data = ok("disk", "read", top, "--length", "4096").stdout_bytes
    assert data == b"b" * 512 + b"t" * 512 + b"b" * 3072
    doc = json.loads(ok("disk", "info", top, "--json").stdout)
    assert (doc["depth"], doc["backing_file"], doc["parent"]) == (2, "../images/base.qcow2",
                                                                  str(base))
    assert "valid (whole chain)" in ok("disk", "check", top, "--chain").stdout
    assert ok("disk", "check", top).stdout.strip().endswith("valid")
    ok("disk", "export", top, tmp_path / "top.raw")
    assert (tmp_path / "top.raw").read_bytes()[:4096] == data
    assert last_line(ok("digest", top).stdout) == last_line(ok("digest", tmp_path / "top.raw")
                                                            .stdout)
    parent = last_line(ok("disk", "coalesce", top).stdout)
    assert os.path.normpath(parent) == str(base)
    with Qcow2File.open(str(base)) as image:
        assert image.read(0, 1024) == b"b" * 512 + b"t" * 512


def test_the_format_of_a_new_disk(tmp_path):
    require_qemu()
    ok("disk", "create", tmp_path / "p.qcow2", "--size", "1M", "--block-size", "4K")
    child = tmp_path / "child.img"              # no suffix, no --format: its parent's format
    assert last_line(ok("disk", "snapshot", child, "--parent", "p.qcow2").stdout) == str(child)
    with Qcow2File.open(str(child)) as image:
        assert image.backing_name == "p.qcow2" and image.cluster_size == 4096
    fixed = tmp_path / "fixed.img"              # a preallocated QCOW2 keeps its cluster size
    ok("disk", "create", fixed, "--size", "1M", "--fixed", "--block-size", "128K",
       "--format", "qcow2")
    with Qcow2File.open(str(fixed)) as image:
        assert image.cluster_size == 128 * 1024
    check(str(fixed))
    assert_usage_error(run("disk", "create", tmp_path / "f.img", "--size", "1M", "--fixed",
                           "--block-size", "1M", "--format", "vhd"), "--block-size", "--fixed")
    assert_usage_error(run("disk", "create", tmp_path / "big.img", "--size", "3000G",
                           "--format", "vhd"), "'--size'", "XenServer's VHD limit of 2040 GiB")
    assert not (tmp_path / "f.img").exists() and not (tmp_path / "big.img").exists()
    raw = tmp_path / "in.raw"
    raw.write_bytes(b"r" * 4096)
    out = tmp_path / "out.img"
    assert last_line(ok("disk", "import", raw, out, "--format", "qcow2").stdout) == str(out)
    check(str(out))
    vhd_uuid = last_line(ok("disk", "import", raw, tmp_path / "out.vhd").stdout)
    with VhdFile.open(str(tmp_path / "out.vhd")) as disk:
        assert str(disk.uuid) == vhd_uuid
