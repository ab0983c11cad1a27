"""OpenStack Glance as an image store: API v2 here, legacy v1 in glance_v1.

Why these rules: uploads go only into a *queued* image (Glance would accept
the whole stream and then answer 409), and the terminating chunk is sent only on
success (a failed upload must never look complete).  Whether Glance stored what
was sent is judged by transfer, from what ``put`` reports (see stores/base.py).  Custom properties are Glance v2's
top-level string attributes and keep their names exactly.
"""

import json
import re
import urllib.parse

from vhdport.errors import ImageStateError, StoreError
from vhdport.stores.base import QUEUED, RECORD_FIELDS, Store, new_record
from vhdport.stores.glance_common import (CORE_ATTRIBUTES, api_version_of, custom_properties,
                                          image_path)
from vhdport.stores.http import Endpoint
from vhdport.stores.http_download import HttpDownload

JSON_PATCH = "application/openstack-images-v2.1-json-patch"

_VERSION_SUFFIX = re.compile(r"/v[12](\.\d+)?$")


class GlanceStore(Store):
    """A Glance endpoint, e.g. ``https://cloud.example:9292`` or ``http://host/image``.

    ``GlanceStore(url, api_version=1, ...)`` gives the v1 flavour (a subclass).
    ``retry_delay`` is the first backoff pause (doubling per attempt), ``page_size``
    the ``limit`` of list requests; ``token_source`` (keystone_auth.SessionTokens)
    supplies and renews Keystone tokens instead of a fixed ``auth_token``.
    """

    api_version = 2

    def __new__(cls, url=None, api_version=2, *args, **kwargs):
        # GlanceStore(url, api_version=1) gives the v1 subclass (stores/__init__ imports it)
        version = api_version_of(api_version)
        if version != cls.api_version:
            cls = next((sub for sub in cls.__subclasses__() if sub.api_version == version), cls)
        return super().__new__(cls)

    def __init__(self, url, api_version=2, auth_token=None, extra_headers=None, cacert=None,
                 insecure=False, timeout=60, retries=5, chunk_size=1 << 20,
                 retry_delay=1.0, page_size=100, token_source=None):
        if api_version_of(api_version) != self.api_version:
            raise StoreError("{} speaks Glance API v{}, not v{}".format(
                type(self).__name__, self.api_version, api_version))
        self._http = Endpoint(_without_version(url), auth_token=auth_token,
                              extra_headers=extra_headers, cacert=cacert, insecure=insecure,
                              timeout=timeout, retries=retries, retry_delay=retry_delay,
                              token_source=token_source)
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
        for key, value in custom_properties(properties).items():
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
        for key, value in sorted(custom_properties(properties).items()):
            # with the v2.1 patch type, "add" on an existing property replaces it
            ops.append({"op": "add", "path": "/" + _pointer(key), "value": value})
        for key in remove:
            custom_properties({key: ""})
            ops.append({"op": "remove", "path": "/" + _pointer(key)})
        if not ops:
            return self.get(image_id)
        path = image_path(image_id)
        # removing twice answers 409, so only a patch without removals is replayable
        reply = self._http.request("PATCH", path, body=_json(ops),
                                   headers={"Content-Type": JSON_PATCH}, expect=(200,),
                                   accept=(409,), image_id=image_id, idempotent=not remove)
        if reply.status == 409:
            raise self._patch_conflict(image_id, remove, reply)
        return record_from_v2(reply.json("image record"))

    def get(self, image_id):
        reply = self._http.request("GET", image_path(image_id), image_id=image_id)
        return record_from_v2(reply.json("image record"))

    def put(self, image_id, chunks, size=None):
        from vhdport.stores import glance_import
        if glance_import.configured(self):   # import workflow, stores, refusal fallback
            return glance_import.put(self, image_id, chunks, size)
        self._require_queued(image_id)
        _, sent = self._http.upload(
            "PUT", image_path(image_id) + "/file", chunks,
            headers={"Content-Type": "application/octet-stream"}, expect=(204,),
            image_id=image_id, size=size)
        sent.record = self.get(image_id)  # reported; transfer judges it
        return sent

    def place_uploads(self, use_import=False, stores=None, all_stores=False, notice=None):
        from vhdport.stores import glance_import
        method = glance_import.IMPORT if use_import else glance_import.AUTO
        glance_import.configure(self, method, stores=stores, all_stores=all_stores,
                                notice=notice)

    def copy_to_stores(self, image_id, stores=None, all_stores=False):
        from vhdport.stores import glance_import
        return glance_import.copy_image(self, image_id, stores, all_stores)

    def open(self, image_id, offset=0):
        return HttpDownload(self._http, image_path(image_id) + "/file", image_id,
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
        self._http.request("DELETE", image_path(image_id), expect=(200, 204),
                           image_id=image_id)

    # --- helpers shared with v1 -------------------------------------------

    def url_of(self, image_id):
        """Where an image lives, for messages."""
        return self._http.url(image_path(image_id, self.api_version))

    def _require_queued(self, image_id):
        record = self.get(image_id)
        if record["status"] != QUEUED:
            raise ImageStateError(image_id=image_id, status=record["status"],
                                  expected="{} (only a queued image accepts data)".format(QUEUED),
                                  url=self.url_of(image_id))
        return record

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
        return self._http.status_error(409, "Conflict", "PATCH", image_path(image_id),
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
    if isinstance(doc.get("stores"), str):   # multi-store Glance: the backends holding it
        record["stores"] = [s for s in doc["stores"].split(",") if s]
    try:
        record["properties"] = {
            key: value if isinstance(value, str) else json.dumps(value)
            for key, value in doc.items() if key not in CORE_ATTRIBUTES and value is not None}
    except (RecursionError, ValueError):
        raise StoreError("image {!r}: a property is nested too deeply to read".format(
            str(doc.get("id"))[:80])) from None
    return record


def _without_version(url):
    """Accept catalog URLs ending in /v2 or /v1: requests add the version themselves."""
    parts = urllib.parse.urlsplit(url)
    path = _VERSION_SUFFIX.sub("", parts.path.rstrip("/"))
    return urllib.parse.urlunsplit(parts._replace(path=path))


def _pointer(name):
    """JSON pointer segment (RFC 6901): '~' -> '~0', '/' -> '~1'."""
    return name.replace("~", "~0").replace("/", "~1")


def _json(doc):
    return json.dumps(doc).encode("utf-8")
