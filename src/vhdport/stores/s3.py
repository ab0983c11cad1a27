"""``s3://bucket/prefix``: images in an S3 bucket (AWS, Ceph RGW, Swift's s3api, MinIO).

The S3 verbs the object store layout needs, on http.client with our own SigV4.  Every
payload is signed by its SHA-256 and carries a Content-MD5 the server checks; a part's
ETag must equal our md5 of it and the completed object's ETag the md5 of those md5s, so
nothing the server stored differently goes unnoticed.  Neither ``aws-chunked`` payloads
nor ``GetObject?partNumber`` are used: Swift's s3api lacks both.
"""

import base64
import binascii
import calendar
import hashlib
import http.client
import logging
import os
import time
import urllib.parse
from xml.etree import ElementTree

from vhdport.errors import (AuthError, ImageNotFound, IntegrityError, StoreError,
                            TransientStoreError)
from vhdport.stores import s3config, sigv4
from vhdport.stores.http import TRANSIENT_STATUSES, Endpoint
from vhdport.stores.objstore import ObjectStore

log = logging.getLogger("vhdport.stores.s3")

_TRANSIENT_CODES = frozenset(("SlowDown", "InternalError", "RequestTimeout", "ServiceUnavailable"))
_AUTH_CODES = frozenset(("AccessDenied", "SignatureDoesNotMatch", "InvalidAccessKeyId",
                         "InvalidToken", "ExpiredToken", "AuthorizationHeaderMalformed",
                         "RequestTimeTooSkewed", "TokenRefreshRequired"))


class S3AuthError(AuthError):
    msg = "{store}: {code} (HTTP {status}): {message}; check the access key, secret and region"


def _local(tag):
    return tag.rsplit("}", 1)[-1]


def parse_xml(body, what):
    """An XML answer as an Element; entity declarations are refused, never expanded."""
    if b"<!DOCTYPE" in body or b"<!ENTITY" in body:
        raise StoreError("{}: refusing an XML answer with a DOCTYPE/ENTITY".format(what))
    try:
        return ElementTree.fromstring(body)
    except ElementTree.ParseError as exc:
        raise TransientStoreError("{}: not valid XML ({}): {!r}".format(what, exc, body[:100]))


def _children(element, name):
    return [child for child in element.iter() if _local(child.tag) == name]


def _text(element, name, default=None):
    for child in element:
        if _local(child.tag) == name:
            return child.text or ""
    return default


def _error_fields(body):
    """(Code, Message) of an S3 error document; never anything else it may echo back
    (SignatureProvided, StringToSign ...)."""
    if not body or b"<Error" not in body:
        return None, None
    try:
        root = parse_xml(body, "error")
    except StoreError:
        return None, None
    if _local(root.tag) != "Error":
        found = _children(root, "Error")
        if not found:
            return None, None
        root = found[0]
    return _text(root, "Code"), (_text(root, "Message") or "")[:300]


def _epoch(iso):
    """Epoch seconds of ``2024-01-02T03:04:05.000Z``."""
    try:
        return calendar.timegm(time.strptime(iso[:19], "%Y-%m-%dT%H:%M:%S"))
    except (TypeError, ValueError):
        return 0.0


def _etag(value):
    return (value or "").strip().strip('"').lower()


