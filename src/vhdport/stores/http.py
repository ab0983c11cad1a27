"""HTTP plumbing for the Glance store, standard library only.

Why hand-rolled on http.client: dom0 has no requests, and we need control the
usual clients do not give -- a chunked upload whose terminating chunk is sent
only on success, a socket timeout on every connection (the old plugin hung
forever), retries only where a request can be replayed, and error messages that
name status, URL and image but never the token.
"""

import base64
import binascii
import http.client
import json
import logging
import socket
import ssl
import time
import urllib.parse

from vhdport.errors import (AuthError, ImageNotFound, IntegrityError, StoreError,
                            TransientStoreError)
from vhdport.stores.base import StreamDigest
from vhdport.stores.http_bounds import (  # noqa: F401  (redact_text: used by cli and plugin)
    MAX_ERROR_BYTES, MAX_METADATA_BYTES, Deadline, check_headers, read_capped, redact_text,
    secret_forms)

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


class _Secret(object):
    """Holds a credential so that repr(), vars() dumps and tracebacks show nothing."""

    __slots__ = ("value",)

    def __init__(self, value):
        self.value = value

    def __repr__(self):
        return "<hidden>"

    __str__ = __repr__


class _Attempt(Exception):
    """One failed attempt: the error to raise if we give up, and whether a retry is safe.

    ``sent`` is False when the request cannot have reached the server (connection
    refused), so even a non-idempotent POST may be tried again.
    """

    def __init__(self, error, transient, sent=True, retry_after=None, refused=False):
        super().__init__(str(error))
        self.error, self.transient, self.sent = error, transient, sent
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


def _is_cert_failure(exc):
    verify_error = getattr(ssl, "SSLCertVerificationError", None)
    if verify_error is not None and isinstance(exc, verify_error):
        return True
    if isinstance(exc, ssl.CertificateError):
        return True
    return "CERTIFICATE_VERIFY_FAILED" in str(exc)


