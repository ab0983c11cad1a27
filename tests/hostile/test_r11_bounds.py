"""R11: what a hostile server can make us read or wait for is bounded (#11 defect 7).

Small threaded HTTP servers on 127.0.0.1 play the hostile Glance:

- huge bodies (a record, a list page, an error page, sent as fast as the socket takes them):
  refused or cut after a small cap, measured in a child process (peak RSS);
- trickling servers (one byte at a time, never silent long enough for the socket timeout):
  cut off near the timeout, in the headers and in a metadata body, for metadata and data;
- endless or looping pagination (always a new ``next``, the same ``next``, the same
  images again; v2 and v1): refused after a bounded number of pages;
- parser bombs and garbage (deeply nested JSON, JSON that is not an object, chunk sizes
  that are not hex or negative): typed StoreErrors, never ValueError / RecursionError.
"""

import json
import sys
import time
import uuid
from http.server import BaseHTTPRequestHandler

import pytest

from tests.peers.tiny_http import LocalHttpServer
from tests.hostile.bombs import measure
from vhdport.errors import StoreError
from vhdport.stores.glance import GlanceStore

IMAGE = "6b5a3f3e-1111-4222-8333-944445555666"
MIB = 1 << 20


class Hostile(LocalHttpServer):
    """A threaded HTTP server on 127.0.0.1 whose handler is ``serve(handler)``."""

    def __init__(self, serve):
        self.requests = 0
        owner = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def _any(self):
                owner.requests += 1
                try:
                    serve(self)
                except (OSError, ValueError):
                    pass   # the client hung up on us: what it should do
                self.close_connection = True

            do_GET = do_POST = do_PUT = do_DELETE = _any

            def log_message(self, *args):
                pass

        super().__init__(Handler)


def _send(handler, status, body, ctype="application/json", length=None):
    handler.send_response(status)
    handler.send_header("Content-Type", ctype)
    handler.send_header("Content-Length", str(len(body) if length is None else length))
    handler.end_headers()
    handler.wfile.write(body)


# --- huge bodies, measured in a child ---------------------------------------------------------

HUGE = 256 * MIB


def _huge(status, prefix):
    def serve(handler):
        handler.send_response(status)
        handler.send_header("Content-Type", "application/json")
        handler.send_header("Content-Length", str(HUGE))
        handler.end_headers()
        handler.wfile.write(prefix)
        block = b"a" * MIB
        sent = len(prefix)
        while sent < HUGE:
            handler.wfile.write(block[:HUGE - sent])
            sent += len(block)
    return serve


CHILD = r"""
import json, sys, time
from vhdport.stores.glance import GlanceStore
url, verb = sys.argv[1], sys.argv[2]
store = GlanceStore(url, api_version=int(sys.argv[3]), retries=0, timeout=20)
started = time.monotonic()
try:
    if verb == "get":
        store.get("6b5a3f3e-1111-4222-8333-944445555666")
    else:
        list(store.list())
    outcome = ("ok", "")
except Exception as exc:
    outcome = (type(exc).__module__ + "." + type(exc).__name__, str(exc)[:300])
print(json.dumps({"error": outcome[0], "message": outcome[1],
                  "seconds": time.monotonic() - started}))
"""

HUGE_CASES = {
    "v2 record body of 256 MiB": (200, b'{"id": "x", "name": "', "get", 2, "larger than"),
    "v2 list page of 256 MiB": (200, b'{"images": [], "x": "', "list", 2, "larger than"),
    "v2 error page of 256 MiB": (500, b'{"error": "', "get", 2, "HTTP 500"),
    "v1 list page of 256 MiB": (200, b'{"images": [], "x": "', "list", 1, "larger than"),
    "v1 error page of 256 MiB": (400, b'<html>', "list", 1, "HTTP 400"),
}


