"""TCP proxies on 127.0.0.1 that put real network faults between a client and a server.

``FaultProxy`` forwards bytes both ways and, on chosen connections, drops the
connection after N response bytes, flips one response byte, stalls, or answers
503 itself.  ``TlsProxy`` terminates TLS with a certificate made by
``make_self_signed_cert`` (the openssl CLI) and forwards plain bytes.  Threads
only; both are context managers and stop everything they started.
"""

import os
import socket
import ssl
import subprocess
import threading

_BUF = 64 * 1024


class _ProxyBase(object):
    def __init__(self, target_port, target_host="127.0.0.1"):
        self.target = (target_host, target_port)
        self._listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self._listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self._listener.bind(("127.0.0.1", 0))
        self._listener.listen(32)
        self.port = self._listener.getsockname()[1]
        self._stopping = threading.Event()
        self._lock = threading.Lock()
        self._open = set()
        self._threads = []
        self.connections = 0  # accepted so far
        self._accept_thread = self._spawn(self._accept_loop)

    @property
    def url(self):
        return "{}://127.0.0.1:{}".format(self.scheme, self.port)

    scheme = "http"

    def _spawn(self, fn, *args):
        t = threading.Thread(target=fn, args=args, daemon=True)
        t.start()
        with self._lock:
            self._threads = [x for x in self._threads if x.is_alive()] + [t]
        return t

    def _track(self, sock):
        with self._lock:
            self._open.add(sock)
        return sock

    def _drop(self, *socks):
        for sock in socks:
            if sock is None:
                continue
            with self._lock:
                self._open.discard(sock)
            try:
                sock.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
            sock.close()

    def _accept_loop(self):
        while not self._stopping.is_set():
            try:
                client, _ = self._listener.accept()
            except OSError:
                return
            with self._lock:
                index = self.connections
                self.connections += 1
            self._track(client)
            self._spawn(self._serve, client, index)

    def _serve(self, client, index):
        raise NotImplementedError

    def _connect_upstream(self):
        try:
            return self._track(socket.create_connection(self.target, timeout=10))
        except OSError:
            return None

    def _pump(self, src, dst):
        """Copy bytes until EOF or error, then close both ends."""
        try:
            while True:
                data = src.recv(_BUF)
                if not data:
                    break
                dst.sendall(data)
        except OSError:
            pass
        finally:
            self._drop(src, dst)

    def stop(self):
        self._stopping.set()
        try:  # shutdown wakes the thread blocked in accept(); close alone does not
            self._listener.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass
        try:
            self._listener.close()
        except OSError:
            pass
        with self._lock:
            socks = list(self._open)
        self._drop(*socks)
        for t in list(self._threads):
            t.join(timeout=5)

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.stop()


class FaultProxy(_ProxyBase):
    """Forward to target; faults apply to the response bytes of chosen connections.

    ``drop_after``: close the connection after that many response bytes.
    ``flip_at``: xor 0x01 into the response byte at that offset (headers included).
    ``stall_after``: stop forwarding after that many bytes and hold the connection.
    ``reply_503``: the first N connections get ``503`` from the proxy itself.
    ``faulty``: how many connections (after the 503 ones) get the byte faults;
    None means all of them.  ``drop_after`` may also be a list: one limit per
    connection (after the 503 ones), None or past its end meaning no drop.
    """

    def __init__(self, target_port, drop_after=None, flip_at=None, stall_after=None,
                 reply_503=0, faulty=1, target_host="127.0.0.1"):
        self.drop_after, self.flip_at, self.stall_after = drop_after, flip_at, stall_after
        self.reply_503, self.faulty = reply_503, faulty
        self.answered_503 = 0
        self.faults_applied = 0
        super().__init__(target_port, target_host)

    def _serve(self, client, index):
        if index < self.reply_503:
            self._answer_503(client)
            return
        upstream = self._connect_upstream()
        if upstream is None:
            self._drop(client)
            return
        upstream.settimeout(None)
        number = index - self.reply_503
        faulty = self.faulty is None or number < self.faulty
        drop_after = self.drop_after
        if isinstance(drop_after, (list, tuple)):
            faulty = True
            drop_after = drop_after[number] if number < len(drop_after) else None
        self._spawn(self._pump, client, upstream)
        if faulty and (drop_after is not None or self.flip_at is not None
                       or self.stall_after is not None):
            with self._lock:
                self.faults_applied += 1
            self._pump_faulty(upstream, client, drop_after)
        else:
            self._pump(upstream, client)

    def _answer_503(self, client):
        try:
            client.settimeout(10)
            seen = b""
            while b"\r\n\r\n" not in seen:
                data = client.recv(_BUF)
                if not data:
                    break
                seen += data
            body = b"proxy says: try again later\n"
            client.sendall(b"HTTP/1.1 503 Service Unavailable\r\nContent-Type: text/plain\r\n"
                           b"Content-Length: " + str(len(body)).encode() +
                           b"\r\nConnection: close\r\n\r\n" + body)
            with self._lock:
                self.answered_503 += 1
        except OSError:
            pass
        finally:
            self._drop(client)

    def _pump_faulty(self, src, dst, drop_after):
        sent = 0
        try:
            while True:
                data = src.recv(_BUF)
                if not data:
                    break
                end = sent + len(data)
                if self.flip_at is not None and sent <= self.flip_at < end:
                    buf = bytearray(data)
                    buf[self.flip_at - sent] ^= 0x01
                    data = bytes(buf)
                for limit, action in ((drop_after, "drop"), (self.stall_after, "stall")):
                    if limit is not None and end >= limit:
                        dst.sendall(data[:limit - sent])
                        if action == "stall":
                            self._stopping.wait(120)
                        return
                dst.sendall(data)
                sent = end
        except OSError:
            pass
        finally:
            self._drop(src, dst)


