"""GlanceStore (API v2) against a real Glance started by tests/peers/glance_server.py."""

import hashlib
import logging
import time
import uuid

import pytest

from tests.peers.glance_server import TEST_TOKEN, glance_auth, glance_noauth  # noqa: F401
from vhdport.errors import (AuthError, ImageNotFound, ImageStateError, IntegrityError,
                            StoreError)
from vhdport.stores.base import ACTIVE, QUEUED
from tests.stores.helpers import chunks_of, make_store, payload, read_all  # noqa: F401

pytestmark = pytest.mark.peer


@pytest.fixture
def store(glance_auth):  # noqa: F811
    return make_store(glance_auth)


def uploaded(store, data, name="img", **props):
    rec = store.create(name, properties=props or None)
    store.put(rec["id"], chunks_of(data), size=len(data))
    return rec["id"]


# --- round trips ----------------------------------------------------------

def test_roundtrip_checksums_and_properties(store):
    data = payload(3 * (1 << 20) + 12345)
    props = {"vhdport:chain-depth": "3", "auto_disk_config": "True", "weird name/x~y": "v"}
    rec = store.create("roundtrip", properties=props, visibility="private")
    assert rec["status"] == QUEUED and rec["disk_format"] == "vhd"
    assert rec["container_format"] == "ovf" and rec["visibility"] == "private"
    assert rec["properties"] == props

    sent = store.put(rec["id"], chunks_of(data), size=len(data))
    assert (sent.size, sent.md5) == (len(data), hashlib.md5(data).hexdigest())

    got = store.get(rec["id"])
    assert got["status"] == ACTIVE and got["size"] == len(data)
    assert got["checksum"] == hashlib.md5(data).hexdigest()
    assert got["os_hash_algo"] == "sha512"
    assert got["os_hash_value"] == hashlib.sha512(data).hexdigest()
    assert got["properties"] == props

    with store.open(rec["id"]) as stream:
        assert stream.size == len(data)
        assert read_all(stream) == data
        assert stream.expected_md5 == hashlib.md5(data).hexdigest()


def test_roundtrip_without_auth(glance_noauth):  # noqa: F811
    store = make_store(glance_noauth)
    data = payload(100000, seed=2)
    image_id = uploaded(store, data, name="noauth")
    assert store.get(image_id)["os_hash_value"] == hashlib.sha512(data).hexdigest()
    with store.open(image_id) as stream:
        assert read_all(stream, 4096) == data


def test_open_at_offset(store):
    data = payload(2 << 20, seed=3)
    image_id = uploaded(store, data)
    with store.open(image_id, offset=1000001) as stream:
        assert stream.size == len(data)
        assert read_all(stream) == data[1000001:]


def test_update_name_and_properties(store):
    rec = store.create("before", properties={"a": "1", "b": "2"})
    after = store.update(rec["id"], name="after", properties={"a": "10", "c": 3}, remove=["b"])
    assert after["name"] == "after"
    assert after["properties"] == {"a": "10", "c": "3"}
    assert store.get(rec["id"])["properties"] == {"a": "10", "c": "3"}


def test_remove_missing_property_is_clear(store):
    rec = store.create("rm", properties={"a": "1"})
    with pytest.raises(StoreError) as err:
        store.update(rec["id"], remove=["nope"])
    assert "'nope'" in str(err.value) and "409" in str(err.value)
    assert rec["id"] in str(err.value)


def test_core_attribute_is_not_a_property(store):
    with pytest.raises(StoreError, match="Glance image attribute"):
        store.create("x", properties={"status": "active"})


def test_delete_then_not_found(store):
    image_id = uploaded(store, b"abc")
    store.delete(image_id)
    with pytest.raises(ImageNotFound):
        store.get(image_id)


def test_not_found_everywhere(store):
    missing = str(uuid.uuid4())
    for call in (lambda: store.get(missing), lambda: store.open(missing),
                 lambda: store.delete(missing), lambda: store.update(missing, name="x"),
                 lambda: store.put(missing, iter([b"x"]))):
        with pytest.raises(ImageNotFound) as err:
            call()
        assert missing in str(err.value)


