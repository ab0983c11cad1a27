"""Images that are one disk (a bare disk image, a raw image) landed in staging as an SR disk.

Two steps, so the store's hash is checked in between: :func:`receive` reads the stream
into staging while the caller hashes it; :meth:`Received.finish`, called once the bytes
matched the store's record, makes the disk the SR takes.  A format that must be read at
random (QCOW2) is spooled into a file first -- after its first cluster was inspected, so
an image naming a backing file, an external data file or encryption is refused before a
byte of it is written, let alone opened -- then checked and adopted or rewritten.  A raw
image lands as the format SM would pick for its size unless ``image_format`` says.
"""

import errno
import logging
import os

from .. import bundle, disk
from ..bundle.reader import Landing, free_bytes
from ..disk import convert as conversions
from ..errors import IntegrityError, NoSpaceError, StoreError
from ..fsutil import fsync_dir

log = logging.getLogger(__name__)

CHUNK = 1 << 20
#: re-check the staging filesystem's free space after this many spooled bytes
SPACE_CHECK_EVERY = 64 << 20


class Received(object):
    """What :func:`receive` left in staging; :meth:`finish` gives the staged chain's paths."""

    def __init__(self, paths=None, finish=None):
        self._paths = paths
        self._finish = finish

    def finish(self):
        if self._finish is not None:
            self._paths, self._finish = self._finish(), None
        return self._paths


def receive_disk(fmt, reader, staging_dir, record, image_format, name):
    """A bare disk image of ``fmt``: spooled and checked later if random access, else streamed."""
    if conversions.random_access(fmt):
        return _spool_store_image(fmt, reader, staging_dir, record, image_format, name)
    if image_format is not None and disk.by_name(image_format) is not fmt:
        raise StoreError("{} is a bare {} image; it lands as it is (image format {} is "
                         "for raw and random-access images)".format(name, fmt.name,
                                                                   image_format))
    return Received(bundle.extract_single(reader, staging_dir, fmt))


def receive_raw(reader, staging_dir, record, image_format, name):
    """A raw image: the disk format SM would pick for its size (or ``image_format``)."""
    size = record.get("size")
    if not size:
        raise StoreError("{} is raw but records no size; vhdport needs it to make a disk".format(
            name))
    target = conversions.format_for_size(size, image_format, name)
    staged = bundle.extract_raw(reader, staging_dir, size, target)
    conversions.make_visible(target, staged[0])
    return Received(staged)


def _spool_store_image(fmt, reader, staging_dir, record, image_format, name):
    head = reader.peek(bundle.SNIFF_SIZE)
    sniffed = bundle.sniff(head)
    if sniffed != fmt.name:
        raise StoreError("{} is recorded as a bare {} image but its bytes look like {}".format(
            name, fmt.name, sniffed))
    head = reader.peek(max(len(head), conversions.store_image_head_bytes(fmt, head)))
    # refused here, from the first cluster: nothing written, nothing opened
    virtual_size = conversions.refuse_hostile_head(fmt, head, name)
    target = conversions.format_for_size(virtual_size, image_format or fmt.name, name)
    spooled = _spool(reader, staging_dir, record, name)

    def finish():
        out = os.path.join(staging_dir, target.file_name(0))
        try:
            how = conversions.land_store_image(spooled, fmt, target, out, name,
                                               free_bytes(staging_dir))
        except BaseException:
            for path in (spooled, out):
                if os.path.lexists(path):
                    os.unlink(path)
            raise
        fsync_dir(staging_dir)
        log.info("%s: %s as a %s disk", name, how, target.name)
        return [out]

    return Received(finish=finish)


def _spool(reader, staging_dir, record, name):
    """Copy the stream to a temp file in staging (zeros as holes), at most the recorded size."""
    limit = record.get("size")
    if limit is not None and limit > free_bytes(staging_dir):
        raise NoSpaceError(path="{} ({} needs {} bytes, {} free)".format(
            staging_dir, name, limit, free_bytes(staging_dir)))
    landing = Landing(staging_dir)
    temp, fd = landing.new_temp()
    try:
        try:
            out = disk.SequentialWriter(fd)
        except BaseException:
            os.close(fd)
            raise
        try:
            _copy_bounded(reader, out, limit, staging_dir, name)
            out.finish()
        finally:
            out.close()
    except OSError as e:
        landing.discard()
        if e.errno in (errno.ENOSPC, errno.EDQUOT):
            raise NoSpaceError(path=temp)
        raise
    except BaseException:
        landing.discard()
        raise
    return temp


def _copy_bounded(reader, out, limit, staging_dir, name):
    written, checked = 0, 0
    while True:
        data = reader.read(CHUNK)
        if not data:
            return
        written += len(data)
        if limit is not None and written > limit:
            # a stream longer than its record: stop now (it may never end)
            raise IntegrityError(what="size", subject="{} (the stream runs past its recorded "
                                 "size)".format(name), expected=limit, actual=written)
        if limit is None and written - checked >= SPACE_CHECK_EVERY:
            checked = written
            if free_bytes(staging_dir) < SPACE_CHECK_EVERY:
                raise NoSpaceError(path="{} (spooling {})".format(staging_dir, name))
        out.write(data)
