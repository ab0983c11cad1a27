"""An image store in an object store bucket (S3) or container (Swift), shaped like the local one.

Layout under ``<bucket or container>/<prefix>``::

    images/<id>.json    {"record": <Glance v2 fields>, "created_ns": N, "upload": ..., "data": ...}
    images/<id>.data    the bytes: one object, an S3 multipart object or a Swift SLO manifest
    segments/<id>/...   (Swift only) the SLO's segments

Why this shape: the record carries the status, so ``image ls/show/rm`` work as on a local
store, and it goes ``active`` only after the data object is complete and checked (size,
per-part md5 against the server's ETags, the whole object's ETag).  While an upload runs the
record is ``saving`` and names its multipart upload (or segment prefix), refreshed every
minute: a killed upload is found and removed by the next upload into that image, by
``image rm``, or by :meth:`ObjectStore.gc` (``vhdport image gc``).  Object stores have no
locks; two writers of one record race and the last one wins.

The protocol speakers (``S3Api`` in s3.py, ``SwiftApi`` in swift.py) provide the same
small set of object verbs; everything about images lives here.
"""

import json
import logging
import re
import time
import uuid

from vhdport import errors
from vhdport.stores import base
from vhdport.stores.local import (CONTAINER_FORMATS, DISK_FORMATS, VISIBILITIES, _ID_RE,
                                  _check_name, _check_properties, glance_time)
from vhdport.stores.local_records import damaged_record, validate_record
from vhdport.stores.multipart import send_stream
from vhdport.stores.ranged import RangedReader

log = logging.getLogger("vhdport.stores.objstore")

DEFAULT_PART_SIZE = 16 << 20
MIN_PART_SIZE = 64 << 10
DEFAULT_CONNECTIONS = 4
#: a saving record's heartbeat is refreshed this often while parts go out ...
HEARTBEAT_SECONDS = 60.0
#: ... so one not refreshed for this long belongs to a dead upload
STALE_AFTER = 600.0
#: gc leaves younger leftovers alone: they may belong to an upload still running
DEFAULT_GC_MIN_AGE = 3600.0


#: the upload part of a Swift segment prefix (a uuid4 hex)
_UPLOAD_RE = re.compile(r"\A[0-9a-f]{32}/\Z")


def token_ok(token, data_key, prefix, image_id):
    """Whether ``token`` (read from a record) names an upload of this image's data object:
    an S3 multipart upload of ``data_key``, or this image's own Swift segment prefix --
    nothing wider, since its parts are listed and deleted by it."""
    if not isinstance(token, dict) or token.get("key") != data_key:
        return False
    if "upload_id" in token:
        upload_id = token["upload_id"]
        return isinstance(upload_id, str) and 0 < len(upload_id) < 1024 and "segments" not in token
    segments = token.get("segments")
    base = "{}segments/{}/".format(prefix, image_id)
    return isinstance(segments, str) and segments.startswith(base) and \
        _UPLOAD_RE.match(segments[len(base):]) is not None


def token_name(token):
    """A name for an upload token, the same whichever API made it."""
    return token.get("upload_id") or token.get("segments")


def _number(value):
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def damaged(where, why):
    return errors.StoreError("{}: damaged image record ({}); delete the image and upload it "
                             "again".format(where, why))


def check_tuning(connections, part_size):
    connections, part_size = int(connections), int(part_size)
    if not 1 <= connections <= 64:
        raise errors.StoreError("connections must be 1..64, not {}".format(connections))
    if part_size < MIN_PART_SIZE:
        raise errors.StoreError("part size {} is too small; use at least {} bytes (S3 services "
                                "want 5 MiB)".format(part_size, MIN_PART_SIZE))
    return connections, part_size


