"""A chain of VHD files, leaf first: read any virtual range through it, write into the leaf.

Parents are found through each child's locators, relative to the child's directory,
and must carry the uuid the child recorded: a wrong parent silently returns wrong data.
"""

import heapq
import itertools
import os

from ..errors import ChainError, LimitError
from ..format.bat import UNUSED
from .disk import SECTOR, VhdFile

MAX_DEPTH = 30


def file_identity(path):
    """(device, inode) of ``path``: the same file under any name (hard link, symlink,
    ``..``), which is what a cycle check must compare.  The real path if it cannot be stat'ed."""
    try:
        st = os.stat(path)
    except (OSError, ValueError):
        return os.path.realpath(path)
    return (st.st_dev, st.st_ino)


def resolve_parent(disk):
    """Return the absolute path of ``disk``'s parent file, or raise ChainError."""
    path = disk.parent_locator_path()
    if path is None:
        raise ChainError("{}: differencing disk has no usable parent locator".format(disk.path))
    if not os.path.isfile(path):
        raise ChainError("{}: parent {} (uuid {}) not found".format(disk.path, path, disk.parent_uuid))
    return path


def _disk_ranges(disk, size):
    """(offset, length) of ``disk``'s allocated blocks below ``size``, in order."""
    bs = disk.block_size
    entries = disk.bat.entries
    last = min(len(entries), (size + bs - 1) // bs)
    flags = map(UNUSED.__ne__, entries[:last])
    for block in itertools.compress(itertools.count(), flags):
        yield block * bs, min(bs, size - block * bs)


class Chain(object):
    """Open VHD files from leaf to base; closes them all on ``close()``."""

    def __init__(self, disks):
        self.disks = disks

    @classmethod
    def open(cls, leaf_path, writable=False, max_depth=MAX_DEPTH):
        """Open ``leaf_path`` (writable if asked: only the leaf) and all its ancestors."""
        disks = []
        seen = set()
        uuids = set()
        path = leaf_path
        try:
            while True:
                key = file_identity(path)
                if key in seen:
                    raise ChainError("{}: cycle in the chain at {} (a file that is already in "
                                     "the chain)".format(leaf_path, path))
                seen.add(key)
                disk = VhdFile.open(path, writable=writable and not disks)
                disks.append(disk)
                uuids.add(disk.uuid)
                if len(disks) > max_depth:
                    raise LimitError("{}: chain deeper than {} (XenServer's limit)".format(
                        leaf_path, max_depth))
                if not disk.is_differencing:
                    break
                if disk.parent_uuid in uuids:
                    raise ChainError("{}: cycle in the chain: {} records parent uuid {}, which "
                                     "is already in the chain".format(
                                         leaf_path, disk.path, disk.parent_uuid))
                parent_path = resolve_parent(disk)
                parent = VhdFile.open(parent_path)
                if parent.uuid != disk.parent_uuid:
                    parent.close()
                    raise ChainError(
                        "{}: parent {} has uuid {} but the child records {}; the chain is "
                        "broken (relink with set-parent)".format(
                            disk.path, parent_path, parent.uuid, disk.parent_uuid))
                parent.close()
                path = parent_path
        except Exception:
            for disk in disks:
                disk.close()
            raise
        return cls(disks)

    @property
    def leaf(self):
        return self.disks[0]

    @property
    def base(self):
        return self.disks[-1]

    @property
    def depth(self):
        return len(self.disks)

    @property
    def virtual_size(self):
        return self.leaf.virtual_size

    def paths(self):
        return [d.path for d in self.disks]

    # ------------------------------------------------------------------ read

    def _fill(self, level, sector, count, view):
        """Fill ``view`` (count sectors starting at ``sector``) from disks[level:]."""
        disk = self.disks[level]
        limit = disk.virtual_size // SECTOR
        if sector >= limit:
            return  # past a smaller ancestor's end: zeros
        if sector + count > limit:
            count = limit - sector
        for vs, n, at in disk.map_sectors(sector, count):
            pos = (vs - sector) * SECTOR
            part = view[pos:pos + n * SECTOR]
            if at is not None:
                disk.read_into(at, part)
            elif disk.is_differencing and level + 1 < len(self.disks):
                self._fill(level + 1, vs, n, part)
            # else: zeros, and the buffer is already zeroed

    def read(self, offset, length):
        """Return ``length`` virtual bytes at ``offset`` as the VM sees them."""
        if offset < 0 or length < 0 or offset + length > self.virtual_size:
            raise ChainError("{}: read of {} bytes at {} outside the virtual size {}".format(
                self.leaf.path, length, offset, self.virtual_size))
        first, last = offset // SECTOR, (offset + length + SECTOR - 1) // SECTOR
        buf = bytearray((last - first) * SECTOR)
        if last > first:
            self._fill(0, first, last - first, memoryview(buf))
        skip = offset - first * SECTOR
        if skip == 0 and length == len(buf):
            return buf
        return buf[skip:skip + length]

    def read_into(self, offset, view):
        """Fill ``view`` (whole sectors at a sector-aligned ``offset``) with virtual bytes.

        Lets a caller read into its own (e.g. page-aligned, reused) buffer.
        """
        length = len(view)
        if offset % SECTOR or length % SECTOR or offset < 0 \
                or offset + length > self.virtual_size:
            raise ChainError("{}: read_into of {} bytes at {}: not whole sectors inside the "
                             "virtual size {}".format(self.leaf.path, length, offset,
                                                      self.virtual_size))
        view[:] = bytes(length)
        if length:
            self._fill(0, offset // SECTOR, length // SECTOR, view)

    def iter_blocks(self, chunk=2 * 1024 * 1024, start=0, end=None):
        """Yield (offset, data) over the virtual disk in ``chunk``-sized pieces."""
        end = self.virtual_size if end is None else end
        offset = start
        while offset < end:
            n = min(chunk, end - offset)
            yield offset, self.read(offset, n)
            offset += n

    def allocated_ranges(self):
        """Sorted (offset, length) byte ranges some disk of the chain holds; the rest is zeros.

        Each disk's blocks come in order from its BAT, merged lazily: no list per block.
        """
        sources = []
        for disk in self.disks:
            if not disk.footer.is_dynamic:
                return [(0, self.virtual_size)]
            sources.append(_disk_ranges(disk, min(disk.virtual_size, self.virtual_size)))
        merged = []
        for off, n in heapq.merge(*sources):
            if merged and off <= merged[-1][0] + merged[-1][1]:
                last_off, last_n = merged[-1]
                merged[-1] = (last_off, max(last_n, off + n - last_off))
            else:
                merged.append((off, n))
        return merged

    # ----------------------------------------------------------------- write

    def write(self, offset, data):
        """Write ``data`` at virtual ``offset`` into the leaf (copy-on-write of edge sectors)."""
        leaf = self.leaf
        length = len(data)
        if offset < 0 or offset + length > self.virtual_size:
            raise ChainError("{}: write of {} bytes at {} outside the virtual size {}".format(
                leaf.path, length, offset, self.virtual_size))
        if length == 0:
            return
        first, last = offset // SECTOR, (offset + length + SECTOR - 1) // SECTOR
        head = offset - first * SECTOR
        if head == 0 and length % SECTOR == 0:
            leaf.write_sectors(first, data)
            return
        # partial sectors at the edges: merge with what the chain holds there now
        buf = bytearray((last - first) * SECTOR)
        view = memoryview(buf)
        self._fill(0, first, 1, view[:SECTOR])
        if last - 1 > first:
            self._fill(0, last - 1, 1, view[-SECTOR:])
        buf[head:head + length] = data
        leaf.write_sectors(first, buf)

    def flush(self):
        self.leaf.flush()

    def close(self):
        for disk in self.disks:
            disk.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()
