"""Build small SRs for the sr tests with the real engines (no mocks), VHD or QCOW2.

``fmt`` names the disk format (``"vhd"``, the default, or ``"qcow2"``); VHD files are
made with the VHD engine as before, QCOW2 files through the disk face (as SM makes
them: relative backing names, the parent's cluster size, SM's hidden extension).
"""

import os
import uuid as uuidlib

from tests import helpers as shared
from tests.helpers import write_through
from vhdport import disk
from vhdport.vhd import Chain, create_dynamic, create_snapshot, set_hidden

MiB = 1024 * 1024
SIZE = 4 * MiB
#: the formats an SR holds, for tests parametrized over them
FORMATS = ("vhd", "qcow2")


def new_uuid():
    return str(uuidlib.uuid4())


def suffix(fmt):
    return disk.by_name(fmt).suffix


def _write(path, writes):
    with disk.for_file_name(path).open_chain(path, writable=True) as chain:
        for offset, data in writes:
            chain.write(offset, data)
        chain.flush()


def make_vhd(directory, name=None, parent=None, hidden=False, writes=(), size=SIZE, fmt="vhd"):
    """Create ``directory/<name><suffix>`` (a child of ``<parent><suffix>`` if given); return
    its name.  ``writes`` is a list of (offset, bytes) written through the chain before hiding.
    """
    name = name or new_uuid()
    face = disk.by_name(fmt)
    path = os.path.join(directory, face.file_name(name))
    if fmt != "vhd":
        if parent is None:
            face.create(path, size)
        else:
            face.snapshot(path, face.file_name(parent))
        if writes:
            _write(path, writes)
        if hidden:
            face.set_hidden(path, True)
        return name
    if parent is None:
        create_dynamic(path, size)
    else:
        create_snapshot(path, parent + ".vhd")
    if writes:
        with Chain.open(path, writable=True) as chain:
            for offset, data in writes:
                chain.write(offset, data)
            chain.flush()
    if hidden:
        set_hidden(path, True)
    return name


def _fill(tag, level):
    return [(level * 65536, (tag + bytes([65 + level])) * 256)]


def make_chain(directory, depth, hidden_parents=True, names=None, tag=b"x", fmt="vhd"):
    """A chain base..leaf in ``directory``; returns names leaf first.  Each level writes
    a distinct 512-byte pattern at its own offset so reads prove which file served it."""
    if fmt != "vhd":
        names = list(reversed(names)) if names else [new_uuid() for _ in range(depth)]
        for level, name in enumerate(names):
            make_vhd(directory, name, parent=names[level - 1] if level else None,
                     writes=_fill(tag, level), fmt=fmt)
        if hidden_parents:
            for name in names[:-1]:
                disk.by_name(fmt).set_hidden(os.path.join(directory, name + suffix(fmt)), True)
        return list(reversed(names))

    def fill(level, path):
        write_through(path, _fill(tag, level))
    paths = shared.make_chain(directory, depth, SIZE, names=names, fill=fill,
                              hide_parents=hidden_parents)
    return [os.path.basename(p)[:-len(".vhd")] for p in paths]


def read_chain(path, offset=0, length=None):
    with disk.for_file_name(path).open_chain(path) as chain:
        if length is None:
            length = chain.virtual_size - offset
        return bytes(chain.read(offset, length))


def vdi_file(sr_path, u):
    """The file of VDI ``u`` in any format (the first that exists, SM's order)."""
    for fmt in FORMATS:
        path = os.path.join(sr_path, u + suffix(fmt))
        if os.path.lexists(path):
            return path
    return os.path.join(sr_path, u + ".vhd")


def read_vdi(sr_path, u, offset=0, length=None):
    return read_chain(vdi_file(sr_path, u), offset, length)


def vhd_names(directory):
    """Sorted names of the disk files (any format) directly in ``directory``."""
    return sorted(n for n in os.listdir(directory) if n.endswith(disk.suffixes()))


def staged_chain(directory, depth=3, tag=b"x", fmt="vhd"):
    """A chain named 0<suffix> (leaf) .. N<suffix> in ``directory``, as bundle extraction
    leaves it; returns (paths leaf first, the leaf's full virtual content).

    A QCOW2 has no uuid inside, so its members name each other by their bundle names:
    member i's backing file is ``<i+1>.qcow2``.
    """
    names = make_chain(directory, depth, tag=tag, fmt=fmt)
    data = read_chain(os.path.join(directory, names[0] + suffix(fmt)))
    paths = []
    for i, name in enumerate(names):
        dst = os.path.join(directory, "{}{}".format(i, suffix(fmt)))
        os.rename(os.path.join(directory, name + suffix(fmt)), dst)
        paths.append(dst)
    if fmt != "vhd":
        face = disk.by_name(fmt)
        for child, parent in zip(paths, paths[1:]):
            face.relink(child, os.path.basename(parent))
    return paths, data
