"""Build small SRs for the sr tests with the real vhd layer (no mocks)."""

import os
import uuid as uuidlib

from tests import helpers as shared
from tests.helpers import write_through
from vhdport.vhd import Chain, create_dynamic, create_snapshot, set_hidden

MiB = 1024 * 1024
SIZE = 4 * MiB


def new_uuid():
    return str(uuidlib.uuid4())


def make_vhd(directory, name=None, parent=None, hidden=False, writes=(), size=SIZE):
    """Create ``directory/<name>.vhd`` (a child of ``<parent>.vhd`` if given); return its name.

    ``writes`` is a list of (offset, bytes) written through the chain before hiding.
    """
    name = name or new_uuid()
    path = os.path.join(directory, name + ".vhd")
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


def make_chain(directory, depth, hidden_parents=True, names=None, tag=b"x"):
    """A chain base..leaf in ``directory``; returns names leaf first.  Each level writes
    a distinct 512-byte pattern at its own offset so reads prove which file served it."""
    def fill(level, path):
        write_through(path, [(level * 65536, (tag + bytes([65 + level])) * 256)])
    paths = shared.make_chain(directory, depth, SIZE, names=names, fill=fill,
                              hide_parents=hidden_parents)
    return [os.path.basename(p)[:-len(".vhd")] for p in paths]


def read_chain(path, offset=0, length=None):
    with Chain.open(path) as chain:
        if length is None:
            length = chain.virtual_size - offset
        return bytes(chain.read(offset, length))


def read_vdi(sr_path, u, offset=0, length=None):
    return read_chain(os.path.join(sr_path, u + ".vhd"), offset, length)


def vhd_names(directory):
    return sorted(n for n in os.listdir(directory) if n.endswith(".vhd"))


def staged_chain(directory, depth=3, tag=b"x"):
    """A chain named 0.vhd (leaf) .. N.vhd in ``directory``, as bundle extraction leaves it;
    returns (paths leaf first, the leaf's full virtual content)."""
    names = make_chain(directory, depth, tag=tag)
    data = read_chain(os.path.join(directory, names[0] + ".vhd"))
    paths = []
    for i, name in enumerate(names):
        dst = os.path.join(directory, "{}.vhd".format(i))
        os.rename(os.path.join(directory, name + ".vhd"), dst)
        paths.append(dst)
    return paths, data
