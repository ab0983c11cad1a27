"""The QCOW2 chain builder the transfer tests stand on makes what SM makes, and its model of the
writes is what qemu itself reads back (so a round trip compared with the model is compared
with qemu's view of the source)."""

import hashlib
import os

from tests.transfer import qcow2_chains as q
from tests.transfer.helpers import MiB, build_chain, chain_sha256, chain_shape, make_sr


def _raw_sha256(leaf, tmp_path):
    raw = str(tmp_path / "out.raw")
    q.run("qemu-img", "convert", "-f", "qcow2", "-O", "raw", leaf, raw)
    h = hashlib.sha256()
    with open(raw, "rb") as f:
        for block in iter(lambda: f.read(MiB), b""):
            h.update(block)
    return h.hexdigest()


def test_sm_layout_and_contents(tmp_path):
    sr = make_sr(tmp_path / "sr")
    uuids, model = build_chain(sr, 3, 24 * MiB, dense=True, seed=5, fmt="qcow2")
    leaf = os.path.join(sr, uuids[0] + ".qcow2")
    # relative backing names <uuid>.qcow2, format qcow2, as SM's snapshot writes them
    assert q.backing_names(leaf) == [uuids[1] + ".qcow2", uuids[2] + ".qcow2", None]
    info = q.run("qemu-img", "info", "--output=json", leaf).stdout
    assert '"backing-filename-format": "qcow2"' in info and '"cluster-size": 65536' in info
    assert q.qemu_chain_depth(leaf) == 3
    # parents hidden with SM's extension, the leaf visible
    assert [s[1] for s in chain_shape(sr, uuids[0])] == [False, True, True]
    assert [s[2] for s in chain_shape(sr, uuids[0])] == [uuids[1], uuids[2], None]
    for u in uuids:
        q.qemu_check(os.path.join(sr, u + ".qcow2"))
    expected = model.sha256()
    assert _raw_sha256(leaf, tmp_path) == expected     # qemu reads what the model says
    assert chain_sha256(leaf) == expected              # and so does vhdport's engine


def test_absolute_relink_names_this_sr(tmp_path):
    sr = make_sr(tmp_path / "0ab2c3d4-0000-4000-8000-00000000c0de")
    uuids, model = build_chain(sr, 2, 4 * MiB, seed=6, fmt="qcow2")
    leaf = os.path.join(sr, uuids[0] + ".qcow2")
    q.sm_relink_absolute(leaf, uuids[1])
    name = "/var/run/sr-mount/0ab2c3d4-0000-4000-8000-00000000c0de/{}.qcow2".format(uuids[1])
    assert q.backing_names(leaf) == [name, None]
    assert chain_shape(sr, uuids[0])[0][2] == uuids[1]
    assert chain_sha256(leaf) == model.sha256()
