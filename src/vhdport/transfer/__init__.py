"""The two pipelines: image store -> SR (download) and SR -> image store (upload).

Each wires store, bundle and SR together and owns the integrity policy: bytes are
hashed as they stream and compared with the store's record before anything is
published, and a finished upload is read back and compared with what was sent.
"""

import logging
import os
import stat
import threading

from .. import bundle, disk
from ..errors import (BundleError, ChainError, FormatError, ImageStateError, IntegrityError,
                     StoreError, VhdportError)
from ..sr import SR
from ..stores import ACTIVE, QUEUED, StreamDigest
from . import contents, images
from . import flat as _flat

log = logging.getLogger(__name__)

CHUNK = 1 << 20
#: after a content error, read at most this much more to tell a damaged transfer
#: (hash mismatch) from a bad image; beyond it the content error stands alone
BLAME_DRAIN_LIMIT = 256 << 20

#: (disk_format, container_format) -> how the bytes are packed
TAR_BUNDLE, BARE_DISK, RAW_DISK = "tar", "bare", "raw"


def payload_kind(record):
    """(how the bytes are packed, the disk format they land as); refuse what an SR cannot take.

    A record's ``disk_format`` names a format of the disk face's registry; raw images
    land as the registry's default format.
    """
    name, container = record.get("disk_format"), record.get("container_format")
    fmt = disk.by_name(name)
    if fmt is not None and container in ("ovf", "tgz", None):
        return TAR_BUNDLE, fmt
    if fmt is not None and container == "bare":
        return BARE_DISK, fmt
    if name == "raw" and container in ("bare", None):
        return RAW_DISK, disk.DEFAULT
    raise StoreError("image {} has disk_format={} container_format={}; vhdport downloads {} "
                     "bundles, bare {} and raw images".format(
                         record.get("id"), name, container,
                         "/".join(f + "/ovf" for f in disk.FORMATS), "/".join(disk.FORMATS)))


class VerifyingReader(object):
    """Pass bytes through while counting and hashing them; supports a small peek."""

    def __init__(self, stream, progress=None, total=None, hash_algo=None):
        self._stream = stream
        self._pending = b""
        self.digest = StreamDigest(hash_algo)
        self._progress = progress
        self._total = total
        # the bundle reader may pull from a read-ahead thread; keep pulls (and hashing) in order
        self._lock = threading.Lock()

    def _pull(self, n):
        with self._lock:
            data = self._stream.read(n)
            if data:
                self.digest.update(data)
                if self._progress is not None:
                    self._progress(self.digest.size, self._total)
        return data

    def peek(self, n):
        while len(self._pending) < n:
            data = self._pull(n - len(self._pending))
            if not data:
                break
            self._pending += data
        return self._pending[:n]

    def read(self, n=-1):
        """Read ``n`` bytes (fewer only at EOF); all of the rest for ``n < 0``."""
        if not self._pending and n >= 0:
            data = self._pull(n)
            if len(data) == n or not data:
                return data          # the common case: no copy
            self._pending = data
        parts, have = [self._pending], len(self._pending)
        self._pending = b""
        while n < 0 or have < n:
            data = self._pull(CHUNK if n < 0 else max(n - have, 0))
            if not data:
                break
            parts.append(data)
            have += len(data)
        data = b"".join(parts)
        if 0 <= n < len(data):
            data, self._pending = data[:n], data[n:]
        return data

    def drain(self):
        """Read to EOF, returning how many bytes were left (they are hashed, not kept)."""
        left = len(self._pending)
        self._pending = b""
        while True:
            data = self._pull(CHUNK)
            if not data:
                return left
            left += len(data)


def verify_against_record(digest, record, subject):
    """Compare what streamed with what the store recorded; raise IntegrityError on a mismatch."""
    checks = [("size", record.get("size"), digest.size),
              ("md5 checksum", record.get("checksum"), digest.md5)]
    algo = record.get("os_hash_algo") or "sha512"
    computed = digest.hexdigest(algo) if hasattr(digest, "hexdigest") else (
        digest.sha512 if algo == "sha512" else None)
    if computed is not None:
        checks.append(("{} hash".format(algo), record.get("os_hash_value"), computed))
    elif record.get("os_hash_value"):
        log.warning("%s: os_hash_algo %s cannot be computed here; not compared", subject, algo)
    if all(expected is None for _what, expected, _actual in checks[1:]):
        log.warning("%s: the store records no md5 or sha512; only the size can be checked", subject)
    for what, expected, actual in checks:
        if expected is not None and expected != actual:
            raise IntegrityError(what=what, subject=subject, expected=expected, actual=actual)


