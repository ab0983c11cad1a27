"""GlanceStore(api_version=1) against the v1 endpoint in tests/peers/glance_v1_server.py."""

import hashlib
import time
import uuid

import pytest

from tests.peers.glance_v1_server import GlanceV1Server
from tests.peers.proxies import FaultProxy
from tests.stores.helpers import chunks_of, payload, read_all
from vhdport.errors import (AuthError, ImageNotFound, ImageStateError, IntegrityError,
                            StoreError, TransientStoreError)
from vhdport.stores.base import ACTIVE, QUEUED
from vhdport.stores.glance import GlanceStore
from vhdport.stores.glance_v1 import GlanceV1Store

TOKEN = "v1-test-token-5be1"


@pytest.fixture
def server(tmp_path):
    with GlanceV1Server(str(tmp_path), token=TOKEN, prefix="/image") as srv:
        yield srv


def v1_store(url, **options):
    options.setdefault("auth_token", TOKEN)
    options.setdefault("retry_delay", 0.01)
    options.setdefault("timeout", 10)
    return GlanceStore(url, api_version=1, **options)


@pytest.fixture
def store(server):
    return v1_store(server.url)


def test_api_version_picks_the_v1_class(server):
    store = v1_store(server.url + "/v1/")
    assert isinstance(store, GlanceV1Store) and isinstance(store, GlanceStore)
    assert repr(store) == "GlanceV1Store({!r}, api_version=1)".format(server.url)
    assert TOKEN not in repr(store)
    with pytest.raises(StoreError, match="unsupported Glance API version"):
        GlanceStore(server.url, api_version=3)


def test_upload_sends_the_original_headers(server, store):
    rec = store.create("legacy", properties={"auto_disk_config": "True", "os_type": "linux"})
    assert rec["status"] == QUEUED and rec["properties"]["os_type"] == "linux"
    data = payload(2 * (1 << 20) + 99, seed=21)
    server.requests.clear()
    sent = store.put(rec["id"], chunks_of(data), size=len(data))
    assert sent.md5 == hashlib.md5(data).hexdigest()

    puts = [(path, headers) for method, path, headers in server.requests if method == "PUT"]
    assert len(puts) == 1
    path, headers = puts[0]
    assert path == "/image/v1/images/" + rec["id"]
    lower = {k.lower(): v for k, v in headers.items()}
    assert lower["x-image-meta-status"] == "queued"
    assert lower["x-image-meta-disk-format"] == "vhd"
    assert lower["x-image-meta-container-format"] == "ovf"
    assert lower["x-image-meta-property-auto_disk_config"] == "True"
    assert lower["x-image-meta-property-os_type"] == "linux"
    assert lower["transfer-encoding"] == "chunked"
    assert lower["content-type"] == "application/octet-stream"
    assert lower["x-auth-token"] == TOKEN
    # put checked the state with HEAD first, and read the record back after
    assert [m for m, _, _ in server.requests] == ["HEAD", "PUT", "HEAD"]

    got = store.get(rec["id"])
    assert got["status"] == ACTIVE and got["size"] == len(data)
    assert got["checksum"] == hashlib.md5(data).hexdigest()
    assert got["visibility"] == "private"
    with store.open(rec["id"]) as stream:
        assert stream.size == len(data)
        assert read_all(stream) == data
        assert stream.expected_md5 == got["checksum"]


def test_update_and_remove_properties(store):
    rec = store.create("meta", properties={"a": "1", "b": "2"})
    after = store.update(rec["id"], name="renamed", properties={"c": "3"}, remove=["a"])
    assert after["name"] == "renamed" and after["properties"] == {"b": "2", "c": "3"}
    assert store.get(rec["id"])["properties"] == {"b": "2", "c": "3"}
    with pytest.raises(StoreError, match="'zz'"):
        store.update(rec["id"], remove=["zz"])


def test_names_v1_would_mangle_are_refused(store):
    with pytest.raises(StoreError, match="v1 header"):
        store.create("x", properties={"Mixed-Case": "1"})
    with pytest.raises(StoreError, match="line break"):
        store.create("x", properties={"ok": "two\r\nlines"})


def test_list_pages_with_marker(server):
    store = v1_store(server.url, page_size=2)
    made = [store.create("p{}".format(i))["id"] for i in range(5)]
    listed = [r["id"] for r in store.list()]
    assert sorted(listed) == sorted(made)
    lists = [p for m, p, _ in server.requests if m == "GET" and "/detail" in p]
    assert len(lists) == 3 and "marker=" + listed[1] in lists[1]


def test_put_into_active_refused_and_not_found(store):
    rec = store.create("once")
    store.put(rec["id"], [b"data"])
    with pytest.raises(ImageStateError):
        store.put(rec["id"], [b"more"])
    missing = str(uuid.uuid4())
    for call in (lambda: store.get(missing), lambda: store.open(missing),
                 lambda: store.delete(missing)):
        with pytest.raises(ImageNotFound, match=missing):
            call()
    store.delete(rec["id"])
    with pytest.raises(ImageNotFound):
        store.get(rec["id"])


def test_broken_upload_stays_queued(server, store):
    rec = store.create("half")

    def source():
        yield b"x" * 100000
        raise IOError("source vanished")

    with pytest.raises(IOError, match="source vanished"):
        store.put(rec["id"], source())
    for _ in range(50):
        if server.aborted_uploads:
            break
        time.sleep(0.05)
    assert server.aborted_uploads == 1
    assert store.get(rec["id"])["status"] == QUEUED


def test_wrong_token(server):
    store = v1_store(server.url, auth_token="nope-secret", retries=5, retry_delay=5)
    with pytest.raises(AuthError) as err:
        store.get(str(uuid.uuid4()))
    assert "nope-secret" not in str(err.value)


def test_download_without_range_restarts_only_before_handing_data(server, store):
    data = payload(3 << 20, seed=22)
    rec = store.create("norange")
    store.put(rec["id"], chunks_of(data))
    # v1 ignores Range, so open(offset) skips; broken while skipping, nothing was
    # handed out yet, so it starts over from byte 0
    with FaultProxy(server.port, drop_after=600000, faulty=1) as proxy:
        s = v1_store(proxy.url + "/image")
        with s.open(rec["id"], offset=1000000) as stream:
            assert read_all(stream, 2 << 20) == data[1000000:]
        assert proxy.faults_applied == 1 and proxy.connections == 2
    # broken after data reached the caller: v1 cannot resume, so fail clearly
    with FaultProxy(server.port, drop_after=1500000, faulty=1) as proxy:
        s = v1_store(proxy.url + "/image")
        with pytest.raises(TransientStoreError, match="does not resume") as err:
            with s.open(rec["id"]) as stream:
                read_all(stream, 1 << 20)
    assert rec["id"] in str(err.value)


def test_download_detects_flipped_byte_by_etag(server, store):
    data = payload(1 << 20, seed=23)
    rec = store.create("flip")
    store.put(rec["id"], chunks_of(data))
    with FaultProxy(server.port, flip_at=500000, faulty=None) as proxy:
        s = v1_store(proxy.url + "/image")
        with pytest.raises(IntegrityError, match="md5"):
            with s.open(rec["id"]) as stream:
                read_all(stream)
