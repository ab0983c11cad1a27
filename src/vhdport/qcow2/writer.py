"""Writing one QCOW2 file: cluster allocation, refcounts, L1/L2 updates, header rewrites.

Ordering is qemu's: a new cluster's refcount, then its data, then the L2 entry that
makes it visible, then the L1 entry for a new L2 table.  A crash in between leaves at
worst a leaked cluster (``qemu-img check`` reports a leak, never a corruption).  Clusters
are only appended at the end of the file; freed ones are left at refcount 0.
With ``always_new`` a write never overwrites a cluster in place: it writes a fresh
cluster, syncs, then flips the L2 entry (one sector write) -- every guest cluster reads
either its old or its new contents after a crash.
"""

import errno
import os
import struct

from ..errors import NoSpaceError, Qcow2CorruptError, Qcow2UnsupportedError, ReadOnlyError
from .format import tables as t
from .format.header import EXT_BITMAPS, INCOMPAT_DIRTY

_U64 = struct.Struct(">Q")
_REFTABLE_FIELDS = struct.Struct(">QI")
REFBLOCK_CACHE = 32
MAX_BATCH_CLUSTERS = 256


class Writes(object):
    """Mixed into :class:`Qcow2File`; all methods need it opened writable."""

    always_new = False

    def _need_writable(self, action):
        if not self.writable:
            raise ReadOnlyError(path=self.path, action=action)

    def pwrite(self, offset, data):
        try:
            fd = self._f.fileno()
            view = memoryview(data)
            at = offset
            while len(view):
                done = os.pwrite(fd, view, at)
                view = view[done:]
                at += done
        except OSError as e:
            if e.errno in (errno.ENOSPC, errno.EDQUOT):
                raise NoSpaceError(path=self.path)
            raise
        self.file_size = max(self.file_size, offset + len(data))

    def flush(self):
        if self._f is not None and self.writable:
            os.fsync(self._f.fileno())

    def _begin_write(self):
        self._need_writable("write")
        h = self.header
        if h.incompatible_features & INCOMPAT_DIRTY:
            raise Qcow2UnsupportedError("dirty image (lazy refcounts not flushed): repair with "
                                        "qemu-img check -r all before writing", path=self.path,
                                        offset=72, field="incompatible_features")
        if self.snapshots:
            raise Qcow2UnsupportedError("writing an image with internal snapshots is not "
                                        "supported", path=self.path, offset=60,
                                        field="nb_snapshots")
        if h.extension(EXT_BITMAPS) is not None:
            raise Qcow2UnsupportedError("image holds persistent dirty bitmaps, which a write "
                                        "would make stale; remove them first (qemu-img bitmap "
                                        "--remove)", path=self.path, field="extensions")
        if h.autoclear_features:
            # we do not maintain bitmaps: clear the bits so nobody trusts stale ones
            h.autoclear_features = 0
            self.pwrite(88, bytes(8))
        if self._reftable is None:
            self._load_reftable()

    # ------------------------------------------------------------- refcounts

    def _load_reftable(self):
        h = self.header
        self._reftable_offset = h.refcount_table_offset
        size = h.refcount_table_clusters * self.cluster_size
        raw = self._read(h.refcount_table_offset, size)
        self._reftable = bytearray(raw) + bytearray(size - len(raw))
        cs = self.cluster_size
        end = max(self.file_size, h.refcount_table_offset + size)
        self._next_free = (end + cs - 1) // cs * cs
        self._rb_entries = cs * 8 // h.refcount_bits

    def _refblock_offset(self, index):
        if index >= len(self._reftable) // 8:
            return 0
        entry = t.read_u64(self._reftable, index)
        off = entry & ~t.REFTABLE_RESERVED
        if entry & t.REFTABLE_RESERVED or off % self.cluster_size or off >= self._next_free:
            raise Qcow2CorruptError("refcount table entry {} (0x{:016x}) unaligned or past the end "
                                    "of the file".format(index, entry), path=self.path,
                                    offset=self._reftable_offset + index * 8,
                                    field="refcount_table")
        return off

    def _refblock(self, offset):
        block = self._refblocks.get(offset)
        if block is None:
            raw = self._read(offset, self.cluster_size)
            block = bytearray(raw) + bytearray(self.cluster_size - len(raw))
            self._refblocks[offset] = block
            while len(self._refblocks) > REFBLOCK_CACHE:
                self._refblocks.popitem(last=False)
        else:
            self._refblocks.move_to_end(offset)
        return block

    def refcount(self, cluster):
        if self._reftable is None:
            self._load_reftable()
        block_index, index = divmod(cluster, self._rb_entries)
        off = self._refblock_offset(block_index)
        if not off:
            return 0
        return t.refcount_get(self._refblock(off), index, self.header.refcount_order)

    def set_refcount(self, cluster, value):
        block_index, index = divmod(cluster, self._rb_entries)
        off = self._refblock_offset(block_index)
        if not off:
            if value == 0:
                return
            off = self._new_refblock(block_index)
        block = self._refblock(off)
        try:
            at, raw = t.refcount_set(block, index, self.header.refcount_order, value)
        except ValueError:
            raise Qcow2UnsupportedError("refcount of cluster {} would exceed {} bits".format(
                cluster, self.header.refcount_bits), path=self.path, field="refcount")
        self.pwrite(off + at, raw)

    def _claim(self, count):
        start = self._next_free
        self._next_free += count * self.cluster_size
        return start

    def _new_refblock(self, block_index):
        if block_index >= len(self._reftable) // 8:
            self._grow_reftable(block_index + 1)
            off = self._refblock_offset(block_index)
            if off:     # growing the table made this very block for its own clusters
                return off
        off = self._claim(1)
        self.pwrite(off, bytes(self.cluster_size))
        self._refblocks[off] = bytearray(self.cluster_size)
        self._refblock_clusters.add(off // self.cluster_size)
        self._set_reftable_entry(block_index, off)
        self.set_refcount(off // self.cluster_size, 1)
        return off

    def _set_reftable_entry(self, index, value):
        _U64.pack_into(self._reftable, index * 8, value)
        self.pwrite(self._reftable_offset + index * 8, _U64.pack(value))

    def _grow_reftable(self, entries):
        cs = self.cluster_size
        old_offset, old_clusters = self._reftable_offset, len(self._reftable) // cs
        clusters = max(old_clusters * 2, (entries * 8 + cs - 1) // cs + 1)
        new_offset = self._claim(clusters)
        self._reftable = self._reftable + bytearray(clusters * cs - len(self._reftable))
        self._reftable_offset = new_offset
        for i in range(clusters):
            self.set_refcount(new_offset // cs + i, 1)
        self.pwrite(new_offset, self._reftable)
        self.flush()
        self.header.refcount_table_offset = new_offset
        self.header.refcount_table_clusters = clusters
        self.pwrite(48, _REFTABLE_FIELDS.pack(new_offset, clusters))
        self.flush()
        self.replace_fixed("refcount_table", new_offset, new_offset + clusters * cs)
        for i in range(old_clusters):
            self.set_refcount(old_offset // cs + i, 0)

    def allocate(self, count):
        """Host offset of ``count`` new contiguous clusters, each with refcount 1."""
        start = self._claim(count)
        cluster = start // self.cluster_size
        order = self.header.refcount_order
        while count:
            block_index, index = divmod(cluster, self._rb_entries)
            if not self._refblock_offset(block_index):
                self.set_refcount(cluster, 1)        # creates the block (and counts it)
                cluster, count = cluster + 1, count - 1
                continue
            off = self._refblock_offset(block_index)
            block = self._refblock(off)
            n = min(count, self._rb_entries - index)
            lo = hi = None
            for i in range(index, index + n):
                at, raw = t.refcount_set(block, i, order, 1)
                lo = at if lo is None else lo
                hi = at + len(raw)
            self.pwrite(off + lo, block[lo:hi])       # one write per refcount block
            cluster, count = cluster + n, count - n
        return start

    def free_host(self, kind, host):
        """Drop one reference to the host cluster(s) of a data or compressed run."""
        cs = self.cluster_size
        if kind == t.DATA:
            first = last = host // cs
        elif kind == t.COMPRESSED_KIND:
            off, span = host
            first, last = off // cs, (off + span - 1) // cs
        else:
            return
        for cluster in range(first, last + 1):
            count = self.refcount(cluster)
            if count:
                self.set_refcount(cluster, count - 1)

    # --------------------------------------------------------------- mapping

    def set_entry(self, cluster, entry, bitmap=0):
        """Point guest ``cluster`` at ``entry`` (allocating its L2 table if needed)."""
        self.set_entries(cluster, [(entry, bitmap)])

    def set_entries(self, cluster, entries):
        """Point guest clusters from ``cluster`` on at ``entries`` [(entry, bitmap)]: one write
        per L2 table touched."""
        size = t.l2_entry_size(self.extended)
        while entries:
            l1i, l2i = divmod(cluster, self.l2_entries)
            l2 = self.l1_entry(l1i) & t.OFFSET_MASK
            if not l2:
                l2 = self.allocate(1)
                self.pwrite(l2, bytes(self.cluster_size))
                self._l2_cache[l2] = bytearray(self.cluster_size)
                self._note_scanned(l2 // self.cluster_size)
                self._set_l1_entry(l1i, l2 | t.COPIED)
            n = min(len(entries), self.l2_entries - l2i)
            raw = b"".join(t.pack_l2_entry(e, b, self.extended) for e, b in entries[:n])
            table = self.l2_table(l2)
            for e, _b in entries[:n]:
                if e & t.OFFSET_MASK and not e & t.COMPRESSED:
                    self._note_data_cluster((e & t.OFFSET_MASK) // self.cluster_size)
            table[l2i * size:l2i * size + len(raw)] = raw
            self.pwrite(l2 + l2i * size, raw)
            cluster, entries = cluster + n, entries[n:]

    def _note_data_cluster(self, cluster):
        if cluster >> 3 >= len(self._data_clusters):
            self._data_clusters += bytearray((cluster >> 3) - len(self._data_clusters) + 1)
        self._data_clusters[cluster >> 3] |= 1 << (cluster & 7)

    def _note_scanned(self, cluster):
        if cluster >> 3 >= len(self._scanned_l2):
            self._scanned_l2 += bytearray((cluster >> 3) - len(self._scanned_l2) + 1)
        self._scanned_l2[cluster >> 3] |= 1 << (cluster & 7)

    def _set_l1_entry(self, index, value):
        _U64.pack_into(self._l1, index * 8, value)
        self.pwrite(self.header.l1_table_offset + index * 8, _U64.pack(value))

    def _data_entry(self, host):
        return host | t.COPIED, (t.ALL_SUBCLUSTERS if self.extended else 0)

    def cluster_content(self, cluster, fill):
        """What guest ``cluster`` reads as now (``fill(offset, n)`` supplies unallocated parts)."""
        cs = self.cluster_size
        base = cluster * cs
        buf = bytearray(cs)
        view = memoryview(buf)
        for start, n, kind, host in self.classify(cluster):
            lo, hi = base + start, min(base + start + n, self.virtual_size)
            if lo >= hi:
                continue
            part = view[start:start + hi - lo]
            if kind in (t.DATA, t.COMPRESSED_KIND):
                self.read_data(kind, host, lo, part)
            elif kind == t.UNALLOCATED and fill is not None:
                part[:] = fill(lo, hi - lo)
        return buf

    # ----------------------------------------------------------------- write

    def write(self, offset, data, fill=None):
        """Write ``data`` at guest ``offset``; ``fill`` supplies backing data for partial clusters."""
        self._begin_write()
        if offset < 0 or offset + len(data) > self.virtual_size:
            raise Qcow2CorruptError("write of {} bytes at {} outside the virtual size {}".format(
                len(data), offset, self.virtual_size), path=self.path)
        cs = self.cluster_size
        view = memoryview(data).cast("B") if not isinstance(data, memoryview) else data
        pos, end = 0, len(data)
        while pos < end:
            cluster = (offset + pos) // cs
            within = (offset + pos) - cluster * cs
            take = min(cs - within, end - pos)
            runs = self.classify(cluster)
            entry = self.cluster_entry(cluster)[0]
            in_place = (not self.always_new and len(runs) == 1 and runs[0][2] == t.DATA
                        and entry & t.COPIED)
            if in_place:
                self.pwrite(runs[0][3] + within, view[pos:pos + take])
                pos += take
                continue
            if within == 0 and take == cs:
                count = self._whole_run(offset + pos, end - pos)
                self._write_new(cluster, view[pos:pos + count * cs], count)
                pos += count * cs
                continue
            buf = self.cluster_content(cluster, fill)
            buf[within:within + take] = view[pos:pos + take]
            self._write_new(cluster, buf, 1)
            pos += take

    def _whole_run(self, guest, length):
        """How many whole clusters from ``guest`` can go to fresh clusters in one write."""
        cs = self.cluster_size
        count = 1
        while count < MAX_BATCH_CLUSTERS and (count + 1) * cs <= length:
            runs = self.classify(guest // cs + count)
            entry = self.cluster_entry(guest // cs + count)[0]
            if not self.always_new and len(runs) == 1 and runs[0][2] == t.DATA \
                    and entry & t.COPIED:
                break
            count += 1
        return count

    def _write_new(self, cluster, data, count):
        cs = self.cluster_size
        olds = [self.classify(cluster + i) for i in range(count)]
        host = self.allocate(count)
        self.pwrite(host, data)
        if self.always_new:
            self.flush()
        self.set_entries(cluster, [self._data_entry(host + i * cs) for i in range(count)])
        for runs in olds:
            self._free_runs(runs)

    def _free_runs(self, runs):
        """Drop the host cluster a guest cluster's old runs held (data, compressed, or a
        preallocated zero cluster); extended L2 subclusters share one host cluster."""
        for start, _n, kind, old in runs:
            if kind == t.COMPRESSED_KIND:
                self.free_host(kind, old)
                return
            if old is not None and kind in (t.DATA, t.ZERO_KIND):
                self.free_host(t.DATA, old - start if kind == t.DATA else old)
                return

    def write_zeroes(self, offset, length, fill=None):
        """Make [offset, offset+length) read as zeros; whole clusters lose their data."""
        self._begin_write()
        cs = self.cluster_size
        end = offset + length
        while offset < end:
            cluster = offset // cs
            within = offset - cluster * cs
            take = min(cs - within, end - offset)
            whole = take == cs or (within == 0 and offset + take >= self.virtual_size)
            if fill is None:
                zero_entry = (0, 0)                 # unallocated reads as zeros: no backing
            elif self.extended:
                zero_entry = (0, t.ALL_SUBCLUSTERS << t.SUBCLUSTERS)   # every subcluster zero
            elif self.version >= 3:
                zero_entry = (t.ZERO, 0)
            else:
                zero_entry = None                   # v2 over a backing file: write zeros
            if whole and zero_entry is not None:
                olds = self.classify(cluster)
                self.set_entry(cluster, *zero_entry)
                self._free_runs(olds)
            else:
                self.write(offset, bytes(take), fill)
            offset += take

    # ---------------------------------------------------------------- header

    def write_header(self):
        """Rewrite the first-cluster header area (extensions kept byte for byte)."""
        self._need_writable("rewrite the header")
        h = self.header
        old_end = max(h.extensions_end + 8, h.backing_file_offset + h.backing_file_size)
        body = h.pack()
        if len(body) < old_end:
            body += bytes(old_end - len(body))
        self.pwrite(0, body)

    def grow(self, new_size):
        """Raise the virtual size (L1 table grown or moved when it must be)."""
        self._begin_write()
        h = self.header
        if new_size % 512:
            raise Qcow2UnsupportedError("new size {} is not a multiple of 512 (qemu-img resize "
                                        "refuses it too)".format(new_size), path=self.path,
                                        field="size")
        if new_size < h.size:
            raise Qcow2UnsupportedError("shrinking from {} to {} bytes is not supported".format(
                h.size, new_size), path=self.path, field="size")
        need = t.l1_entries_needed(new_size, h.cluster_bits, self.extended)
        cs = self.cluster_size
        if need > h.l1_size:
            room = (h.l1_size * 8 + cs - 1) // cs * cs // 8 if h.l1_size else 0
            if need > room:
                self._move_l1(need)
            else:
                self._l1 += bytearray((need - h.l1_size) * 8)
                self.pwrite(h.l1_table_offset + h.l1_size * 8, bytes((need - h.l1_size) * 8))
                self.flush()
            h.l1_size = need
        h.size = new_size
        self.pwrite(24, _U64.pack(new_size))
        self.pwrite(36, struct.pack(">IQ", h.l1_size, h.l1_table_offset))
        self.flush()

    def _move_l1(self, need):
        h, cs = self.header, self.cluster_size
        clusters = (need * 8 + cs - 1) // cs
        old_offset, old_clusters = h.l1_table_offset, (h.l1_size * 8 + cs - 1) // cs
        new_offset = self.allocate(clusters)
        table = bytes(self._l1) + bytes(clusters * cs - len(self._l1))
        self.pwrite(new_offset, table)
        self.flush()
        self._l1 = bytearray(table[:need * 8])
        h.l1_table_offset = new_offset
        self.replace_fixed("l1_table", new_offset, new_offset + need * 8)
        self.pwrite(36, struct.pack(">IQ", need, new_offset))
        self.flush()
        if old_offset:
            for i in range(old_clusters):
                self.set_refcount(old_offset // cs + i, 0)
