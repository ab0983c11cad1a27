"""R3 network faults between vhdport and a REAL Swift, through both APIs: resets, truncation,
5xx bursts, stalls and flipped bytes.  Either the transfer recovers and the data is exact, or
it fails and nothing is left (no parts, no segments, no data object, the record not active).
Credentials and signatures never show up in errors or logs."""

import logging
import os

import pytest

from tests.peers.proxies import Fault, RuleProxy
from tests.stores.objpeer import (KINDS, MiB, chunked, data_objects, fresh_name, leftovers,
                                  open_store, swift_peer)  # noqa: F401
from vhdport.errors import StoreError
from vhdport.stores import base

pytestmark = pytest.mark.peer

#: a substring of the request path that only a part (segment) upload has
PART = {"s3": "partNumber=", "swift": "/segments/"}
#: method and path substring of the request that completes a multipart object
COMPLETE = {"s3": ("POST", "uploadId="), "swift": ("PUT", "multipart-manifest=put")}
DATA = os.urandom(4 * MiB + 777)


@pytest.fixture(params=KINDS)
def kind(request):
    return request.param


def no_secrets(text, server):
    assert "Signature=" not in text and "AUTH_tk" not in text
    assert "X-Auth-Key" not in text and server.key + "\n" not in text


def upload_through(kind, server, rules, caplog, **options):
    """(store opened through a RuleProxy with ``rules``, image id, proxy) after an upload try."""
    caplog.set_level(logging.DEBUG)
    proxy = RuleProxy(server.ports["proxy"], rules, stall_seconds=30)
    store = open_store(kind, server, fresh_name(), via=proxy.url, **options)
    record = store.create("faulty")
    return store, record["id"], proxy


def assert_recovered(store, image_id):
    assert store.get(image_id)["status"] == base.ACTIVE
    with store.open(image_id) as stream:
        assert stream.read() == DATA


def assert_nothing_left(store, image_id, server):
    bucket = getattr(store.api, "bucket", None) or store.api.container
    assert store.get(image_id)["status"] == base.QUEUED
    assert leftovers(server, bucket) == []
    assert data_objects(server, bucket) == []


def test_a_503_burst_on_parts_is_retried(kind, swift_peer, caplog):  # noqa: F811
    store, image_id, proxy = upload_through(kind, swift_peer, [
        Fault(method="PUT", path=PART[kind], status=503, times=3)], caplog)
    with proxy:
        store.put(image_id, chunked(DATA))
        assert_recovered(store, image_id)
    assert proxy.rules[0].hits == 3
    no_secrets(caplog.text, swift_peer)


def test_a_reset_in_the_middle_of_a_part_is_retried(kind, swift_peer, caplog):  # noqa: F811
    store, image_id, proxy = upload_through(kind, swift_peer, [
        Fault(method="PUT", path=PART[kind], up_drop_after=300000, reset=True, times=2)], caplog)
    with proxy:
        store.put(image_id, chunked(DATA))
        assert_recovered(store, image_id)
    assert proxy.rules[0].hits == 2
    no_secrets(caplog.text, swift_peer)


def test_a_flipped_byte_in_every_part_fails_and_leaves_nothing(kind, swift_peer, caplog):  # noqa: F811
    store, image_id, proxy = upload_through(kind, swift_peer, [
        Fault(method="PUT", path=PART[kind], up_flip_at=4000, times=None)], caplog)
    with proxy:
        with pytest.raises(StoreError, match=r"BadDigest|422|Unprocessable") as info:
            store.put(image_id, chunked(DATA))
        assert proxy.rules[0].flipped >= 1
        assert_nothing_left(store, image_id, swift_peer)
    no_secrets(str(info.value) + caplog.text, swift_peer)


def test_a_failed_completion_aborts_or_is_retried(kind, swift_peer, caplog):  # noqa: F811
    method, path = COMPLETE[kind]
    store, image_id, proxy = upload_through(kind, swift_peer, [
        Fault(method=method, path=path, status=503, times=None)], caplog, retries=2)
    with proxy:
        with pytest.raises(StoreError, match="503"):
            store.put(image_id, chunked(DATA))
        assert_nothing_left(store, image_id, swift_peer)
    no_secrets(caplog.text, swift_peer)


def test_a_cut_download_range_is_fetched_again(kind, swift_peer, caplog):  # noqa: F811
    store, image_id, proxy = upload_through(kind, swift_peer, [
        Fault(method="GET", path=".data", drop_after=200000, times=2),
        Fault(method="GET", path=".data", drop_after=10, reset=True, times=1)], caplog)
    with proxy:
        store.put(image_id, chunked(DATA))
        assert_recovered(store, image_id)
    assert [rule.hits for rule in proxy.rules] == [2, 1]
    no_secrets(caplog.text, swift_peer)


def test_a_stalled_range_times_out_and_is_fetched_again(kind, swift_peer, caplog):  # noqa: F811
    store, image_id, proxy = upload_through(kind, swift_peer, [
        Fault(method="GET", path=".data", stall_after=1000, times=1)], caplog, timeout=2)
    with proxy:
        store.put(image_id, chunked(DATA))
        assert_recovered(store, image_id)
    assert "timed out" in caplog.text
    no_secrets(caplog.text, swift_peer)


def test_a_truncated_record_read_is_retried(kind, swift_peer, caplog):  # noqa: F811
    store, image_id, proxy = upload_through(kind, swift_peer, [
        Fault(method="GET", path=".json", drop_after=20, times=2)], caplog)
    with proxy:
        assert store.get(image_id)["status"] == base.QUEUED
    assert proxy.rules[0].hits == 2


def test_a_flipped_record_byte_is_caught_by_its_md5(kind, swift_peer, caplog):  # noqa: F811
    store, image_id, proxy = upload_through(kind, swift_peer, [
        Fault(method="GET", path=".json", flip_at=30, times=1)], caplog)
    with proxy:
        assert store.get(image_id)["id"] == image_id
    assert proxy.rules[0].flipped == 1


def test_a_garbled_completion_answer_removes_the_completed_object(swift_peer, caplog):  # noqa: F811
    """S3 only: the object is complete on the server when its answer comes back garbled
    (first body byte flipped); it must not stay, and the record must not go active."""
    store, image_id, proxy = upload_through("s3", swift_peer, [
        Fault(method="POST", path="uploadId=", flip_at=0, times=None)], caplog, retries=1)
    with proxy:
        with pytest.raises(StoreError):
            store.put(image_id, chunked(DATA))
        assert proxy.rules[0].flipped == 1
        assert_nothing_left(store, image_id, swift_peer)
