"""SR -> s3:// -> SR and SR -> swift:// -> SR against the REAL Swift: VHD chains land identical,
an image uploaded through S3 downloads through Swift, a flipped byte lands nothing, and a
``kill -9`` mid-upload leaves nothing behind once gc or rm ran (listed through the APIs)."""

import json
import os
import signal
import subprocess
import sys
import time

import pytest

from tests.peers.proxies import Fault, RuleProxy
from tests.stores.objpeer import (KINDS, data_objects, fresh_name, leftovers, open_store,
                                  swift_peer)  # noqa: F401
from tests.transfer.helpers import (MiB, build_chain, chain_shape, make_sr, sr_tree,
                                    staging_leftovers, vdi_sha256)
from vhdport import transfer
from vhdport.errors import IntegrityError
from vhdport.sr import SR
from vhdport.vhd import Chain
from vhdport.vhd.check import check_chain

pytestmark = pytest.mark.peer

SCRIPT = os.path.join(os.path.dirname(sys.executable), "vhdport")
PART = {"s3": "partNumber=", "swift": "/segments/"}


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


def _spawn_upload(kind, server, bucket, proxy_url, src, leaf):
    env = dict(os.environ, AWS_ACCESS_KEY_ID=server.user, AWS_SECRET_ACCESS_KEY=server.key,
               AWS_DEFAULT_REGION=server.region, ST_AUTH=proxy_url + "/auth/v1.0",
               ST_USER=server.user, ST_KEY=server.key)
    args = [SCRIPT, "upload", leaf, "--sr", src, "--store", "{}://{}/imgs".format(kind, bucket),
            "--name", "killed", "--part-size", "1M", "--connections", "2", "--progress", "none"]
    if kind == "s3":
        args += ["--endpoint-url", proxy_url]
    return subprocess.Popen(args, env=env, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, start_new_session=True)


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("cleanup", ["gc", "rm"])
def test_kill_9_mid_upload_leaves_nothing_after_cleanup(swift_peer, source_chain, kind,  # noqa: F811
                                                        cleanup):
    src, leaf, _ = source_chain
    bucket = fresh_name()
    # two parts go through, then every part upload hangs: the process is mid-upload
    rules = [Fault(method="PUT", path=PART[kind], times=2),
             Fault(method="PUT", path=PART[kind], up_stall_after=1000, times=None)]
    with RuleProxy(swift_peer.ports["proxy"], rules, stall_seconds=60) as proxy:
        child = _spawn_upload(kind, swift_peer, bucket, proxy.url, src, leaf)
        try:
            deadline = time.monotonic() + 60
            while rules[1].hits < 1 and time.monotonic() < deadline and child.poll() is None:
                time.sleep(0.05)
            assert rules[1].hits >= 1, child.communicate(timeout=5)
            time.sleep(0.3)
        finally:
            os.kill(child.pid, signal.SIGKILL)
            child.wait(timeout=30)
    assert child.returncode == -signal.SIGKILL
    store = open_store(kind, swift_peer, bucket)
    [record] = store.list()
    assert record["status"] == "saving"
    assert leftovers(swift_peer, bucket) != []      # the kill did leave parts ...
    if cleanup == "gc":
        result = subprocess.run(
            [SCRIPT, "image", "gc", "--store", "{}://{}/imgs".format(kind, bucket),
             "--min-age", "0", "--json"] + (["--endpoint-url", swift_peer.url]
                                            if kind == "s3" else []),
            env=dict(os.environ, AWS_ACCESS_KEY_ID=swift_peer.user,
                     AWS_SECRET_ACCESS_KEY=swift_peer.key, ST_AUTH=swift_peer.auth_url,
                     ST_USER=swift_peer.user, ST_KEY=swift_peer.key),
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, timeout=120)
        assert result.returncode == 0, result.stderr
        assert any("abandoned upload" in line for line in json.loads(result.stdout.decode()))
        assert store.get(record["id"])["status"] == "queued"
    else:
        store.delete(record["id"])
        assert store.list() == []
    assert leftovers(swift_peer, bucket) == []      # ... and cleanup removed them all
    assert data_objects(swift_peer, bucket) == []