class S3Endpoint(Endpoint):
    """An Endpoint that signs every attempt (SigV4) and reads S3's XML errors."""

    def __init__(self, url, credentials, region, label=None, **options):
        super().__init__(url, **options)
        self.credentials, self.region = credentials, region
        #: how errors name the store: s3://bucket/prefix at the endpoint
        self.label = label or self.display
        default_port = 443 if self.scheme == "https" else 80
        self.host_header = self.host if self.port == default_port else "{}:{}".format(
            self.host, self.port)

    def secrets(self):
        """The session token travels in a header (a reflecting error page may echo it back);
        the secret key never does, but is masked as well should anything quote it."""
        found = super().secrets()
        found += [self.credentials.secret_key, self.credentials.session_token]
        return [secret for secret in found if isinstance(secret, str) and secret]

    def _attempt(self, method, path, body, headers, expect, accept, image_id, stream):
        raw_path, _, query = path.partition("?")
        hdrs = dict(headers or {})
        payload = hdrs.pop("x-amz-content-sha256", None) or \
            hashlib.sha256(body or b"").hexdigest()
        signed = sigv4.sign_s3(self.credentials, self.region, method, self.host_header,
                               self.prefix + raw_path,
                               urllib.parse.parse_qsl(query, keep_blank_values=True), hdrs,
                               payload)
        return super()._attempt(method, path, body, signed, expect, accept, image_id, stream)

    def status_error(self, status, reason, method, path, image_id=None, body=b""):
        code, message = _error_fields(self.scrub(body or b""))
        url = self.url(path)
        if status in (401, 403) or (status == 400 and code in _AUTH_CODES):
            return S3AuthError(store=self.label, url=url, status=status,
                               code=code or "AccessDenied",
                               message=message or "access denied ({} answers carry no "
                               "detail)".format(method))
        if status == 404 and image_id is not None:
            return ImageNotFound(image_id=image_id, store=self.label, url=url, status=status)
        text = "HTTP {} {} from {} {}".format(status, reason, method, url)
        if image_id is not None:
            text += " (image {})".format(image_id)
        if code:
            text += ": {}: {}".format(code, message)
        transient = status in TRANSIENT_STATUSES or code in _TRANSIENT_CODES
        cls = TransientStoreError if transient else StoreError
        return cls(text, status=status, url=url, image_id=image_id, code=code)


