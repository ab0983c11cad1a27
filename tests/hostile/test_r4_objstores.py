"""R4 for the object stores: a ``vhdport upload`` to ``s3://`` / ``swift://`` killed with
SIGKILL mid-way (parts sent, more in flight) against a REAL Swift.  The kill itself cannot
clean up: the record stays ``saving`` and names its upload.  Then ``vhdport image gc`` or
``image rm`` must leave no multipart upload, no segment and no data object (listed through
the S3 and Swift APIs), and never an ``active`` record."""

import json
import os
import signal
import subprocess
import sys
import time

import pytest

from tests.hostile.scripts.chains import random_chain
from tests.peers.proxies import Fault, RuleProxy
from tests.stores.objpeer import (KINDS, data_objects, fresh_name, leftovers, open_store,
                                  swift_peer)  # noqa: F401

pytestmark = pytest.mark.peer

SCRIPT = os.path.join(os.path.dirname(sys.executable), "vhdport")
PART = {"s3": "partNumber=", "swift": "/segments/"}


@pytest.fixture(scope="module")
def source_chain(tmp_path_factory):
    """(SR path, leaf uuid) of a 2-deep chain of random data (several 1 MiB parts)."""
    src = str(tmp_path_factory.mktemp("r4-objstores"))
    chain = random_chain(src, 2, seed=44, size=32 << 20, runs=6, max_run_sectors=2048)
    return src, os.path.basename(chain[0])[:-4]


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
                                                        cleanup, reliability_case):
    reliability_case("R4", "{}:// upload killed (SIGKILL) with parts sent, then image {}".format(
        kind, cleanup), "no multipart upload, segment or data object left; no active record")
    src, leaf = source_chain
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
