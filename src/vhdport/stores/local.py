"""An image store in a local directory: the embedded default, shaped like Glance v2.

Layout under the root::

    vhdport-store.json    marker written last on first use, so its presence means "a store lives here"
    lock                  flock'ed around every read-modify-write of a record
    images/<id>.json      the record (Glance v2 fields) plus private bookkeeping
    images/<id>.data      the bytes; exists only while the image is active
    images/<id>.lock      flock'ed (non-blocking) by the one upload into <id>
    images/.<id>.*.tmp    an upload in progress, renamed to <id>.data once complete

Every file is replaced atomically (temp file, fsync, rename, fsync of the directory), so a crash
leaves the old state or the new one -- never an active image over partial data.
"""

import errno
import fcntl
import json
import logging
import os
import re
import tempfile
import time
import uuid
from contextlib import contextmanager

from vhdport import errors
from vhdport.fsutil import fsync_dir, unlink_quietly, write_all
from vhdport.stores import base
from vhdport.stores.local_records import (DAMAGED, MAX_RECORD_BYTES, damaged_record,
                                          open_nofollow, validate_record)

log = logging.getLogger("vhdport.stores.local")

MARKER = "vhdport-store.json"

STORE_KIND = "vhdport-local-store"
STORE_VERSION = 1

#: the formats Glance accepts by default; checked here so a local run fails where Glance would
DISK_FORMATS = ("ami", "ari", "aki", "vhd", "vhdx", "vmdk", "raw", "qcow2", "vdi", "iso", "ploop")
CONTAINER_FORMATS = ("ami", "ari", "aki", "bare", "ovf", "ova", "docker", "compressed")
VISIBILITIES = ("public", "private", "shared", "community")
#: names Glance keeps for itself; a custom property of that name is refused there too
RESERVED_PROPERTIES = frozenset(base.RECORD_FIELDS + (
    "owner", "tags", "locations", "file", "self", "schema", "direct_url", "min_disk",
    "min_ram", "protected", "virtual_size", "os_hidden", "stores"))

# Only canonical lowercase UUIDs name images, so an id can never walk out of images/.
_ID_RE = re.compile(r"\A[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}\Z")


def glance_time(when=None):
    """ISO 8601 UTC at second resolution, as Glance prints created_at / updated_at."""
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(when))


def store_os_error(exc, path, action):
    """The typed error for an OSError met while doing ``action`` on ``path``."""
    if exc.errno in (errno.ENOSPC, errno.EDQUOT):
        return errors.NoSpaceError(path=path)
    if exc.errno in (errno.EACCES, errno.EPERM, errno.EROFS):
        return errors.StoreError(
            "{}: cannot {} ({}); check that the store directory is writable by this user"
            .format(path, action, exc.strerror))
    return errors.StoreError("{}: cannot {}: {}".format(path, action, exc.strerror or exc))


@contextmanager
def _os_errors(path, action):
    try:
        yield
    except OSError as exc:
        raise store_os_error(exc, path, action) from exc


def _write_atomic(path, data):
    directory = os.path.dirname(path)
    fd, tmp = tempfile.mkstemp(dir=directory, prefix=".rec-", suffix=".tmp")
    try:
        try:
            write_all(fd, data)
            os.fsync(fd)
        finally:
            os.close(fd)
        os.replace(tmp, path)
    except BaseException:
        unlink_quietly(tmp)
        raise
    fsync_dir(directory)


def _marker_text():
    return json.dumps({"kind": STORE_KIND, "version": STORE_VERSION}, sort_keys=True)


def _check_name(name):
    if name is not None and not isinstance(name, str):
        raise errors.StoreError("image name must be a string, not {!r}".format(name))


def _check_properties(properties, what="property"):
    """Custom properties are str -> str and must not shadow a field Glance owns."""
    props = dict(properties or {})
    for key, value in props.items():
        if not isinstance(key, str) or not key or not isinstance(value, str):
            raise errors.StoreError(
                "{} {!r}={!r}: names and values must be non-empty strings".format(what, key, value))
        if key in RESERVED_PROPERTIES:
            raise errors.StoreError(
                "{} {!r} is a reserved image field; choose another name".format(what, key))
    return props


