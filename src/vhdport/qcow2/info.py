"""A one-call summary of a QCOW2 file (what ``qemu-img info --backing-chain`` tells)."""

import os

from .chain import Qcow2Chain, local_backing
from .image import Qcow2File


def info(path, backing=local_backing):
    """Return a dict describing ``path``; with ``backing`` its chain is opened for the depth.

    Pass ``backing=None`` for a file that came from a store: the backing name is reported
    but not followed (depth then counts this file only).
    """
    with Qcow2File.open(path) as image:
        h = image.header
        facts = {
            "format": "qcow2",
            "type": "differencing" if h.backing_name else "dynamic",
            "version": h.version,
            "virtual_size": image.virtual_size,
            "physical_size": image.file_size,
            "cluster_size": image.cluster_size,
            "refcount_bits": h.refcount_bits,
            "extended_l2": image.extended,
            "backing_file": h.backing_name,
            "backing_format": h.backing_format,
            "hidden": image.hidden,
            "snapshots": len(image.snapshots),
            "parent": None,
            "depth": 1,
        }
    if facts["backing_file"] and backing is not None:
        with Qcow2Chain.open(path, backing=backing) as chain:
            facts["depth"] = chain.depth
            facts["parent"] = os.path.abspath(chain.images[1].path)
    return facts


__all__ = ["info"]
