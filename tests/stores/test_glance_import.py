"""glance_import: stage + import, stores, copy-image, the import-only fallback -- against the
real Glance behind the real Keystone (tests/peers/keystone_server.py: stores fast, cheap)."""

import contextlib
import os
import random

import pytest

from tests.peers.keystone_server import (ADMIN_PASSWORD, USER_PASSWORD, keystone,  # noqa: F401
                                         keystone_glance)
from vhdport.errors import StoreError
from vhdport.stores import glance_import
from vhdport.stores.glance import GlanceStore

pytestmark = pytest.mark.peer


def store_as(server, user="vhdport", password=USER_PASSWORD, project="vhdport", **config):
    token, _ = server.keystone.password_token(user, password, project)
    store = GlanceStore(server.url, auth_token=token, retry_delay=0.01)
    if config:
        config.setdefault("poll", 0.2)
        glance_import.configure(store, **config)
    return store


def payload(seed, size=1 << 20):
    # getrandbits, not randbytes (3.9+), so the 3.6 run can build it
    return random.Random(seed).getrandbits(8 * size).to_bytes(size, "little")


def read(store, image_id):
    with store.open(image_id) as stream:
        return stream.read()


@contextlib.contextmanager
def broken_store(server, name):
    """The store's directory replaced by a file: Glance's writes there fail."""
    path = os.path.join(server.workdir, "store-" + name)
    os.rename(path, path + ".off")
    open(path, "w").close()
    try:
        yield
    finally:
        os.remove(path)
        os.rename(path + ".off", path)


@contextlib.contextmanager
def import_only(server):
    server.set_policy({"upload_image": "!"})
    try:
        yield
    finally:
        server.set_policy({"upload_image": ""})


def test_discover_lists_methods_and_stores_not_the_reserved_ones(keystone_glance):  # noqa: F811
    info = glance_import.discover(store_as(keystone_glance))
    assert {"glance-direct", "copy-image"} <= set(info.methods)
    assert (info.stores, info.default) == (["fast", "cheap"], "fast")
    headers = {"OpenStack-image-import-methods": "glance-direct,copy-image",
               "OpenStack-image-store-ids": "fast,os_glance_staging_store,cheap,"
                                            "os_glance_tasks_store"}
    from_headers = glance_import.info_from_headers(headers)
    assert from_headers.stores == ["fast", "cheap"]
    assert from_headers.methods == ["glance-direct", "copy-image"]


def test_import_round_trip_into_two_stores(keystone_glance):  # noqa: F811
    notes = []
    store = store_as(keystone_glance, method=glance_import.IMPORT, stores=["fast", "cheap"],
                     notice=notes.append)
    data = payload(1)
    image = store.create("import two stores", container_format="bare")["id"]
    sent = store.put(image, iter([data]), size=len(data))
    record = store.get(image)
    assert record["status"] == "active" and sorted(record["stores"]) == ["cheap", "fast"]
    assert record["checksum"] == sent.md5 and read(store, image) == data
    assert any("Glance is importing" in n and "fast, cheap" in n for n in notes), notes
    store.delete(image)


def test_one_store_goes_directly(keystone_glance):  # noqa: F811
    store = store_as(keystone_glance, method=glance_import.DIRECT, stores=["cheap"])
    data = payload(2)
    image = store.create("direct to cheap", container_format="bare")["id"]
    store.put(image, iter([data]), size=len(data))
    assert store.get(image)["stores"] == ["cheap"] and read(store, image) == data
    store.delete(image)


def test_unknown_store_is_refused_before_any_data(keystone_glance):  # noqa: F811
    store = store_as(keystone_glance, method=glance_import.IMPORT, stores=["fast", "nosuch"])
    image = store.create("unknown store", container_format="bare")["id"]
    with pytest.raises(StoreError, match=r"no store nosuch \(it has: fast, cheap\)"):
        store.put(image, iter([b"x"]), size=1)
    assert store.get(image)["status"] == "queued"
    store.delete(image)


def test_import_only_policy_falls_back_to_import_and_says_so(keystone_glance):  # noqa: F811
    notes = []
    store = store_as(keystone_glance, method=glance_import.AUTO, notice=notes.append)
    data = payload(3, 3 << 20)
    pulled = []

    def chunks():
        for i in range(0, len(data), 1 << 20):
            pulled.append(i)
            yield data[i:i + (1 << 20)]

    with import_only(keystone_glance):
        image = store.create("import only", container_format="bare")["id"]
        with pytest.raises(StoreError, match="403"):   # the policy is really in force
            store_as(keystone_glance, method=glance_import.DIRECT).put(
                image, iter([b"x"]), size=1)
        store.put(image, chunks(), size=len(data))
    assert any("refuses direct uploads (HTTP 403 on PUT /file)" in n for n in notes), notes
    assert pulled == [0, 1 << 20, 2 << 20], "each chunk read once: nothing went to /file"
    assert store.get(image)["status"] == "active" and read(store, image) == data
    store.delete(image)


def test_auto_without_refusal_uploads_directly(keystone_glance):  # noqa: F811
    notes = []
    store = store_as(keystone_glance, method=glance_import.AUTO, notice=notes.append)
    data = payload(4)
    image = store.create("auto direct", container_format="bare")["id"]
    store.put(image, iter([data]), size=len(data))
    assert notes == [] and read(store, image) == data
    store.delete(image)


def test_copy_image_to_the_other_store(keystone_glance):  # noqa: F811
    user = store_as(keystone_glance, method=glance_import.DIRECT, stores=["cheap"])
    data = payload(5)
    image = user.create("to copy", container_format="bare")["id"]
    user.put(image, iter([data]), size=len(data))
    with pytest.raises(StoreError, match="403.*copy-image is admin-only"):
        glance_import.copy_image(user, image, ["fast"])
    admin = store_as(keystone_glance, "admin", ADMIN_PASSWORD, "admin",
                     method=glance_import.DIRECT)
    record = glance_import.copy_image(admin, image, ["fast"])
    assert sorted(record["stores"]) == ["cheap", "fast"]
    assert sorted(user.get(image)["stores"]) == ["cheap", "fast"]
    assert read(user, image) == data
    user.delete(image)


def test_failed_import_names_glances_reason(keystone_glance):  # noqa: F811
    store = store_as(keystone_glance, method=glance_import.IMPORT, stores=["cheap"])
    data = payload(6)
    image = store.create("import fails", container_format="bare")["id"]
    with broken_store(keystone_glance, "cheap"):
        with pytest.raises(StoreError) as caught:
            store.put(image, iter([data]), size=len(data))
    text = str(caught.value)
    assert text.startswith("Glance could not import image " + image), text
    assert "failed stores: cheap" in text and caught.value.fields["import_failed"]
    assert caught.value.fields["glance_reason"] and caught.value.fields["glance_reason"] in text
    store.delete(image)
