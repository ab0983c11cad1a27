"""R3 network faults: the full transfer.download / transfer.upload against a real Glance,
through tests.peers.proxies.RuleProxy, which breaks chosen requests on purpose.

Downloads must resume (and then publish the right chain) or fail with a typed error
leaving the SR byte-identical; uploads must never leave an ``active`` image whose bytes
are not the chain (every image of the case's name is read back and downloaded).
"""

import os
import random
import shutil
import time
import uuid

import pytest

from tests.hostile.conftest import diff_digests, tree_digest
from tests.hostile.scripts.chains import content_sha, random_chain
from tests.peers.glance_server import TEST_TOKEN, glance_auth  # noqa: F401
from tests.peers.proxies import Fault, RuleProxy
from vhdport import transfer
from vhdport.errors import (BundleError, IntegrityError, StoreError, TransientStoreError,
                            VhdportError)
from vhdport.sr import SR
from vhdport.stores.glance import GlanceStore
from vhdport.vhd.check import check_chain

pytestmark = pytest.mark.peer


def glance_store(url, **options):
    options.setdefault("retry_delay", 0.01)
    options.setdefault("timeout", 10)
    options.setdefault("retries", 4)
    return GlanceStore(url, auth_token=TEST_TOKEN, **options)


@pytest.fixture(scope="module")
def world(glance_auth, tmp_path_factory):  # noqa: F811
    """A source SR holding a 3-deep chain of random data, that chain uploaded to Glance
    (directly), and a template target SR that already holds another chain."""
    root = str(tmp_path_factory.mktemp("r3"))
    src = os.path.join(root, "src-sr")
    os.makedirs(src)
    chain = random_chain(src, 3, seed=31, runs=4, max_run_sectors=1500)
    leaf = os.path.basename(chain[0])[:-4]
    direct = glance_store(glance_auth.url)
    image = transfer.upload(src, leaf, direct, name="r3-source-" + uuid.uuid4().hex[:8])
    record = direct.get(image)
    template = os.path.join(root, "target-template")
    os.makedirs(template)
    random_chain(template, 2, seed=32)
    with SR(template).staging():   # lock file and staging root exist, as in a used SR
        pass
    yield {"glance": glance_auth, "src": src, "leaf": leaf, "sha": content_sha(chain[0]),
           "image": image, "size": record["size"], "template": template, "direct": direct}
    direct.delete(image)


@pytest.fixture
def target(world, tmp_path):
    sr = str(tmp_path / "sr")
    shutil.copytree(world["template"], sr, symlinks=True)
    return sr


def offsets(seed, count, size):
    rng = random.Random(seed)
    return sorted(rng.randrange(1, size - 1) for _ in range(count))


# --- downloads --------------------------------------------------------------------------

def run_download(world, sr, rules, **options):
    """Download through a RuleProxy; return (result or error, proxy log, rules)."""
    with RuleProxy(world["glance"].port, rules, stall_seconds=30) as proxy:
        store = glance_store(proxy.url, **options)
        started = time.monotonic()
        try:
            outcome = transfer.download(store, world["image"], sr)
        except VhdportError as e:
            outcome = e
        elapsed = time.monotonic() - started
        log = list(proxy.log)
    return outcome, log, elapsed


def assert_published(world, sr, before, outcome):
    assert not isinstance(outcome, Exception), "download failed: {}".format(outcome)
    vdis = SR(sr).vdis()
    leaf = outcome["root"]["uuid"]
    assert set(vdis) == {k[:-4] for k in before if k.endswith(".vhd") and "/" not in k} | \
        set(outcome["chain"])
    leaf_path = SR(sr).vdi_path(leaf)
    assert check_chain(leaf_path) == []
    assert content_sha(leaf_path) == world["sha"]
    assert [n for n in os.listdir(os.path.join(sr, ".vhdport-staging")) if n != ".root.lock"] \
        == []
    after = tree_digest(sr)
    for path, value in before.items():   # the old files are untouched
        assert after.get(path) == value, path


def assert_failed_cleanly(sr, before, outcome, kind):
    assert isinstance(outcome, kind), "expected {}, got {!r}".format(kind, outcome)
    after = tree_digest(sr)
    assert after == before, "SR changed by a failed download:\n" + "\n".join(
        diff_digests(before, after))
    assert "\n" not in str(outcome).strip()


def file_gets(log):
    return sum(1 for method, path, _ in log if method == "GET" and path.endswith("/file"))


