"""The local image store against its contract: Glance-shaped records, atomic uploads, safe ids."""

import errno
import hashlib
import json
import os
import re
import subprocess
import sys
import threading
import tracemalloc
import types

import pytest

from vhdport import errors
from vhdport.stores import local, open_store
from vhdport.stores.base import ACTIVE, QUEUED, SAVING
from vhdport.stores.local import LocalStore

MiB = 1024 * 1024
GLANCE_TIME = re.compile(r"\A\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ\Z")


@pytest.fixture
def store(tmp_path):
    return LocalStore(str(tmp_path / "store"))


def files_in(store):
    return sorted(os.listdir(store.images_dir))


def test_create_makes_a_queued_glance_record_and_the_store(store):
    rec = store.create("base", properties={"vhd_chain": "a,b"})
    assert os.path.isfile(os.path.join(store.root, local.MARKER))
    assert re.match(r"\A[0-9a-f-]{36}\Z", rec["id"])
    assert rec["status"] == QUEUED and rec["name"] == "base"
    assert (rec["disk_format"], rec["container_format"]) == ("vhd", "ovf")
    assert rec["size"] is None and rec["checksum"] is None
    assert rec["properties"] == {"vhd_chain": "a,b"}
    assert GLANCE_TIME.match(rec["created_at"]) and GLANCE_TIME.match(rec["updated_at"])
    assert store.get(rec["id"]) == rec
    with open(os.path.join(store.images_dir, rec["id"] + ".json")) as f:
        assert json.load(f)["record"] == rec


@pytest.mark.parametrize("kwargs", [
    {"disk_format": "floppy"}, {"container_format": "zip"}, {"visibility": "everyone"},
    {"properties": {"status": "active"}}, {"properties": {"k": 1}}, {"properties": {"": "v"}},
])
def test_create_refuses_what_glance_refuses(store, kwargs):
    with pytest.raises(errors.StoreError):
        store.create("x", **kwargs)


def test_put_then_open_round_trips_with_hashes_of_stored_bytes(store):
    image_id = store.create("img")["id"]
    payload = os.urandom(3 * MiB + 17)
    result = store.put(image_id, (payload[i:i + MiB] for i in range(0, len(payload), MiB)),
                       size=len(payload))
    rec = store.get(image_id)
    assert rec["status"] == ACTIVE and rec["size"] == len(payload) == result.size
    with open(os.path.join(store.images_dir, image_id + ".data"), "rb") as f:
        stored = f.read()
    assert stored == payload
    assert rec["checksum"] == result.md5 == hashlib.md5(stored).hexdigest()
    assert rec["os_hash_algo"] == "sha512"
    assert rec["os_hash_value"] == result.sha512 == hashlib.sha512(stored).hexdigest()
    with store.open(image_id) as stream:
        assert stream.size == len(payload)
        assert stream.read() == payload
    assert files_in(store) == sorted([image_id + ".json", image_id + ".data", image_id + ".lock"])


@pytest.mark.parametrize("offset", [0, 1, 4096, 99_999, 100_000])
def test_open_at_an_offset(store, offset):
    image_id = store.create("img")["id"]
    payload = bytes(range(256)) * 390 + b"tail"   # 99_844 bytes
    payload += os.urandom(100_000 - len(payload))
    store.put(image_id, [payload])
    with store.open(image_id, offset=offset) as stream:
        assert stream.size == len(payload)
        got = b"".join(iter(lambda: stream.read(7000), b""))
    assert got == payload[offset:]


def test_open_past_the_end_is_refused(store):
    image_id = store.create("img")["id"]
    store.put(image_id, [b"abc"])
    with pytest.raises(errors.StoreError, match="offset 4"):
        store.open(image_id, offset=4)


def test_open_a_queued_image_says_why(store):
    image_id = store.create("img")["id"]
    with pytest.raises(errors.ImageStateError) as info:
        store.open(image_id)
    assert info.value.status == QUEUED
    assert "queued" in str(info.value) and "not been uploaded" in str(info.value)


def test_open_detects_data_truncated_behind_its_back(store):
    image_id = store.create("img")["id"]
    store.put(image_id, [b"x" * 1000])
    os.truncate(os.path.join(store.images_dir, image_id + ".data"), 10)
    with pytest.raises(errors.IntegrityError):
        store.open(image_id)


def test_put_into_an_active_image_is_refused_before_reading_chunks(store):
    image_id = store.create("img")["id"]
    store.put(image_id, [b"first"])
    consumed = []

    def chunks():
        consumed.append(True)
        yield b"second"
    with pytest.raises(errors.ImageStateError) as info:
        store.put(image_id, chunks())
    assert info.value.status == ACTIVE and consumed == []
    with store.open(image_id) as stream:
        assert stream.read() == b"first"