class LocalImageStream(object):
    """The bytes of an active image from ``offset`` on; ``size`` is the whole image's size."""

    def __init__(self, path, size, offset=0):
        if not isinstance(offset, int) or offset < 0 or offset > size:
            raise errors.StoreError(
                "{}: offset {} is outside the image (size {})".format(path, offset, size))
        with _os_errors(path, "open image data"):
            self._file = os.fdopen(open_nofollow(path, os.O_RDONLY), "rb")
        try:
            actual = os.fstat(self._file.fileno()).st_size
            if actual != size:
                raise errors.IntegrityError(what="size", subject=path, expected=size, actual=actual)
            self._file.seek(offset)
        except BaseException:
            self._file.close()
            raise
        self.path, self.size, self.offset = path, size, offset

    def read(self, n=-1):
        with _os_errors(self.path, "read image data"):
            return self._file.read(-1 if n is None else n)

    def close(self):
        self._file.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()


class LocalStore(base.Store):
    """Images as <id>.json + <id>.data files under one directory (see the module docstring)."""

    def __init__(self, root, display=None):
        root = os.fspath(root)
        self.root = os.path.abspath(os.path.expanduser(root))
        self.images_dir = os.path.join(self.root, "images")
        self.display = display or root
        self._known = False
        #: True once this object made a new store at ``root`` (callers tell the user)
        self.created = False

    # --- layout -----------------------------------------------------------

    def _ready(self, create=False):
        """Whether a store lives at the root; with ``create``, make one if the root is empty."""
        if self._known:
            return True
        marker = os.path.join(self.root, MARKER)
        with _os_errors(self.root, "read the image store"):
            if os.path.lexists(self.images_dir) and not (
                    os.path.isdir(self.images_dir) and not os.path.islink(self.images_dir)):
                raise errors.StoreError("{}: is not a real directory (a symbolic link?); the "
                                        "store never follows links: remove it".format(
                                            self.images_dir))
            if os.path.isfile(marker):
                with open(marker, "rb") as f:
                    text = f.read().decode("utf-8", "replace")
                if _marker_text() != text:
                    raise errors.StoreError("{}: unknown store format {!r}; this vhdport reads "
                                            "{}".format(marker, text[:80], _marker_text()))
                self._known = True
                return True
            if os.path.exists(self.root) and not os.path.isdir(self.root):
                raise errors.StoreError("{}: is not a directory; give a directory as the image "
                                        "store".format(self.root))
            # a first use killed before the marker's rename leaves only our own temp file
            if os.path.isdir(self.root) and set(
                    n for n in os.listdir(self.root)
                    if not (n.startswith(".rec-") and n.endswith(".tmp"))) - {"images", "lock"}:
                raise errors.StoreError(
                    "{}: not a vhdport image store (no {}) and not empty; give an empty or "
                    "new directory".format(self.root, MARKER))
        if not create:
            if not os.path.isdir(self.root):
                raise errors.StoreError(
                    "{}: no image store there (the directory does not exist); check --store, "
                    "or upload or import an image to create one".format(self.display))
            return False
        parent = os.path.dirname(self.root)
        if not os.path.isdir(self.root) and not os.path.isdir(parent):
            raise errors.StoreError(
                "{}: cannot create an image store there: its parent directory {} does not "
                "exist; create it first or check --store".format(self.display, parent))
        with _os_errors(self.root, "create the image store"):
            if not os.path.isdir(self.root):
                os.mkdir(self.root, 0o755)
            if not os.path.isdir(self.images_dir):
                os.mkdir(self.images_dir, 0o755)
            _write_atomic(marker, _marker_text().encode("utf-8"))
            fsync_dir(parent)
        self.created = True
        log.info("created a new image store at %s", self.root)
        self._known = True
        return True

    def _path(self, image_id, kind):
        return os.path.join(self.images_dir, "{}.{}".format(image_id, kind))

    def _existing(self, image_id):
        """ImageNotFound unless the id is a UUID (never a path) and a store is here at all."""
        if not isinstance(image_id, str) or not _ID_RE.match(image_id):
            raise errors.ImageNotFound(image_id=repr(image_id), store=self.display)
        if not self._ready():
            raise errors.ImageNotFound(image_id=image_id, store=self.display)
        return image_id

    @contextmanager
    def _records_locked(self):
        path = os.path.join(self.root, "lock")
        with _os_errors(path, "lock the image store"):
            fd = open_nofollow(path, os.O_RDWR | os.O_CREAT)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
            yield
        finally:
            os.close(fd)

    def _load(self, image_id):
        """(record, created_ns) of an image."""
        path = self._path(image_id, "json")
        try:
            with os.fdopen(open_nofollow(path, os.O_RDONLY), "rb") as f:
                data = f.read(MAX_RECORD_BYTES + 1)
            if len(data) > MAX_RECORD_BYTES:
                raise ValueError("larger than {} bytes".format(MAX_RECORD_BYTES))
            doc = json.loads(data.decode("utf-8"))
        except FileNotFoundError:
            raise errors.ImageNotFound(image_id=image_id, store=self.display) from None
        except OSError as exc:
            raise store_os_error(exc, path, "read the image record") from exc
        except (ValueError, RecursionError) as exc:
            raise errors.StoreError("{}: damaged image record ({}); delete the image and upload "
                                    "it again".format(path, exc)) from None
        return validate_record(doc, image_id, path)

    def _save(self, image_id, record, created_ns):
        """Save the record of ``image_id`` (the path comes from that id, never the record)."""
        if not _ID_RE.match(image_id) or record.get("id") != image_id:
            raise errors.StoreError("refusing to save a record for {!r} as image {}".format(
                record.get("id"), image_id))
        path = self._path(image_id, "json")
        doc = {"record": record, "created_ns": created_ns}
        with _os_errors(path, "write the image record"):
            _write_atomic(path, json.dumps(doc, indent=1, sort_keys=True).encode("utf-8"))

    def _modify(self, image_id, change):
        """Apply ``change(record)`` under the store lock and save; return the new record."""
        with self._records_locked():
            record, created_ns = self._load(image_id)
            change(record)
            record["updated_at"] = glance_time()
            self._save(image_id, record, created_ns)
        return record

    # --- the Store verbs ----------------------------------------------------

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
        self._ready(create=True)
        now = time.time()
        record = base.new_record(
            id=str(uuid.uuid4()), name=name, status=base.QUEUED, disk_format=disk_format,
            container_format=container_format, visibility=visibility or "shared",
            properties=props, created_at=glance_time(now), updated_at=glance_time(now))
        with self._records_locked():
            self._save(record["id"], record, int(now * 1e9))
        return record

    def update(self, image_id, name=None, properties=None, remove=()):
        self._existing(image_id)
        _check_name(name)
        props = _check_properties(properties)
        remove = [remove] if isinstance(remove, str) else list(remove)
        both = sorted(set(props) & set(remove))
        if both:
            raise errors.StoreError("image {}: cannot both set and remove {}".format(
                image_id, ", ".join(both)))

        def change(record):
            missing = [key for key in remove if key not in record["properties"]]
            if missing:
                raise errors.StoreError(
                    "image {} in {}: cannot remove missing property {} (conflict, as Glance's 409)"
                    .format(image_id, self.display, ", ".join(missing)))
            if name is not None:
                record["name"] = name
            record["properties"].update(props)
            for key in remove:
                del record["properties"][key]
        return self._modify(image_id, change)

    def get(self, image_id):
        self._existing(image_id)
        return self._load(image_id)[0]

    def list(self):
        if not self._ready():
            return []   # an empty directory: a store not made yet
        with _os_errors(self.images_dir, "list images"):
            names = os.listdir(self.images_dir)
        found = []
        for name in names:
            image_id, dot, kind = name.partition(".")
            if kind != "json" or not _ID_RE.match(image_id):
                continue
            try:
                record, created_ns = self._load(image_id)
            except errors.ImageNotFound:
                continue  # deleted while we listed
            except errors.StoreError as exc:  # one bad record must not hide the others
                log.warning("%s", exc)
                record, created_ns = damaged_record(image_id, str(exc)), 0
                record["created_at"] = ""
            found.append((record["created_at"], created_ns, image_id, record))
        found.sort(key=lambda entry: entry[:3])
        return [entry[3] for entry in found]

    def delete(self, image_id):
        self._existing(image_id)
        with self._records_locked():
            self._load(image_id)
            # The record goes first: a crash after it leaves only an orphan file, never a
            # record whose data is missing.
            with _os_errors(self._path(image_id, "json"), "delete the image record"):
                os.unlink(self._path(image_id, "json"))
                fsync_dir(self.images_dir)
        unlink_quietly(self._path(image_id, "data"))
        try:
            lock_fd = self._lock_upload(image_id)
        except errors.StoreError:
            pass  # an upload is running; it removes its own temp file when it fails
        else:
            try:
                self._remove_leftovers(image_id)
            finally:
                os.close(lock_fd)
        unlink_quietly(self._path(image_id, "lock"))

    def open(self, image_id, offset=0):
        record = self.get(image_id)
        if record["status"] != base.ACTIVE:
            raise errors.ImageStateError(image_id=image_id, status=record["status"],
                                         expected=base.ACTIVE + " (its data has not been uploaded)")
        try:
            return LocalImageStream(self._path(image_id, "data"), record["size"], offset)
        except errors.StoreError as exc:
            if isinstance(exc.__cause__, FileNotFoundError):
                raise errors.ImageNotFound(image_id=image_id, store=self.display) from None
            raise

    def put(self, image_id, chunks, size=None):
        self._existing(image_id)
        self._load(image_id)  # ImageNotFound before a lock file is made for it
        lock_fd = self._lock_upload(image_id)
        try:
            def begin(record):
                # SAVING is possible only if an earlier uploader died: we hold its lock now.
                if record["status"] not in (base.QUEUED, base.SAVING):
                    raise errors.ImageStateError(image_id=image_id, status=record["status"],
                                                 expected=base.QUEUED)
                record["status"] = base.SAVING
            self._modify(image_id, begin)
            self._remove_leftovers(image_id)
            try:
                result = self._receive(image_id, chunks, size)

                def finish(record):
                    record.update(status=base.ACTIVE, size=result.size, checksum=result.md5,
                                  os_hash_algo="sha512", os_hash_value=result.sha512)
                self._modify(image_id, finish)
                self._check_stored(image_id, result)
            except BaseException:
                self._abort(image_id)
                raise
            return result
        finally:
            os.close(lock_fd)

    # --- upload helpers -------------------------------------------------------

    def _check_stored(self, image_id, result):
        """Read the record back: an upload succeeds only as an active image with our hashes."""
        record = self._load(image_id)[0]
        if record["status"] != base.ACTIVE:
            raise errors.ImageStateError(image_id=image_id, status=record["status"],
                                         expected=base.ACTIVE + " after upload")
        subject = "uploaded image {} in {}".format(image_id, self.display)
        for field, want in (("size", result.size), ("checksum", result.md5),
                            ("os_hash_value", result.sha512)):
            if record[field] != want:
                raise errors.IntegrityError(what=field, subject=subject, expected=want,
                                            actual=record[field])

    def _lock_upload(self, image_id):
        """Hold the image's upload lock, or refuse: a second concurrent put must not succeed."""
        path = self._path(image_id, "lock")
        with _os_errors(path, "lock the image for upload"):
            fd = open_nofollow(path, os.O_RDWR | os.O_CREAT)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            os.close(fd)
            raise errors.ImageStateError(image_id=image_id, status=base.SAVING + " (another "
                                         "upload is in progress)", expected=base.QUEUED) from None
        return fd

    def _remove_leftovers(self, image_id):
        """Temp files of uploads whose process died; call only while holding the upload lock."""
        prefix = "." + image_id + "."
        with _os_errors(self.images_dir, "list images"):
            names = os.listdir(self.images_dir)
        for name in names:
            if name.startswith(prefix) and name.endswith(".tmp"):
                unlink_quietly(os.path.join(self.images_dir, name))

    def _receive(self, image_id, chunks, size):
        """Write ``chunks`` to a temp file, then rename it to <id>.data; return the digest."""
        digest = base.StreamDigest()
        data_path = self._path(image_id, "data")
        with _os_errors(self.images_dir, "create an upload file"):
            fd, tmp = tempfile.mkstemp(dir=self.images_dir, prefix="." + image_id + ".",
                                       suffix=".tmp")
        try:
            try:
                for chunk in chunks:
                    if not chunk:
                        continue
                    digest.update(chunk)
                    if size is not None and digest.size > size:
                        raise self._size_error(image_id, size, "more than {}".format(size))
                    with _os_errors(data_path, "write image data"):
                        write_all(fd, chunk)
                if size is not None and digest.size != size:
                    raise self._size_error(image_id, size, digest.size)
                with _os_errors(data_path, "write image data"):
                    os.fsync(fd)
            finally:
                os.close(fd)
            with _os_errors(data_path, "store image data"):
                os.replace(tmp, data_path)
                fsync_dir(self.images_dir)
        except BaseException:
            unlink_quietly(tmp)
            raise
        return digest.result()

    def _size_error(self, image_id, size, actual):
        return errors.IntegrityError(what="size", expected=size, actual=actual,
                                     subject="upload to image {} in {}".format(image_id,
                                                                               self.display))

    def _abort(self, image_id):
        """Undo a failed upload as Glance does on client abort: no data, status queued.

        Errors here are swallowed so the upload's own error is what the caller sees; a record
        left in ``saving`` is recovered by the next put (its lock is free).
        """
        try:
            unlink_quietly(self._path(image_id, "data"))
            fsync_dir(self.images_dir)

            def requeue(record):
                record["status"] = base.QUEUED
            self._modify(image_id, requeue)
        except (OSError, errors.VhdportError):
            pass
