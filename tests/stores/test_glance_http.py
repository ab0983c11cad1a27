"""The Glance store's HTTP rules on the wire, with small local servers (no Glance needed)."""

import http.server
import socket
import threading

import pytest

from vhdport.errors import AuthError, ImageNotFound, StoreError, TransientStoreError
from vhdport.stores.glance import GlanceStore
from vhdport.stores.http import Endpoint, parse_md5

TRANSIENT = (408, 500, 502, 503, 504, 507)
PERMANENT = (400, 402, 403, 405, 406, 407, 409, 410, 411, 412, 413, 414, 415, 416, 417,
             422, 423, 424, 426, 501, 505, 510)


class StatusServer(object):
    """Answers every request with ``status`` and counts requests."""

    def __init__(self, status):
        outer = self
        self.count = 0

        class Handler(http.server.BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args):
                pass

            def do_GET(self):
                outer.count += 1
                body = b'{"error": {"message": "status on purpose"}}'
                self.send_response(status)
                self.send_header("Content-Length", str(len(body)))
                self.send_header("Connection", "close")
                self.end_headers()
                self.wfile.write(body)

        self.httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = "http://127.0.0.1:{}".format(self.httpd.server_address[1])
        self.thread = threading.Thread(target=self.httpd.serve_forever, args=(0.05,),
                                       daemon=True)
        self.thread.start()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.httpd.shutdown()
        self.httpd.server_close()


def quick_store(url, retries=3):
    store = GlanceStore(url, auth_token="tok-abc-123", retries=retries, retry_delay=0)
    store._http.sleep = lambda seconds: None
    return store


@pytest.mark.parametrize("status", TRANSIENT)
def test_transient_statuses_are_retried(status):
    with StatusServer(status) as srv:
        with pytest.raises(TransientStoreError) as err:
            quick_store(srv.url).get("img-1")
        assert srv.count == 4
    text = str(err.value)
    assert "HTTP {}".format(status) in text and "img-1" in text and srv.url in text
    assert "status on purpose" in text and "tok-abc-123" not in text


@pytest.mark.parametrize("status", PERMANENT)
def test_permanent_statuses_are_not_retried(status):
    with StatusServer(status) as srv:
        with pytest.raises(StoreError) as err:
            quick_store(srv.url).get("img-2")
        assert srv.count == 1
    assert not isinstance(err.value, TransientStoreError)
    assert "HTTP {}".format(status) in str(err.value) and "img-2" in str(err.value)


def test_401_and_404_map_to_their_errors():
    with StatusServer(401) as srv:
        with pytest.raises(AuthError):
            quick_store(srv.url).get("img-3")
        assert srv.count == 1
    with StatusServer(404) as srv:
        with pytest.raises(ImageNotFound) as err:
            quick_store(srv.url).get("img-3")
        assert srv.count == 1 and err.value.fields["image_id"] == "img-3"


def test_urls_lose_credentials_and_version_suffix():
    store = GlanceStore("https://user:secret@cloud.example:9292/image/v2/", auth_token="t0k")
    assert store.display == "https://cloud.example:9292/image"
    assert "secret" not in repr(store) and "t0k" not in repr(vars(store))
    assert GlanceStore("http://h/v1", api_version=1).display == "http://h"
    with pytest.raises(StoreError, match=r"not an http\(s\) URL: 'ftp://h/x'") as err:
        GlanceStore("ftp://user:secret@h/x")
    assert "secret" not in str(err.value)


def test_next_links_respect_the_prefix():
    store = GlanceStore("http://h:1/image")
    assert store._next_path("/v2/images?marker=a&limit=3") == "/v2/images?marker=a&limit=3"
    assert store._next_path("/image/v2/images?marker=a") == "/v2/images?marker=a"
    assert store._next_path("http://h:1/image/v2/images?marker=b") == "/v2/images?marker=b"
    assert store._next_path(None) is None


def test_backoff_doubles_and_is_capped():
    ep = Endpoint("http://h", retry_delay=0.5)
    assert [ep.delay(i) for i in range(8)] == [0.5, 1, 2, 4, 8, 16, 30, 30]
    assert ep.delay(0, retry_after=3) == 3


def test_content_md5_forms():
    hexdigest = "9e107d9d372bb6826bd81d3542a419d6"
    assert parse_md5(hexdigest.upper()) == hexdigest
    assert parse_md5('"{}"'.format(hexdigest)) == hexdigest  # ETag style
    assert parse_md5("nhB9nTcrtoJr2B01QqQZ1g==") == hexdigest  # RFC 1864 base64
    assert parse_md5("not-an-md5") is None and parse_md5(None) is None


class RawSink(object):
    """Accepts one connection, records every byte; answers 204 after a complete body."""

    def __init__(self):
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(1)
        self.port = self.sock.getsockname()[1]
        self.data = b""
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()

    def _run(self):
        conn, _ = self.sock.accept()
        conn.settimeout(10)
        with conn:
            while not self.data.endswith(b"\r\n0\r\n\r\n"):
                part = conn.recv(65536)
                if not part:
                    return
                self.data += part
            conn.sendall(b"HTTP/1.1 204 No Content\r\nContent-Length: 0\r\n\r\n")

    def close(self):
        self.thread.join(5)
        self.sock.close()


def test_chunked_wire_format_and_no_terminator_on_failure():
    sink = RawSink()
    ep = Endpoint("http://127.0.0.1:{}".format(sink.port), auth_token="tok")
    reply, sent = ep.upload("PUT", "/v2/images/x/file", [b"hello", b"", b"world!" * 20000],
                            {"Content-Type": "application/octet-stream"}, (204,), "x")
    sink.close()
    head, _, body = sink.data.partition(b"\r\n\r\n")
    assert b"Transfer-Encoding: chunked" in head and b"X-Auth-Token: tok" in head
    assert body.startswith(b"5\r\nhello\r\n1d4c0\r\n") and body.endswith(b"\r\n0\r\n\r\n")
    assert reply.status == 204 and sent.size == 5 + 120000

    sink = RawSink()
    ep = Endpoint("http://127.0.0.1:{}".format(sink.port))

    def failing():
        yield b"abc"
        raise ValueError("source broke")

    with pytest.raises(ValueError, match="source broke"):
        ep.upload("PUT", "/p", failing(), {}, (204,), "x")
    sink.close()
    assert sink.data.endswith(b"3\r\nabc\r\n")  # the socket closed with no zero chunk