class ObjectStore(base.Store):
    """Images as record + data objects through ``api`` (an S3Api or SwiftApi)."""

    def __init__(self, api, connections=DEFAULT_CONNECTIONS, part_size=DEFAULT_PART_SIZE,
                 block_size=None, clock=time.time):
        self.api = api
        self.display = api.display
        self.connections, self.part_size = check_tuning(connections, part_size)
        self.block_size = int(block_size or min(self.part_size, 8 << 20))
        self._clock = clock

    def __repr__(self):
        return "{}({!r})".format(type(self).__name__, self.display)

    # --- layout ---------------------------------------------------------------

    def _key(self, image_id, kind):
        return "{}images/{}.{}".format(self.api.prefix, image_id, kind)

    def _checked(self, image_id):
        if not isinstance(image_id, str) or not _ID_RE.match(image_id):
            raise errors.ImageNotFound(image_id=repr(image_id), store=self.display)
        return image_id

    def _load(self, image_id):
        """The record document of an image, checked field by field before anything uses it:
        whoever can write the bucket must not be able to steer what we read or delete."""
        key = self._key(self._checked(image_id), "json")
        data = self.api.read_small(key)
        if data is None:
            raise errors.ImageNotFound(image_id=image_id, store=self.display)
        where = "{}/{}".format(self.api.display_root, key)
        try:
            doc = json.loads(data.decode("utf-8"))
        except (ValueError, RecursionError) as exc:
            raise errors.StoreError("{}: damaged record of image {} ({}); delete the image and "
                                    "upload it again".format(where, image_id, str(exc)[:100]))
        record, created_ns = validate_record(doc, image_id, where)
        upload, data_token = doc.get("upload"), doc.get("data")
        data_key = self._key(image_id, "data")
        if upload is not None and not (
                isinstance(upload, dict) and _number(upload.get("heartbeat"))
                and _number(upload.get("started")) and isinstance(upload.get("owner"), str)
                and (upload.get("token") is None
                     or token_ok(upload["token"], data_key, self.api.prefix, image_id))):
            raise damaged(where, "its upload field is not one of ours")
        if data_token is not None and not token_ok(data_token, data_key, self.api.prefix,
                                                   image_id):
            raise damaged(where, "its data field is not one of ours")
        return {"record": record, "created_ns": created_ns, "upload": upload,
                "data": data_token}

    def _save(self, doc):
        doc["record"]["updated_at"] = glance_time(self._clock())
        self.api.write_small(self._key(doc["record"]["id"], "json"),
                             json.dumps(doc, indent=1, sort_keys=True).encode("utf-8"))

    # --- the Store verbs --------------------------------------------------------

    def create(self, name, disk_format="vhd", container_format="ovf",
               properties=None, visibility=None):
        _check_name(name)
        for value, allowed, what in ((disk_format, DISK_FORMATS, "disk_format"),
                                     (container_format, CONTAINER_FORMATS, "container_format"),
                                     (visibility or "shared", VISIBILITIES, "visibility")):
            if value not in allowed:
                raise errors.StoreError("{} {!r} is not one of {}".format(
                    what, value, ", ".join(allowed)))
        props = _check_properties(properties)
        now = self._clock()
        record = base.new_record(
            id=str(uuid.uuid4()), name=name, status=base.QUEUED, disk_format=disk_format,
            container_format=container_format, visibility=visibility or "shared",
            properties=props, created_at=glance_time(now), updated_at=glance_time(now))
        self.api.ensure_container()
        self._save({"record": record, "created_ns": int(now * 1e9), "upload": None, "data": None})
        return record

    def update(self, image_id, name=None, properties=None, remove=()):
        _check_name(name)
        props = _check_properties(properties)
        remove = [remove] if isinstance(remove, str) else list(remove)
        both = sorted(set(props) & set(remove))
        if both:
            raise errors.StoreError("image {}: cannot both set and remove {}".format(
                image_id, ", ".join(both)))
        doc = self._load(image_id)
        record = doc["record"]
        missing = [key for key in remove if key not in record["properties"]]
        if missing:
            raise errors.StoreError("image {} in {}: cannot remove missing property {}".format(
                image_id, self.display, ", ".join(missing)))
        if name is not None:
            record["name"] = name
        record["properties"].update(props)
        for key in remove:
            del record["properties"][key]
        self._save(doc)
        return record

    def get(self, image_id):
        return self._load(image_id)["record"]

    def list(self):
        found = []
        for item in self.api.list(self.api.prefix + "images/"):
            name = item["key"][len(self.api.prefix) + len("images/"):]
            image_id, dot, kind = name.partition(".")
            if kind != "json" or not _ID_RE.match(image_id):
                continue
            try:
                doc = self._load(image_id)
            except errors.ImageNotFound:
                continue  # deleted while we listed
            except errors.StoreError as exc:  # the others stay listed; rm removes this one
                doc = {"record": damaged_record(image_id, str(exc)), "created_ns": 0}
            record = doc["record"]
            found.append((record.get("created_at") or "", doc.get("created_ns", 0), image_id,
                          record))
        found.sort(key=lambda entry: entry[:3])
        return [entry[3] for entry in found]

    def delete(self, image_id):
        try:
            doc = self._load(image_id)
        except errors.ImageNotFound:
            raise
        except errors.StoreError as exc:  # a damaged record: remove it and its data, no more
            log.warning("image %s: deleting a damaged record (%s)", image_id, exc)
            doc = {"upload": None}
        # the record goes first: a failure after it leaves only leftovers gc can find
        self.api.delete(self._key(image_id, "json"))
        self.api.delete(self._key(image_id, "data"))
        upload = doc.get("upload") or {}
        if upload.get("token"):
            self.api.abort_parts(upload["token"])

    def open(self, image_id, offset=0):
        record = self.get(image_id)
        if record["status"] != base.ACTIVE:
            raise errors.ImageStateError(image_id=image_id, status=record["status"],
                                         expected=base.ACTIVE + " (its data has not been uploaded)")
        key = self._key(image_id, "data")
        head = self.api.head(key)
        subject = "image {} in {}".format(image_id, self.display)
        if head is None:
            raise errors.StoreError("{}: the record is active but its data object {} is missing; "
                                    "delete the image and upload it again".format(subject, key))
        if head["size"] != record["size"]:
            raise errors.IntegrityError(what="data object size", subject=subject,
                                        expected=record["size"], actual=head["size"])
        return RangedReader(lambda start, end: self.api.fetch_range(key, start, end, image_id),
                            record["size"], subject, offset=offset,
                            connections=self.connections, block_size=self.block_size,
                            retries=self.api.retries, delay=self.api.delay)

    def put(self, image_id, chunks, size=None):
        doc = self._load(image_id)
        record = doc["record"]
        if record["status"] == base.SAVING and self._stale(doc, STALE_AFTER):
            log.warning("image %s: taking over from an upload that stopped %.0fs ago",
                        image_id, self._clock() - doc["upload"]["heartbeat"])
            self._clean_upload(doc)
        elif record["status"] != base.QUEUED:
            status = record["status"]
            if status == base.SAVING:
                status += " (another upload is running, or died less than {:.0f}s ago)".format(
                    STALE_AFTER)
            raise errors.ImageStateError(image_id=image_id, status=status, expected=base.QUEUED)
        self.api.ensure_container()
        now = self._clock()
        doc["upload"] = {"started": now, "heartbeat": now, "token": None,
                         "owner": uuid.uuid4().hex}
        record["status"] = base.SAVING
        self._save(doc)
        key = self._key(image_id, "data")
        try:
            result, token = self._send(doc, key, chunks, size)
            latest = self._load(image_id)  # deleted or taken over meanwhile? then not active
            if not self._ours(latest, doc):
                raise errors.ImageStateError(
                    image_id=image_id, status=latest["record"]["status"] + " by another upload",
                    expected=base.SAVING + " by this one (the image changed during upload)")
            latest["record"].update(status=base.ACTIVE, size=result.size, checksum=result.md5,
                                    os_hash_algo="sha512", os_hash_value=result.sha512)
            latest["upload"], latest["data"] = None, token
            self._save(latest)
        except BaseException:
            self._abort(doc, key)
            raise
        return result

    # --- upload internals --------------------------------------------------------

    def _send(self, doc, key, chunks, size):
        """Send the data object; return (UploadResult, the completed upload's token)."""
        image_id = doc["record"]["id"]
        upload = doc["upload"]

        def begin():
            upload["token"] = self.api.begin_parts(key, image_id)
            self._save(doc)

        def beat(part):
            if self._clock() - upload["heartbeat"] >= HEARTBEAT_SECONDS:
                upload["heartbeat"] = self._clock()
                self._save(doc)

        digest, parts = send_stream(
            chunks, self.part_size, lambda data: self.api.put_whole(key, data, image_id), begin,
            lambda part, data: self.api.send_part(upload["token"], part, data),
            self.connections, beat)
        subject = "upload to image {} in {}".format(image_id, self.display)
        if size is not None and digest.size != size:
            raise errors.IntegrityError(what="size", subject=subject, expected=size,
                                        actual=digest.size)
        if parts:
            self.api.complete_parts(upload["token"], parts)
        head = self.api.head(key)
        actual = None if head is None else head["size"]
        if actual != digest.size:
            raise errors.IntegrityError(what="stored size", subject=subject,
                                        expected=digest.size, actual=actual)
        return digest.result(), upload["token"]

    def _abort(self, doc, key):
        """Undo a failed upload: no parts, no data object, the record queued again.

        Errors here are logged, not raised, so the upload's own error is what the caller
        sees; whatever could not be removed stays named in the record for gc.
        """
        image_id = doc["record"]["id"]
        try:
            data = self.api.read_small(self._key(image_id, "json"))
            latest = json.loads(data.decode("utf-8")) if data is not None else None
            if latest is not None and not self._ours(latest, doc):
                # another upload owns the image now: remove our parts, touch nothing of its
                upload = doc.get("upload") or {}
                if upload.get("token"):
                    self.api.abort_parts(upload["token"])
                return
            self._clean_upload(doc)
            self.api.delete(key)
            doc["record"]["status"] = base.QUEUED
            if latest is not None:
                self._save(doc)
        except (errors.VhdportError, OSError, ValueError) as exc:
            log.warning("image %s: could not clean up the failed upload (%s); run `vhdport "
                        "image gc` later to remove its leftovers", image_id, exc)

    def _clean_upload(self, doc):
        upload = doc.get("upload") or {}
        if upload.get("token"):
            self.api.abort_parts(upload["token"])
        self.api.delete(self._key(doc["record"]["id"], "data"))
        doc["upload"] = None

    @staticmethod
    def _ours(latest, doc):
        """Whether ``latest`` (the record as stored now) still names our upload ``doc``."""
        upload = latest.get("upload") or {}
        return latest["record"]["status"] == base.SAVING and \
            upload.get("owner") == (doc.get("upload") or {}).get("owner")

    def _stale(self, doc, age):
        upload = doc.get("upload") or {}
        return self._clock() - float(upload.get("heartbeat") or 0) >= age

    # --- garbage collection --------------------------------------------------------

    def gc(self, min_age=DEFAULT_GC_MIN_AGE):
        """Remove what dead uploads left: multipart uploads / segments, data objects
        without an active record, records stuck in ``saving``.  Leftovers younger than
        ``min_age`` seconds are kept (they may belong to a running upload; 0 removes all,
        so only with no upload running).  Damaged records and their data are left alone.
        Returns a list of one-line descriptions of what was removed."""
        removed = []
        now = self._clock()
        keep = set()
        docs = {}
        damaged_ids = set()  # left alone (data included) until someone looks at them
        for record in self.list():
            image_id = record["id"]
            try:
                doc = self._load(image_id)
            except errors.ImageNotFound:
                continue
            except errors.StoreError:
                damaged_ids.add(image_id)
                continue
            docs[image_id] = doc
            upload = doc.get("upload") or {}
            if doc["record"]["status"] == base.SAVING:
                if self._stale(doc, min_age):
                    self._clean_upload(doc)
                    doc["record"]["status"] = base.QUEUED
                    self._save(doc)
                    removed.append("image {}: abandoned upload removed, record queued again"
                                   .format(image_id))
                elif upload.get("token"):
                    keep.add(token_name(upload["token"]))
            if doc.get("data"):
                keep.add(token_name(doc["data"]))
        for token, started in self.api.part_uploads():
            name = token_name(token)
            if name not in keep and (min_age <= 0 or now - started >= min_age):
                self.api.abort_parts(token)
                removed.append("unfinished upload {} removed".format(name))
        for item in self.api.list(self.api.prefix + "images/"):
            name = item["key"][len(self.api.prefix) + len("images/"):]
            image_id, _, kind = name.partition(".")
            if kind != "data" or (min_age > 0 and now - item["modified"] < min_age) \
                    or image_id in damaged_ids:
                continue
            doc = docs.get(image_id)
            if doc is None or doc["record"]["status"] not in (base.ACTIVE, base.SAVING):
                self.api.delete(item["key"])
                removed.append("data object {} without an active image removed".format(
                    item["key"]))
        return removed
