"""How the ``vhdport vhd`` / ``vhdport disk`` verbs pick a disk format (through the disk face).

A file that is read is taken for what its first bytes show, else what its name's suffix
says, else the default format; a file that is created gets ``--format``, else its name's
suffix, else the default; a snapshot given neither takes its parent's format.

These verbs work on the user's own files, so a child's parent is followed as qemu-img
follows it (relative to the child's directory, absolute as given): ``BACKING``, the
face's ``LOCAL_FILES`` trust decision, made here for the CLI and nowhere below it.
"""

import os

import click

from vhdport import disk
from vhdport.cli.common import SizeType

#: where the disk verbs follow parents: the user's own files, as qemu-img does
BACKING = disk.LOCAL_FILES
GIB = 1 << 30


def format_option(func):
    """``--format`` of the verbs that create a file."""
    return click.option(
        "--format", "disk_format", type=click.Choice(list(disk.FORMATS)), default=None,
        help="Disk format: {} (default: from the file name's extension, else {}).".format(
            " or ".join(disk.FORMATS), disk.DEFAULT.name))(func)


def _by_name(path):
    return disk.for_file_name(os.path.basename(str(path)).lower())


def of_file(path):
    """The format of an existing file: its first bytes, else its suffix, else the default."""
    return disk.for_tool(str(path))


def for_new_file(path, format_name=None):
    """The format of a file to create: ``--format``, else its suffix, else the default."""
    if format_name:
        return disk.by_name(format_name)
    return _by_name(path) or disk.DEFAULT


def for_snapshot(child, parent, format_name=None):
    """A snapshot's format: ``--format``, else the child's suffix, else its parent's format."""
    if format_name:
        return disk.by_name(format_name)
    fmt = _by_name(child)
    if fmt is not None:
        return fmt
    return of_file(os.path.join(os.path.dirname(os.path.abspath(str(child))), parent))


def _limit_text(size):
    return "{} GiB".format(size // GIB) if size % GIB == 0 else "{} bytes".format(size)


class DiskSizeType(SizeType):
    """A virtual size before the format is known: a positive multiple of 512 (the chosen
    format's limit is applied by :func:`check_size`)."""

    def convert(self, value, param, ctx):
        size = super().convert(value, param, ctx)
        if size <= 0 or size % 512:
            self.fail("{!r} is not a usable virtual size: give a positive multiple of 512 "
                      "bytes, e.g. 20M or 2G".format(value), param, ctx)
        return size


DISK_SIZE = DiskSizeType()


def check_size(fmt, size):
    """A usage error (exit 2, before any file is made) when ``size`` is over ``fmt``'s limit."""
    if size > fmt.max_virtual_size:
        raise click.BadParameter(
            "{} bytes exceeds XenServer's {} limit of {}".format(
                size, fmt.name.upper(), _limit_text(fmt.max_virtual_size)),
            ctx=click.get_current_context(), param_hint="'--size'")


def check_block_size(fmt, fixed, block_size):
    """A usage error when ``--block-size`` is given for a fixed disk that has no blocks."""
    if fixed and block_size is not None and not fmt.fixed_has_block_size:
        raise click.UsageError("--block-size applies to dynamic {} disks, not --fixed".format(
            fmt.name.upper()))


def new_disk_name(fmt, path, uuid):
    """What names a disk just made: its uuid, or its path when the uuid is the file name."""
    return str(path) if fmt.uuid_is_file_name else str(uuid)
