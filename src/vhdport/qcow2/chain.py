"""A QCOW2 backing chain, leaf first: read any guest range through it, write into the leaf.

Following a backing file reads another host file, so it is the caller's decision:
``Qcow2Chain.open(path)`` refuses an image that names one unless a ``backing``
resolver is given.  :func:`local_backing` is the resolver for files of one SR
directory (relative names against the child's directory, absolute names as they are).
"""

import os

from ..errors import ChainError, LimitError, Qcow2UnsupportedError
from .format import tables as t
from .image import Qcow2File

MAX_DEPTH = 30
READ_CHUNK = 4 * 1024 * 1024


def local_backing(child_path, name, backing_format):
    """Resolve a backing name the way qemu and SM do: relative to the child's directory."""
    if os.path.isabs(name):
        return name
    return os.path.join(os.path.dirname(os.path.abspath(child_path)), name)


class Qcow2Chain(object):
    """Open QCOW2 files from leaf to base; closes them all on ``close()``."""

    format = "qcow2"

    def __init__(self, images):
        self.images = images

    @classmethod
    def open(cls, path, writable=False, backing=None, max_depth=MAX_DEPTH):
        """Open ``path`` (writable if asked: only the leaf) and, with ``backing``, its backing chain.

        ``backing(child_path, name, format) -> path`` decides where (and whether) a backing
        file is opened; without it an image that names one is refused with ChainError.
        """
        images, seen = [], set()
        try:
            while True:
                real = os.path.realpath(path)
                if real in seen:
                    raise ChainError("{}: cycle in the backing chain at {}".format(
                        images[0].path if images else path, path))
                seen.add(real)
                image = Qcow2File.open(path, writable=writable and not images)
                images.append(image)
                if len(images) > max_depth:
                    raise LimitError("{}: backing chain deeper than {}".format(
                        images[0].path, max_depth))
                name = image.backing_name
                if not name:
                    break
                fmt = image.backing_format
                if fmt not in (None, "qcow2"):
                    raise Qcow2UnsupportedError("backing format {!r} (only qcow2 chains exist)"
                                                .format(fmt), path=image.path,
                                                field="backing_format")
                if backing is None:
                    raise ChainError("{}: has backing file {!r}; not followed (the caller must "
                                     "allow it by passing a backing resolver)".format(
                                         image.path, name))
                path = backing(image.path, name, fmt)
                if path is None or not os.path.isfile(path):
                    raise ChainError("{}: backing file {!r} not found".format(image.path, name))
        except Exception:
            for image in images:
                image.close()
            raise
        return cls(images)

    @property
    def leaf(self):
        return self.images[0]

    @property
    def base(self):
        return self.images[-1]

    @property
    def depth(self):
        return len(self.images)

    @property
    def virtual_size(self):
        return self.leaf.virtual_size

    @property
    def path(self):
        """The leaf's path: a QCOW2 file has no uuid, its identity is where it lives."""
        return self.leaf.path

    @property
    def backing(self):
        """The leaf's backing file name as stored (relative or absolute), or None."""
        return self.leaf.backing_name

    @property
    def parent_path(self):
        """Path of the opened backing file, or None (no backing file, or not followed)."""
        return self.images[1].path if len(self.images) > 1 else None

    @property
    def hidden(self):
        return self.leaf.hidden

    def paths(self):
        return [i.path for i in self.images]

    # ------------------------------------------------------------------ read

    def resolve(self, offset, length, level=0):
        """Yield (guest offset, length, kind, level, host) with unallocated runs resolved below.

        ``kind`` is data, compressed or zero (zero also for holes no level holds).
        """
        image = self.images[level]
        end = offset + length
        limit = min(end, image.virtual_size)
        if offset < limit:
            for guest, n, kind, host in image.map(offset, limit - offset):
                if kind == t.UNALLOCATED:
                    if level + 1 < len(self.images):
                        for run in self.resolve(guest, n, level + 1):
                            yield run
                    else:
                        yield guest, n, t.ZERO_KIND, level, None
                else:
                    yield guest, n, kind, level, host
        if limit < end:
            yield max(offset, limit), end - max(offset, limit), t.ZERO_KIND, level, None

    def read_into(self, offset, view):
        length = len(view)
        if offset < 0 or offset + length > self.virtual_size:
            raise ChainError("{}: read of {} bytes at {} outside the virtual size {}".format(
                self.leaf.path, length, offset, self.virtual_size))
        for guest, n, kind, level, host in self.resolve(offset, length):
            part = view[guest - offset:guest - offset + n]
            if kind == t.ZERO_KIND:
                part[:] = bytes(n)
            else:
                self.images[level].read_data(kind, host, guest, part)

    def read(self, offset, length):
        """``length`` guest bytes at ``offset`` as the VM sees them."""
        buf = bytearray(length)
        self.read_into(offset, memoryview(buf))
        return buf

    def extents(self, offset=0, length=None):
        """Yield merged (offset, length, kind) runs, kind "data" or "zero" (holes are zero)."""
        length = self.virtual_size - offset if length is None else length
        pending = None
        for guest, n, kind, _level, _host in self.resolve(offset, length):
            kind = t.ZERO_KIND if kind == t.ZERO_KIND else t.DATA
            if pending and pending[2] == kind and pending[0] + pending[1] == guest:
                pending[1] += n
                continue
            if pending:
                yield tuple(pending)
            pending = [guest, n, kind]
        if pending:
            yield tuple(pending)

    def allocated_ranges(self):
        """Sorted (offset, length) ranges that may hold non-zero data; the rest reads zeros.

        A generator, mapped as it is walked: a fragmented chain's map is never one list."""
        return ((off, n) for off, n, kind in self.extents() if kind == t.DATA)

    def iter_blocks(self, chunk=READ_CHUNK, start=0, end=None):
        end = self.virtual_size if end is None else end
        while start < end:
            n = min(chunk, end - start)
            yield start, self.read(start, n)
            start += n

    # ----------------------------------------------------------------- write

    def _fill_below(self, offset, length):
        """What the backing chain under the leaf holds at [offset, offset+length)."""
        buf = bytearray(length)
        below = Qcow2Chain(self.images[1:])
        limit = min(offset + length, below.virtual_size)
        if offset < limit:
            below.read_into(offset, memoryview(buf)[:limit - offset])
        return buf

    def write(self, offset, data):
        """Write into the leaf, copying partial clusters from the backing chain."""
        if offset < 0 or offset + len(data) > self.virtual_size:
            raise ChainError("{}: write of {} bytes at {} outside the virtual size {}".format(
                self.leaf.path, len(data), offset, self.virtual_size))
        self.leaf.write(offset, data, self._fill_below if self.depth > 1 else None)

    def write_zeroes(self, offset, length):
        self.leaf.write_zeroes(offset, length, self._fill_below if self.depth > 1 else None)

    def flush(self):
        self.leaf.flush()

    def close(self):
        for image in self.images:
            image.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()


def open_disk(path, writable=False, backing=None):
    """The format engine's face: an object with virtual_size, backing, hidden, extents, read, write."""
    return Qcow2Chain.open(path, writable=writable, backing=backing)