class S3Api(object):
    """The object verbs of objstore.ObjectStore, spoken to one bucket."""

    def __init__(self, settings, cacert=None, insecure=False, timeout=60, retries=5,
                 retry_delay=1.0):
        self.settings = settings
        self.bucket, self.prefix = settings.bucket, settings.prefix
        parts = urllib.parse.urlsplit(settings.endpoint_url)
        netloc, base_path = parts.netloc, parts.path.rstrip("/")
        if settings.addressing == "virtual":
            netloc = settings.bucket + "." + netloc
            self._bucket_path = base_path + "/"
        else:
            self._bucket_path = "{}/{}/".format(base_path, sigv4.uri_encode(settings.bucket))
        self.display = "s3://{}/{}".format(self.bucket, self.prefix).rstrip("/")
        self.display_root = "s3://{}".format(self.bucket)
        self._http = S3Endpoint("{}://{}".format(parts.scheme, netloc), settings.credentials,
                                settings.region, cacert=cacert, insecure=insecure,
                                timeout=timeout, retries=retries, retry_delay=retry_delay,
                                label="{} at {}".format(self.display, settings.endpoint_url))
        self.retries = self._http.retries
        self._bucket_ready = False

    def delay(self, attempt):
        return self._http.delay(attempt)

    def _path(self, key="", query=None):
        path = self._bucket_path + sigv4.uri_encode(key, keep_slash=True)
        if query:
            path += "?" + "&".join(
                sigv4.uri_encode(k) + ("=" + sigv4.uri_encode(str(v)) if v is not None else "")
                for k, v in query)
        return path

    def _request(self, method, key="", query=None, **kwargs):
        return self._http.request(method, self._path(key, query), **kwargs)

    # --- bucket -------------------------------------------------------------------

    def ensure_container(self):
        if self._bucket_ready:
            return
        reply = self._request("HEAD", expect=(200,), accept=(404,))
        if reply.status == 404:
            body = None
            if self.settings.region != "us-east-1":
                body = ("<CreateBucketConfiguration xmlns=\"http://s3.amazonaws.com/doc/2006-03-"
                        "01/\"><LocationConstraint>{}</LocationConstraint>"
                        "</CreateBucketConfiguration>".format(self.settings.region)).encode()
            reply = self._request("PUT", body=body, expect=(200,), accept=(409,))
            if reply.status == 409 and _error_fields(reply.body)[0] != "BucketAlreadyOwnedByYou":
                raise self._http.status_error(409, "Conflict", "PUT", self._path(), None,
                                              reply.body)
        self._bucket_ready = True

    # --- small objects ------------------------------------------------------------------

    def read_small(self, key):
        """The bytes of a small object, or None if it (or the bucket) does not exist."""
        for attempt in range(self.retries + 1):
            reply = self._request("GET", key, expect=(200,), accept=(404,))
            if reply.status == 404:
                return None
            etag = _etag(reply.header("ETag"))
            if len(etag) != 32 or etag == hashlib.md5(reply.body).hexdigest():
                return reply.body
            if attempt < self.retries:
                time.sleep(self.delay(attempt))
        raise IntegrityError(what="md5 (ETag)", subject="{}/{}".format(self.display, key),
                             expected=etag, actual=hashlib.md5(reply.body).hexdigest())

    def write_small(self, key, data):
        self._put(key, data, {"Content-Type": "application/json"})

    def _put(self, key, data, headers=None, image_id=None, query=None):
        md5 = hashlib.md5(data).hexdigest()
        hdrs = {"Content-MD5": base64.b64encode(binascii.unhexlify(md5)).decode("ascii"),
                "x-amz-content-sha256": hashlib.sha256(data).hexdigest(),
                "Content-Length": str(len(data))}
        hdrs.update(headers or {})
        reply = self._request("PUT", key, query, body=data, headers=hdrs, expect=(200,),
                              image_id=image_id)
        etag = _etag(reply.header("ETag"))
        if etag != md5:
            raise IntegrityError(what="md5 (ETag)", subject="{}/{}".format(self.display, key),
                                 expected=md5, actual=etag or None)
        return etag

    def head(self, key):
        reply = self._request("HEAD", key, expect=(200,), accept=(404,))
        if reply.status == 404:
            return None
        return {"size": int(reply.header("Content-Length", "0")),
                "etag": _etag(reply.header("ETag"))}

    def delete(self, key):
        self._request("DELETE", key, expect=(200, 204), accept=(404,))

    def list(self, prefix):
        """Objects whose key starts with ``prefix``: dicts of key, size, modified (epoch)."""
        marker = ""
        while True:
            query = [("marker", marker), ("prefix", prefix)]
            reply = self._request("GET", query=query, expect=(200,), accept=(404,))
            if reply.status == 404:
                return
            root = parse_xml(reply.body, "listing of " + self.display)
            last = None
            for item in _children(root, "Contents"):
                last = _text(item, "Key")
                yield {"key": last, "size": int(_text(item, "Size", "0")),
                       "modified": _epoch(_text(item, "LastModified"))}
            if _text(root, "IsTruncated", "false").lower() != "true" or last is None:
                return
            marker = _text(root, "NextMarker") or last

    # --- data -------------------------------------------------------------------------

    def fetch_range(self, key, start, end, image_id=None):
        headers = {"Range": "bytes={}-{}".format(start, end - 1)}
        conn, resp = self._request("GET", key, headers=headers, expect=(206, 200),
                                   image_id=image_id, stream=True)
        try:
            if resp.status == 200 and start != 0:
                raise StoreError("{}: the server ignored a Range request".format(self.display))
            return _read_exactly(resp, end - start, self._http, key, image_id)
        finally:
            conn.close()

    def put_whole(self, key, data, image_id=None):
        self._put(key, data, {"Content-Type": "application/octet-stream"}, image_id)

    def begin_parts(self, key, image_id=None):
        reply = self._request("POST", key, [("uploads", "")], expect=(200,), image_id=image_id,
                              headers={"Content-Type": "application/octet-stream"},
                              idempotent=False)
        upload_id = _text(parse_xml(reply.body, "multipart upload"), "UploadId")
        if not upload_id:
            raise StoreError("{}: no UploadId in the answer to starting a multipart upload "
                             "of {}".format(self.display, key))
        return {"key": key, "upload_id": upload_id}

    def send_part(self, token, part, data):
        return self._put(token["key"], data, query=[("partNumber", part.number),
                                                    ("uploadId", token["upload_id"])])

    def complete_parts(self, token, parts):
        body = "<CompleteMultipartUpload>{}</CompleteMultipartUpload>".format("".join(
            "<Part><PartNumber>{}</PartNumber><ETag>\"{}\"</ETag></Part>".format(
                part.number, part.md5) for part in parts)).encode("ascii")
        reply = self._request("POST", token["key"], [("uploadId", token["upload_id"])],
                              body=body, headers={"Content-Type": "application/xml"},
                              expect=(200,), idempotent=False)
        root = parse_xml(reply.body, "completing the upload of " + token["key"])
        if _local(root.tag) == "Error":  # S3 may answer 200 and fail in the body
            code, message = _error_fields(reply.body)
            raise StoreError("{}: completing the upload of {} failed: {}: {}".format(
                self.display, token["key"], code, message))
        expected = "{}-{}".format(hashlib.md5(b"".join(
            binascii.unhexlify(part.md5) for part in parts)).hexdigest(), len(parts))
        etag = _etag(_text(root, "ETag"))
        if etag != expected:
            raise IntegrityError(what="multipart ETag", subject="{}/{}".format(
                self.display, token["key"]), expected=expected, actual=etag or None)

    def abort_parts(self, token):
        if "upload_id" not in token:  # Swift segments (an upload through swift://)
            log.warning("%s: upload %s was made through the Swift API; remove it with image gc "
                        "through swift://", self.display, token.get("segments"))
            return
        self._request("DELETE", token["key"], [("uploadId", token["upload_id"])],
                      expect=(200, 204), accept=(404,))

    def part_uploads(self):
        """(token, started epoch) of every multipart upload under our prefix."""
        key_marker = upload_marker = ""
        while True:
            query = [("uploads", ""), ("prefix", self.prefix)]
            if key_marker:
                query += [("key-marker", key_marker), ("upload-id-marker", upload_marker)]
            reply = self._request("GET", query=query, expect=(200,), accept=(404,))
            if reply.status == 404:
                return
            root = parse_xml(reply.body, "multipart upload listing of " + self.display)
            for item in _children(root, "Upload"):
                yield ({"key": _text(item, "Key"), "upload_id": _text(item, "UploadId")},
                       _epoch(_text(item, "Initiated")))
            if _text(root, "IsTruncated", "false").lower() != "true":
                return
            key_marker = _text(root, "NextKeyMarker") or ""
            upload_marker = _text(root, "NextUploadIdMarker") or ""
            if not key_marker:
                return




