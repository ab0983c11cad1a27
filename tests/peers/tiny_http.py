"""A throw-away HTTP server on 127.0.0.1 for tests that play a misbehaving store.

Subclasses build their own handler class (status, body, stalls ...) and pass it to
``LocalHttpServer.__init__``; this class only binds a free loopback port, serves in a
daemon thread while the ``with`` block runs, and shuts down afterwards.
"""

import threading
from http.server import ThreadingHTTPServer


class LocalHttpServer(object):
    """``with LocalHttpServer(Handler) as server: ... server.url ...``"""

    def __init__(self, handler_class):
        self.server = ThreadingHTTPServer(("127.0.0.1", 0), handler_class)
        self.server.daemon_threads = True
        self.url = "http://127.0.0.1:{}".format(self.server.server_address[1])
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    def __enter__(self):
        self.thread.start()
        return self

    def __exit__(self, *exc):
        self.server.shutdown()
        self.server.server_close()
        self.thread.join(5)
