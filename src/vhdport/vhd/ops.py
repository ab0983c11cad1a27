"""Metadata edits vhd-util offers: set the hidden flag, relink a child to a parent."""

import os

from ..errors import ChainError, FormatError
from ..format.footer import to_vhd_time
from ..format.header import encode_name
from ..format.layout import MAX_LOCATOR_BYTES
from ..format.locator import encode_path
from .chain import file_identity
from .create import parent_link
from .disk import VhdFile


def set_hidden(path, hidden):
    """Set or clear the blktap hidden flag in both footer copies (checksums updated)."""
    with VhdFile.open(path, writable=True) as disk:
        disk.footer.hidden = 1 if hidden else 0
        disk.write_footers()
        disk.flush()


def set_parent(child_path, parent_path):
    """Point ``child_path`` at ``parent_path`` like ``vhd-util modify -p``.

    Locators are rewritten in place (each keeps its slot), then parent uuid,
    timestamp and name.  Like vhd-util it does not check ancestry: the caller
    vouches that the parent holds the data the child was made against.
    """
    target = os.path.join(os.path.dirname(os.path.abspath(child_path)), parent_path)
    if file_identity(target) == file_identity(child_path):
        raise ChainError("{}: refusing to make a disk its own parent ({})".format(
            child_path, parent_path))
    parent_uuid, mtime, name, _size = parent_link(child_path, parent_path)
    with VhdFile.open(child_path, writable=True) as disk:
        if disk.uuid == parent_uuid:
            raise ChainError("{}: parent {} carries this disk's own uuid {}; refusing to make a "
                             "disk its own parent".format(child_path, parent_path, parent_uuid))
        if not disk.is_differencing:
            raise ChainError("{}: {} disk has no parent to set".format(child_path, disk.type_name))
        header = disk.header
        writes = []
        for loc in header.locators:
            if not loc.in_use:
                continue
            payload = encode_path(loc.code, name)
            if loc.space_bytes > MAX_LOCATOR_BYTES:
                raise ChainError("{}: {} locator declares {} bytes of space, more than a parent "
                                 "path needs ({}): corrupt or hostile".format(
                                     child_path, loc.name, loc.space_bytes, MAX_LOCATOR_BYTES))
            if len(payload) > loc.space_bytes:
                raise ChainError("{}: parent name {!r} too long for the {}-byte {} locator slot"
                                 .format(child_path, name, loc.space_bytes, loc.name))
            writes.append((loc, payload))
        try:
            encode_name(name)
        except FormatError:
            raise ChainError("{}: parent name {!r} too long".format(child_path, name))
        for loc, payload in writes:
            disk.pwrite(loc.data_offset, payload + bytes(loc.space_bytes - len(payload)))
            loc.data_length = len(payload)
        header.parent_uuid = parent_uuid
        header.parent_timestamp = to_vhd_time(mtime)
        header.parent_name = name
        disk.write_header()
        disk.flush()
