"""HTTP plumbing for the Glance store, standard library only.

Why hand-rolled on http.client: dom0 has no requests, and we need control the
usual clients do not give -- a chunked upload whose terminating chunk is sent
only on success, a socket timeout on every connection (the old plugin hung
forever), retries only where a request can be replayed, and error messages that
name status, URL and image but never the token.  The service root itself (URL,
TLS, credentials, connections) is :mod:`vhdport.stores.http_connection`.
"""

import base64
import binascii
import http.client
import json
import logging
import socket
import ssl

from vhdport.errors import (AuthError, ImageNotFound, IntegrityError, StoreError,
                            TransientStoreError)
from vhdport.stores.base import StreamDigest
from vhdport.stores.http_bounds import (  # noqa: F401  (redact_text: used by cli and plugin)
    MAX_ERROR_BYTES, MAX_METADATA_BYTES, Deadline, read_capped, redact_text)
from vhdport.stores.http_connection import Connection
from vhdport.stores.http_continue import await_continue

log = logging.getLogger("vhdport.stores.http")

#: statuses worth another try: the server or a proxy may recover
TRANSIENT_STATUSES = frozenset((408, 500, 502, 503, 504, 507))
#: longest pause between two attempts, whatever the backoff or Retry-After says
MAX_RETRY_DELAY = 30.0
_END = object()
#: bytes of an error body quoted in messages
_DETAIL_CHARS = 300
#: a refused connection is retried at most this often, with short pauses (a few s in all)
REFUSED_RETRIES = 3
REFUSED_MAX_PAUSE = 1.0


class _Attempt(Exception):
    """One failed attempt: the error to raise if we give up, and whether a retry is safe.

    ``sent`` is False when the request cannot have reached the server (connection
    refused), so even a non-idempotent POST may be tried again.
    """

    def __init__(self, error, transient, sent=True, retry_after=None, refused=False,
                 status=None):
        super().__init__(str(error))
        self.error, self.transient, self.sent = error, transient, sent
        self.status = status
        self.retry_after = retry_after
        self.refused = refused


class Reply(object):
    """A fully read response."""

    def __init__(self, status, headers, body):
        self.status, self.headers, self.body = status, headers, body

    def header(self, name, default=None):
        return self.headers.get(name, default)

    def json(self, what="response"):
        """The body as a JSON object (dict); StoreError for anything else, bombs included."""
        try:
            doc = json.loads(self.body.decode("utf-8"))
        except (UnicodeDecodeError, ValueError) as e:
            raise StoreError("{} is not valid JSON ({}): {!r}".format(what, e, self.body[:100]))
        except RecursionError:
            raise StoreError("{} is JSON nested too deeply to read ({} bytes)".format(
                what, len(self.body))) from None
        if not isinstance(doc, dict):
            raise StoreError("{} is not a JSON object but {}".format(what, type(doc).__name__))
        return doc


def _detail(body):
    """A short, single-line excerpt of an error body (Glance sends HTML or JSON)."""
    text = body[:4 * _DETAIL_CHARS].decode("utf-8", "replace")
    try:
        doc = json.loads(text)
        if isinstance(doc, dict):
            inner = next(iter(doc.values())) if len(doc) == 1 else doc
            if isinstance(inner, dict) and "message" in inner:
                text = str(inner["message"])
    except (ValueError, RecursionError):
        pass
    for tag in ("<html>", "</html>", "<head>", "</head>", "<body>", "</body>",
                "<title>", "</title>", "<h1>", "</h1>", "<br />"):
        text = text.replace(tag, " ")
    text = " ".join(text.split())
    return text[:_DETAIL_CHARS]


