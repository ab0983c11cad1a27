"""Builders the test areas share: VHD chains made with the real engine (no mocks)."""

import os
import uuid as uuidlib

from vhdport.vhd import Chain, create_dynamic, create_snapshot, set_hidden


def new_uuid():
    return str(uuidlib.uuid4())


def write_through(path, writes):
    """Write each (offset, bytes) of ``writes`` into ``path`` through its chain."""
    with Chain.open(path, writable=True) as chain:
        for offset, data in writes:
            chain.write(offset, data)
        chain.flush()


def make_chain(directory, depth, size, names=None, fill=None, block_size=None,
               hide_parents=True):
    """A chain of ``depth`` files ``<name>.vhd`` in ``directory``; return their paths leaf first.

    The base is a dynamic disk of ``size`` bytes, each next level a snapshot of the one
    before (relative locator).  ``fill(level, path)`` writes a level's data right after
    it is made (level 0 is the base).  ``names`` (leaf first) default to fresh uuids.
    Parents are hidden, as XenServer leaves base copies, unless ``hide_parents`` is off.
    """
    names = list(reversed(names)) if names else [new_uuid() for _ in range(depth)]
    kwargs = {"block_size": block_size} if block_size else {}
    paths = []
    for level, name in enumerate(names):
        path = os.path.join(directory, name + ".vhd")
        if paths:
            create_snapshot(path, os.path.basename(paths[-1]), **kwargs)
        else:
            create_dynamic(path, size, **kwargs)
        if fill is not None:
            fill(level, path)
        paths.append(path)
    if hide_parents:
        for path in paths[:-1]:
            set_hidden(path, True)
    return list(reversed(paths))
