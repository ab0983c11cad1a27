"""A one-call summary of a VHD file (what ``vhd-util query`` / ``qemu-img info`` tell)."""

import os

from .chain import Chain
from .disk import VhdFile


def info(path):
    """Return a dict describing ``path``; its chain is opened to count the depth.

    Raises FormatError when the file is not a valid VHD and the chain's error
    (ChainError, or LimitError when too deep) when a parent cannot be followed.
    """
    with VhdFile.open(path) as disk:
        facts = {
            "type": disk.type_name,
            "virtual_size": disk.virtual_size,
            "physical_size": disk.physical_size,
            "uuid": str(disk.uuid),
            "hidden": disk.hidden,
            "parent": None,
            "parent_uuid": str(disk.parent_uuid) if disk.is_differencing else None,
            "depth": 1,
            "allocated_blocks": disk.allocated_blocks,
            "block_size": disk.block_size,
        }
        differencing = disk.is_differencing
    if differencing:
        with Chain.open(path) as chain:
            facts["depth"] = chain.depth
            facts["parent"] = os.path.abspath(chain.disks[1].path)
    return facts


__all__ = ["info"]
