"""A small Glance API v1 endpoint following the documented v1 contract.

Real Glance dropped v1 years ago, so the v1 store is tested against this:
``POST /v1/images``, ``HEAD|GET|PUT|DELETE /v1/images/{id}``, ``GET
/v1/images/detail`` with limit/marker, metadata in ``x-image-meta-*`` headers
(names lowercased, '-' read as '_', as v1 did), data streamed to files in a
directory, chunked or Content-Length uploads, ETag = md5 on download, no Range
support (v1 had none).  Every request's method, path and headers are kept in
``requests`` so tests can check what the client sent.
"""

import hashlib
import http.server
import json
import os
import threading
import time
import urllib.parse
import uuid

from tests.peers.httpd import ThreadingHTTPServer

META = "x-image-meta-"
PROPERTY = META + "property-"
_BLOCK = 1 << 20


class V1Handler(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server_version = "glance-v1-test"

    def log_message(self, fmt, *args):  # keep test output quiet
        pass

    # --- plumbing -------------------------------------------------------

    @property
    def glance(self):
        return self.server.glance

    def _route(self):
        parts = urllib.parse.urlsplit(self.path)
        path = parts.path
        prefix = self.glance.prefix
        if prefix:
            if not path.startswith(prefix + "/"):
                return None, None, None
            path = path[len(prefix):]
        query = urllib.parse.parse_qs(parts.query)
        segments = [urllib.parse.unquote(s) for s in path.strip("/").split("/")]
        return segments, query, parts

    def _reply(self, status, body=b"", headers=None, content_type="application/json"):
        if isinstance(body, (dict, list)):
            body = json.dumps(body).encode()
        self.send_response(status)
        for name, value in (headers or {}).items():
            self.send_header(name, value)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(body)

    def _error(self, status, message):
        self.close_connection = True
        self._reply(status, {"error": {"code": status, "message": message}})

    def _authorized(self):
        token = self.glance.token
        if token is None or self.headers.get("X-Auth-Token") == token:
            return True
        self._error(401, "This server could not verify that you are authorized")
        return False

    def _dispatch(self):
        self.glance.requests.append((self.command, self.path, dict(self.headers.items())))
        if not self._authorized():
            return
        segments, query, _ = self._route()
        if not segments or segments[:2] != ["v1", "images"]:
            return self._error(404, "no such resource")
        rest = segments[2:]
        if self.command == "POST" and not rest:
            return self._create()
        if self.command == "GET" and rest in ([], ["detail"]):
            return self._list(query)
        if len(rest) != 1:
            return self._error(404, "no such resource")
        image = self.glance.load(rest[0])
        if image is None:
            return self._error(404, "Image {} not found".format(rest[0]))
        handler = {"HEAD": self._show, "GET": self._download, "PUT": self._update,
                   "DELETE": self._delete}.get(self.command)
        if handler is None:
            return self._error(405, "method not allowed")
        return handler(image)

    do_GET = do_HEAD = do_PUT = do_POST = do_DELETE = _dispatch

    # --- metadata -------------------------------------------------------

    def _meta_from_headers(self):
        fields, props = {}, {}
        for name, value in self.headers.items():
            lower = name.lower()
            if lower.startswith(PROPERTY):
                props[lower[len(PROPERTY):].replace("-", "_")] = value
            elif lower.startswith(META):
                fields[lower[len(META):].replace("-", "_")] = value
        return fields, props

    def _has_body(self):
        return ("chunked" in self.headers.get("Transfer-Encoding", "").lower()
                or int(self.headers.get("Content-Length") or 0) > 0)

    def _create(self):
        fields, props = self._meta_from_headers()
        now = time.strftime("%Y-%m-%dT%H:%M:%S")
        image = {"id": fields.get("id") or str(uuid.uuid4()), "name": fields.get("name"),
                 "status": "queued", "disk_format": fields.get("disk_format"),
                 "container_format": fields.get("container_format"), "size": 0,
                 "checksum": None, "is_public": fields.get("is_public", "False") == "True",
                 "created_at": now, "updated_at": now, "deleted": False,
                 "properties": props}
        self.glance.save(image)
        if self._has_body() and not self._receive(image):
            return
        self._reply(201, {"image": image})

    def _update(self, image):
        fields, props = self._meta_from_headers()
        for key in ("name", "disk_format", "container_format"):
            if key in fields:
                image[key] = fields[key]
        if self.headers.get("x-glance-registry-purge-props", "").lower() == "true":
            image["properties"] = props
        else:
            image["properties"].update(props)
        if self._has_body():
            if image["status"] != "queued":
                return self._error(409, "Image {} is {}; cannot upload data".format(
                    image["id"], image["status"]))
            if not self._receive(image):
                return
        image["updated_at"] = time.strftime("%Y-%m-%dT%H:%M:%S")
        self.glance.save(image)
        self._reply(200, {"image": image})

    def _show(self, image):
        self._reply(200, b"", headers=self.glance.meta_headers(image))

    def _delete(self, image):
        self.glance.remove(image["id"])
        self._reply(200, b"")

    def _list(self, query):
        limit = int(query.get("limit", ["25"])[0])
        marker = query.get("marker", [None])[0]
        images = sorted(self.glance.all(), key=lambda i: (i["created_at"], i["id"]))
        if marker is not None:
            ids = [i["id"] for i in images]
            if marker not in ids:
                return self._error(400, "marker not found")
            images = images[ids.index(marker) + 1:]
        self._reply(200, {"images": images[:limit]})

    # --- data -----------------------------------------------------------

    def _body_blocks(self):
        if "chunked" in self.headers.get("Transfer-Encoding", "").lower():
            while True:
                line = self.rfile.readline(1024)
                if not line:
                    raise EOFError("connection closed inside chunked body")
                size = int(line.split(b";")[0].strip(), 16)
                if size == 0:
                    while self.rfile.readline(1024) not in (b"\r\n", b"\n", b""):
                        pass
                    return
                while size:
                    data = self.rfile.read(min(size, _BLOCK))
                    if not data:
                        raise EOFError("connection closed inside a chunk")
                    size -= len(data)
                    yield data
                if self.rfile.readline(1024) not in (b"\r\n", b"\n"):
                    raise EOFError("bad chunk terminator")
        else:
            left = int(self.headers.get("Content-Length") or 0)
            while left:
                data = self.rfile.read(min(left, _BLOCK))
                if not data:
                    raise EOFError("connection closed inside body")
                left -= len(data)
                yield data

    def _receive(self, image):
        """Store the request body as the image data; on a broken body leave it queued."""
        image["status"] = "saving"
        self.glance.save(image)
        md5, size = hashlib.md5(), 0
        partial = self.glance.data_path(image["id"]) + ".part"
        try:
            with open(partial, "wb") as f:
                for block in self._body_blocks():
                    md5.update(block)
                    size += len(block)
                    f.write(block)
        except (EOFError, ValueError, OSError):
            os.unlink(partial)
            image["status"] = "queued"
            self.glance.save(image)
            self.glance.aborted_uploads += 1
            self.close_connection = True
            return False
        os.replace(partial, self.glance.data_path(image["id"]))
        image.update(status="active", size=size, checksum=md5.hexdigest())
        self.glance.save(image)
        return True

    def _download(self, image):
        if image["status"] != "active":
            return self._error(403, "image {} is not active".format(image["id"]))
        path = self.glance.data_path(image["id"])
        headers = self.glance.meta_headers(image)
        headers["ETag"] = image["checksum"]
        self.send_response(200)
        for name, value in headers.items():
            self.send_header(name, value)
        self.send_header("Content-Type", "application/octet-stream")
        self.send_header("Content-Length", str(os.path.getsize(path)))
        self.end_headers()
        with open(path, "rb") as f:
            while True:
                block = f.read(_BLOCK)
                if not block:
                    break
                self.wfile.write(block)


class _QuietServer(ThreadingHTTPServer):
    daemon_threads = True

    def handle_error(self, request, client_address):
        """Clients and proxies that hang up mid-response are part of the tests."""


class GlanceV1Server(object):
    """The v1 endpoint on 127.0.0.1:<free port>, storing images under ``directory``."""

    def __init__(self, directory, token=None, prefix=""):
        self.directory, self.token, self.prefix = directory, token, prefix.rstrip("/")
        self.requests = []
        self.aborted_uploads = 0
        self._lock = threading.Lock()
        self._httpd = _QuietServer(("127.0.0.1", 0), V1Handler)
        self._httpd.glance = self
        self.port = self._httpd.server_address[1]
        self.url = "http://127.0.0.1:{}{}".format(self.port, self.prefix)
        self._thread = threading.Thread(target=self._httpd.serve_forever, args=(0.05,),
                                        daemon=True)
        self._thread.start()

    def stop(self):
        self._httpd.shutdown()
        self._httpd.server_close()
        self._thread.join(timeout=5)

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.stop()

    # --- storage --------------------------------------------------------

    def _meta_path(self, image_id):
        if "/" in image_id or image_id.startswith("."):
            return None
        return os.path.join(self.directory, image_id + ".json")

    def data_path(self, image_id):
        return os.path.join(self.directory, image_id + ".data")

    def load(self, image_id):
        path = self._meta_path(image_id)
        with self._lock:
            if path is None or not os.path.exists(path):
                return None
            with open(path) as f:
                return json.load(f)

    def save(self, image):
        with self._lock:
            with open(self._meta_path(image["id"]), "w") as f:
                json.dump(image, f)

    def remove(self, image_id):
        with self._lock:
            for path in (self._meta_path(image_id), self.data_path(image_id)):
                if os.path.exists(path):
                    os.unlink(path)

    def all(self):
        names = sorted(n for n in os.listdir(self.directory) if n.endswith(".json"))
        return [img for img in (self.load(n[:-5]) for n in names) if img is not None]

    @staticmethod
    def meta_headers(image):
        headers = {}
        for key in ("id", "name", "status", "disk_format", "container_format", "size",
                    "checksum", "created_at", "updated_at", "deleted"):
            value = image.get(key)
            if value is not None:
                headers[META + key] = str(value)
        headers[META + "is_public"] = str(bool(image.get("is_public")))
        for key, value in image.get("properties", {}).items():
            headers[PROPERTY + key] = str(value)
        return headers
