"""AWS Signature Version 4 for header-authenticated requests, on hmac and hashlib alone.

Why our own: dom0 has no botocore.  Only what an S3 client needs is here: the
canonical request, the string to sign, the derived key and the Authorization
header.  Secrets never leave this module except as the signature itself.
"""

import hashlib
import hmac
import time
import urllib.parse

ALGORITHM = "AWS4-HMAC-SHA256"
EMPTY_SHA256 = hashlib.sha256(b"").hexdigest()
_UNRESERVED = "-_.~"


class Credentials(object):
    """An access key, its secret and an optional session token; repr() shows no secret."""

    __slots__ = ("access_key", "_secret", "session_token")

    def __init__(self, access_key, secret_key, session_token=None):
        self.access_key = access_key
        self._secret = secret_key
        self.session_token = session_token or None

    @property
    def secret_key(self):
        return self._secret

    def __repr__(self):
        return "Credentials(access_key={!r}, secret=<hidden>{})".format(
            self.access_key, ", session_token=<hidden>" if self.session_token else "")

    __str__ = __repr__


def uri_encode(text, keep_slash=False):
    """RFC 3986 percent-encoding as SigV4 wants it: unreserved characters stay, the rest %XX."""
    return urllib.parse.quote(text, safe=_UNRESERVED + ("/" if keep_slash else ""))


def amz_dates(when=None):
    """(x-amz-date ``YYYYMMDDTHHMMSSZ``, date stamp ``YYYYMMDD``) of ``when`` (epoch seconds)."""
    stamp = time.strftime("%Y%m%dT%H%M%SZ", time.gmtime(time.time() if when is None else when))
    return stamp, stamp[:8]


def canonical_query(query):
    """``query`` (a list of (name, value) pairs) encoded, sorted by name then value."""
    encoded = sorted((uri_encode(str(k)), uri_encode(str(v))) for k, v in query)
    return "&".join("{}={}".format(k, v) for k, v in encoded)


def _trim(value):
    return " ".join(str(value).strip().split())


def canonical_request(method, path, query, headers, payload_hash):
    """(canonical request text, signed header names) for one request.

    ``path`` is the already encoded request path (as sent on the wire); ``headers`` every
    header to sign, names in any case.
    """
    lowered = {}
    for name, value in headers.items():
        key = name.lower().strip()
        lowered[key] = (lowered[key] + "," + _trim(value)) if key in lowered else _trim(value)
    names = sorted(lowered)
    text = "\n".join([
        method.upper(), path or "/", canonical_query(query),
        "".join("{}:{}\n".format(name, lowered[name]) for name in names),
        ";".join(names), payload_hash])
    return text, ";".join(names)


def _hmac(key, text):
    return hmac.new(key, text.encode("utf-8"), hashlib.sha256).digest()


def signing_key(secret_key, date_stamp, region, service):
    key = _hmac(("AWS4" + secret_key).encode("utf-8"), date_stamp)
    for part in (region, service, "aws4_request"):
        key = _hmac(key, part)
    return key


def scope(date_stamp, region, service):
    return "{}/{}/{}/aws4_request".format(date_stamp, region, service)


def string_to_sign(amz_date, credential_scope, canonical):
    return "\n".join([ALGORITHM, amz_date, credential_scope,
                      hashlib.sha256(canonical.encode("utf-8")).hexdigest()])


def authorization(credentials, region, service, method, path, query, headers, payload_hash,
                  amz_date):
    """The Authorization header value for a request whose ``headers`` already hold
    ``host`` and ``x-amz-date`` (and whatever else is to be signed)."""
    date_stamp = amz_date[:8]
    canonical, signed = canonical_request(method, path, query, headers, payload_hash)
    credential_scope = scope(date_stamp, region, service)
    key = signing_key(credentials.secret_key, date_stamp, region, service)
    signature = hmac.new(key, string_to_sign(amz_date, credential_scope, canonical)
                         .encode("utf-8"), hashlib.sha256).hexdigest()
    return "{} Credential={}/{}, SignedHeaders={}, Signature={}".format(
        ALGORITHM, credentials.access_key, credential_scope, signed, signature)


def sign_s3(credentials, region, method, host, path, query=(), headers=None,
            payload_hash=EMPTY_SHA256, when=None):
    """Headers to send for an S3 request: ``headers`` plus host, x-amz-date,
    x-amz-content-sha256, x-amz-security-token (with a session token) and Authorization."""
    amz_date, _ = amz_dates(when)
    signed = dict(headers or {})
    signed["Host"] = host
    signed["x-amz-date"] = amz_date
    signed["x-amz-content-sha256"] = payload_hash
    if credentials.session_token:
        signed["x-amz-security-token"] = credentials.session_token
    signed["Authorization"] = authorization(credentials, region, "s3", method, path, query,
                                            {k: v for k, v in signed.items()
                                             if k.lower() != "authorization"},
                                            payload_hash, amz_date)
    return signed
