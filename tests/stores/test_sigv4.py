"""SigV4 against AWS's published examples (the SigV4 test suite and the S3 API docs)."""

import hashlib

import pytest

from vhdport.stores import sigv4

SUITE = sigv4.Credentials("AKIDEXAMPLE", "wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY")
S3_DOCS = sigv4.Credentials("AKIAIOSFODNN7EXAMPLE", "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY")
SUITE_DATE = "20150830T123600Z"


@pytest.mark.parametrize("name, method, query, signature", [
    ("get-vanilla", "GET", [], "5fa00fa31553b73ebf1942676e86291e8372ff2a2260956d9b8aae1d763fbf31"),
    ("get-vanilla-query-order-key-case", "GET", [("Param2", "value2"), ("Param1", "value1")],
     "b97d918cfa904a5beff61c982a1b6f458b799221646efd99d3219ec94cdf2500"),
    ("post-vanilla", "POST", [], "5da7c1a2acd57cee7505fc6676e4e544621c30862966e37dddb68e92efbe5d6b"),
])
def test_aws_signature_v4_test_suite(name, method, query, signature):
    headers = {"Host": "example.amazonaws.com", "X-Amz-Date": SUITE_DATE}
    value = sigv4.authorization(SUITE, "us-east-1", "service", method, "/", query, headers,
                                sigv4.EMPTY_SHA256, SUITE_DATE)
    assert value == ("AWS4-HMAC-SHA256 Credential=AKIDEXAMPLE/20150830/us-east-1/service/"
                     "aws4_request, SignedHeaders=host;x-amz-date, Signature=" + signature)


def test_canonical_request_of_the_s3_get_object_example():
    headers = {"Host": "examplebucket.s3.amazonaws.com", "Range": "bytes=0-9",
               "x-amz-content-sha256": sigv4.EMPTY_SHA256, "x-amz-date": "20130524T000000Z"}
    text, signed = sigv4.canonical_request("GET", "/test.txt", [], headers, sigv4.EMPTY_SHA256)
    assert signed == "host;range;x-amz-content-sha256;x-amz-date"
    scope = sigv4.scope("20130524", "us-east-1", "s3")
    assert sigv4.string_to_sign("20130524T000000Z", scope, text).endswith(
        "7344ae5b7ee6c3e7e6b0fe0640412a37625d1fbfff95c48bbb2dc43964946972")


@pytest.mark.parametrize("path, query, extra, signed, signature", [
    ("/test.txt", [], {"Range": "bytes=0-9"}, "host;range;x-amz-content-sha256;x-amz-date",
     "f0e8bdb87c964420e857bd35b5d6ed310bd44f0170aba48dd91039c6036bdb41"),
    ("/", [("max-keys", "2"), ("prefix", "J")], {}, "host;x-amz-content-sha256;x-amz-date",
     "34b48302e7b5fa45bde8084f4b7868a86f0a534bc59db6670ed5711ef69dc6f7"),
])
def test_s3_documentation_examples(path, query, extra, signed, signature):
    when = 1369353600  # 2013-05-24T00:00:00Z
    headers = sigv4.sign_s3(S3_DOCS, "us-east-1", "GET", "examplebucket.s3.amazonaws.com", path,
                            query, extra, sigv4.EMPTY_SHA256, when=when)
    assert headers["x-amz-date"] == "20130524T000000Z"
    assert headers["Authorization"] == (
        "AWS4-HMAC-SHA256 Credential=AKIAIOSFODNN7EXAMPLE/20130524/us-east-1/s3/aws4_request, "
        "SignedHeaders={}, Signature={}".format(signed, signature))


def test_session_token_is_sent_and_signed():
    creds = sigv4.Credentials("AK", "secret", "the-session-token")
    headers = sigv4.sign_s3(creds, "eu-west-1", "PUT", "h", "/b/k", payload_hash="x" * 64)
    assert headers["x-amz-security-token"] == "the-session-token"
    assert "x-amz-security-token" in headers["Authorization"].split("SignedHeaders=")[1]
    assert "/eu-west-1/s3/aws4_request" in headers["Authorization"]


def test_query_values_are_encoded_and_sorted():
    assert sigv4.canonical_query([("uploadId", "a/b+c"), ("partNumber", "2")]) == \
        "partNumber=2&uploadId=a%2Fb%2Bc"
    assert sigv4.canonical_query([("uploads", "")]) == "uploads="
    assert sigv4.uri_encode("a b/ü~", keep_slash=True) == "a%20b/%C3%BC~"


def test_credentials_repr_hides_the_secret():
    creds = sigv4.Credentials("AKID", "very-secret-key", "very-secret-token")
    assert "very-secret" not in repr(creds) and "very-secret" not in str(creds)
    assert "AKID" in repr(creds)


def test_payload_hash_changes_the_signature():
    a = sigv4.sign_s3(SUITE, "us-east-1", "PUT", "h", "/b/k", payload_hash=sigv4.EMPTY_SHA256,
                      when=0)
    b = sigv4.sign_s3(SUITE, "us-east-1", "PUT", "h", "/b/k",
                      payload_hash=hashlib.sha256(b"x").hexdigest(), when=0)
    assert a["Authorization"] != b["Authorization"]
