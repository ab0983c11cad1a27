"""Reading chains with libvhdi (pyvhdi), a VHD reader we did not write, for cross-checks."""

import contextlib

from tests.peers.require import import_peer
from vhdport.vhd import Chain

pyvhdi = import_peer("pyvhdi", "libvhdi (pip libvhdi-python)")

READ_CHUNK = 1024 * 1024


@contextlib.contextmanager
def libvhdi_chain(leaf_path):
    """Open leaf..base with libvhdi, linking each file to its parent; yield the leaf handle."""
    with Chain.open(leaf_path) as chain:
        paths = chain.paths()
    handles = []
    try:
        for path in reversed(paths):          # base first
            handle = pyvhdi.file()
            handle.open(path)
            if handles:
                handle.set_parent(handles[-1])
            handles.append(handle)
        yield handles[-1]
    finally:
        for handle in reversed(handles):
            handle.close()


def libvhdi_read_all(leaf_path):
    """Everything libvhdi reads, in pieces that never cross a block of any disk in the chain.

    libvhdi (this version) returns wrong data for one read spanning several blocks of a
    differencing disk whose states differ (seen with 1 MiB reads over 256 KiB blocks).
    """
    with Chain.open(leaf_path) as chain:
        grain = min([READ_CHUNK] + [d.block_size for d in chain.disks if d.footer.is_dynamic])
    with libvhdi_chain(leaf_path) as handle:
        size = handle.media_size
        out = bytearray()
        for off in range(0, size, grain):
            out += handle.read_buffer_at_offset(min(grain, size - off), off)
        return bytes(out)