def _receive(kind, fmt, reader, staging_dir, record, image_format, subject):
    head = reader.peek(512)
    size = record.get("size")
    if len(head) < 512 and size is not None and len(head) < size:
        # a stream that ended before its first sector (e.g. a connection cut inside the
        # response headers) is short data, not data of another format
        raise IntegrityError(what="size", subject="image {} (the data stream ended early)"
                             .format(record.get("id")), expected=size, actual=len(head))
    sniffed = bundle.sniff(head)
    if kind == TAR_BUNDLE:
        if image_format is not None:
            raise StoreError("{} is a {}/ovf bundle: its disks land in their own format "
                             "(no image format choice)".format(subject, fmt.name))
        if sniffed not in ("gzip", "tar"):
            raise StoreError("image {} is recorded as a {}/ovf bundle but its bytes look like {}"
                             .format(record.get("id"), fmt.name, sniffed))
        return images.Received(bundle.extract_bundle(reader, staging_dir))
    if kind == BARE_DISK:
        return images.receive_disk(fmt, reader, staging_dir, record, image_format, subject)
    if sniffed in ("gzip", "tar"):
        raise StoreError("image {} is recorded as raw but its bytes look like {}".format(
            record.get("id"), sniffed))
    return images.receive_raw(reader, staging_dir, record, image_format, subject)


def download(store, image_id, sr_path, uuids=None, progress=None, verify_contents=True,
             image_format=None):
    """Stream an image into the SR; return {"root": {"uuid": leaf}, "chain": [leaf .. base]}.

    Nothing reaches the SR proper until the data matched the store's record and
    the chain validated in staging; then the leaf is published first.

    ``image_format`` (a disk format's name) chooses what a raw image or a random-access
    disk image (QCOW2) lands as; by default a QCOW2 stays one and a raw image takes the
    format SM would pick for its size.

    ``uuids`` (leaf first) may be longer than the chain: the first ones are used.
    nova sends a ``uuid_stack`` of 16 (MAX_VDI_CHAIN_SIZE) whatever the chain's depth.

    When the record carries a content digest (``vhdport_content_digest``, set by
    upload), the staged chain is read back and must match it before it is published;
    ``verify_contents=False`` skips that read.
    """
    if uuids is not None:
        uuids = list(uuids)
    record = store.get(image_id)
    if record.get("status") != ACTIVE:
        raise ImageStateError(image_id=image_id, status=record.get("status"), expected=ACTIVE)
    kind, fmt = payload_kind(record)
    sr = SR(sr_path)
    subject = "image {} from {}".format(image_id, store.display)
    with sr.staging() as staging:
        with store.open(image_id) as stream:
            reader = VerifyingReader(stream, progress, record.get("size"),
                                     record.get("os_hash_algo"))
            try:
                received = _receive(kind, fmt, reader, staging.path, record, image_format,
                                    subject)
            except (BundleError, FormatError) as e:
                _blame_transfer(reader, record, subject, e)
                raise
            reader.drain()
        verify_against_record(reader.digest, record, subject)
        staged = received.finish()
        # the chain rule, once: structure, depth, hidden leaf, order (a leaf may have grown)
        disk.check_chain(staged, structural=True, allow_growth=True)
        _hide_parents(staged)
        adopted = staging.adopt(staged, uuids[:len(staged)] if uuids else uuids, checked=True)
        contents.verify_landed(record, adopted[0], subject, verify_contents)
        published = sr.publish(adopted, checked=True)
    chain = [_uuid_of(path) for path in published]
    log.info("downloaded %s into %s: leaf %s, %d disks", image_id, sr_path, chain[0], len(chain))
    return {"root": {"uuid": chain[0]}, "chain": chain}


