"""The small verb set every image store speaks: the contract a new store meets.

A store knows images (records plus opaque bytes), never disk formats.  The record
keeps Glance v2's field names so every store looks the same to callers.

The contract, for a new store (S3, Swift, ...):

- One class per URL scheme, registered in ``stores/__init__.py`` (``SCHEMES``);
  ``open_store(url, **options)`` builds it.  Options a store does not use are ignored.
- ``create`` / ``update`` / ``get`` / ``list`` / ``delete`` manage records;
  ``open(image_id, offset)`` streams an active image's bytes.
- ``upload_image`` stores one image's data in one call.  The default creates a
  queued record and ``put``s the bytes into it; an object store may override it
  with a multipart upload.  Either way a failed upload never leaves an image that
  looks complete, and an image the call created is removed again.
- Stores *report*, they do not judge: ``put`` / ``upload_image`` return an
  UploadResult of what was sent (size, md5, sha512) and, where the store can
  tell, the record it holds afterwards; :mod:`vhdport.transfer` compares the two
  and decides whether the store kept what was sent.
- Errors are StoreError subclasses (``ImageNotFound``, ``AuthError``,
  ``ImageStateError``, ``TransientStoreError``).  An HTTP store signs requests
  through ``Endpoint(auth=...)`` (stores/http.py), a hook called once per request.
"""

import hashlib
import logging

from vhdport.errors import StoreError, VhdportError

log = logging.getLogger(__name__)

#: statuses an image moves through (Glance v2 names)
QUEUED, SAVING, ACTIVE, KILLED = "queued", "saving", "active", "killed"

#: fields of an image record; ``properties`` holds the custom ones (str -> str)
RECORD_FIELDS = (
    "id", "name", "status", "disk_format", "container_format", "size",
    "checksum", "os_hash_algo", "os_hash_value", "visibility", "properties",
    "created_at", "updated_at",
)


def new_record(**fields):
    """A record dict with every field present (missing ones None / {})."""
    rec = dict.fromkeys(RECORD_FIELDS)
    rec["properties"] = {}
    rec.update(fields)
    return rec


class StreamDigest(object):
    """Size, md5 and sha512 of bytes seen so far; the integrity triple Glance records."""

    def __init__(self, extra_algo=None):
        self.size = 0
        self._md5 = hashlib.md5()
        self._sha512 = hashlib.sha512()
        # a Glance configured with another os_hash_algo (sha256, sha3_512 ...) records that
        self._extra = None
        if extra_algo and extra_algo not in ("md5", "sha512"):
            try:
                self._extra = (extra_algo, hashlib.new(extra_algo))
            except (ValueError, TypeError):
                self._extra = None

    def update(self, data):
        self.size += len(data)
        self._md5.update(data)
        self._sha512.update(data)
        if self._extra is not None:
            self._extra[1].update(data)

    def hexdigest(self, algo):
        """The hex digest under ``algo`` if this digest computed it, else None."""
        if algo == "sha512":
            return self.sha512
        if algo == "md5":
            return self.md5
        if self._extra is not None and self._extra[0] == algo:
            return self._extra[1].hexdigest()
        return None

    @property
    def md5(self):
        return self._md5.hexdigest()

    @property
    def sha512(self):
        return self._sha512.hexdigest()

    def result(self):
        return UploadResult(self.size, self.md5, self.sha512)


class UploadResult(object):
    """What a store measured while it sent or stored an image's data.

    ``record`` is the image's record as the store holds it after the upload (None
    when the store cannot tell).  ``upload_image`` also fills in ``image_id`` and
    ``created`` (whether the call made the image, so a caller that rejects the
    result knows to remove it).
    """

    __slots__ = ("size", "md5", "sha512", "record", "image_id", "created")

    def __init__(self, size, md5, sha512, record=None, image_id=None, created=False):
        self.size, self.md5, self.sha512 = size, md5, sha512
        self.record, self.image_id, self.created = record, image_id, created

    def __repr__(self):
        return "UploadResult(size={}, md5={})".format(self.size, self.md5)


class Store(object):
    """Interface of an image store.  One subclass per URL scheme.

    All methods raise :class:`vhdport.errors.StoreError` subclasses:
    ``ImageNotFound``, ``AuthError``, ``ImageStateError``, ``TransientStoreError``.
    """

    #: how the store names itself in messages (a URL without credentials)
    display = "store"

    def create(self, name, disk_format="vhd", container_format="ovf",
               properties=None, visibility=None):
        """Create a queued image; return its record."""
        raise NotImplementedError

    def update(self, image_id, name=None, properties=None, remove=()):
        """Set name and/or custom properties, remove properties; return the record."""
        raise NotImplementedError

    def get(self, image_id):
        """Return the record of an image (a dict, see RECORD_FIELDS)."""
        raise NotImplementedError

    def put(self, image_id, chunks, size=None):
        """Upload data into a *queued* image from an iterable of bytes.

        If ``chunks`` raises, the upload is aborted so that the image never looks
        complete, and the exception propagates.  Returns an UploadResult of what was
        sent, with the record read back after the upload where the store can.
        """
        raise NotImplementedError

    def place_uploads(self, use_import=False, stores=None, all_stores=False, notice=None):
        """Choose how later uploads reach the store's backends (a multi-store Glance).

        ``use_import``: stage and import instead of a direct upload; ``stores`` (ids) or
        ``all_stores``: which backends.  A store with one backend takes none of them;
        asked for any, it refuses.  ``notice`` (a callable taking a line) hears progress.
        """
        if use_import or stores or all_stores:
            raise StoreError("--import, --stores and --all-stores need a Glance store (API v2), "
                             "not {}".format(self.display))

    def copy_to_stores(self, image_id, stores=None, all_stores=False):
        """Copy an active image into more of the store's backends; return its record."""
        raise StoreError("image copy needs a Glance store (API v2) with several stores, not "
                         "{}".format(self.display))

    def upload_image(self, chunks, image_id=None, name=None, disk_format="vhd",
                     container_format="ovf", properties=None, size=None):
        """Store one image's data in one call; return the UploadResult (with ``image_id``).

        ``image_id`` names an existing *queued* image to fill; otherwise a new image
        called ``name`` is made.  This default is create + put, removing the image it
        created if the put fails; a store may override it (e.g. a multipart upload).
        """
        created = image_id is None
        if created:
            image_id = self.create(name, disk_format, container_format,
                                   properties=properties)["id"]
        try:
            result = self.put(image_id, chunks, size=size)
        except BaseException:
            if created:
                self._discard_quietly(image_id)
            raise
        result.image_id, result.created = image_id, created
        return result

    def _discard_quietly(self, image_id):
        """Remove a half-made image; the caller's own error is the one to report."""
        try:
            self.delete(image_id)
        except VhdportError as e:
            log.warning("could not remove the failed image %s: %s", image_id, e)

    def open(self, image_id, offset=0):
        """Return a readable stream (``read(n)``, ``close()``) of the image data.

        The stream has ``size`` (total bytes or None) and may resume internally
        after a broken connection.  Use as a context manager.
        """
        raise NotImplementedError

    def list(self):
        """Iterate over image records."""
        raise NotImplementedError

    def delete(self, image_id):
        raise NotImplementedError

    def close(self):
        pass

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()