class Endpoint(object):
    """One HTTP(S) service root: URL prefix, TLS, auth header, timeouts and retries."""

    def __init__(self, url, auth_token=None, extra_headers=None, cacert=None,
                 insecure=False, timeout=60, retries=5, retry_delay=1.0, sleep=time.sleep):
        parts = urllib.parse.urlsplit(url)
        scheme = parts.scheme.lower()
        if scheme.startswith("glance+"):
            scheme = scheme[len("glance+"):]
        if scheme not in ("http", "https") or not parts.hostname:
            raise StoreError("not an http(s) URL: {!r}; expected e.g. "
                             "https://glance.example:9292".format(_strip_userinfo(url)))
        self.scheme, self.host = scheme, parts.hostname
        try:
            self.port = parts.port or (443 if scheme == "https" else 80)
        except ValueError:
            raise StoreError("bad port in URL {!r}".format(_strip_userinfo(url)))
        self.prefix = parts.path.rstrip("/")
        host = "[{}]".format(self.host) if ":" in self.host else self.host
        default_port = 443 if scheme == "https" else 80
        netloc = host if self.port == default_port else "{}:{}".format(host, self.port)
        #: the URL as it may appear in messages: no userinfo, no query
        self.display = "{}://{}{}".format(scheme, netloc, self.prefix)
        self._token = _Secret(auth_token) if auth_token else None
        self._extra = dict(extra_headers or {})
        check_headers(self._token, self._extra)
        try:
            self.timeout = float(timeout)
            self.retries = int(retries)
        except (TypeError, ValueError):
            raise StoreError("timeout and retries must be numbers, not {!r} and {!r}".format(
                timeout, retries)) from None
        if not self.timeout > 0 or self.retries < 0:
            raise StoreError("timeout must be > 0 s and retries >= 0 (got {:g} and {})".format(
                self.timeout, self.retries))
        self.retry_delay = float(retry_delay)
        self.sleep = sleep
        self._tls = None
        if scheme == "https":
            self._tls = ssl.create_default_context(cafile=cacert) if cacert \
                else ssl.create_default_context()
            if insecure:
                self._tls.check_hostname = False
                self._tls.verify_mode = ssl.CERT_NONE
        elif cacert or insecure:
            log.debug("cacert/insecure ignored for plain http endpoint %s", self.display)

    def __repr__(self):
        return "Endpoint({!r})".format(self.display)

    @property
    def deadline(self):
        """Longest a whole metadata answer (or the headers of a data answer) may take.

        A little over the socket timeout, so plain silence is still reported (and retried)
        as a timeout, while a server that trickles bytes is cut off soon after it.
        """
        return self.timeout + min(self.timeout, 5.0)

    def scrub(self, data):
        """``data`` (an answer's body) with our credentials masked.

        A reflecting proxy or error page may echo the request headers back; the body
        then travels into error messages and logs, so the token must not travel with it.
        """
        for form in self._secret_forms():
            data = data.replace(form.encode("utf-8", "surrogateescape"), b"***")
        return data

    def secrets(self):
        """The credentials this endpoint sends (for redaction; never for display)."""
        secrets = [self._token.value] if self._token is not None else []
        secrets += [v for k, v in self._extra.items()
                    if any(w in k.lower() for w in ("token", "auth", "secret", "password",
                                                    "key", "cookie"))]
        return [s for s in secrets if isinstance(s, str)]

    def _secret_forms(self):
        forms = set()
        for secret in self.secrets():
            forms.update(secret_forms(secret))
        return sorted(forms, key=len, reverse=True)

    def redact(self, text):
        """``text`` (a message) with every representation of our credentials masked."""
        return redact_text(text, self.secrets())

    # --- plumbing ---------------------------------------------------------

    def url(self, path):
        return self.display + path

    def connect(self):
        if self._tls is not None:
            return http.client.HTTPSConnection(self.host, self.port, timeout=self.timeout,
                                               context=self._tls)
        return http.client.HTTPConnection(self.host, self.port, timeout=self.timeout)

    def headers(self, extra=None):
        hdrs = {"Accept-Encoding": "identity", "User-Agent": "vhdport"}
        hdrs.update(self._extra)
        if self._token is not None:
            hdrs["X-Auth-Token"] = self._token.value
        if extra:
            hdrs.update(extra)
        return hdrs

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

    def connection_error(self, exc, method, path, image_id=None, during="request"):
        """The vhdport error for a socket/TLS failure, and whether it is transient."""
        url = self.url(path)
        where = "{} {}".format(method, url)
        if image_id is not None:
            where += " (image {})".format(image_id)
        if isinstance(exc, ssl.SSLError) or isinstance(exc, ssl.CertificateError):
            if _is_cert_failure(exc):
                return StoreError(
                    "TLS certificate of {} could not be verified ({}); pass cacert=<CA bundle "
                    "file> for a private CA (insecure=True only for tests)".format(
                        self.display, exc), url=url), False
        if isinstance(exc, socket.gaierror):
            return StoreError("cannot resolve host name {!r} ({}) for {}; check the store URL"
                              .format(self.host, exc.strerror or exc, where), url=url), False
        if isinstance(exc, socket.timeout):
            text = "timed out: no answer within {:g}s during {} of {}".format(
                self.timeout, during, where)
        elif isinstance(exc, ConnectionRefusedError):
            text = "connection refused by {} during {}".format(where, during)
        else:
            text = "connection to {} failed during {}: {}: {}".format(
                where, during, type(exc).__name__, self.redact(str(exc)))
        return TransientStoreError(text, url=url, image_id=image_id), True

    # --- requests ---------------------------------------------------------

    def request(self, method, path, body=None, headers=None, expect=(200,), image_id=None,
                idempotent=True, stream=False, accept=()):
        """Send a request, retrying transient failures; return a Reply or (conn, response).

        ``expect`` statuses succeed; ``accept`` statuses are handed back too (the caller
        decides, e.g. 409); anything else raises.  With ``stream`` the body is left
        unread and the caller must close the returned connection.
        """
        attempt = 0
        while True:
            try:
                return self._attempt(method, path, body, headers, expect, accept, image_id, stream)
            except _Attempt as failed:
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
                    conn.request(method, full, body=body, headers=self.headers(headers))
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
            raise _Attempt(err, resp.status in TRANSIENT_STATUSES, retry_after=retry_after)
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

    def upload(self, method, path, chunks, headers, expect, image_id, size=None):
        """Send ``chunks`` as a chunked body, once (an iterator cannot be replayed).

        The terminating zero-length chunk goes out only after every chunk was sent
        (and, with ``size``, the byte count matched), so a failed upload never looks
        complete to the server.  Exceptions raised by ``chunks`` propagate unchanged
        after the socket is closed.  Returns (Reply, UploadResult).
        """
        full = self.prefix + path
        hdrs = self.headers(headers)
        hdrs["Transfer-Encoding"] = "chunked"
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


def _strip_userinfo(url):
    parts = urllib.parse.urlsplit(url)
    if "@" not in parts.netloc:
        return url
    return urllib.parse.urlunsplit(parts._replace(netloc=parts.netloc.rsplit("@", 1)[1]))


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
