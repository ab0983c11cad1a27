"""http.server.ThreadingHTTPServer for the test servers, also under Python 3.6 (it is 3.7+)."""

import http.server
import socketserver


class ThreadingHTTPServer(socketserver.ThreadingMixIn, http.server.HTTPServer):
    """One thread per connection; threads die with the test process."""

    daemon_threads = True
