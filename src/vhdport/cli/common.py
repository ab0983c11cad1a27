"""Shared pieces of the CLI: size parsing, key=value properties, JSON and table output, errors."""

import json
import re
import sys

import click
from rich.console import Console
from rich.table import Table

_UNITS = {"": 1, "K": 1 << 10, "M": 1 << 20, "G": 1 << 30, "T": 1 << 40}
_SIZE_RE = re.compile(r"^\s*(\d+)\s*([KMGT]?)(?:I?B)?\s*$", re.IGNORECASE)


def parse_size(text):
    """Bytes from ``4096``, ``512K``, ``20M``, ``2G``, ``1T`` (binary units; ``MiB``/``MB`` too)."""
    match = _SIZE_RE.match(str(text))
    if not match:
        raise ValueError("{!r} is not a size; use bytes or a number with K, M, G or T "
                         "(binary units), e.g. 20M or 2G".format(text))
    number, unit = match.groups()
    return int(number) * _UNITS[unit.upper()]


class SizeType(click.ParamType):
    """A click parameter type for sizes and offsets (see :func:`parse_size`)."""

    name = "SIZE"

    def convert(self, value, param, ctx):
        if isinstance(value, int):
            return value
        try:
            return parse_size(value)
        except ValueError as exc:
            self.fail(str(exc), param, ctx)


SIZE = SizeType()

# Bad argument values are usage errors (exit 2, click's "Usage: ... Error: Invalid value"),
# checked here before any work starts, so no half-made file is left and every such mistake
# looks the same; exit 1 ("vhdport: error: ...") is kept for operations that failed.

class BlockSizeType(SizeType):
    """A dynamic disk's block size: a power of two from 512 B to 2 GiB."""

    def convert(self, value, param, ctx):
        size = super().convert(value, param, ctx)
        if size < 512 or size & (size - 1) or size > 1 << 31:
            self.fail("{!r} is not a power of two between 512 and 2G (e.g. 2M)".format(value),
                      param, ctx)
        return size


UUID_RE = re.compile(r"^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$")


class UuidType(click.ParamType):
    """A VDI uuid as XenServer writes it: canonical, lowercase."""

    name = "UUID"

    def convert(self, value, param, ctx):
        text = str(value)
        if not UUID_RE.match(text):
            self.fail("{!r} is not a uuid like 01234567-89ab-cdef-0123-456789abcdef".format(text),
                      param, ctx)
        return text


BLOCK_SIZE = BlockSizeType()
UUID = UuidType()


def human_size(n):
    """``64.0 MiB`` style text for tables (exact byte counts stay in --json output)."""
    if n is None:
        return "-"
    value = float(n)
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if value < 1024 or unit == "TiB":
            return "{:d} B".format(int(n)) if unit == "B" else "{:.1f} {}".format(value, unit)
        value /= 1024.0
    return str(n)


def parse_properties(pairs):
    """``("k=v", ...)`` from repeated --property options into a dict (values may contain '=')."""
    props = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep or not key.strip():
            raise click.BadParameter("{!r} is not KEY=VALUE".format(pair),
                                     param_hint="'--property'")
        props[key.strip()] = value
    return props


def property_option(func):
    return click.option("--property", "properties", multiple=True, metavar="KEY=VALUE",
                        help="Custom image property (repeatable).")(func)


def json_option(func):
    return click.option("--json", "as_json", is_flag=True,
                        help="Print machine-readable JSON on stdout.")(func)


def print_json(obj):
    click.echo(json.dumps(obj, indent=2, sort_keys=True, default=str))


def print_digest(result, as_json):
    """A disk's content digest: its string, or its fields as JSON."""
    if as_json:
        print_json(result.to_dict())
    else:
        click.echo(str(result))


def stdout_console():
    return Console()


def stderr_console():
    return Console(stderr=True)


#: columns whose values must never be broken (ids, paths): they get their full width
WHOLE_COLUMNS = ("uuid", "id", "parent", "image", "vdi", "path", "file", "value")


def _whole(name):
    return any(word in name.lower().split() or name.lower().endswith(word)
               for word in WHOLE_COLUMNS)


def _table_width(columns, cells, folded_min=8):
    """Narrowest rich table with whole uuid/id/path cells and other columns folded."""
    total = 3 * len(columns) + 1                # borders and padding
    for index, name in enumerate(columns):
        natural = max([len(name)] + [len(row[index]) for row in cells])
        total += natural if _whole(name) else min(natural, folded_min)
    return total


def print_table(title, columns, rows):
    """Rows on stdout: a rich table on a terminal; plain tab-separated lines when piped.

    Piped output is for scripts (``cut -f``, ``awk -F'\\t'``): one header line, one line per
    row, cells whole however long.  On a terminal, uuid/id/path columns are never wrapped
    mid-value; other columns give way first, and a terminal too narrow for that gets the
    plain lines too.
    """
    cells = [["-" if cell is None else str(cell) for cell in row] for row in rows]
    console = stdout_console()
    if not console.is_terminal or _table_width(columns, cells) > console.width:
        lines = ["\t".join(columns)] + ["\t".join(c.replace("\t", " ").replace("\n", " ")
                                                  for c in row) for row in cells]
        for line in lines:
            if console.is_terminal:
                console.print(line, markup=False, highlight=False, soft_wrap=True)
            else:
                click.echo(line)
        return
    table = Table(title=title, show_lines=False)
    for name in columns:
        if _whole(name):
            table.add_column(name, no_wrap=True, overflow="ignore")
        else:
            table.add_column(name, overflow="fold")
    for row in cells:
        table.add_row(*row)
    console.print(table, crop=False)


def print_fields(title, pairs):
    """A two-column (field, value) table."""
    print_table(title, ("field", "value"), pairs)


class OperationFailed(click.ClickException):
    """A failed operation: one ``vhdport: error: ...`` line on stderr, exit status 1."""

    exit_code = 1

    def show(self, file=None):
        click.echo("vhdport: error: {}".format(self.format_message()),
                   file=file or sys.stderr)


def describe_exception(exc):
    """The one-line message for an exception escaping a command."""
    from vhdport.errors import VhdportError

    if isinstance(exc, VhdportError):
        return str(exc)
    if isinstance(exc, OSError) and exc.strerror:
        where = exc.filename if exc.filename is not None else ""
        text = "{}: {}".format(where, exc.strerror) if where else exc.strerror
        return "{}: {}".format(type(exc).__name__, text)
    text = str(exc)
    return "{}: {}".format(type(exc).__name__, text) if text else type(exc).__name__
