"""Fixtures of the CLI tests."""

import threading
import types
from http.server import BaseHTTPRequestHandler, HTTPServer

import pytest


@pytest.fixture
def glance_401():
    """An HTTP endpoint on 127.0.0.1 answering 401 to everything, recording X-Auth-Token values.

    Yields (url, tokens).  Enough to see that a token reaches the server, that a 401
    is not retried, and that the token never shows in our output.
    """
    tokens = []

    class Refuse(BaseHTTPRequestHandler):
        def _answer(self):
            tokens.append(self.headers.get("X-Auth-Token"))
            body = b'{"error": "unauthorized"}'
            self.send_response(401)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        do_GET = do_POST = do_PUT = do_DELETE = do_HEAD = do_PATCH = _answer

        def log_message(self, *args):
            pass

    server = HTTPServer(("127.0.0.1", 0), Refuse)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield types.SimpleNamespace(url="http://127.0.0.1:{}".format(server.server_address[1]),
                                    tokens=tokens)
    finally:
        server.shutdown()
        server.server_close()
        thread.join(5)