def test_chunks_raising_midway_leaves_a_queued_image_and_no_data(store):
    image_id = store.create("img")["id"]
    seen_status = []

    def chunks():
        yield b"a" * MiB
        seen_status.append(store.get(image_id)["status"])
        yield b"b" * MiB
        raise RuntimeError("client went away")
    with pytest.raises(RuntimeError, match="client went away"):
        store.put(image_id, chunks())
    assert seen_status == [SAVING]
    rec = store.get(image_id)
    assert rec["status"] == QUEUED and rec["size"] is None and rec["checksum"] is None
    assert files_in(store) == sorted([image_id + ".json", image_id + ".lock"])
    # and the image can be uploaded again, as in Glance
    store.put(image_id, [b"again"])
    assert store.get(image_id)["size"] == 5


@pytest.mark.parametrize("declared, chunks", [(10, [b"12345"]), (3, [b"12", b"34", b"5"])])
def test_size_mismatch_stores_nothing(store, declared, chunks):
    image_id = store.create("img")["id"]
    with pytest.raises(errors.IntegrityError) as info:
        store.put(image_id, iter(chunks), size=declared)
    assert info.value.what == "size" and info.value.expected == declared
    assert store.get(image_id)["status"] == QUEUED
    assert files_in(store) == sorted([image_id + ".json", image_id + ".lock"])


def test_disk_full_is_a_typed_error_and_leaves_nothing(store, monkeypatch):
    image_id = store.create("img")["id"]
    writes = []

    real_write_all = local.write_all

    def data_disk_fills_up(fd, data):
        # only the upload's temp file hits the wall; records still fit, as a nearly full disk allows
        if os.readlink("/proc/self/fd/{}".format(fd)).endswith(".tmp") and "/." + image_id in \
                os.readlink("/proc/self/fd/{}".format(fd)):
            writes.append(len(data))
            if len(writes) > 2:
                raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        real_write_all(fd, data)
    monkeypatch.setattr(local, "write_all", data_disk_fills_up)
    with pytest.raises(errors.NoSpaceError) as info:
        store.put(image_id, (b"z" * 1000 for _ in range(10)))
    assert image_id in info.value.path and len(writes) == 3
    assert store.get(image_id)["status"] == QUEUED
    assert files_in(store) == sorted([image_id + ".json", image_id + ".lock"])


def test_os_errors_become_typed_errors():
    full = local.store_os_error(OSError(errno.ENOSPC, "No space"), "/s/x", "write")
    assert isinstance(full, errors.NoSpaceError) and full.path == "/s/x"
    denied = local.store_os_error(OSError(errno.EACCES, "Permission denied"), "/s/x", "write")
    assert isinstance(denied, errors.StoreError) and "/s/x" in str(denied)
    assert "writable" in str(denied)


def test_concurrent_puts_into_one_image_do_not_both_succeed(store):
    image_id = store.create("img")["id"]
    other = LocalStore(store.root)     # as another process would see it
    started, release = threading.Event(), threading.Event()
    outcome = {}

    def slow_chunks():
        yield b"first-"
        started.set()
        release.wait(10)
        yield b"upload"

    def first():
        outcome["first"] = store.put(image_id, slow_chunks())
    worker = threading.Thread(target=first)
    worker.start()
    try:
        assert started.wait(10)
        with pytest.raises(errors.ImageStateError, match="in progress"):
            other.put(image_id, [b"second"])
    finally:
        release.set()
        worker.join(10)
    assert outcome["first"].size == len(b"first-upload")
    with other.open(image_id) as stream:
        assert stream.read() == b"first-upload"


def test_a_dead_uploads_saving_state_and_temp_file_are_recovered(store):
    image_id = store.create("img")["id"]
    path = os.path.join(store.images_dir, image_id + ".json")
    with open(path) as f:
        doc = json.load(f)
    doc["record"]["status"] = SAVING
    with open(path, "w") as f:
        json.dump(doc, f)
    leftover = os.path.join(store.images_dir, "." + image_id + ".dead.tmp")
    open(leftover, "wb").close()
    store.put(image_id, [b"data"])
    assert store.get(image_id)["status"] == ACTIVE
    assert not os.path.exists(leftover)


CRASHING_UPLOADER = """
import sys, time
from vhdport.stores.local import LocalStore
def chunks():
    yield b"partial" * 1000
    print("writing", flush=True)
    time.sleep(60)
    yield b"never"
LocalStore(sys.argv[1]).put(sys.argv[2], chunks())
"""


