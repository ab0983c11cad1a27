"""``Expect: 100-continue`` for uploads: hear a refusal before sending any data.

Why: a Glance with an import-only policy answers 403 to ``PUT /file``; without asking
first, the client would stream the whole image into that refusal and could not send it
again (the stream is read once).  Glance (eventlet) answers the Expect at once.
"""

import logging
import select

from vhdport.stores.http_bounds import MAX_ERROR_BYTES

log = logging.getLogger("vhdport.stores.http")


def await_continue(endpoint, conn, wait, method, path, image_id):
    """Read the server's answer to ``Expect: 100-continue``; raise if it is a refusal.

    Silence for ``wait`` seconds means a server that does not do 100-continue: go on.
    Read byte by byte (a few dozen) so nothing of a later answer is taken from
    http.client, and so it works the same over TLS.
    """
    sock = conn.sock
    try:
        ready = select.select([sock], [], [], wait)[0] or (
            hasattr(sock, "pending") and sock.pending())
        if not ready:
            log.debug("%s: no answer to Expect: 100-continue in %.1fs; sending",
                      endpoint.display, wait)
            return
        sock.settimeout(endpoint.timeout)
        head = _read_head(sock, MAX_ERROR_BYTES)
    except (OSError, ValueError) as exc:
        raise endpoint.connection_error(exc, method, path, image_id, "upload start")[0]
    status, reason, body = _parse_head(head, sock)
    if status == 100:
        return
    if status is None:
        raise endpoint.garbled(ValueError("bad answer to Expect: 100-continue: {!r}".format(
            head[:80])), method, path, image_id)
    err = endpoint.status_error(status, reason, method, path, image_id, endpoint.scrub(body))
    err.fields["before_data"] = True
    raise err


def _read_head(sock, limit):
    """Bytes up to and including the blank line that ends a response head."""
    data = b""
    while not data.endswith(b"\r\n\r\n"):
        byte = sock.recv(1)
        if not byte:
            break
        data += byte
        if len(data) > limit:
            raise ValueError("response head longer than {} bytes".format(limit))
    return data


def _parse_head(head, sock):
    """(status, reason, body) of a response head read by _read_head; reads a short body."""
    lines = head.decode("iso-8859-1").split("\r\n")
    parts = lines[0].split(" ", 2)
    if len(parts) < 2 or not parts[0].startswith("HTTP/") or not parts[1].isdigit():
        return None, "", b""
    status, reason = int(parts[1]), parts[2] if len(parts) > 2 else ""
    if status == 100:
        return status, reason, b""
    length = 0
    for line in lines[1:]:
        name, _, value = line.partition(":")
        if name.strip().lower() == "content-length" and value.strip().isdigit():
            length = min(int(value.strip()), MAX_ERROR_BYTES)
    body = b""
    try:
        while len(body) < length:
            more = sock.recv(length - len(body))
            if not more:
                break
            body += more
    except OSError:
        pass
    return status, reason, body
