"""One HTTP(S) service root: its URL, TLS context, credentials and connections.

Why apart from :mod:`vhdport.stores.http`: what a store is (where, how it is trusted,
which credentials it sends and how they are kept out of messages) and how a socket or
TLS failure is named is one concern; sending requests, retrying them and reading their
answers is another.  Standard library only (dom0).
"""

import http.client
import logging
import socket
import ssl
import time
import urllib.parse

from vhdport.errors import StoreError, TransientStoreError
from vhdport.stores.http_bounds import check_headers, redact_text, secret_forms

log = logging.getLogger("vhdport.stores.http")


class _Secret(object):
    """Holds a credential so that repr(), vars() dumps and tracebacks show nothing."""

    __slots__ = ("value",)

    def __init__(self, value):
        self.value = value

    def __repr__(self):
        return "<hidden>"

    __str__ = __repr__


def _is_cert_failure(exc):
    verify_error = getattr(ssl, "SSLCertVerificationError", None)
    if verify_error is not None and isinstance(exc, verify_error):
        return True
    if isinstance(exc, ssl.CertificateError):
        return True
    return "CERTIFICATE_VERIFY_FAILED" in str(exc)


class Connection(object):
    """One HTTP(S) service root: URL prefix, TLS, auth header and timeouts.

    ``token_source`` (e.g. keystone_auth.SessionTokens) replaces a fixed ``auth_token``:
    each request asks it for a token, and a 401 makes it renew the token once.
    """

    def __init__(self, url, auth_token=None, extra_headers=None, cacert=None,
                 insecure=False, timeout=60, retries=5, retry_delay=1.0, sleep=time.sleep,
                 auth=None, token_source=None):
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
        self.token_source = token_source
        self._extra = dict(extra_headers or {})
        #: per-request hook ``auth(method, path, headers)``: a store that signs requests
        #: (S3, Swift temp URLs) adds its headers here, on every attempt and retry
        self._auth = auth
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
        if self.token_source is not None:
            secrets += self.token_source.secrets()
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

    def headers(self, extra=None, method=None, path=None):
        """Headers of one request; ``method`` and ``path`` (with prefix) feed the auth hook."""
        hdrs = {"Accept-Encoding": "identity", "User-Agent": "vhdport"}
        hdrs.update(self._extra)
        if self.token_source is not None:
            hdrs["X-Auth-Token"] = self.token_source.token()
        elif self._token is not None:
            hdrs["X-Auth-Token"] = self._token.value
        if extra:
            hdrs.update(extra)
        if self._auth is not None:
            self._auth(method, path, hdrs)
        return hdrs

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


def _strip_userinfo(url):
    parts = urllib.parse.urlsplit(url)
    if "@" not in parts.netloc:
        return url
    return urllib.parse.urlunsplit(parts._replace(netloc=parts.netloc.rsplit("@", 1)[1]))