def test_an_uploader_killed_midway_leaves_no_active_image_and_can_be_redone(store):
    image_id = store.create("img")["id"]
    child = subprocess.Popen([sys.executable, "-c", CRASHING_UPLOADER, store.root, image_id],
                             stdout=subprocess.PIPE)
    try:
        assert child.stdout.readline() == b"writing\n"
        with pytest.raises(errors.ImageStateError, match="in progress"):
            store.put(image_id, [b"meanwhile"])
    finally:
        child.kill()
        child.wait(10)
        child.stdout.close()
    assert store.get(image_id)["status"] == SAVING
    with pytest.raises(errors.ImageStateError):
        store.open(image_id)
    assert any(name.endswith(".tmp") for name in files_in(store))
    store.put(image_id, [b"whole"])
    assert files_in(store) == sorted([image_id + ".json", image_id + ".data", image_id + ".lock"])
    with store.open(image_id) as stream:
        assert stream.read() == b"whole"


def test_update_sets_and_removes_properties_and_name(store):
    rec = store.create("img", properties={"a": "1", "b": "2"})
    new = store.update(rec["id"], name="renamed", properties={"c": "3", "a": "9"}, remove=["b"])
    assert new["name"] == "renamed" and new["properties"] == {"a": "9", "c": "3"}
    assert store.get(rec["id"]) == new
    assert new["created_at"] == rec["created_at"]


def test_update_removing_a_missing_property_conflicts_and_changes_nothing(store):
    rec = store.create("img", properties={"a": "1"})
    with pytest.raises(errors.StoreError, match="missing property nope"):
        store.update(rec["id"], name="other", remove=["nope"])
    assert store.get(rec["id"]) == rec


def test_list_is_sorted_by_creation_and_seen_by_another_instance(store):
    ids = [store.create("img{}".format(i))["id"] for i in range(5)]
    store.put(ids[2], [b"data"])
    reopened = LocalStore(store.root)
    assert [r["id"] for r in reopened.list()] == ids
    assert reopened.get(ids[2])["status"] == ACTIVE
    with reopened.open(ids[2]) as stream:
        assert stream.read() == b"data"


@pytest.mark.parametrize("verb", ["list", "get", "open", "delete", "update"])
def test_reading_a_missing_store_says_so_and_creates_nothing(tmp_path, verb):
    store = LocalStore(str(tmp_path / "nothing"))
    call = {"list": lambda: list(store.list()),
            "get": lambda: store.get("12345678-1234-1234-1234-1234567890ab"),
            "open": lambda: store.open("12345678-1234-1234-1234-1234567890ab"),
            "delete": lambda: store.delete("12345678-1234-1234-1234-1234567890ab"),
            "update": lambda: store.update("12345678-1234-1234-1234-1234567890ab", name="x")}
    with pytest.raises(errors.StoreError, match="no image store there .the directory does "
                                                 "not exist"):
        call[verb]()
    assert not (tmp_path / "nothing").exists()
    assert LocalStore(str(tmp_path)).list() == []   # an existing empty directory: no images


def test_a_store_is_created_only_where_its_parent_exists(tmp_path):
    deep = LocalStore(str(tmp_path / "no" / "such" / "store"))
    with pytest.raises(errors.StoreError, match="parent directory .*no/such does not exist"):
        deep.create("img")
    assert not (tmp_path / "no").exists()
    assert not deep.created
    fresh = LocalStore(str(tmp_path / "store"))
    fresh.create("img")
    assert fresh.created and (tmp_path / "store" / local.MARKER).is_file()
    assert not LocalStore(str(tmp_path / "store")).created


def test_a_foreign_directory_is_not_taken_over(tmp_path):
    (tmp_path / "precious.txt").write_text("keep")
    with pytest.raises(errors.StoreError, match="not a vhdport image store"):
        LocalStore(str(tmp_path)).create("img")
    assert os.listdir(str(tmp_path)) == ["precious.txt"]


def test_a_store_of_another_format_or_a_file_is_refused(tmp_path, store):
    image_id = store.create("img")["id"]
    with open(os.path.join(store.root, local.MARKER), "w") as f:
        f.write('{"kind": "vhdport-local-store", "version": 99}')
    with pytest.raises(errors.StoreError, match="unknown store format"):
        LocalStore(store.root).get(image_id)
    (tmp_path / "plain").write_text("x")
    with pytest.raises(errors.StoreError, match="not a directory"):
        LocalStore(str(tmp_path / "plain")).create("img")


def test_a_damaged_record_is_named(store):
    image_id = store.create("img")["id"]
    with open(os.path.join(store.images_dir, image_id + ".json"), "w") as f:
        f.write('{"record": ')
    with pytest.raises(errors.StoreError, match=image_id + ".json: damaged"):
        store.get(image_id)


