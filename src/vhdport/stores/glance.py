"""OpenStack Glance as an image store: API v2 here, legacy v1 in glance_v1.

Why these rules: uploads go only into a *queued* image (Glance would accept
the whole stream and then answer 409), the terminating chunk is sent only on
success (a failed upload must never look complete), and every upload is read
back and compared with what we sent.  Custom properties are Glance v2's
top-level string attributes and keep their names exactly.
"""

import json
import logging
import re
import urllib.parse

from vhdport.errors import ImageStateError, IntegrityError, StoreError
from vhdport.stores.base import ACTIVE, QUEUED, RECORD_FIELDS, Store, new_record
from vhdport.stores.http import Endpoint
from vhdport.stores.http_download import HttpDownload

log = logging.getLogger("vhdport.stores.glance")

JSON_PATCH = "application/openstack-images-v2.1-json-patch"

#: attributes Glance v2 owns; every other top-level key of an image is a custom property
CORE_ATTRIBUTES = frozenset((
    "id", "name", "status", "visibility", "protected", "checksum", "owner", "size",
    "virtual_size", "min_ram", "min_disk", "disk_format", "container_format",
    "created_at", "updated_at", "tags", "self", "file", "schema", "os_hash_algo",
    "os_hash_value", "os_hidden", "direct_url", "locations", "stores",
))

_VERSION_SUFFIX = re.compile(r"/v[12](\.\d+)?$")


