"""Conversions raw <-> QCOW2 and QCOW2 chain -> raw, streaming, holes and zeros skipped.

``copy_disk`` moves the data of any source that offers ``virtual_size``,
``allocated_ranges()`` and ``read(offset, n)`` (a QCOW2 chain, a VHD chain, a raw file)
into any target with ``write(offset, data)``: memory is one chunk whatever the size, and
runs of zeros are never written, so the target stays sparse.
"""

import os
import queue
import threading

from ..errors import Qcow2FormatError
from .chain import Qcow2Chain
from .create import DEFAULT_CLUSTER_SIZE, create
from .export import GRANULE, copy_to_raw, nonzero_spans

CHUNK = 4 * 1024 * 1024


def _chunks(source, chunk):
    for offset, length in source.allocated_ranges():
        end = offset + length
        while offset < end:
            take = min(chunk, end - offset)
            yield offset, source.read(offset, take)
            offset += take


def _prefetched(items, depth=2):
    """Iterate ``items`` produced by a helper thread, at most ``depth`` ahead.

    Reading (and the Python work of mapping clusters) then overlaps the target's
    writes; memory stays ``depth + 1`` chunks.  An exception in the producer is
    re-raised in the consumer; a consumer that stops early stops the producer.
    """
    slots = queue.Queue(maxsize=depth)
    done = object()
    stop = threading.Event()

    def produce():
        try:
            for item in items:
                while not stop.is_set():
                    try:
                        slots.put(item, timeout=0.1)
                        break
                    except queue.Full:
                        continue
                if stop.is_set():
                    return
            slots.put(done)
        except BaseException as e:          # handed to the consumer
            slots.put(e)

    worker = threading.Thread(target=produce, name="qcow2-prefetch", daemon=True)
    worker.start()
    try:
        while True:
            item = slots.get()
            if item is done:
                return
            if isinstance(item, BaseException):
                raise item
            yield item
    finally:
        stop.set()
        while worker.is_alive():
            try:
                slots.get(timeout=0.1)
            except queue.Empty:
                pass
        worker.join()


def copy_disk(source, target, granule=GRANULE, chunk=CHUNK, prefetch=True):
    """Write every non-zero granule of ``source`` at the same offset into ``target``.

    ``prefetch`` reads in a helper thread; pass False when ``source`` and ``target``
    share an open file (the same image), which must not be used from two threads.
    """
    items = _chunks(source, chunk)
    for offset, data in (_prefetched(items) if prefetch else items):
        for lo, hi in nonzero_spans(data, granule):
            target.write(offset + lo, memoryview(data)[lo:hi])


class RawFile(object):
    """A raw image as a source: its allocated ranges come from SEEK_DATA / SEEK_HOLE."""

    def __init__(self, path):
        self.path = path
        self._f = open(path, "rb")
        self.virtual_size = os.fstat(self._f.fileno()).st_size

    def allocated_ranges(self):
        fd, size = self._f.fileno(), self.virtual_size
        if not hasattr(os, "SEEK_DATA"):
            return [(0, size)] if size else []
        ranges, pos = [], 0
        while pos < size:
            try:
                data = os.lseek(fd, pos, os.SEEK_DATA)
            except OSError:
                break               # ENXIO: only a hole is left
            hole = os.lseek(fd, data, os.SEEK_HOLE)
            ranges.append((data, min(hole, size) - data))
            pos = hole
        return ranges

    def read(self, offset, length):
        self._f.seek(offset)
        return self._f.read(length)

    def close(self):
        self._f.close()


def export_raw(path, out_path, backing=None):
    """Write the chain ending at ``path`` as a sparse raw file ``out_path`` (must not exist)."""
    with Qcow2Chain.open(path, backing=backing) as chain:
        try:
            fd = os.open(out_path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
        except OSError as e:
            raise Qcow2FormatError("cannot create: {}".format(e.strerror), path=out_path)
        try:
            try:
                os.ftruncate(fd, chain.virtual_size)
                copy_to_raw(chain, fd)
                os.fsync(fd)
            finally:
                os.close(fd)
        except BaseException:
            os.unlink(out_path)
            raise


def import_disk(source, out_path, cluster_size=DEFAULT_CLUSTER_SIZE, preallocate=False):
    """A new QCOW2 ``out_path`` holding what ``source`` reads as (any disk with extents)."""
    create(out_path, source.virtual_size, cluster_size=cluster_size, preallocate=preallocate)
    try:
        with Qcow2Chain.open(out_path, writable=True) as image:
            copy_disk(source, image, granule=min(cluster_size, GRANULE) if not preallocate
                      else CHUNK)
            image.flush()
    except BaseException:
        os.unlink(out_path)
        raise


def import_raw(raw_path, out_path, cluster_size=DEFAULT_CLUSTER_SIZE, preallocate=False):
    source = RawFile(raw_path)
    try:
        import_disk(source, out_path, cluster_size, preallocate)
    finally:
        source.close()


class _Stream(object):
    """A forward-only reader seen as a source covering the whole disk."""

    def __init__(self, reader, size):
        self.reader, self.virtual_size, self.pos = reader, size, 0

    def allocated_ranges(self):
        return [(0, self.virtual_size)] if self.virtual_size else []

    def read(self, offset, length):
        buf = bytearray()
        while len(buf) < length:
            data = self.reader.read(length - len(buf))
            if not data:
                raise Qcow2FormatError("stream ended at byte {} of {}".format(
                    offset + len(buf), self.virtual_size))
            buf += data
        return buf


def import_raw_stream(reader, out_path, virtual_size, cluster_size=DEFAULT_CLUSTER_SIZE):
    import_disk(_Stream(reader, virtual_size), out_path, cluster_size)

