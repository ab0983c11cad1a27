"""The registry of disk formats: lookups by name, file suffix and magic."""

import collections
import os

from ..errors import FormatError
from .qcow2 import QCOW2
from .vhd import VHD

#: name -> DiskFormat, in sniffing and scanning order (SM's: VHD, then QCOW2)
FORMATS = collections.OrderedDict([(VHD.name, VHD), (QCOW2.name, QCOW2)])
#: the format new disks take when nothing says otherwise (a raw image's landing format)
DEFAULT = VHD


def register(fmt):
    """Add a DiskFormat to the registry (a second engine's one line)."""
    FORMATS[fmt.name] = fmt


def by_name(name):
    """The format called ``name`` (a record's ``disk_format``), or None."""
    return FORMATS.get(name)


def suffixes():
    """File name suffixes of every known format."""
    return tuple(fmt.suffix for fmt in FORMATS.values())


def for_file_name(file_name):
    """The format a file name's suffix says, or None."""
    for fmt in FORMATS.values():
        if file_name.endswith(fmt.suffix):
            return fmt
    return None


def stem_of(file_name):
    """``<stem>`` of ``<stem><suffix>`` for a known suffix; None for other names."""
    fmt = for_file_name(file_name)
    return file_name[:-len(fmt.suffix)] if fmt is not None else None


def sniff(head):
    """The format a stream's first bytes show, or None."""
    for fmt in FORMATS.values():
        if fmt.sniff(head):
            return fmt
    return None


def for_tool(path, default=DEFAULT):
    """The format a tool should treat an existing file as: its first bytes, else its
    name's suffix, else ``default`` (a fixed VHD shows no magic at its head).

    Content first, so a file named for one format but holding another is read as what
    it holds; an unreadable file gets a format by name, whose open then says why.
    """
    try:
        with open(path, "rb") as f:
            fmt = sniff(f.read(4096))
    except OSError:
        fmt = None
    return fmt or for_file_name(os.path.basename(path)) or default


def for_path(path):
    """The format of the file at ``path``: by suffix, else by its first bytes."""
    fmt = for_file_name(path)
    if fmt is not None:
        return fmt
    try:
        with open(path, "rb") as f:
            head = f.read(4096)
    except OSError as e:
        raise FormatError("cannot open: {}".format(e.strerror), path=path)
    fmt = sniff(head)
    if fmt is None:
        raise FormatError("not a disk of a known format ({})".format(", ".join(FORMATS)),
                          path=path)
    return fmt
