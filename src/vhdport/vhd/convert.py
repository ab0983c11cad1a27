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

CHUNK = 2 * 1024 * 1024
#: granularity of holes left in an exported raw file
HOLE_GRAIN = 64 * 1024


def _round_up(size):
    return (size + SECTOR - 1) // SECTOR * SECTOR


def _read_full(reader, buf):
    """Fill memoryview ``buf`` from ``reader.read``; return the bytes got (short only at EOF)."""
    got = 0
    while got < len(buf):
        piece = reader.read(len(buf) - got)
        if not piece:
            break
        buf[got:got + len(piece)] = piece
        got += len(piece)
    return got


def _fill_vhd(disk, reader, data_size, block_size, source):
    """Copy ``data_size`` bytes from ``reader`` into new ``disk``, block by block, zeros skipped."""
    buf = bytearray(block_size)
    zeros = bytes(block_size)
    view = memoryview(buf)
    total = disk.virtual_size
    dynamic = disk.footer.is_dynamic
    offset = 0
    while offset < total:
        want = min(block_size, total - offset)
        expect = min(want, max(0, data_size - offset))
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
        offset += want
    if reader.read(1):
        raise IntegrityError(what="length", subject=source,
                             expected="{} bytes".format(data_size),
                             actual="more (the stream goes on past the declared size)")
    disk.flush()


def _import(reader, out_path, data_size, fixed, block_size, source):
    size = _round_up(data_size)
    check_size(size)
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
        reader = open(raw_path, "rb")
    except OSError as e:
        raise FormatError("cannot open raw image: {}".format(e.strerror), path=raw_path)
    with reader:
        data_size = os.fstat(reader.fileno()).st_size
        return _import(reader, out_path, data_size, fixed, block_size, raw_path)


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
    chunks are written.  Returns the virtual size.
    """
    with Chain.open(vhd_path) as chain:
        size = chain.virtual_size
        try:
            fd = os.open(out_path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
        except OSError as e:
            raise FormatError("cannot create raw image: {}".format(e.strerror), path=out_path)
        try:
            with os.fdopen(fd, "wb", buffering=0) as out:
                out.truncate(size)
                _copy_ranges(chain, out, out_path)
                os.fsync(out.fileno())
        except BaseException:
            os.unlink(out_path)
            raise
    return size


def _copy_ranges(chain, out, out_path):
    zeros = bytes(CHUNK)
    for start, length in chain.allocated_ranges():
        end = start + length
        offset = start
        while offset < end:
            # chunk boundaries aligned to CHUNK so reads follow the chain's blocks
            n = min(end, (offset // CHUNK + 1) * CHUNK) - offset
            data = chain.read(offset, n)
            if data != zeros[:n]:
                _write_nonzero(out.fileno(), data, offset, out_path, zeros)
            offset += n


def _write_nonzero(fd, data, offset, path, zeros):
    """Write ``data`` at ``offset`` leaving all-zero HOLE_GRAIN pieces as holes."""
    view = memoryview(data)
    start = None    # start of the pending run of non-zero pieces
    for pos in range(0, len(data), HOLE_GRAIN):
        piece = data[pos:pos + HOLE_GRAIN]
        if piece != zeros[:len(piece)]:
            if start is None:
                start = pos
        elif start is not None:
            _pwrite_all(fd, view[start:pos], offset + start, path)
            start = None
    if start is not None:
        _pwrite_all(fd, view[start:], offset + start, path)


def _pwrite_all(fd, view, offset, path):
    try:
        while len(view):
            done = os.pwrite(fd, view, offset)
            view, offset = view[done:], offset + done
    except OSError as e:
        if e.errno in (errno.ENOSPC, errno.EDQUOT):
            raise NoSpaceError(path=path)
        raise
