"""A download stream that checks what it read and resumes after a broken connection.

Why in the stream itself: the transfer layer pipes ``read()`` into tar; if the
connection drops half-way through a 20 GiB image, re-fetching only the missing
tail (``Range: bytes=N-``) is the difference between a hiccup and a failed job.
Length (Content-Length / Content-Range) and, when the server sends it, Content-MD5
are compared at EOF so a truncated or altered body never looks like a good one.
"""

import hashlib
import http.client
import logging

from vhdport.errors import ImageStateError, IntegrityError, StoreError, TransientStoreError
from vhdport.stores.http import _content_range, parse_md5

log = logging.getLogger("vhdport.stores.http")

_SKIP_BLOCK = 1 << 20


class _BadResponse(Exception):
    """A response we cannot continue from (garbled headers): worth another attempt."""


class HttpDownload(object):
    """Readable stream of one image's data (``read(n)``, ``close()``, ``size``).

    ``size`` is the whole image's size (None if the server did not say);
    ``offset`` is where this stream started.  ``md5_headers`` name the response
    headers holding the md5 of the whole image, first match wins.
    """

    def __init__(self, endpoint, path, image_id, offset=0, md5_headers=("Content-Md5",),
                 block_size=1 << 20):
        if offset < 0:
            raise StoreError("negative offset {} for image {}".format(offset, image_id))
        self._endpoint, self._path, self.image_id = endpoint, path, image_id
        self.offset = offset
        self.size = None
        self.expected_md5 = None
        self.block_size = block_size
        self._md5_headers = md5_headers
        self._pos = offset        # absolute offset of the next byte the server sends us
        self._handed = 0          # bytes already returned to the caller
        self._md5 = None          # running md5, only while we have every byte from 0
        self._conn = self._resp = None
        self._failures = 0        # consecutive failures without progress
        self._done = False
        self._error = None
        self.headers = None       # headers of the first response (v1 puts metadata there)
        try:
            self._start(resuming=False)
        except _BadResponse as bad:
            raise TransientStoreError(str(bad), url=self.url, image_id=image_id)

    # --- public -----------------------------------------------------------

    @property
    def position(self):
        """Absolute offset of the next byte read() returns."""
        return self._pos

    @property
    def url(self):
        return self._endpoint.url(self._path)

    def read(self, n=-1):
        if n is None or n < 0:
            return b"".join(iter(lambda: self.read(self.block_size), b""))
        if self._error is not None:
            raise self._error
        if n == 0 or self._done:
            return b""
        while True:
            if self.size is not None and self._pos >= self.size:
                self._finish()
                return b""
            data, err = self._read_some(n)
            if data:
                self._failures = 0
                self._handed += len(data)
                return data
            if err is None and self.size is None:
                self._finish()  # no length announced: a clean end of body is the end
                return b""
            self._recover(err)

    def __iter__(self):
        return iter(lambda: self.read(self.block_size), b"")

    def close(self):
        self._done = True
        self._close_conn()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    def __repr__(self):
        return "HttpDownload(image={!r}, url={!r}, at={}, size={})".format(
            self.image_id, self.url, self._pos, self.size)

    # --- internals --------------------------------------------------------

    def _read_some(self, n):
        try:
            data = self._resp.read(n)
        except (OSError, http.client.HTTPException) as exc:
            return b"", exc
        except ValueError as exc:   # http.client on a garbled chunk header (e.g. negative size)
            if isinstance(exc, OSError):
                return b"", exc
            return b"", _BadResponse("garbled HTTP body from {}: {}".format(
                self.url, self._endpoint.redact(str(exc))[:200]))
        if data:
            self._pos += len(data)
            if self._md5 is not None:
                self._md5.update(data)
        return data, None

    def _start(self, resuming):
        """(Re)open the response at self._pos; may fall back to a full GET from byte 0."""
        headers = {"Range": "bytes={}-".format(self._pos)} if self._pos > 0 else None
        conn, resp = self._endpoint.request(
            "GET", self._path, headers=headers, expect=(200,), accept=(206, 204, 400, 416),
            image_id=self.image_id, stream=True)
        self._conn, self._resp = conn, resp
        if self.headers is None:
            self.headers = resp.headers
        status = resp.status
        if status == 204:
            self._close_conn()
            raise ImageStateError(image_id=self.image_id, status="without data (HTTP 204)",
                                  expected="active", url=self.url)
        if status == 206:
            self._continue_partial(resp)
            return
        if status in (400, 416):
            body = resp.read(64 * 1024)
            self._close_conn()
            if self._pos == 0:  # no Range was sent: a plain failure
                raise self._endpoint.status_error(status, resp.reason, "GET", self._path,
                                                  self.image_id, body)
            if self._handed:
                self._cannot_resume(status)
            if not resuming and self.offset > 0 and status == 416:
                raise StoreError("offset {} is beyond the end of image {} at {} (HTTP 416)"
                                 .format(self.offset, self.image_id, self.url))
            log.info("%s refused a range request (HTTP %d); fetching from the start",
                     self.url, status)
            self._pos = 0
            self._start(resuming)
            return
        # 200: the whole image from byte 0
        if self._pos > 0 and self._handed:
            self._close_conn()
            self._cannot_resume(status)
        length = _int_or_none(resp.getheader("Content-Length"))
        self._check_size(length)
        self._pos = 0
        for name in self._md5_headers:
            md5 = parse_md5(resp.getheader(name))
            if md5:
                self.expected_md5 = md5
                break
        # hash only what can be compared: without a Content-MD5 an md5 pass is pure cost
        self._md5 = hashlib.md5() if self.expected_md5 is not None else None
        self._skip_to(self.offset)

    def _continue_partial(self, resp):
        first, total = _content_range(resp.getheader("Content-Range", ""))
        if first != self._pos:
            self._close_conn()
            raise _BadResponse(
                "asked {} for image {} from byte {} but got Content-Range {!r}".format(
                    self.url, self.image_id, self._pos, resp.getheader("Content-Range")))
        if total is None:
            length = _int_or_none(resp.getheader("Content-Length"))
            total = None if length is None else first + length
        self._check_size(total)

    def _check_size(self, total):
        if total is None:
            return
        if self.size is not None and total != self.size:
            self._close_conn()
            self._error = IntegrityError(
                what="image size", subject="image {} at {} (changed while downloading)".format(
                    self.image_id, self.url), expected=self.size, actual=total)
            raise self._error
        self.size = total

    def _skip_to(self, offset):
        """Discard bytes up to ``offset`` (a server without Range support)."""
        while self._pos < offset:
            data, err = self._read_some(min(_SKIP_BLOCK, offset - self._pos))
            if not data:
                self._recover(err)

    def _cannot_resume(self, status):
        self._error = TransientStoreError(
            "download of image {} from {} broke after {} bytes and the server does not "
            "resume (HTTP {} to a Range request); restart the transfer".format(
                self.image_id, self.url, self._pos, status),
            url=self.url, image_id=self.image_id)
        raise self._error

    def _recover(self, err):
        """The connection broke (err) or ended early (err None): reconnect at self._pos."""
        while True:
            self._close_conn()
            if err is None:
                cause = "connection closed after byte {} of {}".format(self._pos, self.size)
            elif isinstance(err, _BadResponse):
                cause = str(err)
            else:
                cause = self._endpoint.connection_error(err, "GET", self._path, self.image_id,
                                                        "download")[0].args[0]
            if self._failures >= self._endpoint.retries:
                self._error = TransientStoreError(
                    "download of image {} from {} broke at byte {}: {} (gave up after {} "
                    "attempts)".format(self.image_id, self.url, self._pos, cause,
                                       self._failures + 1),
                    url=self.url, image_id=self.image_id)
                raise self._error
            pause = self._endpoint.delay(self._failures)
            self._failures += 1
            log.warning("download of image %s: %s; resuming at byte %d in %.2gs",
                        self.image_id, cause, self._pos, pause)
            self._endpoint.sleep(pause)
            try:
                self._start(resuming=True)
                return
            except _BadResponse as bad:
                err = bad

    def _finish(self):
        self._done = True
        self._close_conn()
        subject = "image {} from {}".format(self.image_id, self.url)
        if self.size is not None and self._pos != self.size:
            self._error = IntegrityError(what="size", subject=subject,
                                         expected=self.size, actual=self._pos)
        elif self._md5 is not None and self.expected_md5 is not None:
            actual = self._md5.hexdigest()
            if actual != self.expected_md5:
                self._error = IntegrityError(what="md5 (Content-MD5)", subject=subject,
                                             expected=self.expected_md5, actual=actual)
        if self._error is not None:
            raise self._error

    def _close_conn(self):
        conn, self._conn, self._resp = self._conn, None, None
        if conn is not None:
            conn.close()


def _int_or_none(value):
    try:
        return int(value)
    except (TypeError, ValueError):
        return None