def _blame_transfer(reader, record, subject, error):
    """Bad bytes are the image's fault or the transfer's: if the stream does not match the
    store's record either, raise that (the cause to act on: retry) instead of ``error``."""
    size = record.get("size")
    if size is None or size - reader.digest.size > BLAME_DRAIN_LIMIT:
        return
    try:
        reader.drain()
        verify_against_record(reader.digest, record, subject)
    except IntegrityError as mismatch:
        raise mismatch from error
    except VhdportError:
        return


def _hide_parents(staged):
    """Every parent lands hidden, as XenServer's snapshot leaves it.

    A bundle made elsewhere may carry visible parents; in the SR each would be a
    VDI of its own that a user could attach and write, corrupting its children.
    Done in staging, before the files are adopted and published.
    """
    for path in staged[1:]:
        fmt = disk.for_path(path)
        if not fmt.facts(path).hidden:
            log.info("bundle member %s is a parent but not hidden; hiding it",
                     os.path.basename(path))
            fmt.set_hidden(path, True)


def _uuid_of(path):
    name = path.replace("\\", "/").rsplit("/", 1)[-1]
    return disk.stem_of(name) or name


class _Counting(object):
    """Wrap an iterable of chunks, reporting the bytes sent against ``total`` when it is known
    (an existing file's size), None when it is not (a bundle being compressed)."""

    def __init__(self, chunks, progress, total=None):
        self._chunks, self._progress, self._total = chunks, progress, total
        self.sent = 0

    def __iter__(self):
        for chunk in self._chunks:
            self.sent += len(chunk)
            if self._progress is not None:
                self._progress(self.sent, self._total)
            yield chunk


def upload(sr_path, leaf_uuid, store, image_id=None, name=None, properties=None,
           compression_level=6, progress=None, member_names=None, threads=None,
           record_contents=True, as_format=None):
    """Upload the chain of VDI ``leaf_uuid``; return the image id.

    A bundle holds ``0<suffix>`` (leaf) .. ``N<suffix>`` (base) of the chain's one disk
    format (vhd or qcow2), recorded as ``disk_format`` with ``container_format=ovf``.

    ``as_format``: None or ``"bundle"`` sends a bundle of the chain's files (e.g. vhd/ovf)
    that keeps its layers; ``"qcow2"`` or ``"raw"`` one flat image (container bare) of
    the chain's contents that a KVM host boots (see :mod:`vhdport.transfer.flat`).
    ``threads``: deflate workers (None: one per usable core; see bundle.pgzip).

    The chain is hard-linked into staging first, so a coalesce or GC cannot pull
    a file from under the upload; each file is checked before a byte is sent.
    ``member_names``: called with the chain's VDI uuids (leaf first) as found in the SR,
    returns the stems of the bundle's member names (it may refuse the chain, also for a
    flat image); the disk format adds its suffix.  Default: stems ``0`` .. ``N``.

    The chain's content digest is computed while the image streams and set as the
    image property ``vhdport_content_digest`` (unless ``record_contents`` is off), so
    a download can prove the disk it lands is the one that left.
    """
    if image_id is None and not name:
        raise StoreError("upload needs an existing queued image id or a name for a new image")
    flat = _flat.is_flat(as_format)
    sr = SR(sr_path)
    with sr.staging() as staging, contents.UploadDigest(record_contents) as content_digest:
        # under the SR lock, so no GC or snapshot runs between resolving and linking
        with sr.locked():
            chain = sr.chain_paths(leaf_uuid)
            linked = staging.link_chain(chain)
            content_digest.start(chain)
        fmt = disk.for_path(linked[0])
        # asked even for a flat image: the caller may refuse the chain it finds
        stems = range(len(linked)) if member_names is None else member_names(
            [_uuid_of(path) for path in chain])
        names = [fmt.file_name(stem) for stem in stems]
        _check_before_upload(linked, chain, leaf_uuid)
        if image_id is not None:
            record = store.get(image_id)
            if record.get("status") != QUEUED:
                raise ImageStateError(image_id=image_id, status=record.get("status"),
                                      expected=QUEUED + " (upload only into a new image)")
            if flat:
                _flat.check_queued_record(record, as_format)
            if properties or name:
                store.update(image_id, name=name, properties=properties)
        sent = None
        try:
            if flat:
                with _flat.FlatPayload(linked, as_format) as payload:
                    sent = store.upload_image(
                        _Counting(payload, progress, payload.size), image_id=image_id, name=name,
                        disk_format=payload.disk_format,
                        container_format=payload.container_format,
                        properties=None if image_id else properties, size=payload.size)
            else:
                chunks = bundle.write_bundle(list(zip(names, linked)), level=compression_level,
                                             threads=threads)
                sent = store.upload_image(_Counting(chunks, progress), image_id=image_id,
                                          name=name, disk_format=fmt.name,
                                          container_format="ovf",
                                          properties=None if image_id else properties)
            image_id = sent.image_id
            verify_stored(store, sent, "uploaded image {} in {}".format(image_id, store.display))
            content_digest.record(store, image_id)
        except BaseException as e:
            # a new image the store made is removed by upload_image itself when that fails;
            # ImageStateError: not queued when the data was to go in -- not ours to remove
            if (sent is not None and sent.created) or (
                    image_id is not None and not isinstance(e, ImageStateError)
                    and _went_active(store, image_id)):
                _discard(store, image_id)
            raise
    log.info("uploaded VDI %s chain (%d %s files) as %s image %s", leaf_uuid, len(linked),
             fmt.name, as_format if flat else "bundle", image_id)
    return image_id