class GlanceStore(Store):
    """A Glance endpoint, e.g. ``https://cloud.example:9292`` or ``http://host/image``.

    ``GlanceStore(url, api_version=1, ...)`` gives the v1 flavour (a subclass).
    ``retry_delay`` is the first backoff pause (doubling per attempt), ``page_size``
    the ``limit`` of list requests.
    """

    api_version = 2

    def __new__(cls, url=None, api_version=2, *args, **kwargs):
        if cls is GlanceStore:
            version = _api_version(api_version)
            if version == 1:
                from vhdport.stores.glance_v1 import GlanceV1Store
                cls = GlanceV1Store
        return super().__new__(cls)

    def __init__(self, url, api_version=2, auth_token=None, extra_headers=None, cacert=None,
                 insecure=False, timeout=60, retries=5, chunk_size=1 << 20,
                 retry_delay=1.0, page_size=100):
        if _api_version(api_version) != self.api_version:
            raise StoreError("{} speaks Glance API v{}, not v{}".format(
                type(self).__name__, self.api_version, api_version))
        self._http = Endpoint(_without_version(url), auth_token=auth_token,
                              extra_headers=extra_headers, cacert=cacert, insecure=insecure,
                              timeout=timeout, retries=retries, retry_delay=retry_delay)
        self.display = self._http.display
        try:
            self.chunk_size = int(chunk_size)
            self.page_size = int(page_size)
        except (TypeError, ValueError):
            raise StoreError("chunk_size and page_size must be whole numbers, not {!r} and {!r}"
                             .format(chunk_size, page_size)) from None
        if self.chunk_size <= 0 or self.page_size <= 0:
            raise StoreError("chunk_size and page_size must be > 0 (got {} and {})".format(
                self.chunk_size, self.page_size))

    def __repr__(self):
        return "{}({!r}, api_version={})".format(type(self).__name__, self.display,
                                                 self.api_version)

    # --- verbs ------------------------------------------------------------

    def create(self, name, disk_format="vhd", container_format="ovf",
               properties=None, visibility=None):
        body = {"name": name, "disk_format": disk_format, "container_format": container_format}
        if visibility:
            body["visibility"] = visibility
        for key, value in _custom(properties).items():
            body[key] = value
        reply = self._http.request("POST", "/v2/images", body=_json(body),
                                   headers={"Content-Type": "application/json"},
                                   expect=(201,), idempotent=False)
        return record_from_v2(reply.json("image record"))

    def update(self, image_id, name=None, properties=None, remove=()):
        remove = list(remove or ())
        ops = []
        if name is not None:
            ops.append({"op": "replace", "path": "/name", "value": name})
        for key, value in sorted(_custom(properties).items()):
            # with the v2.1 patch type, "add" on an existing property replaces it
            ops.append({"op": "add", "path": "/" + _pointer(key), "value": value})
        for key in remove:
            _custom({key: ""})
            ops.append({"op": "remove", "path": "/" + _pointer(key)})
        if not ops:
            return self.get(image_id)
        path = _image_path(image_id)
        # removing twice answers 409, so only a patch without removals is replayable
        reply = self._http.request("PATCH", path, body=_json(ops),
                                   headers={"Content-Type": JSON_PATCH}, expect=(200,),
                                   accept=(409,), image_id=image_id, idempotent=not remove)
        if reply.status == 409:
            raise self._patch_conflict(image_id, remove, reply)
        return record_from_v2(reply.json("image record"))

    def get(self, image_id):
        reply = self._http.request("GET", _image_path(image_id), image_id=image_id)
        return record_from_v2(reply.json("image record"))

    def put(self, image_id, chunks, size=None):
        self._require_queued(image_id)
        _, sent = self._http.upload(
            "PUT", _image_path(image_id) + "/file", chunks,
            headers={"Content-Type": "application/octet-stream"}, expect=(204,),
            image_id=image_id, size=size)
        self._verify_upload(image_id, sent)
        return sent

    def open(self, image_id, offset=0):
        return HttpDownload(self._http, _image_path(image_id) + "/file", image_id,
                            offset=offset, block_size=self.chunk_size)

    def list(self):
        path = "/v2/images?" + urllib.parse.urlencode({"limit": self.page_size})
        pages = PageGuard(self)
        while path:
            pages.turn(path)
            doc = self._http.request("GET", path).json("image list")
            images = pages.fresh(doc.get("images"))
            for image in images:
                yield record_from_v2(image)
            path = self._next_path(doc.get("next")) if images else None

    def delete(self, image_id):
        self._http.request("DELETE", _image_path(image_id), expect=(200, 204),
                           image_id=image_id)

    # --- helpers shared with v1 -------------------------------------------

    def url_of(self, image_id):
        """Where an image lives, for messages."""
        return self._http.url(_image_path(image_id, self.api_version))

    def _require_queued(self, image_id):
        record = self.get(image_id)
        if record["status"] != QUEUED:
            raise ImageStateError(image_id=image_id, status=record["status"],
                                  expected="{} (only a queued image accepts data)".format(QUEUED),
                                  url=self.url_of(image_id))
        return record

    def _verify_upload(self, image_id, sent):
        """Read the record back: Glance must have stored exactly what we sent."""
        record = self.get(image_id)
        subject = "uploaded image {} at {}".format(image_id, self.url_of(image_id))
        if record["status"] != ACTIVE:
            raise ImageStateError(image_id=image_id, status=record["status"],
                                  expected=ACTIVE + " after upload", url=self.url_of(image_id))
        if record["size"] is not None and int(record["size"]) != sent.size:
            raise IntegrityError(what="size", subject=subject, expected=sent.size,
                                 actual=record["size"])
        if record["checksum"] and record["checksum"] != sent.md5:
            raise IntegrityError(what="md5 checksum", subject=subject, expected=sent.md5,
                                 actual=record["checksum"])
        algo = record.get("os_hash_algo")
        if record.get("os_hash_value") and algo == "sha512":
            if record["os_hash_value"] != sent.sha512:
                raise IntegrityError(what="sha512 (os_hash_value)", subject=subject,
                                     expected=sent.sha512, actual=record["os_hash_value"])
        elif algo:
            log.debug("image %s: os_hash_algo %s not compared (we hash sha512)", image_id, algo)

    def _missing_properties(self, image_id, remove, current, **fields):
        """A StoreError naming the properties in ``remove`` not in ``current``, or None."""
        missing = [key for key in remove if key not in current]
        if not missing:
            return None
        return StoreError(
            "cannot remove propert{} {} of image {} at {}: not set{}; remove only existing "
            "properties".format("y" if len(missing) == 1 else "ies",
                                ", ".join(map(repr, missing)), image_id, self.url_of(image_id),
                                " (HTTP {})".format(fields["status"]) if "status" in fields else ""),
            image_id=image_id, missing=missing, **fields)

    def _patch_conflict(self, image_id, remove, reply):
        current = self.get(image_id)["properties"] if remove else {}
        error = self._missing_properties(image_id, remove, current, status=409)
        if error is not None:
            return error
        return self._http.status_error(409, "Conflict", "PATCH", _image_path(image_id),
                                       image_id, reply.body)

    def _next_path(self, link):
        """Glance's ``next`` is relative to the service root (``/v2/images?marker=..``)."""
        if not link:
            return None
        parts = urllib.parse.urlsplit(link)
        path = parts.path
        prefix = self._http.prefix
        if prefix and path.startswith(prefix + "/"):
            path = path[len(prefix):]
        return path + ("?" + parts.query if parts.query else "")