@pytest.mark.parametrize("name", sorted(HUGE_CASES))
def test_huge_bodies_are_capped(name, reliability_case):
    case = reliability_case("R11", name, "StoreError; child peak RSS < 100 MiB, < 20 s")
    status, prefix, verb, version, why = HUGE_CASES[name]
    with Hostile(_huge(status, prefix)) as server:
        # measured by a small wrapper: the child's own peak, not pages shared with pytest
        code, out, _, peak = measure([sys.executable, "-c", CHILD, server.url, verb,
                                      str(version)], timeout=120)
    assert code == 0, out
    got = json.loads(out.strip().splitlines()[-1])
    got["peak_mib"] = peak
    assert got["error"].startswith("vhdport.errors."), got
    assert why in got["message"], got
    assert got["peak_mib"] < 100, got
    assert got["seconds"] < 20, got
    case.detail = "peak {:.0f} MiB: {}".format(got["peak_mib"], got["message"][:120])


# --- trickling servers ------------------------------------------------------------------------

TIMEOUT = 1.0
STOP_AFTER = 30.0   # the hostile server gives up too, so a client without a deadline ends


def _trickle(head, body, where):
    def serve(handler):
        started = time.monotonic()
        data = head + body if where != "body" else body
        if where == "body":
            handler.send_response(200)
            handler.send_header("Content-Type", "application/json")
            handler.send_header("Content-Length", str(len(body)))
            handler.end_headers()
            handler.wfile.flush()
        for i in range(len(data)):
            if time.monotonic() - started > STOP_AFTER:
                return
            handler.wfile.write(data[i:i + 1])
            handler.wfile.flush()
            time.sleep(TIMEOUT / 4)
    return serve


LONG_HEAD = b"HTTP/1.1 200 OK\r\n" + b"".join(
    "X-Pad-{}: {}\r\n".format(i, "p" * 20).encode() for i in range(40))
RECORD = json.dumps({"id": IMAGE, "name": "n" * 4000, "status": "active"}).encode()

TRICKLE_CASES = {
    "metadata: headers one byte at a time": ("get", LONG_HEAD + b"Content-Length: 2\r\n\r\n",
                                             b"{}", "head"),
    "metadata: record body one byte at a time": ("get", b"", RECORD, "body"),
    "list: page one byte at a time": ("list", b"", b'{"images": [' + b" " * 4000 + b"]}",
                                      "body"),
    "download: data headers one byte at a time": ("open", LONG_HEAD + b"Content-Length: 2\r\n"
                                                  b"\r\n", b"ab", "head"),
}


@pytest.mark.parametrize("name", sorted(TRICKLE_CASES))
def test_trickling_servers_are_cut_off_near_the_timeout(name, reliability_case):
    case = reliability_case("R11", name, "StoreError 'too slowly' within ~2x the 1 s timeout")
    verb, head, body, where = TRICKLE_CASES[name]
    with Hostile(_trickle(head, body, where)) as server:
        store = GlanceStore(server.url, retries=2, timeout=TIMEOUT, retry_delay=0.01)
        started = time.monotonic()
        with pytest.raises(StoreError, match="sends too slowly") as err:
            if verb == "get":
                store.get(IMAGE)
            elif verb == "list":
                list(store.list())
            else:
                store.open(IMAGE).read()
        elapsed = time.monotonic() - started
    assert elapsed < 2 * TIMEOUT + 1.5, elapsed
    assert server.requests == 1   # cut off, not retried into another trickle
    case.detail = "cut off after {:.1f} s: {}".format(elapsed, err.value)


# --- pagination -------------------------------------------------------------------------------

SERVER_PAGE_CAP = 200   # the hostile server stops by itself, so an unbounded client ends


def _pages(mode, version):
    state = {"n": 0}

    def serve(handler):
        state["n"] += 1
        if state["n"] > SERVER_PAGE_CAP:
            page = []
        elif mode == "repeated images":
            page = [{"id": i, "name": "same", "status": "active", "properties": {}}
                    for i in (IMAGE, IMAGE.replace("6", "7"))][:2 if version == 1 else 1]
        else:
            page = [{"id": str(uuid.uuid4()), "name": "x", "status": "active",
                     "properties": {}} for _ in range(2 if version == 1 else 1)]
        if version == 2:
            nxt = {"always a new next": "/v2/images?marker=" + str(uuid.uuid4()),
                   "the same next": "/v2/images?marker=loop",
                   "repeated images": "/v2/images?marker=" + str(uuid.uuid4())}[mode]
            doc = {"images": page, "next": nxt}
        else:
            doc = {"images": page}
        _send(handler, 200, json.dumps(doc).encode())
    return serve


