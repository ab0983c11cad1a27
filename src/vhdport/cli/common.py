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


def stdout_console():
    """Rich console for stdout; when piped, wide enough that uuids and paths stay whole."""
    console = Console()
    if not console.is_terminal:
        console = Console(width=max(console.width, 220))
    return console


def stderr_console():
    return Console(stderr=True)


def print_table(title, columns, rows):
    """A rich table on stdout; ``columns`` are header names, ``rows`` sequences of cells."""
    table = Table(title=title, show_lines=False)
    for name in columns:
        table.add_column(name, overflow="fold")
    for row in rows:
        table.add_row(*["-" if cell is None else str(cell) for cell in row])
    stdout_console().print(table)


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