class Endpoint(Connection):
    """An HTTP(S) service root (see :class:`Connection`) that sends requests: retries,
    status errors, fully read answers and chunked uploads.
    """

    def delay(self, attempt, retry_after=None):
        """Exponential backoff: retry_delay, 2x, 4x ... capped; a Retry-After may lengthen it."""
        pause = min(self.retry_delay * (2 ** attempt), MAX_RETRY_DELAY)
        if retry_after is not None:
            pause = max(pause, min(retry_after, MAX_RETRY_DELAY))
        return pause

    def status_error(self, status, reason, method, path, image_id=None, body=b""):
        """The vhdport error for an HTTP failure status."""
        url = self.url(path)
        body = self.scrub(body or b"")
        if status == 401:
            return AuthError(store=self.display, url=url, status=status)
        if status == 404 and image_id is not None:
            return ImageNotFound(image_id=image_id, store=self.display, url=url, status=status)
        text = "HTTP {} {} from {} {}".format(status, reason, method, url)
        if image_id is not None:
            text += " (image {})".format(image_id)
        detail = _detail(body) if body else ""
        if detail:
            text += ": " + detail
        cls = TransientStoreError if status in TRANSIENT_STATUSES else StoreError
        return cls(text, status=status, url=url, image_id=image_id)

    # --- requests ---------------------------------------------------------

    def request(self, method, path, body=None, headers=None, expect=(200,), image_id=None,
                idempotent=True, stream=False, accept=()):
        """Send a request, retrying transient failures; return a Reply or (conn, response).

        ``expect`` statuses succeed; ``accept`` statuses are handed back too (the caller
        decides, e.g. 409); anything else raises.  With ``stream`` the body is left
        unread and the caller must close the returned connection.
        """
        attempt = 0
        renewed = False
        while True:
            try:
                return self._attempt(method, path, body, headers, expect, accept, image_id, stream)
            except _Attempt as failed:
                if failed.status == 401 and self.token_source is not None and not renewed:
                    # the token ran out (or was revoked) mid-way: one more try with a new one
                    renewed = True
                    self.token_source.renew()
                    continue
                retry_ok = failed.transient and (idempotent or not failed.sent)
                limit = min(self.retries, REFUSED_RETRIES) if failed.refused else self.retries
                if not retry_ok or attempt >= limit:
                    err = failed.error
                    if failed.transient and attempt > 0:
                        err.args = ("{} (gave up after {} attempts)".format(err.args[0],
                                                                            attempt + 1),)
                    raise err
                pause = self.delay(attempt, failed.retry_after)
                if failed.refused:
                    pause = min(pause, REFUSED_MAX_PAUSE)
                # a refused connection is retried briefly and quietly (a service restarting)
                log.log(logging.INFO if failed.refused else logging.WARNING,
                        "%s; retrying in %.2gs (attempt %d of %d)", failed.error, pause,
                        attempt + 2, limit + 1)
                self.sleep(pause)
                attempt += 1

    def _attempt(self, method, path, body, headers, expect, accept, image_id, stream):
        conn = self.connect()
        full = self.prefix + path
        sent = False
        deadline = Deadline(conn, self.deadline)
        try:
            try:
                with deadline:
                    conn.connect()
                    sent = True
                    conn.request(method, full, body=body, headers=self.headers(headers, method, full))
                    resp = conn.getresponse()
                    if stream and (resp.status in expect or resp.status in accept):
                        deadline.cancel()   # the data itself may take long; only silence counts
                        conn_to_return, conn = conn, None
                        return conn_to_return, resp
                    ok = resp.status in expect or resp.status in accept
                    data = self.scrub(read_capped(
                        resp, MAX_METADATA_BYTES if ok else MAX_ERROR_BYTES, truncate=not ok,
                        what="answer to {} {}".format(method, self.url(path))))
                if deadline.fired:   # the cut-off socket may just look like an early end
                    raise socket.error("cut off at the deadline")
                if ok and resp.length:
                    raise http.client.IncompleteRead(data, resp.length)
            except (OSError, http.client.HTTPException, ValueError) as exc:
                if deadline.fired and not isinstance(exc, socket.timeout):
                    raise _Attempt(self.too_slow(method, path, image_id), False)
                if isinstance(exc, ConnectionRefusedError):
                    sent = False
                if isinstance(exc, ValueError) and not isinstance(
                        exc, (OSError, ssl.CertificateError)):   # http.client's parser
                    raise _Attempt(self.garbled(exc, method, path, image_id), True, sent=sent)
                err, transient = self.connection_error(exc, method, path, image_id)
                raise _Attempt(err, transient, sent=sent,
                               refused=isinstance(exc, ConnectionRefusedError))
            if resp.status in expect or resp.status in accept:
                return Reply(resp.status, resp.headers, data)
            err = self.status_error(resp.status, resp.reason, method, path, image_id, data)
            retry_after = None
            if resp.status in TRANSIENT_STATUSES:
                try:
                    retry_after = float(resp.getheader("Retry-After", ""))
                except ValueError:
                    pass
            raise _Attempt(err, resp.status in TRANSIENT_STATUSES, retry_after=retry_after,
                           status=resp.status)
        finally:
            if conn is not None:
                conn.close()

    def too_slow(self, method, path, image_id=None):
        """The error for a server that kept talking but did not finish within the timeout."""
        where = "{} {}".format(method, self.url(path))
        if image_id is not None:
            where += " (image {})".format(image_id)
        return StoreError("no complete answer to {} within {:g}s: the server sends too slowly "
                          "(not retried); raise --timeout if it is just slow".format(
                              where, self.deadline), url=self.url(path), image_id=image_id)

    def garbled(self, exc, method, path, image_id=None):
        return TransientStoreError("garbled HTTP answer to {} {}: {}".format(
            method, self.url(path), self.redact(str(exc))[:200]), url=self.url(path),
            image_id=image_id)

    def upload(self, method, path, chunks, headers, expect, image_id, size=None,
               wait_continue=None):
        """Send ``chunks`` as a chunked body, once (an iterator cannot be replayed).

        The terminating zero-length chunk goes out only after every chunk was sent
        (and, with ``size``, the byte count matched), so a failed upload never looks
        complete to the server.  Exceptions raised by ``chunks`` propagate unchanged
        after the socket is closed.  Returns (Reply, UploadResult).

        With ``wait_continue`` (seconds) the request says ``Expect: 100-continue`` and
        waits that long for the server's verdict before the first byte of data: a refusal
        (e.g. 403 under an import-only policy) then raises with ``before_data=True`` and
        ``chunks`` untouched, so the caller may send them another way.
        """
        full = self.prefix + path
        hdrs = self.headers(headers, method, full)
        hdrs["Transfer-Encoding"] = "chunked"
        if wait_continue:
            hdrs["Expect"] = "100-continue"
        digest = StreamDigest()
        conn = self.connect()
        finished = False
        try:
            try:
                conn.putrequest(method, full, skip_accept_encoding=True)
                for name, value in hdrs.items():
                    conn.putheader(name, value)
                conn.endheaders()
            except (OSError, http.client.HTTPException) as exc:
                raise self.connection_error(exc, method, path, image_id, "upload start")[0]
            if wait_continue:
                await_continue(self, conn, wait_continue, method, path, image_id)
            source = iter(chunks)
            while True:
                chunk = next(source, _END)  # the caller's exceptions propagate as they are
                if chunk is _END:
                    break
                if not chunk:
                    continue
                digest.update(chunk)
                try:
                    _send_chunk(conn, chunk)
                except (OSError, http.client.HTTPException) as exc:
                    raise self._early_answer(conn, method, path, image_id) or \
                        self._upload_broken(exc, method, path, image_id, digest.size)
            if size is not None and digest.size != size:
                raise IntegrityError(what="upload size", subject="image {}".format(image_id),
                                     expected=size, actual=digest.size)
            deadline = Deadline(conn, self.deadline)
            try:
                with deadline:
                    conn.send(b"0\r\n\r\n")
                    resp = conn.getresponse()
                    data = self.scrub(read_capped(
                        resp, MAX_METADATA_BYTES if resp.status in expect else MAX_ERROR_BYTES,
                        truncate=True, what="answer to the upload"))
                if deadline.fired:
                    raise socket.error("cut off at the deadline")
            except (OSError, http.client.HTTPException, ValueError) as exc:
                if deadline.fired and not isinstance(exc, socket.timeout):
                    raise self.too_slow(method, path, image_id)
                raise self._upload_broken(exc, method, path, image_id, digest.size)
            finished = True
        finally:
            if not finished:
                _abort(conn)
            conn.close()
        if resp.status not in expect:
            err = self.status_error(resp.status, resp.reason, method, path, image_id, data)
            if isinstance(err, TransientStoreError):
                err.args = (err.args[0] + "; uploads are not retried automatically",)
            raise err
        return Reply(resp.status, resp.headers, data), digest.result()

    def _early_answer(self, conn, method, path, image_id):
        """After a failed send, the server may already have said why (401, 413 ...)."""
        try:
            if conn.sock is not None:
                conn.sock.settimeout(min(self.timeout, 2.0))
            with Deadline(conn, min(self.timeout, 5.0)):
                resp = conn.getresponse()
                data = self.scrub(read_capped(resp, MAX_ERROR_BYTES, truncate=True))
        except (OSError, http.client.HTTPException, ValueError):
            return None
        return self.status_error(resp.status, resp.reason, method, path, image_id, data)

    def _upload_broken(self, exc, method, path, image_id, sent):
        err = self.connection_error(exc, method, path, image_id, "upload")[0]
        err.args = ("{} after {} bytes; the upload was not completed and is not retried "
                    "automatically".format(err.args[0], sent),)
        return err


