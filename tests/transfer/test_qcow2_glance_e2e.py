"""QCOW2 VDI chains SR -> REAL Glance -> SR (Debian's glance-api, token mode): chains 1..5 deep
made as SM makes them, and a 2.5 TiB virtual sparse VDI, as qcow2/ovf bundles of 0.qcow2 ..
N.qcow2.  Judged by qemu-img (compare, check), the hidden flags and the chain shape."""

import os
import time

import pytest

from tests.peers.glance_server import glance_auth  # noqa: F401
from tests.transfer import qcow2_chains
from tests.transfer.helpers import (MiB, allocated_bytes, assert_model_written, build_chain,
                                    chain_shape, make_sr, new_uuid, staging_leftovers,
                                    vdi_sha256)
from tests.transfer.test_glance_e2e import glance, stored_digests
from vhdport import transfer
from vhdport.sr import SR

pytestmark = pytest.mark.peer

TiB = 1 << 40
PROPS = {"vhdport-test": "qcow2-e2e"}


def assert_landed(src, src_leaf, dst, result):
    """Shape, hidden flags, relative names, qemu's check and compare against the source."""
    leaf = result["root"]["uuid"]
    chain = result["chain"]
    src_shape, shape = chain_shape(src, src_leaf), chain_shape(dst, leaf)
    assert [s[0] for s in shape] == chain and len(shape) == len(src_shape)
    assert [s[1] for s in shape] == [False] + [True] * (len(chain) - 1)
    assert [s[3:] for s in shape] == [s[3:] for s in src_shape]
    dst_leaf = os.path.join(dst, leaf + ".qcow2")
    assert qcow2_chains.backing_names(dst_leaf) == [u + ".qcow2" for u in chain[1:]] + [None]
    for u in chain:
        qcow2_chains.qemu_check(os.path.join(dst, u + ".qcow2"))
    assert qcow2_chains.qemu_compare(os.path.join(src, src_leaf + ".qcow2"), dst_leaf)
    assert sorted(SR(dst).vdis()) == sorted(chain)
    assert staging_leftovers(dst) == []


@pytest.mark.parametrize("depth", [1, 2, 3, 4, 5])
def test_chain_round_trip(glance_auth, tmp_path, depth):  # noqa: F811
    src = make_sr(tmp_path / "src")
    uuids, model = build_chain(src, depth, (8 + 8 * depth) * MiB, dense=depth % 2 == 1,
                               seed=700 + depth, fmt="qcow2")
    store = glance(glance_auth)
    image_id = transfer.upload(src, uuids[0], store, name="qcow2-e2e-{}".format(depth),
                               properties=PROPS)
    try:
        record = store.get(image_id)
        assert record["status"] == "active"
        assert (record["disk_format"], record["container_format"]) == ("qcow2", "ovf")
        assert record["properties"].get("vhdport-test") == "qcow2-e2e"
        size, md5, sha512 = stored_digests(store, image_id)
        assert (record["size"], record["checksum"], record["os_hash_value"]) == (size, md5, sha512)
        dst = make_sr(tmp_path / "dst")
        wanted = [new_uuid() for _ in range(depth)]
        result = transfer.download(store, image_id, dst, uuids=wanted)
        assert result["chain"] == wanted
        assert_landed(src, uuids[0], dst, result)
        assert vdi_sha256(dst, wanted[0]) == model.sha256()
    finally:
        store.delete(image_id)


def test_sparse_2_5_tib_round_trip(glance_auth, tmp_path):  # noqa: F811
    """Past VHD's 2040 GiB: a 2.5 TiB QCOW2 with a few MiB written crosses Glance in seconds."""
    src = make_sr(tmp_path / "src")
    uuids, model = build_chain(src, 2, 5 * TiB // 2, dense=True, seed=725, fmt="qcow2")
    store = glance(glance_auth)
    started = time.monotonic()
    image_id = transfer.upload(src, uuids[0], store, name="qcow2-e2e-sparse")
    try:
        dst = make_sr(tmp_path / "dst")
        result = transfer.download(store, image_id, dst)
        took = time.monotonic() - started
        assert took < 60, "{:.1f} s for 2.5 TiB virtual".format(took)
        assert store.get(image_id)["size"] < 64 * MiB
        assert_landed(src, uuids[0], dst, result)
        dst_leaf = os.path.join(dst, result["root"]["uuid"] + ".qcow2")
        assert_model_written(dst_leaf, model)
        # the content digest upload recorded is the source's and the landed chain's
        from vhdport.disk.digest import content_digest
        recorded = str(store.get(image_id)["properties"]["vhdport_content_digest"])
        assert str(content_digest(dst_leaf)) == recorded
        assert allocated_bytes(dst_leaf) == allocated_bytes(os.path.join(src, uuids[0] + ".qcow2"))
    finally:
        store.delete(image_id)
