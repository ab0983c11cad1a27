"""Where a QCOW2 VDI's backing file may be: only beside it, in its own SR directory.

A QCOW2 has no uuid inside: SM names a VDI ``<uuid>.qcow2`` and takes a parent's
uuid from the basename of the backing file name.  SM writes that name in two forms:
relative ``<uuid>.qcow2`` (snapshot) and absolute ``/var/run/sr-mount/<sr>/<uuid>.qcow2``
(GC relink).  Both are resolved to ``<uuid>.qcow2`` in the child's own directory.
Any other name (``../x.qcow2``, ``/etc/passwd``, another SR's path, a ``.vhd``) is a
defect: it is refused with a typed error and the file it names is never opened --
opening it would read a host file a hostile image chose.
"""

import os
import re

from ..errors import Qcow2UnsupportedError

SUFFIX = ".qcow2"
#: the absolute form SM's ``qemu-img rebase`` writes
SR_MOUNT = "/var/run/sr-mount/"
_SR_MOUNT_NAME = re.compile(r"^/var/run/sr-mount/([^/]+)/([^/]+)$")
_MOUNT_ROOTS = ("/var/run/sr-mount/", "/run/sr-mount/")


def _refuse(child_path, name, why):
    return Qcow2UnsupportedError(
        "backing file {!r} {}: only <uuid>{} in the same SR directory (relative, or "
        "{}<sr>/<uuid>{}) is followed; refused, nothing opened".format(
            name, why, SUFFIX, SR_MOUNT, SUFFIX),
        path=child_path, offset=8, field="backing_file_name")


def _child_sr(child_dir):
    """The ``<sr>`` of a child that lives directly in ``/var/run/sr-mount/<sr>``, else None."""
    for root in _MOUNT_ROOTS:
        if child_dir.startswith(root):
            rest = child_dir[len(root):]
            return rest if rest and "/" not in rest else None
    return None


def backing_file_name(child_path, name):
    """The file name (``<stem>.qcow2``) that backing name ``name`` allows; raise if none."""
    if not name:
        raise _refuse(child_path, name, "is empty")
    if "\\" in name or "\x00" in name:
        raise _refuse(child_path, name, "holds a backslash or NUL")
    if os.path.isabs(name):
        match = _SR_MOUNT_NAME.match(name)
        if match is None:
            raise _refuse(child_path, name, "is an absolute path outside {}<sr>/".format(SR_MOUNT))
        sr, base = match.groups()
        child_dir = os.path.dirname(os.path.abspath(child_path))
        own = _child_sr(child_dir)
        if own is not None and own != sr:
            raise _refuse(child_path, name, "names another SR ({}, this one is {})".format(sr, own))
    else:
        base = name
        if "/" in base:
            raise _refuse(child_path, name, "names a file in another directory")
    stem = base[:-len(SUFFIX)] if base.endswith(SUFFIX) else None
    if not stem or stem.startswith("."):
        raise _refuse(child_path, name, "is not a <uuid>{} name".format(SUFFIX))
    return base


def stem(name):
    """``<uuid>`` of a backing name already allowed by :func:`backing_file_name`."""
    return os.path.basename(name)[:-len(SUFFIX)]


def in_directory(child_path, name, backing_format=None):
    """A ``Qcow2Chain`` backing resolver: the allowed file beside ``child_path``, or raise.

    A symlink is not followed (a link could lead anywhere); a missing file resolves to
    its path and the chain reports it missing.
    """
    if backing_format not in (None, "qcow2"):
        raise _refuse(child_path, name, "has backing format {!r} (mixed chains do not "
                                        "exist)".format(backing_format))
    base = backing_file_name(child_path, name)
    path = os.path.join(os.path.dirname(os.path.abspath(child_path)), base)
    if os.path.islink(path):
        raise _refuse(child_path, name, "is a symbolic link")
    return path