class TlsProxy(_ProxyBase):
    """Terminate TLS with ``certfile``/``keyfile`` and forward plain bytes to target."""

    scheme = "https"

    def __init__(self, target_port, certfile, keyfile, target_host="127.0.0.1"):
        self._context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        self._context.load_cert_chain(certfile, keyfile)
        self.handshake_failures = 0
        super().__init__(target_port, target_host)

    def _serve(self, client, index):
        try:
            client.settimeout(10)
            tls = self._context.wrap_socket(client, server_side=True)
            tls.settimeout(None)
        except (OSError, ssl.SSLError):
            with self._lock:
                self.handshake_failures += 1
            self._drop(client)
            return
        with self._lock:
            self._open.discard(client)
        self._track(tls)
        upstream = self._connect_upstream()
        if upstream is None:
            self._drop(tls)
            return
        upstream.settimeout(None)
        self._spawn(self._pump, tls, upstream)
        self._pump(upstream, tls)


def make_self_signed_cert(directory, host="127.0.0.1", names=None):
    """(certfile, keyfile) of a fresh self-signed certificate for ``host`` (openssl CLI).

    ``names``: the subjectAltName value instead of ``IP:<host>,DNS:localhost`` (e.g.
    ``DNS:glance.example`` for a certificate that does not name the address it is served on).
    """
    cert = os.path.join(directory, "cert.pem")
    key = os.path.join(directory, "key.pem")
    san = names or "IP:{},DNS:localhost".format(host)
    subprocess.run(
        ["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-sha256",
         "-keyout", key, "-out", cert, "-days", "2", "-subj", "/CN={}".format(host),
         "-addext", "subjectAltName=" + san],
        stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
        check=True, timeout=60)
    return cert, key


class Fault(object):
    """One rule of a :class:`RuleProxy`: which requests it hits and what it does to them.

    Matching: ``method`` (e.g. "PUT") and ``path`` (a substring of the request path),
    each None for any; the rule applies to the next ``times`` matching connections
    (None: all of them).  Actions, offsets counted from the first *body* byte:
    ``status`` answer this HTTP status from the proxy itself; ``drop_after`` /
    ``stall_after`` / ``flip_at`` on the response body; ``up_drop_after`` /
    ``up_stall_after`` / ``up_flip_at`` on the request body (chunked framing
    included).  ``reset`` makes drops an RST instead of a FIN; ``stall_head`` holds
    the response back entirely (the request still reaches the server).
    """

    def __init__(self, method=None, path=None, times=1, status=None, drop_after=None,
                 stall_after=None, flip_at=None, up_drop_after=None, up_stall_after=None,
                 up_flip_at=None, reset=False, stall_head=False):
        self.method, self.path, self.times = method, path, times
        self.status = status
        self.drop_after, self.stall_after, self.flip_at = drop_after, stall_after, flip_at
        self.up_drop_after, self.up_stall_after = up_drop_after, up_stall_after
        self.up_flip_at = up_flip_at
        self.reset = reset
        self.stall_head = stall_head   # hold the response before its headers, then drop
        self.hits = 0          # connections this rule was applied to
        self.flipped = 0       # bytes actually flipped (either direction)

    def matches(self, method, path):
        if self.times is not None and self.hits >= self.times:
            return False
        return (self.method is None or self.method == method) and \
            (self.path is None or self.path in path)

    def __repr__(self):
        fields = ", ".join("{}={!r}".format(k, v) for k, v in sorted(vars(self).items())
                           if v not in (None, False, 0) or k == "times")
        return "Fault({})".format(fields)


_STATUS_TEXT = {500: "Internal Server Error", 502: "Bad Gateway", 503: "Service Unavailable",
                504: "Gateway Timeout", 408: "Request Timeout"}


