"""A digest of a disk's *virtual* contents, the same whatever format holds them.

blake2b-256 of every fixed 4 MiB block of the virtual disk (a last, shorter block
hashed at its real length), then blake2b-256 over a header (algorithm, block size,
virtual size) and those block digests in order.  A raw file, a VHD chain and a
QCOW2 chain with the same contents give the same string, e.g.
``blake2b-256/4MiB:<64 hex>``.

Holes are never read: a block no layer allocates takes the precomputed digest of a
zero block, and runs of them are fed to the outer hash in large slices, so a 2 TiB
disk holding 10 MiB costs about what the 10 MiB cost.  An allocated block that
reads as zeros hashes to the same value (it is the digest of the same bytes), so
the result does not depend on how a format chose to store zeros.
"""

import collections
import contextlib
import errno
import hashlib
import os
import threading

from ..errors import FormatError
from .base import SR_DIRECTORY

ALGORITHM = "blake2b-256"
BLOCK_SIZE = 4 << 20
LABEL = "{}/{}MiB".format(ALGORITHM, BLOCK_SIZE >> 20)
DIGEST_SIZE = 32
#: block digests fed to the outer hash per update in a zero run
_ZERO_RUN_BLOCKS = 8192
#: hashing threads: blake2b releases the GIL on big buffers, so blocks hash in parallel
DEFAULT_WORKERS = 4

_zero_lock = threading.Lock()
_zero = {}


def _new_hash():
    return hashlib.blake2b(digest_size=DIGEST_SIZE)


def _zero_block():
    """(zero block bytes, its digest, a run of that digest): made once, on first use."""
    with _zero_lock:
        if not _zero:
            block = bytes(BLOCK_SIZE)
            h = _new_hash()
            h.update(block)
            _zero["block"] = block
            _zero["digest"] = h.digest()
            _zero["run"] = _zero["digest"] * _ZERO_RUN_BLOCKS
        return _zero["block"], _zero["digest"], _zero["run"]


def header(virtual_size):
    """What the outer hash starts with: the digest names its own parameters."""
    return "vhdport content digest\nalgorithm={}\nblock_size={}\nvirtual_size={}\n".format(
        ALGORITHM, BLOCK_SIZE, virtual_size).encode("ascii")


class ContentDigest(object):
    """The result: ``str()`` is the self-describing string stores record."""

    __slots__ = ("virtual_size", "hexdigest")
    algorithm = ALGORITHM
    block_size = BLOCK_SIZE

    def __init__(self, virtual_size, hexdigest):
        self.virtual_size, self.hexdigest = virtual_size, hexdigest

    def __str__(self):
        return "{}:{}".format(LABEL, self.hexdigest)

    def __repr__(self):
        return "ContentDigest({}, virtual_size={})".format(self, self.virtual_size)

    def to_dict(self):
        return {"algorithm": self.algorithm, "block_size": self.block_size,
                "virtual_size": self.virtual_size, "digest": str(self)}


def is_comparable(text):
    """Whether a recorded digest string is one this code computes (same algorithm and block)."""
    return isinstance(text, str) and text.startswith(LABEL + ":")


class Cancelled(Exception):
    """The caller's ``cancel`` event was set: the digest was abandoned (not an error of the disk)."""


class RawDisk(object):
    """A plain file (or block device) as a disk: its bytes are the virtual contents.

    Allocated ranges come from SEEK_DATA / SEEK_HOLE where the filesystem has them;
    elsewhere the whole file counts as data (correct, only slower).
    """

    def __init__(self, path):
        self.path = path
        try:
            self._f = open(path, "rb", buffering=0)
        except OSError as e:
            raise FormatError("cannot open: {}".format(e.strerror), path=path)
        self.virtual_size = self._f.seek(0, os.SEEK_END)

    def allocated_ranges(self):
        size, fd = self.virtual_size, self._f.fileno()
        seek_data, seek_hole = getattr(os, "SEEK_DATA", None), getattr(os, "SEEK_HOLE", None)
        if seek_data is None:
            yield 0, size
            return
        pos = 0
        while pos < size:
            try:
                start = os.lseek(fd, pos, seek_data)
                end = min(os.lseek(fd, start, seek_hole), size)
            except OSError as e:
                if e.errno == errno.ENXIO:       # no data after pos
                    return
                if e.errno in (errno.EINVAL, errno.EOPNOTSUPP, errno.ENOTSUP):
                    yield pos, size - pos        # no hole support here: all of it is data
                    return
                raise FormatError("cannot map data and holes: {}".format(e.strerror),
                                  path=self.path, offset=pos)
            if start >= size:
                return
            yield start, end - start
            pos = end

    def read_into(self, offset, view):
        f = self._f
        f.seek(offset)
        done = 0
        while done < len(view):
            n = f.readinto(view[done:])
            if not n:
                raise FormatError("ended at {} bytes while reading {} bytes at {} (the file "
                                  "shrank?)".format(offset + done, len(view), offset),
                                  path=self.path, offset=offset + done)
            done += n

    def close(self):
        self._f.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()


