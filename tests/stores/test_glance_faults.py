"""GlanceStore against a real Glance behind proxies that break the network on purpose."""

import hashlib
import logging
import time
import uuid

import pytest

from tests.peers.glance_server import glance_auth  # noqa: F401
from tests.peers.proxies import FaultProxy, TlsProxy, make_self_signed_cert
from tests.stores.test_glance import chunks_of, make_store, payload, read_all
from vhdport.errors import IntegrityError, StoreError, TransientStoreError
from vhdport.stores.base import ACTIVE

pytestmark = pytest.mark.peer

SIZE = 4 * (1 << 20) + 777


@pytest.fixture(scope="module")
def image(glance_auth):  # noqa: F811
    """(image id, data) of one active image, shared by the download tests."""
    store = make_store(glance_auth)
    data = payload(SIZE, seed=11)
    rec = store.create("fault-target")
    store.put(rec["id"], chunks_of(data), size=len(data))
    return rec["id"], data


def via(proxy, server, **options):
    return make_store(server, url=proxy.url, **options)


def test_download_resumes_after_dropped_connection(glance_auth, image, caplog):  # noqa: F811
    image_id, data = image
    caplog.set_level(logging.INFO)
    with FaultProxy(glance_auth.port, drop_after=1500000, faulty=1) as proxy:
        store = via(proxy, glance_auth)
        with store.open(image_id) as stream:
            got = read_all(stream, 256 * 1024)
        assert proxy.faults_applied == 1 and proxy.connections == 2
    assert got == data
    assert "resuming at byte" in caplog.text


def test_download_resumes_several_times(glance_auth, image):  # noqa: F811
    image_id, data = image
    with FaultProxy(glance_auth.port, drop_after=700000, faulty=4) as proxy:
        with via(proxy, glance_auth).open(image_id) as stream:
            got = read_all(stream, 100000)
        assert proxy.faults_applied == 4
    assert hashlib.sha512(got).digest() == hashlib.sha512(data).digest()


def test_download_that_keeps_breaking_gives_up(glance_auth, image):  # noqa: F811
    image_id, _ = image
    # the first connection breaks mid-body, every later one inside the headers
    with FaultProxy(glance_auth.port, drop_after=[300000] + [100] * 20) as proxy:
        store = via(proxy, glance_auth, retries=2)
        with pytest.raises(TransientStoreError) as err:
            with store.open(image_id) as stream:
                read_all(stream)
        assert proxy.connections < 12
    assert image_id in str(err.value) and "gave up after" in str(err.value)


def test_flipped_byte_is_detected_by_content_md5(glance_auth, image):  # noqa: F811
    image_id, _ = image
    with FaultProxy(glance_auth.port, flip_at=200000, faulty=None) as proxy:
        with via(proxy, glance_auth).open(image_id) as stream:
            with pytest.raises(IntegrityError) as err:
                read_all(stream)
            assert stream.position == SIZE  # raised at EOF, after every byte
            with pytest.raises(IntegrityError):  # and it stays failed
                stream.read(10)
    assert "md5" in err.value.fields["what"] and image_id in str(err.value)


def test_503_burst_is_retried(glance_auth, image):  # noqa: F811
    image_id, data = image
    with FaultProxy(glance_auth.port, reply_503=3) as proxy:
        store = via(proxy, glance_auth, retries=5)
        assert store.get(image_id)["size"] == len(data)
        assert proxy.answered_503 == 3
    with FaultProxy(glance_auth.port, reply_503=2) as proxy:
        with via(proxy, glance_auth, retries=5).open(image_id) as stream:
            assert read_all(stream) == data
        assert proxy.answered_503 == 2


def test_503_longer_than_retries_fails_clearly(glance_auth, image):  # noqa: F811
    image_id, _ = image
    with FaultProxy(glance_auth.port, reply_503=100) as proxy:
        store = via(proxy, glance_auth, retries=2)
        with pytest.raises(TransientStoreError) as err:
            store.get(image_id)
        assert proxy.connections == 3
    text = str(err.value)
    assert "HTTP 503" in text and image_id in text and "gave up after 3 attempts" in text
    assert proxy.url in text


def test_create_is_not_replayed_on_503(glance_auth):  # noqa: F811
    with FaultProxy(glance_auth.port, reply_503=1) as proxy:
        with pytest.raises(TransientStoreError):
            via(proxy, glance_auth, retries=5).create("maybe-created-" + uuid.uuid4().hex)
        assert proxy.connections == 1


def test_stalled_download_times_out(glance_auth, image):  # noqa: F811
    image_id, _ = image
    with FaultProxy(glance_auth.port, stall_after=300000, faulty=None) as proxy:
        store = via(proxy, glance_auth, timeout=1, retries=1)
        started = time.monotonic()
        with pytest.raises(TransientStoreError) as err:
            with store.open(image_id) as stream:
                read_all(stream)
        assert time.monotonic() - started < 10
    assert "timed out" in str(err.value) and image_id in str(err.value)


def test_stalled_metadata_request_times_out(glance_auth, image):  # noqa: F811
    image_id, _ = image
    with FaultProxy(glance_auth.port, stall_after=5, faulty=None) as proxy:
        store = via(proxy, glance_auth, timeout=0.5, retries=2)
        started = time.monotonic()
        with pytest.raises(TransientStoreError, match="timed out"):
            store.get(image_id)
        assert time.monotonic() - started < 6
        assert proxy.connections == 3


def test_connection_refused_is_transient(glance_auth):  # noqa: F811
    with FaultProxy(glance_auth.port) as proxy:
        url = proxy.url
    store = make_store(glance_auth, url=url, retries=1)
    with pytest.raises(TransientStoreError, match="refused"):
        store.get(str(uuid.uuid4()))


# --- TLS ------------------------------------------------------------------

@pytest.fixture(scope="module")
def tls_proxy(glance_auth, tmp_path_factory):  # noqa: F811
    folder = tmp_path_factory.mktemp("tls")
    cert, key = make_self_signed_cert(str(folder))
    with TlsProxy(glance_auth.port, cert, key) as proxy:
        yield proxy, cert


def test_tls_unknown_ca_is_refused(glance_auth, tls_proxy):  # noqa: F811
    proxy, _ = tls_proxy
    store = make_store(glance_auth, url=proxy.url, retries=5, retry_delay=1.0)
    started = time.monotonic()
    with pytest.raises(StoreError) as err:
        store.get(str(uuid.uuid4()))
    assert not isinstance(err.value, TransientStoreError)
    assert time.monotonic() - started < 2  # a certificate problem is not retried
    assert "certificate" in str(err.value) and "cacert" in str(err.value)


def test_tls_with_cacert_round_trip(glance_auth, tls_proxy):  # noqa: F811
    proxy, cert = tls_proxy
    store = make_store(glance_auth, url=proxy.url, cacert=cert)
    data = payload(1 << 20, seed=12)
    rec = store.create("over-tls")
    store.put(rec["id"], chunks_of(data, 100000), size=len(data))
    assert store.get(rec["id"])["status"] == ACTIVE
    with store.open(rec["id"]) as stream:
        assert read_all(stream) == data


def test_tls_insecure_only_when_asked(glance_auth, tls_proxy):  # noqa: F811
    proxy, _ = tls_proxy
    store = make_store(glance_auth, url=proxy.url, insecure=True)
    assert isinstance(list(store.list()), list)
