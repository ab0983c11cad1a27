"""``swift://container/prefix``: images in an OpenStack Swift container, through the Swift API.

Auth as the swift client does it: a v1 auth URL, user and key (``ST_AUTH`` / ``ST_USER`` /
``ST_KEY``) give a storage URL and a token, renewed once when it expires mid-run; or a
token and storage URL given directly (``OS_AUTH_TOKEN`` / ``OS_STORAGE_URL``, or keystone
through the CLI's ``--os-cloud``).  Large data goes up as segments under
``<prefix>segments/<id>/<upload>/`` (each PUT carries its md5 as ETag, which Swift checks)
joined by a Static Large Object manifest whose ETag must equal the md5 of the segments'
md5s.  Same account, same names: a bucket of Swift's s3api *is* a container, so an image
written through ``s3://b/p`` reads through ``swift://b/p`` and the other way round.
"""

import hashlib
import json
import logging
import os
import urllib.parse
import uuid

from vhdport.errors import AuthError, IntegrityError, StoreError
from vhdport.stores.http import Endpoint
from vhdport.stores.objstore import ObjectStore
from vhdport.stores.s3 import _epoch, _etag, _read_exactly
from vhdport.stores.s3config import parse_url


log = logging.getLogger("vhdport.stores.swift")


def _json_list(body, what):
    """A JSON array answer (a container listing) as a list of objects."""
    try:
        items = json.loads(body.decode("utf-8"))
    except (UnicodeDecodeError, ValueError, RecursionError) as exc:
        raise StoreError("{} is not valid JSON ({}): {!r}".format(what, exc, body[:100]))
    if not isinstance(items, list) or not all(
            isinstance(item, dict) and isinstance(item.get("name"), str) for item in items):
        raise StoreError("{} is not a JSON list of objects".format(what))
    return items


class SwiftAuthError(AuthError):
    msg = "{store}: {what} rejected (HTTP {status}); {hint}"


def _quote(text):
    return urllib.parse.quote(text, safe="/")


