"""Bounds on what a server may make us read or wait for, and how secrets are kept out of text.

Why a module of its own: every HTTP path (metadata, uploads, downloads) shares these rules,
and the CLI and the plugin use the same redaction as the library.
"""

import json
import socket
import threading
import urllib.parse

from vhdport.errors import StoreError

#: largest metadata answer (image record, list page) we read; a record is a few KiB
MAX_METADATA_BYTES = 1 << 20
#: largest error body we read (only a short excerpt is ever shown)
MAX_ERROR_BYTES = 64 * 1024
_READ_BLOCK = 64 * 1024


def header_value_problem(value):
    """Why ``value`` cannot be sent as an HTTP header value, or None (never quotes it)."""
    if not isinstance(value, str):
        return "is not text"
    for ch in value:
        code = ord(ch)
        if code < 0x20 and ch != "\t" or code == 0x7f:
            return "contains a control character (CR, LF or another one, e.g. a trailing newline)"
        if code > 0xff:
            return "contains a character outside Latin-1"
    return None


def secret_forms(secret):
    """Every way ``secret`` may show up in a message: raw, repr, bytes repr, %-encoded, JSON."""
    if not isinstance(secret, str) or not secret:
        return []
    forms = {secret, repr(secret)[1:-1], json.dumps(secret)[1:-1],
             json.dumps(secret, ensure_ascii=False)[1:-1],
             urllib.parse.quote(secret, safe=""), urllib.parse.quote_plus(secret, safe="")}
    for encoding in ("utf-8", "latin-1"):
        try:
            raw = secret.encode(encoding, "surrogateescape" if encoding == "utf-8" else "strict")
        except UnicodeError:
            continue
        forms.add(repr(raw)[2:-1])
        forms.add(raw.decode("latin-1"))
    stripped = secret.strip()
    if stripped and stripped != secret:
        forms.update(secret_forms(stripped))
    return sorted((f for f in forms if len(f) >= 4), key=len, reverse=True)


def redact_text(text, secrets, mask="***"):
    """``text`` with every representation of every secret in ``secrets`` replaced by mask."""
    for secret in secrets:
        for form in secret_forms(secret):
            text = text.replace(form, mask)
    return text


class Deadline(object):
    """Cuts a connection off when a whole request takes longer than ``seconds``.

    Why: the socket timeout fires only on silence, so a server sending one byte per
    second would hold us forever; shutting the socket down wakes the blocked read.
    """

    def __init__(self, conn, seconds):
        self.conn, self.seconds, self.fired = conn, seconds, False
        self._timer = threading.Timer(seconds, self._fire)
        self._timer.daemon = True

    def _fire(self):
        self.fired = True
        sock = getattr(self.conn, "sock", None)
        if sock is not None:
            try:
                sock.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass

    def __enter__(self):
        self._timer.start()
        return self

    def cancel(self):
        self._timer.cancel()

    def __exit__(self, *exc):
        self.cancel()


def check_headers(token, extra):
    """Refuse header values that http.client would echo back in its error (CR/LF, ...)."""
    items = [("the auth token", token.value)] if token is not None else []
    items += [("header {!r}".format(name) if header_value_problem(name) is None
               else "a header name", value) for name, value in extra.items()]
    for name in extra:
        if header_value_problem(name) is not None or not name or ":" in name or " " in name:
            raise StoreError("a header name is not a valid HTTP token; not sent")
    for what, value in items:
        problem = header_value_problem(value)
        if problem is not None:
            raise StoreError("{} {}; it was not sent (value not shown) -- check how it was "
                             "obtained, e.g. a trailing newline from a file".format(what, problem))


def read_capped(resp, limit, truncate=False, what="answer"):
    """At most ``limit`` bytes of a response body: beyond that, cut (``truncate``) or refuse.

    Why: a record or error body is small; a hostile server's 512 MiB one must not be held.
    """
    parts, total = [], 0
    while True:
        data = resp.read(min(_READ_BLOCK, limit + 1 - total))
        if not data:
            break
        parts.append(data)
        total += len(data)
        if total > limit:
            if truncate:
                return b"".join(parts)[:limit]
            raise StoreError("{} is larger than {} bytes: not an image record or list; "
                             "refused".format(what, limit))
    return b"".join(parts)
