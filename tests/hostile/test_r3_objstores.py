"""R3 network faults for the object stores: transfer.download / transfer.upload through
``s3://`` (Swift's S3 API) and ``swift://`` against a REAL Swift, with tests.peers.proxies'
RuleProxy breaking chosen requests.

Downloads must fetch broken ranges again (and publish the right chain) or fail with a
typed error leaving the SR byte-identical; uploads must recover, or fail leaving no
multipart upload, no segment, no data object and no image (listed through the APIs).
"""

import os
import random
import shutil
import uuid

import pytest

from tests.hostile.conftest import diff_digests, tree_digest
from tests.hostile.scripts.chains import content_sha, random_chain
from tests.peers.proxies import Fault, RuleProxy
from tests.stores.objpeer import (KINDS, data_objects, fresh_name, leftovers, open_store,
                                  swift_peer)  # noqa: F401
from vhdport import transfer
from vhdport.errors import StoreError, TransientStoreError, VhdportError
from vhdport.sr import SR
from vhdport.vhd.check import check_chain

pytestmark = pytest.mark.peer

KiB = 1 << 10
#: a substring of the request path that only a part (segment) upload has
PART = {"s3": "partNumber=", "swift": "/segments/"}
#: method and path substring of the request that completes a multipart object
COMPLETE = {"s3": ("POST", "uploadId="), "swift": ("PUT", "multipart-manifest=put")}
TUNING = {"part_size": 256 * KiB, "block_size": 128 * KiB, "connections": 3, "timeout": 10,
          "retries": 4}


@pytest.fixture(params=KINDS)
def kind(request):
    return request.param


@pytest.fixture(scope="module")
def world(swift_peer, tmp_path_factory):  # noqa: F811
    """A source SR with a 3-deep random chain, that chain uploaded (directly) through each
    API into its own bucket, and a template target SR already holding another chain."""
    root = str(tmp_path_factory.mktemp("r3-objstores"))
    src = os.path.join(root, "src-sr")
    os.makedirs(src)
    chain = random_chain(src, 3, seed=41, runs=4, max_run_sectors=1500)
    leaf = os.path.basename(chain[0])[:-4]
    images = {}
    for name in KINDS:
        bucket = fresh_name("r3")
        store = open_store(name, swift_peer, bucket, **TUNING)
        image = transfer.upload(src, leaf, store, name="r3-source")
        images[name] = (bucket, image, store.get(image)["size"])
    template = os.path.join(root, "target-template")
    os.makedirs(template)
    random_chain(template, 2, seed=42)
    with SR(template).staging():
        pass
    return {"server": swift_peer, "src": src, "leaf": leaf, "sha": content_sha(chain[0]),
            "images": images, "template": template}


@pytest.fixture
def target(world, tmp_path):
    sr = str(tmp_path / "sr")
    shutil.copytree(world["template"], sr, symlinks=True)
    return sr


def run_download(world, kind, sr, rules, **options):
    bucket, image, _ = world["images"][kind]
    tuning = dict(TUNING, **options)
    with RuleProxy(world["server"].ports["proxy"], rules, stall_seconds=30) as proxy:
        store = open_store(kind, world["server"], bucket, via=proxy.url, **tuning)
        try:
            return transfer.download(store, image, sr), list(proxy.log)
        except VhdportError as e:
            return e, list(proxy.log)


def assert_published(world, sr, before, outcome):
    assert not isinstance(outcome, Exception), "download failed: {}".format(outcome)
    leaf_path = SR(sr).vdi_path(outcome["root"]["uuid"])
    assert check_chain(leaf_path) == []
    assert content_sha(leaf_path) == world["sha"]
    after = tree_digest(sr)
    for path, value in before.items():
        assert after.get(path) == value, path


def assert_failed_cleanly(sr, before, outcome, kind=VhdportError):
    assert isinstance(outcome, kind), "expected {}, got {!r}".format(kind.__name__, outcome)
    after = tree_digest(sr)
    assert after == before, "SR changed by a failed download:\n" + "\n".join(
        diff_digests(before, after))
    assert "\n" not in str(outcome).strip()


def data_gets(log):
    return sum(1 for method, path, _ in log if method == "GET" and ".data" in path)


# --- downloads ------------------------------------------------------------------------