class SwiftApi(object):
    """The object verbs of objstore.ObjectStore, spoken to one Swift container."""

    def __init__(self, container, prefix, auth_url=None, user=None, key=None, auth_token=None,
                 storage_url=None, cacert=None, insecure=False, timeout=60, retries=5,
                 retry_delay=1.0):
        self.container, self.prefix = container, prefix
        self.display = "swift://{}/{}".format(container, prefix).rstrip("/")
        self.display_root = "swift://{}".format(container)
        self._tls = {"cacert": cacert, "insecure": insecure, "timeout": timeout,
                     "retries": retries, "retry_delay": retry_delay}
        self._v1 = (auth_url, user, key) if auth_url and user and key else None
        if self._v1 is None and not (auth_token and storage_url):
            raise StoreError("no Swift credentials for {}: set ST_AUTH, ST_USER and ST_KEY "
                             "(v1 auth), or OS_AUTH_TOKEN and OS_STORAGE_URL".format(
                                 self.display))
        self.retries = int(retries)
        self._container_ready = False
        if self._v1 is not None and not auth_token:
            storage_url, auth_token = self._authenticate()
        self._http = Endpoint(storage_url, auth_token=auth_token, **self._tls)

    def delay(self, attempt):
        return self._http.delay(attempt)

    def _authenticate(self):
        auth_url, user, key = self._v1
        endpoint = Endpoint(auth_url, extra_headers={"X-Auth-User": user, "X-Auth-Key": key},
                            **self._tls)
        try:
            reply = endpoint.request("GET", "", expect=(200, 204))
        except AuthError:
            raise SwiftAuthError(store=endpoint.display, what="user or key", status=401,
                                 hint="check ST_USER / ST_KEY") from None
        storage_url, token = reply.header("X-Storage-Url"), reply.header("X-Auth-Token")
        if not storage_url or not token:
            raise StoreError("{}: the v1 auth answer has no X-Storage-Url / X-Auth-Token".format(
                endpoint.display))
        return storage_url, token

    def _request(self, method, key=None, query=None, **kwargs):
        path = "/" + _quote(self.container)
        if key is not None:
            path += "/" + _quote(key)
        if query:
            path += "?" + urllib.parse.urlencode(query)
        try:
            return self._http.request(method, path, **kwargs)
        except AuthError:
            if self._v1 is None:
                raise SwiftAuthError(store=self._http.display, what="token", status=401,
                                     hint="get a new token and retry") from None
            storage_url, token = self._authenticate()  # the token expired: once more
            self._http = Endpoint(storage_url, auth_token=token, **self._tls)
            return self._http.request(method, path, **kwargs)

    # --- container and small objects -----------------------------------------------------

    def ensure_container(self):
        if self._container_ready:
            return
        reply = self._request("HEAD", expect=(200, 204), accept=(404,))
        if reply.status == 404:
            self._request("PUT", expect=(201, 202))
        self._container_ready = True

    def read_small(self, key):
        for attempt in range(self.retries + 1):
            reply = self._request("GET", key, expect=(200,), accept=(404,))
            if reply.status == 404:
                return None
            actual = hashlib.md5(reply.body).hexdigest()
            etag = _etag(reply.header("Etag"))
            if len(etag) != 32 or etag == actual:
                return reply.body
            if attempt < self.retries:
                self._http.sleep(self.delay(attempt))
        raise IntegrityError(what="md5 (Etag)", subject="{}/{}".format(self.display, key),
                             expected=etag, actual=actual)

    def write_small(self, key, data):
        self._put(key, data, "application/json")

    def _put(self, key, data, content_type, image_id=None):
        md5 = hashlib.md5(data).hexdigest()
        reply = self._request("PUT", key, body=data, expect=(201,), image_id=image_id,
                              headers={"Etag": md5, "Content-Type": content_type,
                                       "Content-Length": str(len(data))})
        etag = _etag(reply.header("Etag"))
        if etag != md5:
            raise IntegrityError(what="md5 (Etag)", subject="{}/{}".format(self.display, key),
                                 expected=md5, actual=etag or None)
        return etag

    def head(self, key):
        reply = self._request("HEAD", key, expect=(200,), accept=(404,))
        if reply.status == 404:
            return None
        return {"size": int(reply.header("Content-Length", "0")),
                "etag": _etag(reply.header("Etag")),
                "large": (reply.header("X-Static-Large-Object") or "").lower() == "true"}

    def delete(self, key):
        """Delete an object; a Static Large Object goes with its segments."""
        found = self.head(key)
        if found is None:
            return
        if not found["large"] or not self._own_segments(key):
            self._request("DELETE", key, expect=(204, 200), accept=(404,))
            return
        reply = self._request("DELETE", key, [("multipart-manifest", "delete")],
                              headers={"Accept": "application/json"}, expect=(200,),
                              accept=(404,))
        if reply.status == 404:
            return
        result = reply.json("SLO delete answer")
        status = str(result.get("Response Status", ""))
        if not status.startswith(("200", "404")) or result.get("Errors"):
            raise StoreError("{}: deleting {} and its segments failed: {} {}".format(
                self.display, key, status, result.get("Errors"))[:500])

    def _own_segments(self, key):
        """Whether every segment the manifest ``key`` names is one of ours: under this
        image's segment prefix, or where s3api keeps the parts of ``key``.  A manifest
        written by someone else could name any object of the account, and deleting it
        with its segments would delete those."""
        reply = self._request("GET", key, [("multipart-manifest", "get")], expect=(200,),
                              accept=(404,))
        if reply.status == 404:
            return False
        image_id = key[len(self.prefix + "images/"):].rpartition(".")[0]
        allowed = ("/{}/{}segments/{}/".format(self.container, self.prefix, image_id),
                   "/{}+segments/{}/".format(self.container, key))
        try:
            items = _json_list(reply.body, "manifest of " + key)
        except StoreError:
            items = [{"name": ""}]
        strays = [item["name"] for item in items if not item["name"].startswith(allowed)
                  or "/../" in item["name"]]
        if strays:
            log.warning("%s: %s names segments outside its own (%s); deleting the manifest "
                        "only", self.display, key, strays[0][:200])
        return not strays

    def list(self, prefix):
        marker = ""
        while True:
            # 1000 names a page keeps each answer far below the 1 MiB metadata cap
            reply = self._request("GET", query=[("format", "json"), ("prefix", prefix),
                                                ("marker", marker), ("limit", 1000)],
                                  expect=(200, 204), accept=(404,))
            if reply.status in (204, 404) or not reply.body.strip():
                return
            items = _json_list(reply.body, "listing of " + self.display)
            if not items:
                return
            for item in items:
                yield {"key": item["name"], "size": int(item.get("bytes", 0)),
                       "modified": _epoch(item.get("last_modified"))}
            marker = items[-1]["name"]

    # --- data --------------------------------------------------------------------------

    def fetch_range(self, key, start, end, image_id=None):
        conn, resp = self._request("GET", key, headers={"Range": "bytes={}-{}".format(
            start, end - 1)}, expect=(206, 200), image_id=image_id, stream=True)
        try:
            if resp.status == 200 and start != 0:
                raise StoreError("{}: the server ignored a Range request".format(self.display))
            return _read_exactly(resp, end - start, self._http, key, image_id)
        finally:
            conn.close()

    def put_whole(self, key, data, image_id=None):
        self._put(key, data, "application/octet-stream", image_id)

    def begin_parts(self, key, image_id=None):
        return {"key": key, "segments": "{}segments/{}/{}/".format(
            self.prefix, image_id or "unknown", uuid.uuid4().hex)}

    def send_part(self, token, part, data):
        return self._put("{}{:08d}".format(token["segments"], part.number), data,
                         "application/octet-stream")

    def complete_parts(self, token, parts):
        manifest = [{"path": "/{}/{}{:08d}".format(self.container, token["segments"],
                                                   part.number),
                     "etag": part.md5, "size_bytes": part.size} for part in parts]
        reply = self._request("PUT", token["key"], [("multipart-manifest", "put")],
                              body=json.dumps(manifest).encode("utf-8"), expect=(201,),
                              headers={"Content-Type": "application/octet-stream"})
        expected = hashlib.md5("".join(part.md5 for part in parts).encode("ascii")).hexdigest()
        etag = _etag(reply.header("Etag"))
        if etag != expected:
            raise IntegrityError(what="SLO ETag", subject="{}/{}".format(
                self.display, token["key"]), expected=expected, actual=etag or None)

    def abort_parts(self, token):
        if "segments" not in token:  # an S3 multipart upload (through s3://)
            log.warning("%s: upload %s was made through the S3 API; remove it with image gc "
                        "through s3://", self.display, token.get("upload_id"))
            return
        for item in list(self.list(token["segments"])):
            self._request("DELETE", item["key"], expect=(204, 200), accept=(404,))

    def part_uploads(self):
        base = self.prefix + "segments/"
        groups = {}
        for item in self.list(base):
            image_id, _, rest = item["key"][len(base):].partition("/")
            upload, _, _ = rest.partition("/")
            token = "{}{}/{}/".format(base, image_id, upload)
            started = groups.get(token, (None, item["modified"]))[1]
            groups[token] = (image_id, min(started, item["modified"]))
        for segments, (image_id, started) in sorted(groups.items()):
            yield ({"key": "{}images/{}.data".format(self.prefix, image_id),
                    "segments": segments}, started)




