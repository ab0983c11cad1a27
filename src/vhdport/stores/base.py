"""The small verb set every image store speaks.

A store knows images (records plus opaque bytes), never VHDs.  The record keeps
Glance v2's field names so the local store and Glance look the same to callers.
"""

import hashlib

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
    """What a store measured while it sent or stored an image's data."""

    __slots__ = ("size", "md5", "sha512")

    def __init__(self, size, md5, sha512):
        self.size, self.md5, self.sha512 = size, md5, sha512

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
        complete, and the exception propagates.  Returns an UploadResult of what was sent.
        """
        raise NotImplementedError

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