class RuleProxy(_ProxyBase):
    """Faults per request, chosen by method and path (see :class:`Fault`).

    Reads each connection's request head first, so rules can hit "the download"
    or "the upload" whatever requests come before them.  ``log`` lists
    (method, path, rule index or None) per connection.
    """

    def __init__(self, target_port, rules=(), target_host="127.0.0.1", stall_seconds=120):
        self.rules = list(rules)
        self.log = []
        self.stall_seconds = stall_seconds
        super().__init__(target_port, target_host)

    def _serve(self, client, index):
        try:
            client.settimeout(30)
            head = b""
            while b"\r\n\r\n" not in head:
                data = client.recv(_BUF)
                if not data:
                    self._drop(client)
                    return
                head += data
            client.settimeout(None)
        except OSError:
            self._drop(client)
            return
        head, _, rest = head.partition(b"\r\n\r\n")
        head += b"\r\n\r\n"
        line = head.split(b"\r\n", 1)[0].decode("latin-1").split()
        method, path = (line[0], line[1]) if len(line) >= 2 else ("?", "?")
        rule, number = None, None
        with self._lock:
            for i, candidate in enumerate(self.rules):
                if candidate.matches(method, path):
                    candidate.hits += 1
                    rule, number = candidate, i
                    break
            self.log.append((method, path, number))
        if rule is not None and rule.status is not None:
            self._answer(client, rule.status)
            return
        upstream = self._connect_upstream()
        if upstream is None:
            self._drop(client)
            return
        upstream.settimeout(None)
        try:
            upstream.sendall(head)
        except OSError:
            self._drop(client, upstream)
            return
        if rule is None:
            self._spawn(self._pump_body, client, upstream, rest, None, None, None, False, rule)
            self._pump(upstream, client)
            return
        self._spawn(self._pump_body, client, upstream, rest, rule.up_drop_after,
                    rule.up_stall_after, rule.up_flip_at, rule.reset, rule)
        self._pump_response(upstream, client, rule)

    def _answer(self, client, status):
        body = "proxy says: HTTP {}\n".format(status).encode()
        try:
            client.sendall("HTTP/1.1 {} {}\r\nContent-Type: text/plain\r\nContent-Length: {}\r\n"
                           "Connection: close\r\n\r\n".format(
                               status, _STATUS_TEXT.get(status, "Error"), len(body)).encode()
                           + body)
        except OSError:
            pass
        finally:
            self._drop(client)

    def _kill(self, reset, *socks):
        if reset:
            for sock in socks:
                try:
                    # linger 0: close sends RST; SHUT_RD first wakes a thread blocked in
                    # recv on it (which would otherwise keep the socket open) without a FIN
                    sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER,
                                    b"\x01\x00\x00\x00\x00\x00\x00\x00")
                    sock.shutdown(socket.SHUT_RD)
                    with self._lock:
                        self._open.discard(sock)
                    sock.close()
                except OSError:
                    pass
        self._drop(*socks)

    def _pump_body(self, src, dst, first, drop_after, stall_after, flip_at, reset, rule):
        """Copy body bytes (``first`` already read) applying the byte faults."""
        sent = 0
        data = first
        try:
            while True:
                if data:
                    end = sent + len(data)
                    if flip_at is not None and sent <= flip_at < end:
                        buf = bytearray(data)
                        buf[flip_at - sent] ^= 0x01
                        data = bytes(buf)
                        with self._lock:
                            rule.flipped += 1
                    for limit, action in ((drop_after, "drop"), (stall_after, "stall")):
                        if limit is not None and end >= limit:
                            dst.sendall(data[:max(0, limit - sent)])
                            if action == "stall":
                                self._stopping.wait(self.stall_seconds)
                            self._kill(reset, src, dst)
                            return
                    dst.sendall(data)
                    sent = end
                data = src.recv(_BUF)
                if not data:
                    break
        except OSError:
            pass
        self._drop(src, dst)

    def _pump_response(self, src, dst, rule):
        """Forward the response head untouched, then the body through the byte faults."""
        head = b""
        if rule.stall_head:
            self._stopping.wait(self.stall_seconds)
            self._kill(rule.reset, src, dst)
            return
        try:
            while b"\r\n\r\n" not in head:
                data = src.recv(_BUF)
                if not data:
                    dst.sendall(head)
                    self._drop(src, dst)
                    return
                head += data
            head, _, rest = head.partition(b"\r\n\r\n")
            dst.sendall(head + b"\r\n\r\n")
        except OSError:
            self._drop(src, dst)
            return
        self._pump_body(src, dst, rest, rule.drop_after, rule.stall_after, rule.flip_at,
                        rule.reset, rule)
