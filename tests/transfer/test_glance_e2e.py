"""The transfer pipelines against a REAL Glance (Debian's glance-api, token mode), also through
proxies that cut the connection or flip a byte.  Skipped cleanly where Glance cannot run."""

import hashlib
import os
import time

import pytest

from tests.peers.glance_server import TEST_TOKEN, glance_auth  # noqa: F401
from tests.peers.proxies import FaultProxy
from tests.transfer.helpers import (MiB, build_chain, chain_shape, make_sr, new_uuid, sr_tree,
                                    staging_leftovers, vdi_sha256)
from vhdport import disk, transfer
from vhdport.errors import AuthError, ImageStateError, IntegrityError
from vhdport.sr import SR
from vhdport.stores.glance import GlanceStore
from vhdport.vhd.check import check_chain

pytestmark = pytest.mark.peer

PROPS = {"vhdport-test": "e2e", "os_distro": "debian", "auto_disk_config": "False"}


def glance(server, url=None, token=None, **options):
    options.setdefault("retry_delay", 0.01)
    options.setdefault("timeout", 20)
    return GlanceStore(url or server.url, auth_token=token or server.token, **options)


def stored_digests(store, image_id):
    """(size, md5, sha512) of the bytes Glance serves for the image."""
    md5, sha512, size = hashlib.md5(), hashlib.sha512(), 0
    with store.open(image_id) as stream:
        while True:
            data = stream.read(MiB)
            if not data:
                return size, md5.hexdigest(), sha512.hexdigest()
            size += len(data)
            md5.update(data)
            sha512.update(data)


@pytest.fixture(scope="module")
def uploaded(glance_auth, tmp_path_factory):  # noqa: F811
    """A 3-deep chain uploaded from an SR into Glance: (store, image id, src SR, leaf, sha256)."""
    src = make_sr(tmp_path_factory.mktemp("glance-src"))
    uuids, model = build_chain(src, 3, 48 * MiB, dense=True, seed=2024)
    store = glance(glance_auth)
    image_id = transfer.upload(src, uuids[0], store, name="vhdport-e2e", properties=PROPS)
    yield store, image_id, src, uuids[0], model.sha256()
    store.delete(image_id)


def test_upload_makes_an_active_vhd_ovf_image(uploaded):
    store, image_id, src, leaf, _ = uploaded
    record = store.get(image_id)
    assert record["status"] == "active"
    assert (record["disk_format"], record["container_format"]) == ("vhd", "ovf")
    for key, value in PROPS.items():
        assert record["properties"].get(key) == value, (key, record["properties"])
    # set on the active image by a PATCH after the data went in
    assert record["properties"]["vhdport_content_digest"] == str(
        disk.content_digest(SR(src).chain_paths(leaf)[0]))
    size, md5, sha512 = stored_digests(store, image_id)
    assert record["size"] == size
    assert record["checksum"] == md5
    assert (record["os_hash_algo"], record["os_hash_value"]) == ("sha512", sha512)


def assert_landed(sr_path, result, src, src_leaf, expected):
    leaf = result["root"]["uuid"]
    assert vdi_sha256(sr_path, leaf) == expected
    src_shape, shape = chain_shape(src, src_leaf), chain_shape(sr_path, leaf)
    assert [s[1] for s in shape] == [False, True, True]
    assert [s[3:] for s in shape] == [s[3:] for s in src_shape]
    assert check_chain(os.path.join(sr_path, leaf + ".vhd")) == []
    assert sorted(SR(sr_path).vdis()) == sorted(result["chain"])
    assert staging_leftovers(sr_path) == []


def test_download_into_another_sr(uploaded, tmp_path):
    store, image_id, src, leaf, expected = uploaded
    dst = make_sr(tmp_path / "dst")
    wanted = [new_uuid() for _ in range(3)]
    result = transfer.download(store, image_id, dst, uuids=wanted)
    assert result["chain"] == wanted
    assert_landed(dst, result, src, leaf, expected)


