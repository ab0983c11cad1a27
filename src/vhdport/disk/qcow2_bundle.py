"""A QCOW2 chain member as it travels in a bundle: its backing name says the next member's name.

A QCOW2 has no uuid inside: a child knows its parent only by the backing file name
(``<uuid>.qcow2``, or SM's absolute ``/var/run/sr-mount/<sr>/<uuid>.qcow2``), which names
a file of the source SR that a bundle does not hold.  So the upload rewrites that name, in
the stream only (the SR file is a hard link and stays as it is), to the parent's member
name (``1.qcow2``): the chain rule can then check the order of the members by name on the
way in, and an unpacked bundle is a chain qemu-img opens as it is.  The size of the file
does not change: the name is written where the old one was, the rest zeroed.
"""

import os
import struct

from ..errors import Qcow2FormatError
from ..qcow2.format.header import Header

#: the header's backing_file_size field (u32, big endian)
_BACKING_SIZE_AT = 16
_MAX_HEAD = 1 << 21


def member_head(fileobj, path, parent_member_name):
    """The bytes that replace the start of the open ``fileobj`` in a bundle, or None to send
    it as it is.  Read with pread: the file's position is left alone.

    None for a base (no backing name) and for a name that is already ``parent_member_name``.
    Raises Qcow2FormatError (naming ``path``) when the new name does not fit.
    """
    fd = fileobj.fileno()
    first = os.pread(fd, 104, 0)
    bits = int.from_bytes(first[20:24], "big") if len(first) >= 24 else 9
    head = bytearray(os.pread(fd, min(1 << max(9, min(bits, 21)), _MAX_HEAD), 0))
    header = Header.parse(bytes(head), path)
    if not header.backing_file_offset:
        return None
    new = parent_member_name.encode("utf-8")
    old_at, old_size = header.backing_file_offset, header.backing_file_size
    if head[old_at:old_at + old_size] == new:
        return None
    end = max(old_at + old_size, old_at + len(new))
    if end > len(head) or any(head[old_at + old_size:end]):
        raise Qcow2FormatError("no room to name the parent {!r} in the header where the backing "
                               "name {!r} was".format(parent_member_name, header.backing_name),
                               path=path, offset=old_at, field="backing_file_offset")
    head[old_at:end] = new + bytes(end - old_at - len(new))
    head[_BACKING_SIZE_AT:_BACKING_SIZE_AT + 4] = struct.pack(">I", len(new))
    return bytes(head[:end])
