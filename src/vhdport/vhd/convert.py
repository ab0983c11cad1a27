"""Raw images in and out of VHD, streaming with block-sized buffers (memory stays constant).

Imports skip all-zero blocks (a dynamic disk does not allocate them; a fixed disk
leaves them as holes), exports write a sparse raw file holding only what the chain
has and is not zero.
"""

import errno
import os

from ..errors import FormatError, IntegrityError, NoSpaceError
from ..format.header import DEFAULT_BLOCK_SIZE
from .chain import Chain
from .create import check_size, create_dynamic, create_fixed
from .disk import SECTOR, VhdFile
from .fastio import BackgroundSync, DirectWriter

CHUNK = 2 * 1024 * 1024


def _round_up(size):
    return (size + SECTOR - 1) // SECTOR * SECTOR


def _read_full(reader, buf):
    """Fill memoryview ``buf`` from ``reader``; return the bytes got (short only at EOF)."""
    got = 0
    readinto = getattr(reader, "readinto", None)
    while got < len(buf):
        if readinto is not None:
            n = readinto(buf[got:])
            if not n:
                break
            got += n
            continue
        piece = reader.read(len(buf) - got)
        if not piece:
            break
        buf[got:got + len(piece)] = piece
        got += len(piece)
    return got


class _RawFile(object):
    """A raw image file read straight into our buffer; holes found with SEEK_DATA are skipped
    without reading them (a sparse 2 TiB image with 10 MiB of data reads 10 MiB)."""

    _SEEK_DATA = getattr(os, "SEEK_DATA", None)

    def __init__(self, fileobj):
        self._f = fileobj
        self._fd = fileobj.fileno()

    def read(self, n):
        return self._f.read(n)

    def readinto(self, view):
        return self._f.readinto(view)

    def next_data(self, offset):
        """Offset of the first data at or after ``offset`` (None: only a hole follows).

        Where holes cannot be found, ``offset`` itself.  The position is left alone.
        """
        if self._SEEK_DATA is None:
            return offset
        here = self._f.tell()
        try:
            return os.lseek(self._fd, offset, self._SEEK_DATA)
        except OSError as e:
            return None if e.errno == errno.ENXIO else offset
        finally:
            os.lseek(self._fd, here, os.SEEK_SET)

    def seek(self, offset):
        self._f.seek(offset)


def _fill_vhd(disk, reader, data_size, block_size, source):
    """Copy ``data_size`` bytes from ``reader`` into new ``disk``, block by block, zeros skipped."""
    buf = bytearray(block_size)
    next_data = getattr(reader, "next_data", None)
    syncer = BackgroundSync(disk._f.fileno())  # the same package: the file's descriptor
    try:
        _copy_blocks(disk, reader, data_size, block_size, source, buf, next_data, syncer)
    finally:
        syncer.wait()
    if reader.read(1):
        raise IntegrityError(what="length", subject=source,
                             expected="{} bytes".format(data_size),
                             actual="more (the stream goes on past the declared size)")
    disk.flush()


def _copy_blocks(disk, reader, data_size, block_size, source, buf, next_data, syncer):
    zeros = bytes(block_size)
    view = memoryview(buf)
    total = disk.virtual_size
    dynamic = disk.footer.is_dynamic
    offset = 0
    while offset < total:
        want = min(block_size, total - offset)
        expect = min(want, max(0, data_size - offset))
        if next_data is not None and expect == want:
            at = next_data(offset)
            if at is None or at >= offset + want:
                # a hole up to the block holding the next data: nothing to read or allocate
                offset = total if at is None else min(total, at // block_size * block_size)
                reader.seek(offset)
                continue
        got = _read_full(reader, view[:expect])
        if got < expect:
            raise IntegrityError(what="length", subject=source,
                                 expected="{} bytes".format(data_size),
                                 actual="{} bytes (stream ended early)".format(offset + got))
        if expect < want:
            buf[expect:want] = zeros[:want - expect]   # pad the last sector
        if buf[:want] != zeros[:want]:
            if dynamic:
                disk.append_full_block(offset // block_size, view[:want])
            else:
                disk.pwrite(offset, view[:want])
            syncer.wrote(want)
        offset += want


def _import(reader, out_path, data_size, fixed, block_size, source):
    size = _round_up(data_size)
    check_size(size, out_path)
    if fixed:
        new_uuid = create_fixed(out_path, size)
    else:
        new_uuid = create_dynamic(out_path, size, block_size)
    try:
        with VhdFile.open(out_path, writable=True) as disk:
            _fill_vhd(disk, reader, data_size, block_size if not fixed else CHUNK, source)
    except BaseException:
        os.unlink(out_path)
        raise
    return new_uuid


def import_raw(raw_path, out_path, fixed=False, block_size=DEFAULT_BLOCK_SIZE):
    """Make a VHD at ``out_path`` (which must not exist) holding raw image ``raw_path``.

    The virtual size is the raw size rounded up to 512 bytes.  Returns the new uuid.
    """
    try:
        reader = open(raw_path, "rb", buffering=0)
    except OSError as e:
        raise FormatError("cannot open raw image: {}".format(e.strerror), path=raw_path)
    with reader:
        data_size = os.fstat(reader.fileno()).st_size
        return _import(_RawFile(reader), out_path, data_size, fixed, block_size, raw_path)


def import_raw_stream(reader, out_path, virtual_size, block_size=DEFAULT_BLOCK_SIZE):
    """Make a dynamic VHD from exactly ``virtual_size`` bytes read from ``reader.read(n)``.

    The size is rounded up to 512 bytes (zero padding).  A stream shorter or longer
    than ``virtual_size`` raises IntegrityError and leaves no file behind.
    """
    return _import(reader, out_path, virtual_size, False, block_size,
                   "raw stream for {}".format(out_path))


def export_raw(vhd_path, out_path):
    """Write the virtual disk of ``vhd_path`` (through its chain) to a new sparse raw file.

    Only ranges some disk of the chain allocates are read, and only non-zero
    HOLE_GRAIN pieces are written -- with direct I/O from a writer thread where the
    filesystem allows (see :mod:`.fastio`).  Returns the virtual size.
    """
    with Chain.open(vhd_path) as chain:
        size = chain.virtual_size
        try:
            fd = os.open(out_path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
        except OSError as e:
            raise FormatError("cannot create raw image: {}".format(e.strerror), path=out_path)
        try:
            try:
                writer = DirectWriter(fd, buffer_size=CHUNK)
            except BaseException:
                os.close(fd)
                raise
            try:
                _copy_ranges(chain, writer)
                writer.finish(size)
            finally:
                writer.close()
        except OSError as e:
            os.unlink(out_path)
            if e.errno in (errno.ENOSPC, errno.EDQUOT):
                raise NoSpaceError(path=out_path)
            raise
        except BaseException:
            os.unlink(out_path)
            raise
    return size


def _copy_ranges(chain, writer):
    for start, length in chain.allocated_ranges():
        end = start + length
        offset = start
        while offset < end:
            # chunk boundaries aligned to CHUNK so reads follow the chain's blocks
            n = min(end, (offset // CHUNK + 1) * CHUNK) - offset
            buf = writer.take()
            view = memoryview(buf)
            try:
                chain.read_into(offset, view[:n])
            finally:
                view.release()
            writer.submit(buf, offset, n)   # zero pieces are skipped there (holes)
            offset += n
