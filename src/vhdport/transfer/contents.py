"""The content digest in the pipelines: upload records it, download checks the landed chain.

The stream hashes (md5, sha512) prove the bytes arrived as stored; the content digest
proves the *disk* that lands is the one that left, across any repacking in between
(another compression, a conversion, a flattened copy): it is a digest of the virtual
contents read back through the chain (see :mod:`vhdport.disk.digest`).
"""

import logging
import os
import threading

from .. import disk
from ..disk import digest as _digest
from ..errors import ChainError, IntegrityError

log = logging.getLogger(__name__)

#: the image property that carries the digest string
PROPERTY = "vhdport_content_digest"
#: the upload's digest runs beside the compressors: one hashing thread is enough to keep
#: ahead of them, and more would take cores from the deflate workers
UPLOAD_WORKERS = 1


class UploadDigest(object):
    """The content digest of the chain being uploaded, computed in a thread beside the stream.

    Use as a context manager around the upload: ``start`` (under the SR lock) opens
    the chain and starts the thread, ``record`` waits for it and sets the property,
    leaving the block stops the thread if it still runs and closes the chain.
    With ``enabled`` off every method does nothing.
    """

    def __init__(self, enabled=True):
        self.enabled = enabled
        self._chain = None
        self._thread = None
        self._cancel = threading.Event()
        self._value = None
        self._error = None

    def start(self, sr_chain_paths):
        """Open the SR's chain (leaf first, as the SR lists it) and start digesting it.

        Called under the SR lock, right after the chain is linked into staging: the
        opened files stay readable whatever a GC does later, as the links do.  The links
        themselves cannot be opened as a chain (their parents' names do not resolve in
        staging), so the SR's names are opened, and must resolve to the same files.
        """
        if not self.enabled:
            return
        leaf = sr_chain_paths[0]
        self._chain = disk.for_path(leaf).open_chain(leaf)
        opened = self._chain.paths()
        if len(opened) != len(sr_chain_paths) or not all(
                _same_file(a, b) for a, b in zip(opened, sr_chain_paths)):
            raise ChainError("{}: the chain opens as {} but the SR lists {}; retry".format(
                leaf, opened, sr_chain_paths))
        self._thread = threading.Thread(target=self._run, name="vhdport-content-digest")
        self._thread.daemon = True
        self._thread.start()

    def _run(self):
        try:
            self._value = str(disk.content_digest(self._chain, workers=UPLOAD_WORKERS,
                                                  cancel=self._cancel))
        except BaseException as e:   # handed to the caller by result()
            self._error = e

    def result(self):
        """The digest string (None when disabled); re-raises what stopped the thread."""
        if self._thread is None:
            return None
        self._thread.join()
        if self._error is not None:
            raise self._error
        return self._value

    def record(self, store, image_id):
        """Set the digest as a property of the (now active) image."""
        value = self.result()
        if value is None:
            return
        store.update(image_id, properties={PROPERTY: value})
        log.info("image %s: %s=%s", image_id, PROPERTY, value)

    def close(self):
        self._cancel.set()
        if self._thread is not None:
            self._thread.join()
        if self._chain is not None:
            self._chain.close()
            self._chain = None

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()


def _same_file(a, b):
    try:
        return os.path.samefile(a, b)
    except OSError:
        return False


def verify_landed(record, leaf_path, subject, verify=True):
    """Compare the landed chain's digest with the record's property; return it (None: not checked).

    IntegrityError (naming both digests) when they differ.  Nothing is compared when the
    record has no digest, when it is of an algorithm this code does not compute, or when
    the caller opted out (``verify=False``).
    """
    expected = (record.get("properties") or {}).get(PROPERTY)
    if expected is None:
        return None
    if not verify:
        log.info("%s: content digest not verified (asked not to)", subject)
        return None
    if not _digest.is_comparable(expected):
        log.warning("%s: %s %r is not a %s digest; not compared", subject, PROPERTY, expected,
                    _digest.LABEL)
        return None
    with disk.for_path(leaf_path).open_chain(leaf_path) as chain:
        actual = str(disk.content_digest(chain))
    if actual != expected:
        raise IntegrityError(what="content digest", subject=subject + " (the landed disk, "
                             "read back through its chain)", expected=expected, actual=actual)
    log.info("%s: content digest verified: %s", subject, actual)
    return actual
