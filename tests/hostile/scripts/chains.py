"""Seeded VHD chains with random data, and their content digest (shared by R3-R5)."""

import hashlib
import os
import random
import uuid as uuidlib

from vhdport.vhd import Chain, create_dynamic, create_snapshot, set_hidden

MIB = 1 << 20
SECTOR = 512


def random_chain(directory, depth, seed, size=8 * MIB, block_size=None, names=None,
                 hide=True, runs=3, max_run_sectors=600):
    """A chain in ``directory`` named ``<uuid>.vhd`` (or ``names``), random data at each
    level; parents hidden like XenServer base copies.  Returns paths leaf first."""
    rng = random.Random(seed)
    names = list(names) if names else [str(uuidlib.uuid4()) for _ in range(depth)]
    kwargs = {"block_size": block_size} if block_size else {}
    paths = []
    for level in range(depth):
        path = os.path.join(directory, names[level] + ".vhd")
        if level == 0:
            create_dynamic(path, size, **kwargs)
        else:
            create_snapshot(path, os.path.basename(paths[-1]), **kwargs)
        with Chain.open(path, writable=True) as chain:
            for _ in range(runs):
                length = rng.randrange(16, max_run_sectors) * SECTOR
                offset = rng.randrange(0, (size - length) // SECTOR) * SECTOR
                chain.write(offset, rng.randbytes(length))
            chain.flush()
        paths.append(path)
    if hide:
        for path in paths[:-1]:
            set_hidden(path, True)
    return list(reversed(paths))


def content_sha(leaf_path):
    """sha256 of the whole virtual disk as read through the chain."""
    h = hashlib.sha256()
    with Chain.open(leaf_path) as chain:
        for offset in range(0, chain.virtual_size, 4 * MIB):
            h.update(bytes(chain.read(offset, min(4 * MIB, chain.virtual_size - offset))))
    return h.hexdigest()