@pytest.mark.parametrize("seed", [1, 2, 3, 4, 5])
def test_download_resets_at_random_offsets_resume(world, target, seed, reliability_case):
    drops = offsets(seed, 1 + seed % 3, world["size"])
    case = reliability_case("R3", "download: TCP reset (RST) at body offsets {} (seed {})".format(
        drops, seed), "resumes with Range, publishes the right chain")
    rules = [Fault("GET", "/file", drop_after=at - (drops[i - 1] if i else 0), reset=True)
             for i, at in enumerate(drops)]
    before = tree_digest(target)
    outcome, log, _ = run_download(world, target, rules)
    assert_published(world, target, before, outcome)
    assert file_gets(log) == len(drops) + 1
    case.detail = "{} GETs of the data, chain intact".format(file_gets(log))


def test_download_truncated_once_resumes(world, target, reliability_case):
    case = reliability_case("R3", "download: body cut short (FIN) at half the image",
                            "resumes, right chain")
    before = tree_digest(target)
    outcome, log, _ = run_download(world, target,
                                   [Fault("GET", "/file", drop_after=world["size"] // 2)])
    assert_published(world, target, before, outcome)
    assert file_gets(log) == 2


def test_download_truncated_every_time_fails_cleanly(world, target, reliability_case):
    case = reliability_case("R3", "download: cut at 60%, then every resume cut after its headers "
                            "(retries=2)", "TransientStoreError 'gave up', SR byte-identical")
    before = tree_digest(target)
    outcome, log, _ = run_download(world, target, [
        Fault("GET", "/file", drop_after=int(world["size"] * 0.6)),
        Fault("GET", "/file", times=None, drop_after=0)], retries=2)
    assert_failed_cleanly(target, before, outcome, TransientStoreError)
    assert "gave up" in str(outcome)
    case.detail = str(outcome)[:150]


def test_download_truncated_in_headers_resumes(world, target, reliability_case):
    case = reliability_case("R3", "download: reset right after the response headers, twice",
                            "resumes, right chain")
    before = tree_digest(target)
    outcome, log, _ = run_download(world, target, [
        Fault("GET", "/file", times=2, drop_after=0, reset=True)])
    assert_published(world, target, before, outcome)


def test_download_stall_beyond_timeout_resumes(world, target, reliability_case):
    case = reliability_case("R3", "download: stall at 40% longer than the 2 s timeout, once",
                            "times out, resumes, right chain")
    before = tree_digest(target)
    outcome, log, elapsed = run_download(world, target, [
        Fault("GET", "/file", stall_after=int(world["size"] * 0.4))], timeout=2)
    assert_published(world, target, before, outcome)
    assert elapsed < 15
    case.detail = "finished in {:.1f} s".format(elapsed)


def test_download_stall_every_time_fails_cleanly(world, target, reliability_case):
    case = reliability_case("R3", "download: every response stalls (timeout 2 s, retries 1)",
                            "TransientStoreError 'timed out' in bounded time, SR byte-identical")
    before = tree_digest(target)
    outcome, log, elapsed = run_download(world, target, [
        Fault("GET", "/file", times=None, stall_after=100000)], timeout=2, retries=1)
    assert_failed_cleanly(target, before, outcome, TransientStoreError)
    assert "timed out" in str(outcome) and elapsed < 15
    case.detail = "failed after {:.1f} s".format(elapsed)


@pytest.mark.parametrize("status", [500, 503])
def test_download_status_burst_is_retried(world, target, status, reliability_case):
    case = reliability_case("R3", "download: burst of 3 x HTTP {} on every GET".format(status),
                            "retried, right chain")
    before = tree_digest(target)
    outcome, log, _ = run_download(world, target, [Fault("GET", times=3, status=status)])
    assert_published(world, target, before, outcome)
    assert sum(1 for _, _, rule in log if rule == 0) == 3


def test_download_503_mid_stream_then_resume(world, target, reliability_case):
    case = reliability_case("R3", "download: reset at 30%, then 2 x 503 on the resume",
                            "resumes after the burst, right chain")
    before = tree_digest(target)
    outcome, log, _ = run_download(world, target, [
        Fault("GET", "/file", drop_after=int(world["size"] * 0.3), reset=True),
        Fault("GET", "/file", times=2, status=503)])
    assert_published(world, target, before, outcome)
    assert file_gets(log) == 4


@pytest.mark.parametrize("status", [500, 503])
def test_download_status_longer_than_retries_fails_cleanly(world, target, status,
                                                           reliability_case):
    case = reliability_case("R3", "download: HTTP {} on every data GET (retries=2)".format(
        status), "TransientStoreError naming the status, SR byte-identical")
    before = tree_digest(target)
    outcome, log, _ = run_download(world, target, [
        Fault("GET", "/file", times=None, status=status)], retries=2)
    assert_failed_cleanly(target, before, outcome, TransientStoreError)
    assert "HTTP {}".format(status) in str(outcome) and world["image"] in str(outcome)


@pytest.mark.parametrize("where", [0.05, 0.5, 0.97])
def test_download_flipped_byte_fails_cleanly(world, target, where, reliability_case):
    at = int(world["size"] * where)
    case = reliability_case("R3", "download: one flipped bit at body offset {} ({:.0%})".format(
        at, where), "IntegrityError or BundleError, nothing lands in the SR")
    before = tree_digest(target)
    rule = Fault("GET", "/file", times=None, flip_at=at)
    outcome, log, _ = run_download(world, target, [rule])
    assert rule.flipped >= 1
    assert_failed_cleanly(target, before, outcome, (IntegrityError, BundleError))
    case.detail = "{}: {}".format(type(outcome).__name__, str(outcome)[:120])


def test_download_flip_before_a_reset_fails_cleanly(world, target, reliability_case):
    # a FIN, not an RST: an RST would discard the flipped byte still in the client's buffer
    case = reliability_case("R3", "download: bit flipped at 10%, connection closed at 50%, "
                            "resumed", "the resumed stream is still verified: IntegrityError, "
                            "SR unchanged")
    before = tree_digest(target)
    size = world["size"]
    outcome, log, _ = run_download(world, target, [
        Fault("GET", "/file", flip_at=size // 10, drop_after=size // 2)])
    assert_failed_cleanly(target, before, outcome, IntegrityError)
    assert file_gets(log) == 2
    case.detail = "{}: {}".format(type(outcome).__name__, str(outcome)[:120])


# --- uploads ----------------------------------------------------------------------------

def run_upload(world, rules, name, image_id=None, **options):
    with RuleProxy(world["glance"].port, rules, stall_seconds=30) as proxy:
        store = glance_store(proxy.url, **options)
        started = time.monotonic()
        try:
            outcome = transfer.upload(world["src"], world["leaf"], store, image_id=image_id,
                                      name=None if image_id else name)
        except VhdportError as e:
            outcome = e
        elapsed = time.monotonic() - started
        log = list(proxy.log)
    return outcome, log, elapsed


def images_named(world, name, image_id=None):
    return [r for r in world["direct"].list()
            if r["name"] == name or (image_id is not None and r["id"] == image_id)]


def judge_images(world, name, scratch, image_id=None):
    """Every active image of this case downloads (directly) into the source chain; the
    others are not active.  Returns {status: count}."""
    seen = {}
    for record in images_named(world, name, image_id):
        seen[record["status"]] = seen.get(record["status"], 0) + 1
        if record["status"] != "active":
            continue
        sr = os.path.join(scratch, record["id"])
        os.makedirs(sr)
        got = transfer.download(world["direct"], record["id"], sr)
        assert content_sha(SR(sr).vdi_path(got["root"]["uuid"])) == world["sha"], \
            "image {} is active with wrong data".format(record["id"])
    return seen


def upload_case(world, tmp_path, rules, expect_ok, image_id=None, expect=None, **options):
    """Run one upload through ``rules``; ``expect`` = (error class, text in its message) when
    it must fail, so that only the failure the case is about satisfies it."""
    name = "r3-up-" + uuid.uuid4().hex[:10]
    if image_id == "new":
        image_id = world["direct"].create(name, "vhd", "ovf")["id"]
    src_before = tree_digest(world["src"])
    outcome, log, elapsed = run_upload(world, rules, name, image_id, **options)
    assert tree_digest(world["src"]) == src_before
    assert [n for n in os.listdir(os.path.join(world["src"], ".vhdport-staging"))
            if n != ".root.lock"] == []
    seen = judge_images(world, name, str(tmp_path), image_id)
    if expect_ok:
        assert not isinstance(outcome, Exception), "upload failed: {}".format(outcome)
        assert seen.get("active") == 1
    else:
        kind, text = expect
        assert isinstance(outcome, kind), "expected {}, got {!r}".format(kind.__name__, outcome)
        assert text in str(outcome), "expected {!r} in {!r}".format(text, str(outcome))
        assert "\n" not in str(outcome).strip()
    for record in images_named(world, name, image_id):
        world["direct"].delete(record["id"])
    return outcome, log, seen, elapsed


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_upload_reset_at_random_offset(world, tmp_path, seed, reliability_case):
    at = offsets(100 + seed, 1, world["size"])[0]
    case = reliability_case("R3", "upload: TCP reset at request body offset {} (seed {})".format(
        at, seed), "typed error, no active image with wrong data, SR untouched")
    outcome, log, seen, _ = upload_case(world, tmp_path, [
        Fault("PUT", "/file", up_drop_after=at, reset=True)], expect_ok=False,
        expect=(StoreError, "during upload"))
    case.detail = "images left: {}; {}".format(seen or "none", str(outcome)[:100])


def test_upload_request_stall_times_out(world, tmp_path, reliability_case):
    case = reliability_case("R3", "upload: request body stalls at 30% (timeout 2 s)",
                            "fails in bounded time, no active image with wrong data")
    outcome, log, seen, elapsed = upload_case(world, tmp_path, [
        Fault("PUT", "/file", up_stall_after=int(world["size"] * 0.3))], expect_ok=False,
        expect=(StoreError, "timed out"), timeout=2)
    assert elapsed < 20
    case.detail = "failed after {:.1f} s; images left: {}".format(elapsed, seen or "none")


def test_upload_response_stall_after_complete_body(world, tmp_path, reliability_case):
    case = reliability_case("R3", "upload: whole body sent, the 204 never arrives (timeout 2 s)",
                            "typed error; the image is removed or active with the right data")
    outcome, log, seen, elapsed = upload_case(world, tmp_path, [
        Fault("PUT", "/file", stall_head=True)], expect_ok=False,
        expect=(StoreError, "timed out"), timeout=2)
    case.detail = "images left: {}; {}".format(seen or "none", str(outcome)[:100])


@pytest.mark.parametrize("status", [500, 503])
def test_upload_put_answered_with_status(world, tmp_path, status, reliability_case):
    case = reliability_case("R3", "upload: HTTP {} to the data PUT".format(status),
                            "not replayed, typed error, the created image removed")
    outcome, log, seen, _ = upload_case(world, tmp_path, [Fault("PUT", "/file", status=status)],
                                        expect_ok=False, expect=(StoreError, "HTTP {}".format(status)))
    assert "HTTP {}".format(status) in str(outcome)
    assert sum(1 for m, _, _ in log if m == "PUT") == 1
    assert seen == {}
    case.detail = str(outcome)[:150]


def test_upload_create_500_is_not_replayed(world, tmp_path, reliability_case):
    case = reliability_case("R3", "upload: HTTP 500 to the image create (POST)",
                            "POST not replayed, typed error, no image")
    outcome, log, seen, _ = upload_case(world, tmp_path, [Fault("POST", status=500)],
                                        expect_ok=False, expect=(StoreError, "HTTP 500"))
    assert sum(1 for m, _, _ in log if m == "POST") == 1 and seen == {}


def test_upload_503_burst_on_readback_is_retried(world, tmp_path, reliability_case):
    case = reliability_case("R3", "upload: 2 x 503 then a reset on the record reads after PUT",
                            "reads retried, upload verified and active")
    # the first GET is _require_queued before the PUT; hit the ones after it
    rules = [Fault("GET", times=1), Fault("GET", times=2, status=503),
             Fault("GET", times=1, drop_after=10, reset=True)]
    outcome, log, seen, _ = upload_case(world, tmp_path, rules, expect_ok=True)
    assert [r for _, _, r in log].count(1) == 2


@pytest.mark.parametrize("where", [0.3, 0.8])
@pytest.mark.parametrize("image_id", [None, "new"], ids=["created", "queued-by-caller"])
def test_upload_flipped_byte_never_active(world, tmp_path, where, image_id, reliability_case):
    at = int(world["size"] * where)
    case = reliability_case(
        "R3", "upload into a {} image: one bit flipped at request offset {} ({:.0%})".format(
            "new" if image_id is None else "caller-created queued", at, where),
        "IntegrityError (read-back mismatch); no active image with wrong data")
    rule = Fault("PUT", "/file", up_flip_at=at)
    outcome, log, seen, _ = upload_case(world, tmp_path, [rule], expect_ok=False,
                                        image_id=image_id, expect=(IntegrityError, "mismatch"))
    assert rule.flipped == 1
    case.detail = "{}; images left: {}".format(type(outcome).__name__, seen or "none")
    assert "md5" in str(outcome) or "sha512" in str(outcome) or "size" in str(outcome)