def test_list_follows_next_links(glance_auth):  # noqa: F811
    store = make_store(glance_auth, page_size=3)
    tag = uuid.uuid4().hex[:8]
    made = {store.create("page-{}-{}".format(tag, i))["id"] for i in range(8)}
    calls = []
    real_request = store._http.request

    def counting(method, path, *a, **kw):
        calls.append(path)
        return real_request(method, path, *a, **kw)

    store._http.request = counting
    listed = [rec["id"] for rec in store.list()]
    assert made <= set(listed)
    assert len(listed) == len(set(listed))
    assert len(calls) >= 3 and all("limit=3" in path for path in calls)
    assert any("marker=" in path for path in calls)


# --- auth -----------------------------------------------------------------

def test_wrong_token_is_auth_error_fast_without_retries(glance_auth, caplog):  # noqa: F811
    secret = "wrong-secret-token-9d2f"
    store = make_store(glance_auth, auth_token=secret, retries=5, retry_delay=2.0)
    caplog.set_level(logging.DEBUG)
    for call in (lambda: store.get(str(uuid.uuid4())), lambda: list(store.list()),
                 lambda: store.create("x"), lambda: store.put(str(uuid.uuid4()), iter([b"x"]))):
        started = time.monotonic()
        with pytest.raises(AuthError) as err:
            call()
        assert time.monotonic() - started < 1.5  # one attempt, no backoff sleeps
        assert "token rejected or expired" in str(err.value)
        assert secret not in str(err.value) and secret not in repr(err.value)
        assert secret not in repr(err.value.fields)
    assert secret not in caplog.text
    assert secret not in repr(store) and secret not in repr(vars(store))


def test_token_never_in_errors_or_logs(store, caplog):
    caplog.set_level(logging.DEBUG)
    with pytest.raises(ImageNotFound) as err:
        store.get(str(uuid.uuid4()))
    assert TEST_TOKEN not in str(err.value)
    assert TEST_TOKEN not in repr(store) and TEST_TOKEN not in repr(store._http)
    assert TEST_TOKEN not in caplog.text


# --- upload rules ---------------------------------------------------------

class Spy(object):
    """A chunk iterator that records whether anyone asked it for data."""

    def __init__(self, chunks):
        self.chunks, self.touched = list(chunks), False

    def __iter__(self):
        self.touched = True
        return iter(self.chunks)


def test_put_into_active_image_refused_before_sending(store):
    image_id = uploaded(store, b"first")
    spy = Spy([b"second"])
    with pytest.raises(ImageStateError) as err:
        store.put(image_id, spy)
    assert not spy.touched
    assert err.value.fields["status"] == ACTIVE and image_id in str(err.value)
    with store.open(image_id) as stream:
        assert read_all(stream) == b"first"


def wait_status(store, image_id, want, seconds=10):
    deadline = time.monotonic() + seconds
    seen = []
    while time.monotonic() < deadline:
        status = store.get(image_id)["status"]
        seen.append(status)
        if status == want:
            break
        time.sleep(0.1)
    return seen


def test_failing_chunk_source_leaves_image_incomplete(store):
    rec = store.create("broken-upload")

    def source():
        yield payload(1 << 20, seed=5)
        yield payload(1 << 20, seed=6)
        raise RuntimeError("disk died under the uploader")

    with pytest.raises(RuntimeError, match="disk died"):
        store.put(rec["id"], source())
    seen = wait_status(store, rec["id"], QUEUED)
    assert ACTIVE not in seen and seen[-1] == QUEUED
    # the queued image still takes a proper upload afterwards
    data = payload(5000, seed=7)
    store.put(rec["id"], chunks_of(data))
    assert store.get(rec["id"])["checksum"] == hashlib.md5(data).hexdigest()


def test_upload_shorter_than_announced_never_completes(store):
    rec = store.create("short-upload")
    with pytest.raises(IntegrityError) as err:
        store.put(rec["id"], chunks_of(b"x" * 1000), size=2000)
    assert err.value.fields["expected"] == 2000 and err.value.fields["actual"] == 1000
    assert ACTIVE not in wait_status(store, rec["id"], QUEUED)
