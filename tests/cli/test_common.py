"""Size parsing, error formatting, exit codes and --debug of the vhdport command."""

import pytest

from tests.cli.helpers import assert_failed_cleanly, run, run_script
from vhdport.cli.common import describe_exception, parse_properties, parse_size
from vhdport.errors import ChainError


@pytest.mark.parametrize("text,expected", [
    ("0", 0), ("4096", 4096), ("512K", 512 << 10), ("512k", 512 << 10), ("20M", 20 << 20),
    ("2G", 2 << 30), ("1T", 1 << 40), ("20MiB", 20 << 20), ("2GB", 2 << 30), (" 3 M ", 3 << 20),
    (1234, 1234),
])
def test_parse_size_accepts(text, expected):
    assert parse_size(text) == expected


@pytest.mark.parametrize("text", ["", "M", "-1", "1.5G", "2Q", "20 MM", "0x10", "1e6"])
def test_parse_size_refuses(text):
    with pytest.raises(ValueError, match="not a size"):
        parse_size(text)


def test_parse_properties():
    assert parse_properties(["a=1", "b=x=y", "c="]) == {"a": "1", "b": "x=y", "c": ""}
    import click
    with pytest.raises(click.BadParameter):
        parse_properties(["novalue"])


def test_describe_exception():
    assert describe_exception(ChainError("x: parent missing")) == "x: parent missing"
    assert describe_exception(RuntimeError("boom")) == "RuntimeError: boom"
    assert describe_exception(KeyError()) == "KeyError"
    err = FileNotFoundError(2, "No such file or directory", "/nope")
    assert describe_exception(err) == "FileNotFoundError: /nope: No such file or directory"


def test_bad_size_is_a_usage_error(tmp_path):
    result = run("vhd", "create", tmp_path / "a.vhd", "--size", "2Q")
    assert result.exit_code == 2
    assert "not a size" in result.stderr
    assert not (tmp_path / "a.vhd").exists()


def test_unknown_command_and_missing_option_exit_2(tmp_path):
    assert run("vhd", "frobnicate").exit_code == 2
    assert run("vhd", "create", tmp_path / "a.vhd").exit_code == 2  # --size missing
    assert run("vhd", "set-hidden", tmp_path / "a.vhd", "2").exit_code == 2


def test_library_error_is_one_line_exit_1(tmp_path):
    junk = tmp_path / "junk.vhd"
    junk.write_bytes(b"not a vhd at all" * 100)
    line = assert_failed_cleanly(run("vhd", "read", junk, "--length", "10"), str(junk))
    assert "VHD" in line or "vhd" in line


def test_other_exception_shows_class_name(tmp_path, monkeypatch):
    import vhdport.vhd

    def boom(*args, **kwargs):
        raise RuntimeError("simulated failure")

    monkeypatch.setattr(vhdport.vhd, "create_dynamic", boom)
    assert_failed_cleanly(run("vhd", "create", tmp_path / "a.vhd", "--size", "1M"),
                          "RuntimeError: simulated failure")


def test_debug_lets_the_exception_through(tmp_path, monkeypatch):
    junk = tmp_path / "junk.vhd"
    junk.write_bytes(b"\0" * 4096)
    result = run("--debug", "vhd", "read", junk)
    assert result.exit_code == 1
    from vhdport.errors import VhdportError
    assert isinstance(result.exception, VhdportError)


def test_console_script_no_traceback_unless_debug(tmp_path):
    junk = tmp_path / "junk.vhd"
    junk.write_bytes(b"\0" * 4096)
    plain = run_script("vhd", "read", junk)
    assert plain.returncode == 1
    err = plain.stderr.decode()
    assert err.startswith("vhdport: error: ") and "Traceback" not in err
    assert len(err.strip().splitlines()) == 1
    debug = run_script("--debug", "vhd", "read", junk)
    assert debug.returncode == 1
    assert "Traceback" in debug.stderr.decode()


def test_console_script_usage_error_exit_2(tmp_path):
    proc = run_script("vhd", "create", tmp_path / "x.vhd", "--size", "lots")
    assert proc.returncode == 2
    assert "Traceback" not in proc.stderr.decode()


def test_version_and_help(monkeypatch):
    version = run("--version")
    assert version.exit_code == 0
    assert "codec: " in version.stdout and "compression threads: " in version.stdout
    monkeypatch.setenv("VHDPORT_CODEC", "zlib")
    assert "codec: zlib" in run("--version").stdout
    result = run("--help")
    assert result.exit_code == 0
    for name in ("vhd", "sr", "image", "download", "upload", "plugin", "demo"):
        assert name in result.stdout


def test_reader_closing_the_pipe_is_not_a_traceback(tmp_path):
    import subprocess

    from tests.cli.helpers import SCRIPT
    disk = tmp_path / "a.vhd"
    assert run("vhd", "create", disk, "--size", "64M").exit_code == 0
    proc = subprocess.Popen([SCRIPT, "vhd", "read", str(disk)], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE)
    proc.stdout.read(4096)
    proc.stdout.close()
    err = proc.stderr.read().decode()
    proc.wait(timeout=60)
    assert err.strip() == "", err  # quiet, like cat or head: no error line, no traceback


SR_LS_COLUMNS = ("uuid", "parent", "hidden", "type", "virtual", "physical", "leaf/base")


def _sr_ls_rows():
    import uuid as uuidlib
    return [(str(uuidlib.uuid4()), str(uuidlib.uuid4()), "no", "differencing", "64.0 MiB",
             "12.3 MiB", "leaf") for _ in range(3)]


def test_piped_tables_are_plain_lines_with_whole_cells(capsys):
    """Was: a rich table forced to 220 columns when stdout is not a terminal."""
    from vhdport.cli.common import print_table

    rows = _sr_ls_rows()
    print_table("sr", SR_LS_COLUMNS, rows)
    lines = capsys.readouterr().out.splitlines()
    assert lines[0] == "\t".join(SR_LS_COLUMNS)
    assert [tuple(line.split("\t")) for line in lines[1:]] == rows
    assert max(len(line) for line in lines) < 220


@pytest.mark.parametrize("width", [80, 140])
def test_terminal_tables_never_break_a_uuid(monkeypatch, width):
    """Was: uuids wrapped mid-string on an 80-column terminal."""
    import io

    from rich.console import Console

    from vhdport.cli import common

    out = io.StringIO()
    monkeypatch.setattr(common, "stdout_console", lambda: Console(
        file=out, force_terminal=True, width=width, color_system=None))
    rows = _sr_ls_rows()
    common.print_table("sr", SR_LS_COLUMNS, rows)
    text = out.getvalue()
    for row in rows:
        for value in row[:2]:
            assert value in text, "uuid {} broken across lines:\n{}".format(value, text)
    if width == 140:        # wide enough: a real table
        assert "┃ uuid" in text
