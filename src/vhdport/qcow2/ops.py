"""Metadata edits SM makes on QCOW2 VDIs: hidden flag, set parent, resize, commit.

The hidden flag is SM's "vate" header extension (type 0x76617465, 8 data bytes, the
first one the flag).  When it is missing SM writes it where the end-of-extensions
marker was, after moving the backing file name 16 bytes later; :func:`set_hidden` makes
exactly those bytes.  Reading the flag (``Qcow2File.hidden``) never writes.
"""

import struct

from ..errors import ChainError, Qcow2CorruptError
from .chain import Qcow2Chain, local_backing
from .format.header import EXT_BACKING_FORMAT, EXT_HIDDEN, Extension
from .format import tables as t
from .image import Qcow2File

HIDDEN_LENGTH = 8
COMMIT_CHUNK = 4 * 1024 * 1024


def hidden_extension_bytes(flag):
    """The 16 bytes of SM's extension: type, length 8, flag byte, 7 zero bytes."""
    return struct.pack(">II", EXT_HIDDEN, HIDDEN_LENGTH) + bytes([flag]) + bytes(7)


def _extension_data_offset(header, kind):
    at = header.header_length
    for ext in header.extensions:
        if ext.kind == kind:
            return at + 8
        at += 8 + len(ext.data) + len(ext.padding)
    return None


def set_hidden(path, hidden):
    """Set (1) or clear (0) SM's hidden flag, inserting the extension as SM does if missing.

    Returns whether anything was written: a flag already as asked is left alone.
    """
    flag = 1 if hidden else 0
    with Qcow2File.open(path) as image:
        if image.header.extension(EXT_HIDDEN) is not None and image.hidden == bool(hidden):
            return False
    with Qcow2File.open(path, writable=True) as image:
        h = image.header
        at = _extension_data_offset(h, EXT_HIDDEN)
        if at is not None and not h.extension(EXT_HIDDEN).data:
            raise Qcow2CorruptError("hidden flag extension has no data byte to set", path=path,
                                    offset=at - 8, field="extensions")
        if at is not None:
            image.pwrite(at, bytes([flag]))
            image.flush()
            return True
        end = h.extensions_end
        head = bytearray(image._read(0, image.cluster_size))
        region = hidden_extension_bytes(flag) + bytes(8)
        if h.backing_file_offset:
            name = bytes(head[h.backing_file_offset:h.backing_file_offset + h.backing_file_size])
            new_offset = h.backing_file_offset + 16
            if new_offset + len(name) > image.cluster_size:
                raise Qcow2CorruptError("no room in the first cluster to insert the hidden flag "
                                        "before the backing file name", path=path,
                                        offset=h.backing_file_offset, field="backing_file_offset")
            head[new_offset:new_offset + len(name)] = name
            head[8:16] = struct.pack(">Q", new_offset)
            stop = new_offset + len(name)
        else:
            if end + len(region) > image.cluster_size:
                raise Qcow2CorruptError("no room in the first cluster for the hidden flag",
                                        path=path, offset=end, field="extensions")
            stop = end + len(region)
        head[end:end + len(region)] = region
        image.pwrite(0, bytes(head[:stop]))
        image.flush()
        return True


def get_hidden(path):
    with Qcow2File.open(path) as image:
        return image.hidden


def set_parent(child_path, parent_name, backing=local_backing):
    """``qemu-img rebase -u -F qcow2 -b parent_name``: only the link changes, no data.

    ``parent_name`` is stored as given (SM passes an absolute path); it must name a
    QCOW2 image, found where ``backing`` resolves it (by default relative to the child's
    directory when it is relative).
    """
    parent_path = backing(child_path, parent_name, "qcow2")
    Qcow2File.open(parent_path).close()
    with Qcow2File.open(child_path, writable=True) as image:
        h = image.header
        h.backing_name = parent_name
        ext = h.extension(EXT_BACKING_FORMAT)
        if ext is None:
            h.extensions.insert(0, Extension(EXT_BACKING_FORMAT, b"qcow2"))
        elif ext.data != b"qcow2":
            h.extensions[h.extensions.index(ext)] = Extension(EXT_BACKING_FORMAT, b"qcow2")
        image.write_header()
        image.flush()


def resize(path, new_size):
    """Grow the virtual size (``qemu-img resize`` upwards)."""
    with Qcow2File.open(path, writable=True) as image:
        image.grow(new_size)


def commit(child_path, backing=local_backing):
    """Copy everything ``child_path`` holds into its backing file (``qemu-img commit -d``).

    Crash-safe: the parent is only written through fresh clusters whose data is synced
    before their L2 entry flips, so each parent cluster reads as before or as after.
    The child is left as it is.
    """
    with Qcow2File.open(child_path) as child:
        if not child.backing_name:
            raise ChainError("{}: has no backing file to commit into".format(child_path))
        parent_path = backing(child_path, child.backing_name, child.backing_format)
        with Qcow2Chain.open(parent_path, writable=True, backing=backing) as parent:
            parent.leaf.always_new = True
            if parent.virtual_size < child.virtual_size:
                parent.leaf.grow(child.virtual_size)
            for guest, n, kind, host in child.map(0, child.virtual_size):
                if kind == t.UNALLOCATED:
                    continue
                if kind == t.ZERO_KIND:
                    parent.write_zeroes(guest, n)
                    continue
                end = guest + n
                while guest < end:
                    take = min(COMMIT_CHUNK, end - guest)
                    parent.write(guest, child.read(guest, take))
                    guest += take
            parent.flush()