def _read_exactly(resp, length, endpoint, key, image_id):
    """The body of a ranged answer; a short or broken one is a TransientStoreError."""
    parts, have = [], 0
    while have < length:
        try:
            data = resp.read(min(length - have, 1 << 20))
        except (OSError, http.client.HTTPException) as exc:
            raise endpoint.connection_error(exc, "GET", key, image_id, "download")[0]
        if not data:
            raise TransientStoreError("connection closed after {} of {} bytes of a range of {}"
                                      .format(have, length, key))
        parts.append(data)
        have += len(data)
    return b"".join(parts)


class S3Store(ObjectStore):
    """``S3Store("s3://bucket/prefix", endpoint_url=..., region=..., connections=4, ...)``.

    Options the Glance stores take (api_version, auth_token, extra_headers) are ignored,
    so callers can pass one set of options whatever the URL.
    """

    def __init__(self, url, endpoint_url=None, region=None, access_key=None, secret_key=None,
                 session_token=None, profile=None, addressing="auto", cacert=None,
                 insecure=False, timeout=60, retries=5, retry_delay=1.0, connections=4,
                 part_size=None, block_size=None, environ=None, **_ignored):
        settings = s3config.resolve(url, endpoint_url, region, access_key, secret_key,
                                    session_token, profile, addressing, environ)
        cacert = cacert or (os.environ if environ is None else environ).get("AWS_CA_BUNDLE")
        api = S3Api(settings, cacert=cacert, insecure=insecure, timeout=timeout,
                    retries=retries, retry_delay=retry_delay)
        kwargs = {"connections": connections, "block_size": block_size}
        if part_size:
            kwargs["part_size"] = part_size
        super().__init__(api, **kwargs)