@pytest.mark.parametrize("seed", [1, 2, 3])
def test_download_resets_in_ranges_refetch_them(world, kind, target, seed, reliability_case):
    rng = random.Random(seed)
    size = world["images"][kind][2]
    hits = [rng.randrange(1, 128 * KiB - 1) for _ in range(1 + seed % 3)]
    reliability_case("R3", "{}:// download: RST inside {} ranges (seed {})".format(
        kind, len(hits), seed), "the broken ranges alone are fetched again, right chain")
    before = tree_digest(target)
    outcome, log = run_download(world, kind, target, [
        Fault("GET", ".data", drop_after=at, reset=True) for at in hits])
    assert_published(world, target, before, outcome)
    ranges = -(-size // (128 * KiB))
    assert data_gets(log) == ranges + len(hits)


def test_download_stall_beyond_timeout_refetches(world, kind, target, reliability_case):
    reliability_case("R3", "{}:// download: one range stalls longer than the 2 s timeout".format(
        kind), "times out, that range fetched again, right chain")
    before = tree_digest(target)
    outcome, _ = run_download(world, kind, target, [
        Fault("GET", ".data", stall_after=1000)], timeout=2)
    assert_published(world, target, before, outcome)


def test_download_503_burst_is_retried(world, kind, target, reliability_case):
    reliability_case("R3", "{}:// download: 503 from the proxy for 3 range requests".format(kind),
                     "retried, right chain")
    before = tree_digest(target)
    outcome, _ = run_download(world, kind, target, [Fault("GET", ".data", status=503, times=3)])
    assert_published(world, target, before, outcome)


def test_download_every_range_cut_fails_cleanly(world, kind, target, reliability_case):
    case = reliability_case("R3", "{}:// download: every range cut after 100 bytes "
                            "(retries=2)".format(kind),
                            "TransientStoreError 'gave up', SR byte-identical")
    before = tree_digest(target)
    outcome, _ = run_download(world, kind, target, [
        Fault("GET", ".data", drop_after=100, times=None)], retries=2)
    assert_failed_cleanly(target, before, outcome, TransientStoreError)
    assert "gave up" in str(outcome)
    case.detail = str(outcome)[:150]


def test_download_flipped_byte_in_every_range_lands_nothing(world, kind, target,
                                                            reliability_case):
    case = reliability_case("R3", "{}:// download: one byte flipped in every range".format(kind),
                            "IntegrityError (record md5/sha512) or bundle error, SR "
                            "byte-identical")
    before = tree_digest(target)
    outcome, _ = run_download(world, kind, target, [
        Fault("GET", ".data", flip_at=5000, times=None)])
    assert_failed_cleanly(target, before, outcome)
    case.detail = type(outcome).__name__


# --- uploads ---------------------------------------------------------------------------

def run_upload(world, kind, rules, **options):
    bucket = fresh_name("r3u")
    tuning = dict(TUNING, **options)
    with RuleProxy(world["server"].ports["proxy"], rules, stall_seconds=30) as proxy:
        store = open_store(kind, world["server"], bucket, via=proxy.url, **tuning)
        try:
            outcome = transfer.upload(world["src"], world["leaf"], store,
                                      name="r3-up-" + uuid.uuid4().hex[:6])
        except VhdportError as e:
            outcome = e
    return outcome, open_store(kind, world["server"], bucket), bucket


def assert_uploaded(world, store, image, tmp_path):
    assert store.get(image)["status"] == "active"
    sr = str(tmp_path / "check-sr")
    os.makedirs(sr)
    result = transfer.download(store, image, sr)
    assert content_sha(SR(sr).vdi_path(result["root"]["uuid"])) == world["sha"]


def assert_nothing_left(world, store, bucket, outcome, kind=VhdportError):
    assert isinstance(outcome, kind), "expected {}, got {!r}".format(kind.__name__, outcome)
    assert store.list() == []
    assert leftovers(world["server"], bucket) == []
    assert data_objects(world["server"], bucket) == []


def test_upload_503_burst_on_parts_is_retried(world, kind, tmp_path, reliability_case):
    reliability_case("R3", "{}:// upload: 503 for 3 part uploads".format(kind),
                     "retried, image active and exact")
    outcome, store, _ = run_upload(world, kind, [Fault("PUT", PART[kind], status=503, times=3)])
    assert_uploaded(world, store, outcome, tmp_path)


def test_upload_reset_mid_part_is_retried(world, kind, tmp_path, reliability_case):
    reliability_case("R3", "{}:// upload: RST 100 KiB into a part, twice".format(kind),
                     "the part is sent again, image active and exact")
    outcome, store, _ = run_upload(world, kind, [
        Fault("PUT", PART[kind], up_drop_after=100 * KiB, reset=True, times=2)])
    assert_uploaded(world, store, outcome, tmp_path)


def test_upload_flipped_byte_in_every_part_leaves_nothing(world, kind, reliability_case):
    case = reliability_case("R3", "{}:// upload: one byte flipped in every part".format(kind),
                            "refused by the part's md5, upload aborted: no parts, no image")
    outcome, store, bucket = run_upload(world, kind, [
        Fault("PUT", PART[kind], up_flip_at=3000, times=None)])
    assert_nothing_left(world, store, bucket, outcome, StoreError)
    case.detail = str(outcome)[:150]


def test_upload_stalled_part_times_out_and_is_retried(world, kind, tmp_path, reliability_case):
    reliability_case("R3", "{}:// upload: a part's body stalls beyond the 2 s timeout".format(
        kind), "times out, the part is sent again, image active and exact")
    outcome, store, _ = run_upload(world, kind, [
        Fault("PUT", PART[kind], up_stall_after=50 * KiB, times=1)], timeout=2)
    assert_uploaded(world, store, outcome, tmp_path)


def test_upload_completion_failing_leaves_nothing(world, kind, reliability_case):
    method, path = COMPLETE[kind]
    case = reliability_case("R3", "{}:// upload: every completion request answered 503".format(
        kind), "upload aborted: no parts, no segments, no image")
    outcome, store, bucket = run_upload(world, kind, [
        Fault(method, path, status=503, times=None)], retries=1)
    assert_nothing_left(world, store, bucket, outcome, StoreError)
    case.detail = str(outcome)[:150]
