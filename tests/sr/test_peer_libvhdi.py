"""libvhdi (a reader we did not write) sees the same data through snapshot and adopt/publish."""

import contextlib
import os

import pytest

from vhdport.sr import SR
from vhdport.vhd import Chain

from tests.sr.helpers import make_vhd, read_vdi

pyvhdi = pytest.importorskip("pyvhdi")
pytestmark = pytest.mark.peer

GRAIN = 64 * 1024


@contextlib.contextmanager
def _libvhdi(paths_leaf_first):
    handles = []
    try:
        for path in reversed(paths_leaf_first):
            handle = pyvhdi.file()
            handle.open(path)
            if handles:
                handle.set_parent(handles[-1])
            handles.append(handle)
        yield handles[-1]
    finally:
        for handle in reversed(handles):
            handle.close()


def _libvhdi_read(paths):
    # small pieces: this libvhdi misreads single reads that span several differing blocks
    with _libvhdi(paths) as h:
        size = h.media_size
        return b"".join(h.read_buffer_at_offset(min(GRAIN, size - off), off)
                        for off in range(0, size, GRAIN))


def _pattern(tag):
    # whole 4 KiB (a full bitmap byte): libvhdi misreads partially present bitmap bytes
    return (tag * 4096)[:4096]


def test_snapshot_and_publish_read_the_same_in_libvhdi(tmp_path):
    sr_dir = str(tmp_path)
    vdi = make_vhd(sr_dir, writes=[(0, _pattern(b"a")), (3 << 20, _pattern(b"b"))])
    sr = SR(sr_dir)
    snap, base = sr.snapshot(vdi)
    with Chain.open(os.path.join(sr_dir, vdi + ".vhd"), writable=True) as chain:
        chain.write(8192, _pattern(b"c"))
        chain.flush()
    for u in (vdi, snap):
        assert _libvhdi_read(sr.chain_paths(u)) == read_vdi(sr_dir, u)
    assert _libvhdi_read(sr.chain_paths(vdi)) != _libvhdi_read(sr.chain_paths(snap))

    # upload-shaped links, then download-shaped adopt + publish of those copies
    os.mkdir(str(tmp_path / "other"))
    other = SR(str(tmp_path / "other"))
    with sr.staging() as up, other.staging() as down:
        links = up.link_vdi(vdi)
        copies = []
        for i, link in enumerate(links):
            dst = os.path.join(down.path, "{}.vhd".format(i))
            with open(link, "rb") as src, open(dst, "wb") as out:
                out.write(src.read())
            copies.append(dst)
        final = other.publish(down.adopt(copies))
    assert _libvhdi_read(final) == read_vdi(sr_dir, vdi)
