"""Swift specifics: v1 auth, an expired token renewed, token + storage URL, TLS."""

import logging

import pytest

from tests.peers.proxies import TlsProxy, make_self_signed_cert
from tests.stores.objpeer import fresh_name, open_store, swift_peer  # noqa: F401
from vhdport.errors import StoreError
from vhdport.stores.http import Endpoint
from vhdport.stores.swift import SwiftAuthError, SwiftStore

pytestmark = pytest.mark.peer


def test_a_wrong_key_is_an_auth_error_without_the_key(swift_peer, caplog):  # noqa: F811
    caplog.set_level(logging.DEBUG)
    with pytest.raises(SwiftAuthError, match="user or key rejected .*check ST_USER / ST_KEY") as info:
        SwiftStore("swift://c/p", auth_url=swift_peer.auth_url, user=swift_peer.user,
                   key="wrong-key-77aa", environ={}, retry_delay=0.01)
    assert "wrong-key-77aa" not in str(info.value) and "wrong-key-77aa" not in caplog.text


def test_credentials_from_st_variables(swift_peer):  # noqa: F811
    env = {"ST_AUTH": swift_peer.auth_url, "ST_USER": swift_peer.user, "ST_KEY": swift_peer.key}
    store = SwiftStore("swift://{}/p".format(fresh_name()), environ=env, retry_delay=0.01)
    assert store.get(store.create("x")["id"])["name"] == "x"


def test_missing_credentials_say_what_to_set():
    with pytest.raises(StoreError, match="set ST_AUTH, ST_USER and ST_KEY"):
        SwiftStore("swift://c/p", environ={})


def test_an_expired_token_is_renewed_once(swift_peer, caplog):  # noqa: F811
    store = open_store("swift", swift_peer, fresh_name())
    api = store.api
    api._http = Endpoint(api._http.display, auth_token="AUTH_tk-expired-000", retry_delay=0.01)
    record = store.create("x")
    assert store.get(record["id"])["id"] == record["id"]
    assert "AUTH_tk-expired-000" not in caplog.text


def test_a_given_token_and_storage_url(swift_peer, caplog):  # noqa: F811
    storage_url, token = swift_peer.v1_auth()
    store = SwiftStore("swift://{}/p".format(fresh_name()), auth_token=token,
                       storage_url=storage_url, environ={}, retry_delay=0.01)
    record = store.create("x")
    store.put(record["id"], [b"abc"])
    bad = SwiftStore("swift://{}/p".format(fresh_name()), auth_token="AUTH_tk-bogus-1234",
                     storage_url=storage_url, environ={}, retry_delay=0.01)
    with pytest.raises(SwiftAuthError, match="token rejected .*get a new token") as info:
        bad.list()
    assert "AUTH_tk-bogus-1234" not in str(info.value)
    assert token not in caplog.text


def test_tls_is_verified_by_default_and_cacert_trusts_a_private_ca(swift_peer, tmp_path):  # noqa: F811
    cert, key = make_self_signed_cert(str(tmp_path))
    with TlsProxy(swift_peer.ports["proxy"], cert, key) as proxy:
        with pytest.raises(StoreError, match="could not be verified .*cacert"):
            open_store("swift", swift_peer, fresh_name(), via=proxy.url, retries=0)
        # tempauth behind a TLS terminator names an http:// storage URL (a real one sets
        # storage_url_scheme = https); give the https one with the token instead
        storage_url, token = swift_peer.v1_auth()
        storage_url = storage_url.replace(swift_peer.url, proxy.url)
        store = SwiftStore("swift://{}/p".format(fresh_name()), auth_token=token,
                           storage_url=storage_url, cacert=cert, environ={}, retry_delay=0.01)
        record = store.create("x")
        store.put(record["id"], [b"over tls"])
        with store.open(record["id"]) as stream:
            assert stream.read() == b"over tls"


def test_rm_of_a_manifest_naming_foreign_segments_deletes_only_the_manifest(swift_peer):  # noqa: F811
    """Whoever can write the container could plant a manifest whose segments are other
    objects of the account; image rm must not delete those."""
    import hashlib
    import json
    store = open_store("swift", swift_peer, fresh_name())
    record = store.create("img")
    store.put(record["id"], [b"x" * 10])
    victim = b"precious data, not an image segment"
    store.api.write_small("elsewhere/victim", victim)
    manifest = [{"path": "/{}/elsewhere/victim".format(store.api.container),
                 "etag": hashlib.md5(victim).hexdigest(), "size_bytes": len(victim)}]
    store.api._request("PUT", store._key(record["id"], "data"),
                       [("multipart-manifest", "put")], body=json.dumps(manifest).encode(),
                       expect=(201,))
    store.delete(record["id"])
    assert store.api.read_small("elsewhere/victim") == victim
    assert store.api.head(store._key(record["id"], "data")) is None


def test_a_record_naming_foreign_segments_is_damaged_and_never_used(swift_peer):  # noqa: F811
    store = open_store("swift", swift_peer, fresh_name())
    record = store.create("img")
    store.api.write_small("other/0001", b"keep me")
    doc = store._load(record["id"])
    doc["record"]["status"] = "saving"
    doc["upload"] = {"started": 0, "heartbeat": 0, "owner": "x",
                     "token": {"key": store._key(record["id"], "data"), "segments": "other/"}}
    store.api.write_small(store._key(record["id"], "json"), json_bytes(doc))
    with pytest.raises(StoreError, match="damaged image record .*upload field is not one of ours"):
        store.get(record["id"])
    assert store.gc(min_age=0) == []
    [listed] = store.list()
    assert listed["status"] == "damaged"
    store.delete(record["id"])
    assert store.list() == [] and store.api.read_small("other/0001") == b"keep me"


def json_bytes(doc):
    import json
    return json.dumps(doc).encode()