def verify_stored(store, sent, subject):
    """After an upload: the image is active and its record matches what was sent."""
    record = sent.record if sent.record is not None else store.get(sent.image_id)
    if record.get("status") != ACTIVE:
        raise ImageStateError(image_id=sent.image_id, status=record.get("status"),
                              expected=ACTIVE + " after upload")
    verify_against_record(sent, record, subject)


def _check_before_upload(linked, chain, leaf_uuid):
    """The chain rule on the staged links, as the download side will apply it.

    The links live in staging, where the locators' relative names do not resolve, so
    linkage is checked by uuid (parent uuid of member i == uuid of member i+1); the
    links are judged under their SR names (``chain``), since a format without a uuid
    inside (QCOW2) is known by its file name.
    """
    def refuse(text, _name):
        return ChainError("VDI {} cannot be uploaded: {}".format(leaf_uuid, text))
    disk.check_chain(linked, names=[os.path.basename(path) for path in chain], structural=True,
                     allow_growth=True, error=refuse)


def _went_active(store, image_id):
    """A caller's queued image that the store made active with bytes we could not verify
    (e.g. altered on the way): it must not stay usable, and Glance cannot requeue it."""
    try:
        status = store.get(image_id).get("status")
    except VhdportError:
        return False
    if status == ACTIVE:
        log.warning("image %s became active with unverified data; removing it", image_id)
        return True
    return False


def _discard(store, image_id):
    try:
        store.delete(image_id)
    except VhdportError as e:
        log.warning("could not remove the failed image %s: %s", image_id, e)


def import_image(store, path, name, disk_format="vhd", container_format="ovf",
                 properties=None, progress=None):
    """Store an existing file as a new image (like ``openstack image create --file``).

    The file is opened before the image is created, so a missing or unreadable
    file leaves no empty image behind and fails as a VhdportError naming it.
    """
    try:
        source = open(path, "rb")
    except OSError as e:
        raise VhdportError("cannot read {} to import it: {}".format(path, e.strerror or e))
    with source:
        def chunks():
            while True:
                try:
                    data = source.read(CHUNK)
                except OSError as e:
                    raise VhdportError("reading {} failed: {}".format(path, e.strerror or e))
                if not data:
                    return
                yield data

        st = os.fstat(source.fileno())
        total = st.st_size if stat.S_ISREG(st.st_mode) else None   # a FIFO has no size
        sent = store.upload_image(_Counting(chunks(), progress, total), name=name,
                                  disk_format=disk_format, container_format=container_format,
                                  properties=properties)
        try:
            verify_stored(store, sent, "imported image {}".format(sent.image_id))
        except BaseException:
            _discard(store, sent.image_id)
            raise
    return sent.image_id
