"""SR -> s3:// -> SR and SR -> swift:// -> SR against the REAL Swift: VHD chains land identical,
an image uploaded through S3 downloads through Swift, a flipped byte lands nothing.
(``kill -9`` mid-upload: tests/hostile/test_r4_objstores.py.)"""

import os

import pytest

from tests.peers.proxies import Fault, RuleProxy
from tests.stores.objpeer import fresh_name, leftovers, open_store, swift_peer  # noqa: F401
from tests.transfer.helpers import (MiB, build_chain, chain_shape, make_sr, sr_tree,
                                    staging_leftovers, vdi_sha256)
from vhdport import disk, transfer
from vhdport.errors import IntegrityError
from vhdport.sr import SR
from vhdport.vhd import Chain
from vhdport.vhd.check import check_chain

pytestmark = pytest.mark.peer



@pytest.fixture(scope="module")
def source_chain(tmp_path_factory):
    """A 3-deep chain with dense data: (SR path, leaf uuid, expected sha256 of the leaf)."""
    src = make_sr(tmp_path_factory.mktemp("objstore-src"))
    uuids, model = build_chain(src, 3, 32 * MiB, dense=True, seed=1515)
    noise = os.urandom(6 * MiB)  # incompressible, so the bundle needs several parts
    with Chain.open(os.path.join(src, uuids[0] + ".vhd"), writable=True) as chain:
        chain.write(2 * MiB, noise)
        chain.flush()
    model.add(2 * MiB, noise)
    return src, uuids[0], model.sha256()


def assert_landed(dst, result, src, leaf, expected):
    new_leaf = result["root"]["uuid"]
    assert vdi_sha256(dst, new_leaf) == expected
    assert [s[3:] for s in chain_shape(dst, new_leaf)] == [s[3:] for s in chain_shape(src, leaf)]
    assert check_chain(os.path.join(dst, new_leaf + ".vhd")) == []
    assert sorted(SR(dst).vdis()) == sorted(result["chain"])
    assert staging_leftovers(dst) == []


@pytest.mark.parametrize("up_kind, down_kind", [("s3", "s3"), ("swift", "swift"),
                                                ("s3", "swift"), ("swift", "s3")])
def test_round_trip_through_the_object_store(swift_peer, source_chain, tmp_path,  # noqa: F811
                                             up_kind, down_kind):
    src, leaf, expected = source_chain
    bucket = fresh_name()
    up = open_store(up_kind, swift_peer, bucket, connections=3)
    image_id = transfer.upload(src, leaf, up, name="e2e", properties={"os_type": "linux"})
    record = up.get(image_id)
    assert record["status"] == "active" and record["size"] > 3 * MiB  # several parts
    assert record["properties"]["vhdport_content_digest"] == str(
        disk.content_digest(os.path.join(src, leaf + ".vhd")))
    down = open_store(down_kind, swift_peer, bucket, connections=4)
    dst = make_sr(tmp_path / "dst")
    result = transfer.download(down, image_id, dst)
    assert_landed(dst, result, src, leaf, expected)
    assert leftovers(swift_peer, bucket, keep=[image_id]) == []


def test_a_flipped_byte_in_a_downloaded_range_lands_nothing(swift_peer, source_chain,  # noqa: F811
                                                            tmp_path):
    src, leaf, _ = source_chain
    bucket = fresh_name()
    image_id = transfer.upload(src, leaf, open_store("s3", swift_peer, bucket), name="flip")
    dst = make_sr(tmp_path / "dst")
    before = sr_tree(dst)
    rules = [Fault(method="GET", path=".data", flip_at=300000, times=None)]
    with RuleProxy(swift_peer.ports["proxy"], rules) as proxy:
        store = open_store("swift", swift_peer, bucket, via=proxy.url)
        with pytest.raises(IntegrityError, match="mismatch for image {}".format(image_id)):
            transfer.download(store, image_id, dst)
        assert rules[0].flipped >= 1
    assert sr_tree(dst) == before