def open_disk(path, backing=SR_DIRECTORY):
    """``path`` opened for reading its virtual contents: a chain of a known format, else raw.

    As qemu-img does, a file is raw when neither its name nor its first bytes show a
    known format (so a fixed VHD needs its ``.vhd`` name to be read as one).  ``backing``:
    where parents may be (see :mod:`vhdport.disk.base`).
    """
    from .registry import for_path

    RawDisk(path).close()   # an unreadable file fails here, not as "unknown format"
    try:
        fmt = for_path(path)
    except FormatError:
        return RawDisk(path)
    return fmt.open_chain(path, backing=backing)


def content_digest(source, workers=DEFAULT_WORKERS, cancel=None, backing=SR_DIRECTORY):
    """The ContentDigest of ``source``: a path, or an opened chain-like object.

    A chain-like object has ``virtual_size``, ``allocated_ranges()`` (sorted byte
    ranges that may hold data; the rest reads as zeros) and ``read_into(offset, view)``.
    ``cancel``: a threading.Event; when set, the digest stops with Cancelled.  ``backing``:
    where a path's parents may be (see :mod:`vhdport.disk.base`).
    """
    if isinstance(source, (str, bytes)) or hasattr(source, "__fspath__"):
        with contextlib.closing(open_disk(os.fsdecode(os.fspath(source)), backing)) as chain:
            return _digest(chain, workers, cancel)
    return _digest(source, workers, cancel)


def _hash_block(buf, length):
    """Digest of ``buf[:length]``; a verified all-zero block takes the precomputed one."""
    block, zero_digest, _ = _zero_block()
    if length == BLOCK_SIZE and buf == block:
        return zero_digest
    h = _new_hash()
    h.update(memoryview(buf)[:length])
    return h.digest()


class _Outer(object):
    """The outer hash, fed block digests in order; hashing of read blocks may run ahead."""

    def __init__(self, virtual_size, workers):
        self.size = virtual_size
        self.blocks = (virtual_size + BLOCK_SIZE - 1) // BLOCK_SIZE
        self.hash = _new_hash()
        self.hash.update(header(virtual_size))
        self.pool = None
        if workers and workers > 1:
            from concurrent.futures import ThreadPoolExecutor
            self.pool = ThreadPoolExecutor(max_workers=workers)
        self.depth = workers + 2 if self.pool else 1    # blocks read ahead of the hashing
        self.pending = collections.deque()
        self.free = []

    def block_length(self, index):
        return min(BLOCK_SIZE, self.size - index * BLOCK_SIZE)

    def zeros(self, first, end):
        """Blocks [first, end) are holes: their digests without reading a byte."""
        if first >= end:
            return
        self.drain()
        _block, zero_digest, run = _zero_block()
        if self.block_length(end - 1) < BLOCK_SIZE:    # the short last block
            self.zeros(first, end - 1)
            h = _new_hash()
            h.update(bytes(self.block_length(end - 1)))
            self.hash.update(h.digest())
            return
        count = end - first
        while count:
            n = min(count, _ZERO_RUN_BLOCKS)
            self.hash.update(run[:n * DIGEST_SIZE] if n < _ZERO_RUN_BLOCKS else run)
            count -= n

    def read_block(self, chain, index):
        length = self.block_length(index)
        buf = self.free.pop() if self.free else bytearray(BLOCK_SIZE)
        chain.read_into(index * BLOCK_SIZE, memoryview(buf)[:length])
        if self.pool is None:
            self.hash.update(_hash_block(buf, length))
            self.free.append(buf)
            return
        self.pending.append((self.pool.submit(_hash_block, buf, length), buf))
        while len(self.pending) >= self.depth:
            self._take_one()

    def _take_one(self):
        future, buf = self.pending.popleft()
        self.hash.update(future.result())
        self.free.append(buf)

    def drain(self):
        while self.pending:
            self._take_one()

    def close(self):
        if self.pool is not None:
            for future, _buf in self.pending:
                future.cancel()
            self.pool.shutdown(wait=True)

    def hexdigest(self):
        self.drain()
        return self.hash.hexdigest()


def _digest(chain, workers, cancel):
    size = chain.virtual_size
    outer = _Outer(size, workers)
    try:
        done = 0   # blocks before this one are in the outer hash (or queued for it)
        for offset, length in chain.allocated_ranges():
            if length <= 0 or offset >= size:
                continue
            first = max(offset // BLOCK_SIZE, done)
            last = min((offset + length - 1) // BLOCK_SIZE, outer.blocks - 1)
            if first > last:
                continue
            outer.zeros(done, first)
            for index in range(first, last + 1):
                if cancel is not None and cancel.is_set():
                    raise Cancelled()
                outer.read_block(chain, index)
            done = last + 1
        outer.zeros(done, outer.blocks)
        return ContentDigest(size, outer.hexdigest())
    finally:
        outer.close()
