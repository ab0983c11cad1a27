"""libvhdi (a reader we did not write) sees the same data through snapshot and adopt/publish."""

import os

import pytest

from vhdport.sr import SR
from vhdport.vhd import Chain

from tests.peers.libvhdi import libvhdi_read_all  # skips the module without pyvhdi
from tests.sr.helpers import make_vhd, read_vdi

pytestmark = pytest.mark.peer


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
        assert libvhdi_read_all(sr.chain_paths(u)[0]) == read_vdi(sr_dir, u)
    assert libvhdi_read_all(sr.chain_paths(vdi)[0]) != libvhdi_read_all(sr.chain_paths(snap)[0])

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
    assert libvhdi_read_all(final[0]) == read_vdi(sr_dir, vdi)
