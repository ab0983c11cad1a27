"""The few facts a chain's order is judged by, read from a VHD's footers and header only.

Cheaper than :class:`VhdFile.open` (no BAT), so a staged chain's order can be
checked before anything heavier runs.  Errors are FormatErrors naming ``name``.
"""

import collections
import os

from ..errors import CorruptError
from .format.footer import DISK_DIFFERENCING, FOOTER_SIZE, Footer
from .format.header import HEADER_SIZE, DynamicHeader

#: what the chain rule needs of one file
Facts = collections.namedtuple(
    "Facts", "uuid parent_uuid is_differencing type_name virtual_size hidden")


def _read_at(fobj, offset, size):
    fobj.seek(offset)
    return fobj.read(size)


def read_facts(path, name=None):
    """Facts of the VHD at ``path``; messages call it ``name`` (default: its base name)."""
    name = name or os.path.basename(path)
    with open(path, "rb") as fobj:
        size = os.fstat(fobj.fileno()).st_size
        if size < FOOTER_SIZE - 1:
            raise CorruptError("{} bytes, too small to be a VHD".format(size), path=name)
        tail = 511 if size % FOOTER_SIZE == 511 else FOOTER_SIZE
        footer = Footer.parse(_read_at(fobj, size - tail, tail), name, size - tail)
        copy = header = None
        if footer.is_dynamic:
            copy = Footer.parse(_read_at(fobj, 0, FOOTER_SIZE), name, 0)
            header = DynamicHeader.parse(
                _read_at(fobj, footer.data_offset, HEADER_SIZE), name, footer.data_offset)
    differencing = footer.disk_type == DISK_DIFFERENCING
    # old tapdisk kept the authoritative hidden flag in the copy at offset 0
    hidden = copy.hidden if copy is not None and footer.keeps_hidden_in_backup() \
        else footer.hidden
    return Facts(footer.uuid, header.parent_uuid if differencing else None, differencing,
                 footer.type_name, footer.current_size, bool(hidden))
