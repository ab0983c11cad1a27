"""Expect: 100-continue on uploads: a refusal is heard before any data is read, a server
that does not answer the Expect still gets the data after the wait."""

import socket
import threading
import time

import pytest

from vhdport.errors import StoreError
from vhdport.stores.http import Endpoint


class RawServer(object):
    """One-connection HTTP server on 127.0.0.1 whose answer to the head is ``mode``."""

    def __init__(self, mode):
        self.mode = mode
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(1)
        self.url = "http://127.0.0.1:{}".format(self.sock.getsockname()[1])
        self.body = b""
        self.thread = threading.Thread(target=self._serve, daemon=True)
        self.thread.start()

    def _serve(self):
        conn, _ = self.sock.accept()
        conn.settimeout(10)
        with conn:
            data = b""
            while b"\r\n\r\n" not in data:
                data += conn.recv(4096)
            head, _, rest = data.partition(b"\r\n\r\n")
            self.head = head.decode()
            if self.mode == "refuse":
                body = b'{"message": "upload_image is disallowed by policy"}'
                conn.sendall(b"HTTP/1.1 403 Forbidden\r\nContent-Length: " +
                             str(len(body)).encode() + b"\r\n\r\n" + body)
                return
            if self.mode == "continue":
                conn.sendall(b"HTTP/1.1 100 Continue\r\n\r\n")
            while not rest.endswith(b"0\r\n\r\n"):
                more = conn.recv(65536)
                if not more:
                    break
                rest += more
            self.body = rest
            conn.sendall(b"HTTP/1.1 204 No Content\r\nContent-Length: 0\r\n\r\n")

    def close(self):
        self.thread.join(10)
        self.sock.close()


@pytest.fixture
def server(request):
    srv = RawServer(request.param)
    yield srv
    srv.close()


def pulled_chunks(pulled):
    for piece in (b"a" * 1000, b"b" * 1000):
        pulled.append(len(piece))
        yield piece


@pytest.mark.parametrize("server", ["refuse"], indirect=True)
def test_refusal_before_any_data(server):
    pulled = []
    endpoint = Endpoint(server.url, timeout=5)
    with pytest.raises(StoreError, match="403 Forbidden.*disallowed by policy") as caught:
        endpoint.upload("PUT", "/v2/images/x/file", pulled_chunks(pulled), headers={},
                        expect=(204,), image_id="x", wait_continue=5)
    assert caught.value.fields["before_data"] and caught.value.fields["status"] == 403
    assert pulled == [] and "Expect: 100-continue" in server.head


@pytest.mark.parametrize("server", ["continue", "silent"], indirect=True)
def test_data_goes_after_continue_or_after_the_wait(server):
    pulled = []
    endpoint = Endpoint(server.url, timeout=5)
    wait = 0.5 if server.mode == "silent" else 30.0   # after 100 Continue: no waiting at all
    started = time.monotonic()
    _, sent = endpoint.upload("PUT", "/v2/images/x/file", pulled_chunks(pulled), headers={},
                              expect=(204,), image_id="x", wait_continue=wait)
    took = time.monotonic() - started
    assert sent.size == 2000 and pulled == [1000, 1000]
    assert b"a" * 1000 in server.body and b"b" * 1000 in server.body
    if server.mode == "silent":
        assert took >= 0.5
    else:
        assert took < 10, "waited {:.2f}s despite 100 Continue".format(took)


@pytest.mark.parametrize("server", ["silent"], indirect=True)
def test_no_expect_without_wait_continue(server):
    endpoint = Endpoint(server.url, timeout=5)
    endpoint.upload("PUT", "/p", iter([b"x"]), headers={}, expect=(204,), image_id="x")
    assert "Expect" not in server.head
