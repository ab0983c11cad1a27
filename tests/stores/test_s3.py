"""S3 specifics against Swift's s3api: auth failures that never show secrets, XML answers,
addressing, TLS."""

import logging

import pytest

from tests.peers.proxies import TlsProxy, make_self_signed_cert
from tests.stores.objpeer import fresh_name, open_store, swift_peer  # noqa: F401
from vhdport.errors import StoreError
from vhdport.stores import s3
from vhdport.stores.s3config import S3Settings
from vhdport.stores.sigv4 import Credentials

pytestmark = pytest.mark.peer


def test_a_wrong_secret_is_an_auth_error_without_secret_or_signature(swift_peer, caplog):  # noqa: F811
    caplog.set_level(logging.DEBUG)
    store = s3.S3Store("s3://{}/p".format(fresh_name()), endpoint_url=swift_peer.url,
                       access_key=swift_peer.user, secret_key="wrong-secret-4d1c",
                       environ={}, retry_delay=0.01)
    with pytest.raises(s3.S3AuthError, match="AccessDenied"):
        store.create("x")  # a HEAD first: its answer has no body to say more
    with pytest.raises(s3.S3AuthError) as info:
        store.list()
    text = str(info.value)
    assert "SignatureDoesNotMatch" in text and "check the access key, secret and region" in text
    assert text.startswith("{} at {}: ".format(store.display, swift_peer.url))
    for leak in ("wrong-secret-4d1c", "Signature=", "AWS4-HMAC-SHA256"):
        assert leak not in text and leak not in caplog.text and leak not in repr(store)


def test_an_unknown_access_key_is_an_auth_error(swift_peer):  # noqa: F811
    store = s3.S3Store("s3://{}".format(fresh_name()), endpoint_url=swift_peer.url,
                       access_key="nobody:none", secret_key="x" * 8, environ={},
                       retry_delay=0.01)
    with pytest.raises(s3.S3AuthError, match=r"(InvalidAccessKeyId|SignatureDoesNotMatch) \(HTTP 403\)"):  # tempauth says the latter
        store.list()


def test_error_documents_give_code_and_message_only():
    body = (b"<?xml version='1.0'?><Error><Code>SignatureDoesNotMatch</Code><Message>nope</Message>"
            b"<SignatureProvided>abcdef0123</SignatureProvided><StringToSign>AWS4-HMAC</StringToSign>"
            b"</Error>")
    assert s3._error_fields(body) == ("SignatureDoesNotMatch", "nope")
    endpoint = s3.S3Endpoint("http://127.0.0.1:9", Credentials("AK", "SK"), "us-east-1")
    err = endpoint.status_error(500, "Internal Server Error", "GET", "/b/k", None, body)
    assert "abcdef0123" not in str(err) and "AWS4-HMAC" not in str(err)


def test_entity_declarations_are_refused():
    with pytest.raises(StoreError, match="DOCTYPE/ENTITY"):
        s3.parse_xml(b"<!DOCTYPE x [<!ENTITY a 'b'>]><x>&a;</x>", "listing")


def test_virtual_host_and_path_addressing_build_the_right_requests():
    creds = Credentials("AK", "SK")
    virtual = s3.S3Api(S3Settings("bkt", "p/", "http://s3.example:9000", "us-east-1", creds,
                                  "virtual"))
    assert (virtual._http.host, virtual._http.port) == ("bkt.s3.example", 9000)
    assert virtual._path("p/a b") == "/p/a%20b"
    path = s3.S3Api(S3Settings("bkt", "", "https://s3.example/base", "us-east-1", creds, "path"))
    assert path._http.host == "s3.example" and path._path("k", [("uploadId", "a/b")]) == \
        "/base/bkt/k?uploadId=a%2Fb"
    assert path._http.host_header == "s3.example"


def test_tls_is_verified_by_default_and_cacert_trusts_a_private_ca(swift_peer, tmp_path):  # noqa: F811
    cert, key = make_self_signed_cert(str(tmp_path))
    with TlsProxy(swift_peer.ports["proxy"], cert, key) as proxy:
        bucket = fresh_name()
        untrusted = open_store("s3", swift_peer, bucket, via=proxy.url, retries=0)
        with pytest.raises(StoreError, match="could not be verified .*cacert"):
            untrusted.create("x")
        trusted = open_store("s3", swift_peer, bucket, via=proxy.url,
                             environ={"AWS_CA_BUNDLE": cert})  # as the AWS SDKs read it
        record = trusted.create("x")
        trusted.put(record["id"], [b"over tls"])
        with trusted.open(record["id"]) as stream:
            assert stream.read() == b"over tls"


def test_open_store_routes_object_urls_and_ignores_glance_options():
    from vhdport.stores import open_store
    from vhdport.stores.swift import SwiftStore
    store = open_store("s3://bkt/pre", endpoint_url="http://127.0.0.1:9", access_key="AK",
                       secret_key="SK", api_version=2, auth_token="glance-token",
                       connections=3, part_size=8 << 20)
    assert isinstance(store, s3.S3Store) and store.display == "s3://bkt/pre/"[:-1]
    assert (store.connections, store.part_size, store.api.prefix) == (3, 8 << 20, "pre/")
    swift = open_store("swift://cont", auth_token="tok", storage_url="http://127.0.0.1:9/v1/A",
                       api_version=2)
    assert isinstance(swift, SwiftStore) and swift.display == "swift://cont"


def test_session_token_and_secret_are_scrubbed_from_answers():
    endpoint = s3.S3Endpoint("http://127.0.0.1:9", Credentials("AK", "sekrit-key-1", "tok-3344"),
                             "us-east-1")
    body = b"<Error><Code>X</Code><Message>you sent tok-3344 and sekrit-key-1</Message></Error>"
    err = endpoint.status_error(500, "Internal Server Error", "GET", "/b/k", None, body)
    assert "tok-3344" not in str(err) and "sekrit-key-1" not in str(err)
    assert "***" in str(err)