@pytest.mark.parametrize("drops", [1, 3])
def test_dropped_connections_resume(glance_auth, uploaded, tmp_path, drops,  # noqa: F811
                                    caplog):
    """The proxy cuts the data connection ``drops`` times; the download resumes (from where
    it was cut, not from 0) and lands."""
    import logging
    caplog.set_level(logging.INFO, logger="vhdport")
    store, image_id, src, leaf, expected = uploaded
    size = store.get(image_id)["size"]
    # connection 0 is the record GET; then the data GET and each resume get cut
    limits = [None] + [size // (drops + 2)] * drops
    dst = make_sr(tmp_path / "dst")
    with FaultProxy(glance_auth.port, drop_after=limits) as proxy:
        result = transfer.download(glance(glance_auth, url=proxy.url), image_id, dst)
        assert proxy.faults_applied >= drops
        assert proxy.connections >= drops + 2
    resumes = [r.getMessage() for r in caplog.records if "resuming at byte" in r.getMessage()]
    assert len(resumes) == drops, resumes
    assert not [r for r in caplog.records if "from the start" in r.getMessage()]
    offsets = [int(m.split("resuming at byte ")[1].split()[0]) for m in resumes]
    assert offsets == sorted(offsets) and offsets[0] > 0
    assert_landed(dst, result, src, leaf, expected)


def test_flipped_byte_lands_nothing(glance_auth, tmp_path):  # noqa: F811
    """One byte flipped in the middle of a VHD data block on every connection: the bundle
    still parses (plain tar), only the hashes can notice -- and nothing reaches the SR."""
    src = make_sr(tmp_path / "src")
    uuids, _ = build_chain(src, 2, 16 * MiB, dense=True, seed=7)
    from vhdport.vhd import Chain
    with Chain.open(os.path.join(src, uuids[0] + ".vhd"), writable=True) as chain:
        chain.write(0, os.urandom(4 * MiB))   # the leaf's first blocks are all data
        chain.flush()
    store = glance(glance_auth)
    image_id = transfer.upload(src, uuids[0], store, name="flip", compression_level=0)
    try:
        dst = make_sr(tmp_path / "dst")
        build_chain(dst, 1, 4 * MiB, seed=8)
        before = sr_tree(dst)
        # ~1 MiB into the body is inside the leaf's first 2 MiB data block, whatever
        # the (small) response headers add
        with FaultProxy(glance_auth.port, flip_at=MiB + 4096, faulty=None) as proxy:
            with pytest.raises(IntegrityError) as info:
                transfer.download(glance(glance_auth, url=proxy.url), image_id, dst)
            assert proxy.faults_applied >= 1
        assert image_id in str(info.value)
        assert sr_tree(dst) == before
        assert staging_leftovers(dst) == []
    finally:
        store.delete(image_id)


def test_wrong_token_fails_fast(glance_auth, uploaded, tmp_path):  # noqa: F811
    store, image_id, src, leaf, _ = uploaded
    bad_token = "wrong-" + TEST_TOKEN[::-1]
    bad = glance(glance_auth, token=bad_token, retries=5, retry_delay=1.0)
    dst = make_sr(tmp_path / "dst")
    before = sr_tree(dst)
    for attempt in (lambda: transfer.download(bad, image_id, dst),
                    lambda: transfer.upload(src, leaf, bad, name="never")):
        started = time.monotonic()
        with pytest.raises(AuthError) as info:
            attempt()
        assert time.monotonic() - started < 5, "401 must not be retried"
        assert bad_token not in str(info.value) and TEST_TOKEN not in str(info.value)
        assert "401" in str(info.value)
    assert sr_tree(dst) == before
    assert staging_leftovers(dst) == []
    assert not [r for r in store.list() if r["name"] == "never"]


def test_upload_into_active_image_sends_nothing(glance_auth, uploaded):  # noqa: F811
    """Refused after one request (the record GET): no PUT ever reaches Glance."""
    store, image_id, src, leaf, _ = uploaded
    before = store.get(image_id)
    with FaultProxy(glance_auth.port, faulty=0) as proxy:
        with pytest.raises(ImageStateError) as info:
            transfer.upload(src, leaf, glance(glance_auth, url=proxy.url), image_id=image_id)
        assert proxy.connections == 1
    assert image_id in str(info.value) and "active" in str(info.value)
    after = store.get(image_id)
    assert (after["status"], after["checksum"], after["size"]) == \
        (before["status"], before["checksum"], before["size"])


def test_upload_into_queued_image(glance_auth, uploaded, tmp_path):  # noqa: F811
    store, _, src, leaf, expected = uploaded
    record = store.create("pre-made", "vhd", "ovf")
    try:
        got = transfer.upload(src, leaf, store, image_id=record["id"], properties={"k": "v"})
        assert got == record["id"]
        after = store.get(got)
        assert after["status"] == "active" and after["properties"].get("k") == "v"
        dst = make_sr(tmp_path / "dst")
        assert_landed(dst, transfer.download(store, got, dst), src, leaf, expected)
    finally:
        store.delete(record["id"])


def test_download_cut_inside_headers_lands_nothing(glance_auth, uploaded,  # noqa: F811
                                                   tmp_path):
    """Every data connection is cut inside the response headers.  http.client takes EOF there
    for the end of the headers, so the stream looks like an empty body: the download must call
    that short data (not "bytes of another format") and land nothing."""
    store, image_id, _, _, _ = uploaded
    dst = make_sr(tmp_path / "dst")
    build_chain(dst, 1, 4 * MiB, seed=9)
    before = sr_tree(dst)
    with FaultProxy(glance_auth.port, drop_after=[None] + [100] * 50) as proxy:
        started = time.monotonic()
        with pytest.raises(IntegrityError) as info:
            transfer.download(glance(glance_auth, url=proxy.url, retries=2), image_id, dst)
        assert time.monotonic() - started < 30
        assert proxy.faults_applied >= 1
    assert image_id in str(info.value) and "size" in str(info.value)
    assert sr_tree(dst) == before
    assert staging_leftovers(dst) == []


class Interrupt(Exception):
    pass


def test_interrupted_upload_leaves_no_image(glance_auth, uploaded):  # noqa: F811
    """A failure mid-stream (here from the progress callback): the terminating chunk is
    never sent, so Glance never sees a complete image, and the image made for it is removed."""
    store, _, src, leaf, _ = uploaded
    name = "interrupted-" + new_uuid()

    def progress(done, total):
        if done > 256 * 1024:
            raise Interrupt()
    with pytest.raises(Interrupt):
        transfer.upload(src, leaf, store, name=name, progress=progress, compression_level=1)
    assert [r for r in store.list() if r["name"] == name] == []
    assert staging_leftovers(src) == []


def test_v1_endpoint_round_trip(tmp_path):
    """The legacy v1 API the original plugin spoke (the test endpoint in tests/peers): upload a
    chain with the original headers, download it into another SR."""
    from tests.peers.glance_v1_server import GlanceV1Server
    token = "v1-e2e-" + new_uuid()
    src = make_sr(tmp_path / "src")
    uuids, model = build_chain(src, 3, 16 * MiB, dense=True, seed=61)
    (tmp_path / "v1").mkdir()
    with GlanceV1Server(str(tmp_path / "v1"), token=token, prefix="/image") as server:
        store = GlanceStore(server.url, api_version=1, auth_token=token, retry_delay=0.01,
                            timeout=10)
        props = {"vhdport_test": "v1", "os_distro": "debian"}   # v1 headers mangle '-'
        image_id = transfer.upload(src, uuids[0], store, name="v1-chain", properties=props)
        record = store.get(image_id)
        assert (record["status"], record["disk_format"], record["container_format"]) == \
            ("active", "vhd", "ovf")
        assert record["properties"] == dict(props,
                                            vhdport_content_digest=model.content_digest())
        assert record["checksum"] == stored_digests(store, image_id)[1]
        puts = [headers for method, _, headers in server.requests if method == "PUT"]
        assert len(puts) == 2      # the data, then the content digest (a property)
        digest_put = dict((k.lower(), v) for k, v in puts[1].items())
        assert digest_put["x-image-meta-property-vhdport_content_digest"] == \
            model.content_digest()
        sent = dict((k.lower(), v) for k, v in puts[0].items())
        assert sent["x-image-meta-disk-format"] == "vhd"
        assert sent["x-image-meta-container-format"] == "ovf"
        assert sent.get("transfer-encoding", "").lower() == "chunked"
        dst = make_sr(tmp_path / "dst")
        result = transfer.download(store, image_id, dst)
        assert_landed(dst, result, src, uuids[0], model.sha256())