PAGE_CASES = {
    "v2: always a new next": (2, "always a new next", "more than 20 pages"),
    "v2: the same next again": (2, "the same next", "loops"),
    "v2: the same images under new next links": (2, "repeated images", "repeats images"),
    "v1: full pages of new images forever": (1, "always a new next", "more than 20 pages"),
    "v1: the same full page again": (1, "repeated images", "loops|repeats images"),
}


@pytest.mark.parametrize("name", sorted(PAGE_CASES))
def test_pagination_is_bounded(name, reliability_case):
    case = reliability_case("R11", "pagination, " + name, "StoreError naming the loop or cap")
    version, mode, why = PAGE_CASES[name]
    with Hostile(_pages(mode, version)) as server:
        store = GlanceStore(server.url, api_version=version, retries=0, timeout=5,
                            page_size=1 if version == 2 else 2)
        store.max_pages = 20
        with pytest.raises(StoreError, match=why) as err:
            list(store.list())
        assert server.requests <= 21
    case.detail = str(err.value)


# --- parser bombs and garbage -----------------------------------------------------------------

DEPTH = 200000


def _raw(status_line_and_headers, body):
    def serve(handler):
        handler.wfile.write(status_line_and_headers + body)
        handler.wfile.flush()
    return serve


def _json(doc_bytes, status=200):
    return lambda handler: _send(handler, status, doc_bytes)


CHUNKED = b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nTransfer-Encoding: chunked\r\n\r\n"

BOMB_CASES = {
    "v2 record nested 200000 deep": (2, "get", _json(b"[" * DEPTH + b"]" * DEPTH),
                                     "nested too deeply"),
    "v2 property nested 200000 deep": (2, "get", _json(
        b'{"id": "x", "p": ' + b"[" * DEPTH + b"]" * DEPTH + b"}"), "nested too deeply"),
    "v2 list page nested 200000 deep": (2, "list", _json(b'{"images": ' + b"[" * DEPTH +
                                                         b"]" * DEPTH + b"}"),
                                        "nested too deeply"),
    "v1 list page that is a JSON list": (1, "list", _json(b"[1, 2]"), "not a JSON object"),
    "v2 list page that is a JSON string": (2, "list", _json(b'"images"'), "not a JSON object"),
    "v1 list page whose images are a string": (1, "list", _json(b'{"images": "abc"}'),
                                               "where a list of images belongs"),
    "negative chunk size": (2, "get", _raw(CHUNKED, b"-10\r\n{}\r\n0\r\n\r\n"),
                            "garbled HTTP answer"),
    "download: negative chunk size": (2, "open", _raw(
        CHUNKED.replace(b"application/json", b"application/octet-stream"),
        b"2\r\nab\r\n-10\r\ncd\r\n0\r\n\r\n"), "garbled HTTP body"),
}


@pytest.mark.parametrize("name", sorted(BOMB_CASES))
def test_parser_bombs_and_garbage_are_typed_store_errors(name, reliability_case):
    case = reliability_case("R11", "parser: " + name, "a StoreError naming the cause")
    version, verb, serve, why = BOMB_CASES[name]
    with Hostile(serve) as server:
        store = GlanceStore(server.url, api_version=version, retries=1, timeout=5,
                            retry_delay=0.01, page_size=5)
        with pytest.raises(StoreError, match=why) as err:
            if verb == "get":
                store.get(IMAGE)
            elif verb == "list":
                list(store.list())
            else:
                store.open(IMAGE).read()
    case.detail = str(err.value)[:200]


@pytest.mark.parametrize("kwargs", [{"chunk_size": -1}, {"chunk_size": 0}, {"page_size": -5},
                                    {"timeout": -1}, {"retries": -1}, {"chunk_size": "x"}])
def test_nonsense_client_settings_are_store_errors(kwargs, reliability_case):
    case = reliability_case("R11", "client setting {}".format(kwargs),
                            "StoreError naming the setting")
    name = sorted(kwargs)[0]
    with pytest.raises(StoreError, match=name) as err:
        GlanceStore("http://127.0.0.1:9", **kwargs)
    case.detail = str(err.value)