#: most list pages read before giving up (page_size 100: a million images)
MAX_PAGES = 10000


class PageGuard(object):
    """Bounds a paginated listing: a server whose ``next`` loops or never ends is refused.

    Why: a Glance that always answers a new ``next`` kept ``image ls`` running forever.
    """

    def __init__(self, store, max_pages=None):
        self.store = store
        self.max_pages = max_pages or getattr(store, "max_pages", MAX_PAGES)
        self.pages, self.paths, self.ids = 0, set(), set()

    def turn(self, path):
        if path in self.paths:
            raise StoreError("{}: the image list loops (page {} asked twice); refused".format(
                self.store.display, path[:200]))
        self.pages += 1
        if self.pages > self.max_pages:
            raise StoreError("{}: the image list goes on for more than {} pages; refused"
                             .format(self.store.display, self.max_pages))
        self.paths.add(path)

    def fresh(self, images):
        """The images of a page; StoreError if it is not a list or repeats only known ones."""
        if images is None:
            return []
        if not isinstance(images, list):
            raise StoreError("{}: the image list page holds {} where a list of images belongs"
                             .format(self.store.display, type(images).__name__))
        ids = [image.get("id") if isinstance(image, dict) else None for image in images]
        new = [i for i in ids if i not in self.ids]
        if images and not new:
            raise StoreError("{}: the image list repeats images already listed (its next link "
                             "loops); refused".format(self.store.display))
        self.ids.update(ids)
        return images


def record_from_v2(doc):
    """A store record from a Glance v2 image document."""
    if not isinstance(doc, dict) or "id" not in doc:
        raise StoreError("not a Glance image record: {!r}".format(doc)[:200])
    record = new_record(**{f: doc.get(f) for f in RECORD_FIELDS if f != "properties"})
    try:
        record["properties"] = {
            key: value if isinstance(value, str) else json.dumps(value)
            for key, value in doc.items() if key not in CORE_ATTRIBUTES and value is not None}
    except (RecursionError, ValueError):
        raise StoreError("image {!r}: a property is nested too deeply to read".format(
            str(doc.get("id"))[:80])) from None
    return record


def _api_version(value):
    try:
        version = int(float(str(value).lstrip("vV")))
    except ValueError:
        version = None
    if version not in (1, 2):
        raise StoreError("unsupported Glance API version {!r}; use 2 (default) or 1".format(value))
    return version


def _without_version(url):
    """Accept catalog URLs ending in /v2 or /v1: requests add the version themselves."""
    parts = urllib.parse.urlsplit(url)
    path = _VERSION_SUFFIX.sub("", parts.path.rstrip("/"))
    return urllib.parse.urlunsplit(parts._replace(path=path))


def _image_path(image_id, version=2):
    if not isinstance(image_id, str) or not image_id or image_id in (".", ".."):
        raise StoreError("bad image id {!r}".format(image_id))
    return "/v{}/images/{}".format(version, urllib.parse.quote(image_id, safe=""))


def _custom(properties):
    """Custom properties as str -> str; Glance's own attributes are refused."""
    out = {}
    for key, value in (properties or {}).items():
        if not isinstance(key, str) or not key:
            raise StoreError("bad property name {!r}".format(key))
        if key in CORE_ATTRIBUTES:
            raise StoreError("{!r} is a Glance image attribute, not a custom property; "
                             "pick another name".format(key))
        out[key] = value if isinstance(value, str) else str(value)
    return out


def _pointer(name):
    """JSON pointer segment (RFC 6901): '~' -> '~0', '/' -> '~1'."""
    return name.replace("~", "~0").replace("/", "~1")


def _json(doc):
    return json.dumps(doc).encode("utf-8")
