"""Glance API v1: metadata travels in ``x-image-meta-*`` headers.

Kept for clouds that still run it and for parity with the original dom0 plugin,
whose upload headers we send unchanged (status queued, disk-format vhd,
container-format ovf, property-<k>, chunked).  v1 lowercases header names and
turns '-' into '_', so property names that would not survive that are refused
up front instead of being silently renamed.
"""

import re
import urllib.parse

from vhdport.errors import StoreError
from vhdport.stores.base import RECORD_FIELDS, new_record
from vhdport.stores.glance import GlanceStore, PageGuard, _custom, _image_path
from vhdport.stores.http_download import HttpDownload

META = "x-image-meta-"
PROPERTY = META + "property-"
#: the record fields v1 carries as x-image-meta-<field> (with '_' as in responses)
_V1_FIELDS = ("id", "name", "status", "disk_format", "container_format", "size", "checksum",
              "created_at", "updated_at")
#: names that survive v1's header mangling (lowercase, no '-')
_SAFE_NAME = re.compile(r"^[a-z0-9_.]+$")
#: v1's image body checksum headers, best first
_MD5_HEADERS = ("Content-Md5", "ETag", META + "checksum")


class GlanceV1Store(GlanceStore):
    """The legacy Glance API (``GlanceStore(url, api_version=1, ...)``)."""

    api_version = 1

    def create(self, name, disk_format="vhd", container_format="ovf",
               properties=None, visibility=None):
        headers = {META + "name": _header_value(name, "name"),
                   META + "disk-format": disk_format,
                   META + "container-format": container_format,
                   META + "is-public": "True" if visibility == "public" else "False"}
        headers.update(_property_headers(properties))
        reply = self._http.request("POST", "/v1/images", headers=headers, expect=(201, 200),
                                   idempotent=False)
        return record_from_v1_json(reply.json("image record").get("image"))

    def update(self, image_id, name=None, properties=None, remove=()):
        remove = list(remove or ())
        headers = {}
        if name is not None:
            headers[META + "name"] = _header_value(name, "name")
        wanted = _custom(properties)
        if remove:
            # v1 can only drop properties by restating the full set with purge-props
            current = self.get(image_id)["properties"]
            error = self._missing_properties(image_id, remove, current)
            if error is not None:
                raise error
            merged = {k: v for k, v in current.items() if k not in remove}
            merged.update(wanted)
            wanted = merged
            headers["x-glance-registry-purge-props"] = "true"
        headers.update(_property_headers(wanted))
        if not headers:
            return self.get(image_id)
        reply = self._http.request("PUT", _image_path(image_id, 1), headers=headers,
                                   expect=(200,), image_id=image_id)
        return record_from_v1_json(reply.json("image record").get("image"))

    def get(self, image_id):
        reply = self._http.request("HEAD", _image_path(image_id, 1), image_id=image_id)
        return record_from_v1_headers(reply.headers, image_id)

    def put(self, image_id, chunks, size=None):
        record = self._require_queued(image_id)
        headers = {"Content-Type": "application/octet-stream",
                   META + "status": "queued",
                   META + "disk-format": record["disk_format"] or "vhd",
                   META + "container-format": record["container_format"] or "ovf"}
        headers.update(_property_headers(record["properties"]))
        _, sent = self._http.upload("PUT", _image_path(image_id, 1), chunks, headers=headers,
                                    expect=(200,), image_id=image_id, size=size)
        self._verify_upload(image_id, sent)
        return sent

    def open(self, image_id, offset=0):
        return HttpDownload(self._http, _image_path(image_id, 1), image_id, offset=offset,
                            md5_headers=_MD5_HEADERS, block_size=self.chunk_size)

    def list(self):
        marker = None
        pages = PageGuard(self)
        while True:
            query = {"limit": self.page_size}
            if marker is not None:
                query["marker"] = marker
            path = "/v1/images/detail?" + urllib.parse.urlencode(query)
            pages.turn(path)
            images = pages.fresh(self._http.request("GET", path).json("image list")
                                 .get("images"))
            for image in images:
                yield record_from_v1_json(image)
            if len(images) < self.page_size:
                return
            marker = images[-1].get("id") if isinstance(images[-1], dict) else None

    def delete(self, image_id):
        self._http.request("DELETE", _image_path(image_id, 1), expect=(200, 204),
                           image_id=image_id)


def record_from_v1_headers(headers, image_id=None):
    """A store record from a v1 HEAD/GET response's x-image-meta-* headers."""
    fields, properties = {}, {}
    for name, value in headers.items():
        lower = name.lower()
        if lower.startswith(PROPERTY):
            properties[lower[len(PROPERTY):]] = value
        elif lower.startswith(META):
            fields[lower[len(META):].replace("-", "_")] = None if value == "None" else value
    if "id" not in fields:
        raise StoreError("v1 response for image {} carries no x-image-meta-id".format(image_id))
    record = new_record(**{f: fields.get(f) for f in _V1_FIELDS})
    record["size"] = _int(record["size"])
    record["visibility"] = _visibility(fields.get("is_public"))
    record["properties"] = properties
    return record


def record_from_v1_json(doc):
    """A store record from a v1 JSON image document (``properties`` nested)."""
    if not isinstance(doc, dict) or "id" not in doc:
        raise StoreError("not a Glance v1 image record: {!r}".format(doc)[:200])
    record = new_record(**{f: doc.get(f) for f in RECORD_FIELDS
                           if f in _V1_FIELDS})
    record["size"] = _int(record["size"])
    record["visibility"] = _visibility(doc.get("is_public"))
    record["properties"] = {str(k): str(v) for k, v in (doc.get("properties") or {}).items()
                            if v is not None}
    return record


def _property_headers(properties):
    headers = {}
    for key, value in _custom(properties).items():
        if not _SAFE_NAME.match(key):
            raise StoreError(
                "property name {!r} cannot travel in a Glance v1 header (v1 lowercases names "
                "and turns '-' into '_'); use API v2 or a name of [a-z0-9_.]".format(key))
        headers[PROPERTY + key] = _header_value(value, key)
    return headers


def _header_value(value, what):
    value = str(value)
    if "\r" in value or "\n" in value:
        raise StoreError("value of {!r} holds a line break; Glance v1 headers cannot carry it"
                         .format(what))
    try:
        value.encode("latin-1")
    except UnicodeEncodeError:
        raise StoreError("value of {!r} is not latin-1; Glance v1 headers cannot carry it; "
                         "use API v2".format(what))
    return value


def _visibility(is_public):
    if is_public is None:
        return None
    return "public" if str(is_public).lower() in ("true", "1", "yes") else "private"


def _int(value):
    try:
        return None if value in (None, "", "None") else int(value)
    except (TypeError, ValueError):
        return None
