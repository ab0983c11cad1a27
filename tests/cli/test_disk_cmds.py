"""`vhdport vhd ...` / `vhdport disk ...` on QCOW2 files: format by magic, --format, extension."""

import json
import os

from tests.cli.helpers import assert_failed_cleanly, last_line, run
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


def test_chain_verbs_on_qcow2(tmp_path):
    require_qemu()
    os.chdir(str(tmp_path))
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


def test_digest_of_a_qcow2_chain(tmp_path):
    require_qemu()
    os.chdir(str(tmp_path))
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
