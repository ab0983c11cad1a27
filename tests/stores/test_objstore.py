"""The object-store image layout (objstore.py) through both APIs of a REAL Swift."""

import hashlib
import json
import os

import pytest

from tests.stores.objpeer import (KINDS, MiB, all_objects, chunked, data_objects, fresh_name,
                                  leftovers, open_store, swift_peer)  # noqa: F401
from vhdport.errors import ImageNotFound, ImageStateError, IntegrityError, StoreError
from vhdport.stores import base, objstore

pytestmark = pytest.mark.peer


@pytest.fixture(params=KINDS)
def kind(request):
    return request.param


@pytest.fixture
def store(kind, swift_peer):  # noqa: F811
    return open_store(kind, swift_peer, fresh_name())


def read_all(store, image_id, offset=0):
    with store.open(image_id, offset) as stream:
        return stream.read()


def test_bucket_is_created_on_first_use_and_records_keep_local_fields(store, swift_peer):  # noqa: F811
    assert store.list() == []
    record = store.create("disk", properties={"os_type": "linux"})
    assert set(record) == set(base.RECORD_FIELDS)
    assert record["status"] == base.QUEUED and record["properties"] == {"os_type": "linux"}
    assert store.get(record["id"]) == record
    assert [r["id"] for r in store.list()] == [record["id"]]
    updated = store.update(record["id"], name="disk2", properties={"a": "1"}, remove=["os_type"])
    assert updated["name"] == "disk2" and updated["properties"] == {"a": "1"}
    with pytest.raises(StoreError, match="cannot remove missing property os_type"):
        store.update(record["id"], remove=["os_type"])


