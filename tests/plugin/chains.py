"""Test data for the plugin tests: VHD chains in an SR directory, built with the engine."""

import os
import random
import uuid

from vhdport.vhd import Chain, create_dynamic, create_snapshot, set_hidden

MIB = 1024 * 1024


def pattern(seed, length):
    """Deterministic, incompressible-ish bytes."""
    return random.Random(seed).getrandbits(8 * length).to_bytes(length, "little")


def make_chain(sr_path, size=8 * MIB, block_size=2 * MIB, hide_parents=True):
    """A base with data and a snapshot leaf overwriting part of it; returns (leaf, base) uuids.

    Base: bytes 0..3 MiB pattern A. Leaf: 1 MiB+100 .. +200 KiB pattern B (straddles a
    sector boundary on purpose), so reads through the chain mix both files.
    """
    os.makedirs(sr_path, exist_ok=True)
    base_uuid = str(uuid.uuid4())
    leaf_uuid = str(uuid.uuid4())
    base_path = os.path.join(sr_path, base_uuid + ".vhd")
    leaf_path = os.path.join(sr_path, leaf_uuid + ".vhd")
    create_dynamic(base_path, size, block_size=block_size, uuid=uuid.UUID(base_uuid))
    with Chain.open(base_path, writable=True) as chain:
        chain.write(0, pattern(1, 3 * MIB))
        chain.flush()
    create_snapshot(leaf_path, base_path, uuid=uuid.UUID(leaf_uuid))
    with Chain.open(leaf_path, writable=True) as chain:
        chain.write(MIB + 100, pattern(2, 200 * 1024))
        chain.flush()
    if hide_parents:
        set_hidden(base_path, True)
    return leaf_uuid, base_uuid


def virtual_bytes(sr_path, leaf_uuid, length, offset=0):
    with Chain.open(os.path.join(sr_path, leaf_uuid + ".vhd")) as chain:
        return bytes(chain.read(offset, length))