def _send_chunk(conn, chunk):
    head = "{:x}\r\n".format(len(chunk)).encode("ascii")
    if len(chunk) <= 65536:
        conn.send(head + bytes(chunk) + b"\r\n")
    else:
        conn.send(head)
        conn.send(chunk)
        conn.send(b"\r\n")


def _abort(conn):
    """Drop the connection so the server sees a truncated body, never a complete one."""
    sock = getattr(conn, "sock", None)
    if sock is None:
        return
    try:
        sock.shutdown(socket.SHUT_RDWR)
    except OSError:
        pass


def parse_md5(value):
    """Hex md5 from a Content-MD5 header: Glance sends hex, RFC 1864 says base64."""
    if not value:
        return None
    value = value.strip().strip('"')
    if len(value) == 32:
        try:
            int(value, 16)
            return value.lower()
        except ValueError:
            pass
    try:
        raw = base64.b64decode(value.encode("ascii"), validate=True)
    except (binascii.Error, ValueError, UnicodeEncodeError):
        return None
    return binascii.hexlify(raw).decode("ascii") if len(raw) == 16 else None


def _content_range(value):
    """(first, total) from 'bytes first-last/total'; total may be None ('*')."""
    try:
        unit, _, spec = value.strip().partition(" ")
        span, _, total = spec.partition("/")
        first = int(span.split("-", 1)[0])
        return first, (None if total.strip() == "*" else int(total))
    except (ValueError, AttributeError):
        return None, None