@pytest.mark.parametrize("length", [0, 5, MiB - 1, MiB, 3 * MiB + 12345])
def test_put_then_read_back_whole_and_from_an_offset(store, swift_peer, length):  # noqa: F811
    data = os.urandom(length)
    record = store.create("img")
    result = store.put(record["id"], chunked(data), size=length)
    assert (result.size, result.md5) == (length, hashlib.md5(data).hexdigest())
    after = store.get(record["id"])
    assert after["status"] == base.ACTIVE
    assert (after["size"], after["checksum"], after["os_hash_value"]) == (
        length, hashlib.md5(data).hexdigest(), hashlib.sha512(data).hexdigest())
    assert read_all(store, record["id"]) == data
    assert read_all(store, record["id"], offset=length // 3) == data[length // 3:]
    assert leftovers(swift_peer, _bucket(store), keep=[record["id"]]) == []


def test_a_failing_stream_leaves_no_parts_no_data_and_a_queued_record(store, swift_peer, kind):  # noqa: F811
    record = store.create("img")

    def chunks():
        for chunk in chunked(os.urandom(3 * MiB)):
            yield chunk
        raise RuntimeError("the bundle writer broke")

    with pytest.raises(RuntimeError, match="the bundle writer broke"):
        store.put(record["id"], chunks())
    bucket = _bucket(store)
    assert store.get(record["id"])["status"] == base.QUEUED
    assert leftovers(swift_peer, bucket) == []
    assert data_objects(swift_peer, bucket) == []
    assert [o for o in all_objects(swift_peer, bucket) if not o.endswith(".json")] == []


def test_a_size_mismatch_is_refused_and_cleaned(store, swift_peer):  # noqa: F811
    record = store.create("img")
    with pytest.raises(IntegrityError, match="size mismatch"):
        store.put(record["id"], chunked(os.urandom(2 * MiB + 1)), size=2 * MiB)
    assert store.get(record["id"])["status"] == base.QUEUED
    assert leftovers(swift_peer, _bucket(store)) == []
    assert data_objects(swift_peer, _bucket(store)) == []


def test_put_needs_a_queued_image(store):
    record = store.create("img")
    store.put(record["id"], [b"abc"])
    with pytest.raises(ImageStateError, match="is active, expected queued"):
        store.put(record["id"], [b"again"])
    with pytest.raises(ImageNotFound):
        store.put("00000000-0000-4000-8000-000000000000", [b"x"])
    with pytest.raises(ImageNotFound):
        store.get("../../etc/passwd")


def test_open_refuses_a_queued_image_and_a_missing_one(store):
    record = store.create("img")
    with pytest.raises(ImageStateError, match="queued"):
        store.open(record["id"])
    with pytest.raises(ImageNotFound):
        store.open("00000000-0000-4000-8000-000000000000")


def test_delete_removes_record_data_and_segments(store, swift_peer):  # noqa: F811
    record = store.create("img")
    store.put(record["id"], chunked(os.urandom(3 * MiB)))
    store.delete(record["id"])
    with pytest.raises(ImageNotFound):
        store.get(record["id"])
    with pytest.raises(ImageNotFound):
        store.delete(record["id"])
    assert all_objects(swift_peer, _bucket(store)) == []


def _stall_in_saving(store, kind, image_id, heartbeat):
    """Leave the image as a killed uploader would: saving, parts sent, never completed."""
    doc = store._load(image_id)
    key = store._key(image_id, "data")
    token = store.api.begin_parts(key, image_id)
    from vhdport.stores.multipart import Part
    data = os.urandom(MiB)
    store.api.send_part(token, Part(1, len(data), hashlib.md5(data).hexdigest()), data)
    doc["record"]["status"] = base.SAVING
    doc["upload"] = {"started": heartbeat, "heartbeat": heartbeat, "token": token,
                     "owner": "a-killed-uploader"}
    store._save(doc)
    return token


def test_put_refuses_a_live_upload_and_takes_over_a_dead_one(store, swift_peer, kind):  # noqa: F811
    record = store.create("img")
    _stall_in_saving(store, kind, record["id"], heartbeat=store._clock())
    assert leftovers(swift_peer, _bucket(store)) != []
    with pytest.raises(ImageStateError, match="another upload is running"):
        store.put(record["id"], [b"x"])
    doc = store._load(record["id"])
    doc["upload"]["heartbeat"] -= objstore.STALE_AFTER + 1
    store._save(doc)
    data = os.urandom(2 * MiB + 7)
    store.put(record["id"], chunked(data))
    assert read_all(store, record["id"]) == data
    # nothing but the new upload's segments (Swift): the dead one's went
    data_token = store._load(record["id"])["data"]
    assert leftovers(swift_peer, _bucket(store),
                     keep=[data_token.get("segments", "-")]) == []


def test_gc_removes_dead_uploads_orphan_data_and_keeps_active_images(store, swift_peer, kind):  # noqa: F811
    keep = store.create("keep")
    kept = os.urandom(2 * MiB + 3)
    store.put(keep["id"], chunked(kept))
    dead = store.create("dead")
    _stall_in_saving(store, kind, dead["id"], heartbeat=store._clock())
    orphan = store._key("11111111-1111-4111-8111-111111111111", "data")
    store.api.put_whole(orphan, b"orphan bytes")
    assert store.gc() == []  # all young: may belong to running uploads
    removed = store.gc(min_age=0)
    assert any("abandoned upload" in line for line in removed)
    assert any(orphan in line for line in removed)
    assert store.get(dead["id"])["status"] == base.QUEUED
    assert read_all(store, keep["id"]) == kept
    assert leftovers(swift_peer, _bucket(store), keep=[keep["id"]]) == []
    assert data_objects(swift_peer, _bucket(store)) == [store._key(keep["id"], "data")]


@pytest.mark.parametrize("writer, reader", [("s3", "swift"), ("swift", "s3")])
def test_an_image_written_through_one_api_reads_through_the_other(swift_peer, writer, reader):  # noqa: F811
    bucket = fresh_name()
    up, down = open_store(writer, swift_peer, bucket), open_store(reader, swift_peer, bucket)
    data = os.urandom(3 * MiB + 5)
    record = up.create("cross", properties={"k": "v"})
    up.put(record["id"], chunked(data))
    assert down.get(record["id"]) == up.get(record["id"])
    assert read_all(down, record["id"]) == data
    down.delete(record["id"])
    assert all_objects(swift_peer, bucket) == []


def test_a_damaged_record_is_reported_with_what_to_do(store):
    record = store.create("img")
    store.api.write_small(store._key(record["id"], "json"), b"{not json")
    with pytest.raises(StoreError, match="damaged record of image .* delete the image"):
        store.get(record["id"])


def test_record_object_is_plain_json_with_the_record(store):
    record = store.create("img")
    doc = json.loads(store.api.read_small(store._key(record["id"], "json")).decode())
    assert doc["record"] == record and doc["upload"] is None


def test_tuning_limits():
    with pytest.raises(StoreError, match="connections must be 1..64"):
        objstore.check_tuning(0, MiB)
    with pytest.raises(StoreError, match="part size 1000 is too small"):
        objstore.check_tuning(4, 1000)


def _bucket(store):
    return getattr(store.api, "bucket", None) or store.api.container


def test_an_upload_taken_over_meanwhile_never_goes_active_nor_touches_the_new_one(store,
                                                                                   swift_peer):  # noqa: F811
    record = store.create("img")
    image_id = record["id"]

    def chunks():
        for _ in range(3):  # the multipart upload has begun after the second part
            yield os.urandom(MiB)
        # meanwhile another process decided we were dead and took the image over
        doc = store._load(image_id)
        doc["upload"] = dict(doc["upload"], owner="someone-else")
        store._save(doc)
        yield os.urandom(MiB + 1)

    with pytest.raises(ImageStateError, match="saving by another upload"):
        store.put(image_id, chunks())
    doc = store._load(image_id)
    assert doc["record"]["status"] == base.SAVING and doc["upload"]["owner"] == "someone-else"
    assert leftovers(swift_peer, _bucket(store)) == []  # our parts went


@pytest.mark.parametrize("field, value", [
    ("upload", {"started": 0, "heartbeat": 0, "owner": "x",
                "token": {"key": "imgs/images/other.data", "upload_id": "u1"}}),
    ("upload", {"started": 0, "heartbeat": "soon", "owner": "x", "token": None}),
    ("data", {"key": "elsewhere", "segments": "imgs/segments/"}),
    ("record", {"id": "not-this-one"}),
])
def test_a_record_that_would_steer_us_elsewhere_is_damaged(store, field, value):
    record = store.create("img")
    doc = store._load(record["id"])
    doc[field] = value
    store.api.write_small(store._key(record["id"], "json"), json.dumps(doc).encode())
    with pytest.raises(StoreError, match="damaged image record"):
        store.get(record["id"])
    assert [r["status"] for r in store.list()] == ["damaged"]
    assert store.gc(min_age=0) == []
    store.delete(record["id"])
    assert store.list() == []