class SwiftStore(ObjectStore):
    """``SwiftStore("swift://container/prefix", auth_url=..., user=..., key=...)``; without
    them ``ST_AUTH`` / ``ST_USER`` / ``ST_KEY`` or ``OS_AUTH_TOKEN`` + ``OS_STORAGE_URL``."""

    def __init__(self, url, auth_url=None, user=None, key=None, auth_token=None,
                 storage_url=None, cacert=None, insecure=False, timeout=60, retries=5,
                 retry_delay=1.0, connections=4, part_size=None, block_size=None, environ=None,
                 **_ignored):
        env = os.environ if environ is None else environ
        container, prefix = parse_url(url, "swift")
        if not (auth_token and storage_url):
            auth_url = auth_url or env.get("ST_AUTH")
            user, key = user or env.get("ST_USER"), key or env.get("ST_KEY")
            if not (auth_url and user and key):
                auth_token = auth_token or env.get("OS_AUTH_TOKEN")
                storage_url = storage_url or env.get("OS_STORAGE_URL")
        api = SwiftApi(container, prefix, auth_url, user, key, auth_token, storage_url,
                       cacert=cacert, insecure=insecure, timeout=timeout, retries=retries,
                       retry_delay=retry_delay)
        kwargs = {"connections": connections, "block_size": block_size}
        if part_size:
            kwargs["part_size"] = part_size
        super().__init__(api, **kwargs)