def test_delete_removes_record_and_data(store):
    keep = store.create("keep")["id"]
    image_id = store.create("img")["id"]
    store.put(image_id, [b"data"])
    store.delete(image_id)
    assert [r["id"] for r in store.list()] == [keep]
    assert files_in(store) == [keep + ".json"]
    for verb in (store.get, store.delete, store.open):
        with pytest.raises(errors.ImageNotFound):
            verb(image_id)


@pytest.mark.parametrize("bad_id", [
    "../../etc/passwd", "..", "", "/etc/passwd", "0" * 36, "img.json",
    "12345678-1234-1234-1234-1234567890AB", "12345678-1234-1234-1234-1234567890ab/../x",
    None, 42,
])
def test_ids_that_are_not_uuids_are_never_paths(store, bad_id):
    store.create("img")
    before = files_in(store)
    for call in (lambda: store.get(bad_id), lambda: store.open(bad_id),
                 lambda: store.delete(bad_id), lambda: store.put(bad_id, [b"x"]),
                 lambda: store.update(bad_id, name="y")):
        with pytest.raises(errors.ImageNotFound):
            call()
    assert files_in(store) == before


@pytest.mark.slow
def test_64_mib_streams_through_without_being_held_in_memory(store):
    image_id = store.create("big")["id"]
    want_md5, want_sha = hashlib.md5(), hashlib.sha512()

    def chunks():
        for i in range(64):
            block = bytes([i]) * MiB
            want_md5.update(block)
            want_sha.update(block)
            yield block
    tracemalloc.start()
    try:
        result = store.put(image_id, chunks(), size=64 * MiB)
        _, put_peak = tracemalloc.get_traced_memory()
        if hasattr(tracemalloc, "reset_peak"):   # Python 3.9+; otherwise the read shares the peak
            tracemalloc.reset_peak()
        got_md5, total = hashlib.md5(), 0
        with store.open(image_id) as stream:
            for block in iter(lambda: stream.read(4 * MiB), b""):
                got_md5.update(block)
                total += len(block)
        _, read_peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert put_peak < 8 * MiB and read_peak < 16 * MiB
    assert result.size == total == 64 * MiB
    assert result.md5 == want_md5.hexdigest() == got_md5.hexdigest()
    assert result.sha512 == want_sha.hexdigest() == store.get(image_id)["os_hash_value"]


# --- open_store --------------------------------------------------------------

def test_open_store_gives_a_local_store_for_paths_and_file_urls(tmp_path):
    path = str(tmp_path / "s")
    plain = open_store(path, token="ignored")
    assert isinstance(plain, LocalStore) and plain.display == path
    image_id = plain.create("img")["id"]
    url = "file://" + path
    by_url = open_store(url)
    assert isinstance(by_url, LocalStore) and by_url.display == url
    assert by_url.get(image_id)["name"] == "img"
    assert open_store("file://localhost" + path).root == plain.root


@pytest.mark.parametrize("url", ["ftp://user:secret@host/x", "s3://bucket/images", "file://otherhost/x",
                                 ""])
def test_open_store_refuses_unknown_schemes_without_leaking_credentials(url):
    with pytest.raises(errors.StoreError) as info:
        open_store(url)
    text = str(info.value)
    assert "secret" not in text
    if url:
        assert url.split("://")[0] in text
    assert "file://" in text


@pytest.mark.parametrize("url", ["http://127.0.0.1:9292", "HTTPS://glance.example:9292/"])
def test_open_store_hands_http_urls_and_options_to_glance(monkeypatch, url):
    # routing only: a stand-in module, so this holds whatever the real GlanceStore needs to start
    fake = types.ModuleType("vhdport.stores.glance")

    class GlanceStore(object):
        def __init__(self, url, **options):
            self.url, self.options = url, options
    fake.GlanceStore = GlanceStore
    monkeypatch.setitem(sys.modules, "vhdport.stores.glance", fake)
    store = open_store(url, token="t0k", timeout=5)
    assert isinstance(store, GlanceStore)
    assert (store.url, store.options) == (url, {"token": "t0k", "timeout": 5})


def test_an_upload_whose_record_does_not_read_back_active_fails(store, monkeypatch):
    """The record read back after the data is stored decides success, not the write call."""
    image_id = store.create("img")["id"]
    real_save = LocalStore._save

    def lost_update(self, *args):
        record = dict(args[-2])
        if record.get("status") == ACTIVE:
            record["status"] = QUEUED   # as if the final write never took effect
        real_save(self, *(args[:-2] + (record, args[-1])))
    monkeypatch.setattr(LocalStore, "_save", lost_update)
    with pytest.raises(errors.ImageStateError, match="is queued, expected active after upload"):
        store.put(image_id, [b"data"])
    monkeypatch.undo()
    assert store.get(image_id)["status"] == QUEUED
    assert not os.path.exists(os.path.join(store.images_dir, image_id + ".data"))
