"""One QCOW2 file: open and validate its metadata, map guest ranges to host clusters, read.

Everything the header points at (L1, refcount table, snapshot table, every L2 table the
L1 names) is bounds-, alignment- and overlap-checked at open, before any guest data is
read; L2 tables themselves are loaded on demand into a small LRU cache and each entry is
validated when it is used.  Reading through a backing chain lives in :mod:`.chain`;
writing in :mod:`.writer`.
"""

import bisect
import collections
import os
import struct
import zlib

from ..errors import Qcow2CorruptError, Qcow2FormatError
from ..fsutil import open_disk_file
from .format.header import V2_LENGTH, Header
from .format import tables as t
from .writer import Writes

MAX_L1_BYTES = 32 * 1024 * 1024          # qemu's limit on an L1 table
MAX_REFTABLE_BYTES = 8 * 1024 * 1024     # qemu's limit on the refcount table
L2_CACHE_BYTES = 4 * 1024 * 1024
SNAPSHOT_WINDOW = 512 * 1024
_U64 = struct.Struct(">Q")


def _bit(bits, index):
    return index >> 3 < len(bits) and bits[index >> 3] & (1 << (index & 7))


def _set_bit(bits, index):
    """Set bit ``index`` (growing the bytearray if needed); return the bytearray."""
    if index >> 3 >= len(bits):
        bits += bytearray((index >> 3) - len(bits) + 1)
    bits[index >> 3] |= 1 << (index & 7)
    return bits


def _full_read(fileobj, size, offset, length):
    """Up to ``length`` bytes at ``offset``, clamped to the file: never a huge buffer."""
    if offset < 0 or offset >= size or length <= 0:
        return b""
    fileobj.seek(offset)
    return fileobj.read(min(length, size - offset)) or b""


class Qcow2File(Writes):
    """An open QCOW2 file.  Use :meth:`open`; close it (or use ``with``) when done."""

    def __init__(self, path, fileobj, writable):
        self.path = path
        self._f = fileobj
        self.writable = writable
        self.file_size = os.fstat(fileobj.fileno()).st_size
        self.header = None
        self.snapshots = []
        self._l1 = None
        self._l2_cache = collections.OrderedDict()
        self._l2_cache_max = 2
        self._zcache = (None, None)
        self._fixed = []            # (start, end, what): header, L1, refcount and snapshot tables
        self._fixed_sorted, self._fixed_starts = [], []
        self._refblocks = collections.OrderedDict()
        self._refblock_clusters = set()
        self._scanned_l2 = bytearray()      # L2 tables whose data clusters are claimed
        self._data_clusters = bytearray()   # host clusters the active L2 tables map
        self._reftable = None
        self._next_free = None

    # ------------------------------------------------------------------ open

    @classmethod
    def open(cls, path, writable=False):
        """Open ``path`` and validate the metadata needed to read it safely."""
        fileobj = open_disk_file(
            path, writable, lambda reason: Qcow2FormatError(reason, path=path), "QCOW2")
        image = cls(path, fileobj, writable)
        try:
            image._load()
        except Exception:
            fileobj.close()
            raise
        return image

    def _read(self, offset, length):
        return _full_read(self._f, self.file_size, offset, length)

    def _corrupt(self, reason, offset, field):
        return Qcow2CorruptError(reason, path=self.path, offset=offset, field=field)

    def _load(self):
        head = self._read(0, V2_LENGTH + 32)
        if len(head) < 24:
            raise Qcow2FormatError("file of {} bytes is too small for a QCOW2 header".format(
                self.file_size), path=self.path, offset=0, field="magic")
        bits = int.from_bytes(head[20:24], "big")
        first = self._read(0, 1 << min(max(bits, 9), 21))
        self.header = h = Header.parse(first, self.path)
        cs = h.cluster_size
        self.cluster_size, self.cluster_bits = cs, h.cluster_bits
        self.extended = h.extended_l2
        self.l2_entries = t.l2_entries(h.cluster_bits, self.extended)
        self.subcluster_size = cs // t.SUBCLUSTERS if self.extended else cs
        self._l2_cache_max = max(2, L2_CACHE_BYTES // cs)
        self._fixed = [(0, cs, "header")]
        self._check_l1()
        self._check_reftable()
        self._load_snapshots()
        self._check_overlaps()
        self._index_fixed()
        self._load_refblocks()
        self._load_l1()

    def _table(self, offset, length, field, field_offset, limit):
        """Validate a table that must start cluster aligned and lie inside the file."""
        cs = self.cluster_size
        if offset % cs:
            raise self._corrupt("{} offset {} is not aligned to the {}-byte cluster".format(
                field, offset, cs), field_offset, field)
        if length > limit:
            raise self._corrupt("{} of {} bytes is larger than {} bytes".format(
                field, length, limit), field_offset, field)
        if offset == 0 or offset >= self.file_size or offset + length > self.file_size:
            raise self._corrupt("{} at {} (+{} bytes) does not fit the {}-byte file".format(
                field, offset, length, self.file_size), field_offset, field)
        self._fixed.append((offset, offset + max(length, 1), field))

    def _check_l1(self):
        h = self.header
        need = t.l1_entries_needed(h.size, h.cluster_bits, self.extended)
        if h.l1_size < need:
            raise self._corrupt("L1 table of {} entries is too small for the virtual size {} "
                                "({} needed)".format(h.l1_size, h.size, need), 36, "l1_size")
        if h.l1_size == 0:
            return
        limit = min(MAX_L1_BYTES, max(need, 1) * 8 + self.cluster_size)
        self._table(h.l1_table_offset, h.l1_size * 8, "l1_table", 40, limit)

    def _check_reftable(self):
        h = self.header
        length = h.refcount_table_clusters * self.cluster_size
        if h.refcount_table_clusters == 0:
            raise self._corrupt("refcount table of 0 clusters", 56, "refcount_table_clusters")
        if length > MAX_REFTABLE_BYTES:
            raise self._corrupt("refcount table of {} clusters is larger than {} bytes".format(
                h.refcount_table_clusters, MAX_REFTABLE_BYTES), 56, "refcount_table")
        # the table may end past a file whose last cluster is not written out
        length = min(length, max(0, self.file_size - h.refcount_table_offset))
        self._table(h.refcount_table_offset, length, "refcount_table", 48, MAX_REFTABLE_BYTES)
        start = h.refcount_table_offset
        self._fixed[-1] = (start, start + h.refcount_table_clusters * self.cluster_size,
                           "refcount_table")

    def _load_snapshots(self):
        h = self.header
        if h.nb_snapshots == 0:
            return
        if h.nb_snapshots > t.MAX_SNAPSHOTS:
            raise self._corrupt("{} internal snapshots (at most 65536)".format(h.nb_snapshots),
                                60, "nb_snapshots")
        if h.snapshots_offset % self.cluster_size or not 0 < h.snapshots_offset < self.file_size:
            raise self._corrupt("snapshot table offset {} unaligned or outside the file".format(
                h.snapshots_offset), 64, "snapshots_offset")
        # entries are read through a window: memory stays one window whatever nb_snapshots says
        largest = t.SNAPSHOT_FIXED + t.MAX_SNAPSHOT_EXTRA + 2 * 65535 + 8
        pos, buf, buf_at = h.snapshots_offset, b"", h.snapshots_offset
        for _ in range(h.nb_snapshots):
            if buf_at + len(buf) - pos < largest:
                buf, buf_at = self._read(pos, SNAPSHOT_WINDOW), pos
            try:
                snap = t.parse_snapshot(buf, pos - buf_at,
                                        t.V3_SNAPSHOT_EXTRA if h.version >= 3 else 0)
            except ValueError as e:
                raise self._corrupt("snapshot table: {}".format(e), pos, "snapshot_table")
            if snap is None:
                raise self._corrupt("snapshot table runs past the end of the file", pos,
                                    "snapshot_table")
            snap.offset = pos
            l1 = snap.l1_table_offset
            if l1 % self.cluster_size or snap.l1_size * 8 > MAX_L1_BYTES or \
                    l1 + snap.l1_size * 8 > self.file_size or (snap.l1_size and not l1):
                raise self._corrupt("snapshot {!r} L1 table at {} ({} entries) unaligned or "
                                    "outside the file".format(snap.id, l1, snap.l1_size),
                                    snap.offset, "snapshot_l1")
            self.snapshots.append(snap)
            if snap.l1_size:    # each snapshot owns its L1 copy: no sharing, so no L1 bombs
                self._fixed.append((l1, l1 + snap.l1_size * 8, "snapshot_l1"))
            pos += snap.length
        self._fixed.append((h.snapshots_offset, max(pos, h.snapshots_offset + 1),
                            "snapshot_table"))

    def _check_overlaps(self):
        cs = self.cluster_size
        spans = sorted((s // cs, (e + cs - 1) // cs, what) for s, e, what in self._fixed)
        for (s1, e1, w1), (s2, e2, w2) in zip(spans, spans[1:]):
            if s2 < e1:
                raise self._corrupt("{} overlaps {} (clusters {}..{} and {}..{})".format(
                    w2, w1, s1, e1 - 1, s2, e2 - 1), s2 * cs, w2)

    def _load_refblocks(self):
        """Validate every refcount table entry; remember where the refcount blocks are."""
        h, cs = self.header, self.cluster_size
        raw = self._read(h.refcount_table_offset, h.refcount_table_clusters * cs)
        for index in range(len(raw) // 8):
            entry = t.read_u64(raw, index)
            if not entry:
                continue
            off = entry & ~t.REFTABLE_RESERVED
            at = h.refcount_table_offset + index * 8
            if entry & t.REFTABLE_RESERVED or off % cs or off + cs > self.file_size:
                raise self._corrupt("refcount table entry {} (0x{:016x}) unaligned or past the "
                                    "end of the file".format(index, entry), at, "refcount_table")
            what = self.in_fixed_metadata(off, cs)
            if what:
                raise self._corrupt("refcount block {} at {} overlaps the {}".format(
                    index, off, what), at, "refcount_table")
            if off // cs in self._refblock_clusters:
                raise self._corrupt("refcount table entry {} names the refcount block at {} a "
                                    "second time".format(index, off), at, "refcount_table")
            self._refblock_clusters.add(off // cs)

    def _index_fixed(self):
        """Sort the (disjoint, checked) fixed metadata ranges for bisecting, cluster-rounded."""
        cs = self.cluster_size
        self._fixed_sorted = sorted((s, (e + cs - 1) // cs * cs, what) for s, e, what in self._fixed)
        self._fixed_starts = [f[0] for f in self._fixed_sorted]

    def replace_fixed(self, what, start, end):
        """A table moved (writer): drop its old range, add the new one."""
        self._fixed = [f for f in self._fixed if f[2] != what] + [(start, end, what)]
        self._index_fixed()

    def in_fixed_metadata(self, offset, length):
        """Name of the header / table / refcount block that [offset, offset+length) touches."""
        cs = self.cluster_size
        # ranges are disjoint: only the last one starting before the end can intersect
        i = bisect.bisect_left(self._fixed_starts, offset + length) - 1
        if i >= 0 and self._fixed_sorted[i][1] > offset:
            return self._fixed_sorted[i][2]
        if self._refblock_clusters:
            for cluster in range(offset // cs, (offset + length + cs - 1) // cs):
                if cluster in self._refblock_clusters:
                    return "refcount block at {}".format(cluster * cs)
        return None

    def _load_l1(self):
        h = self.header
        self._l1 = bytearray(self._read(h.l1_table_offset, h.l1_size * 8)) if h.l1_size else \
            bytearray()
        need = t.l1_entries_needed(h.size, h.cluster_bits, self.extended)
        cs = self.cluster_size
        # one bit per host cluster: an L2 table named twice would map the same data over
        # and over (a tiny file reading as terabytes); qemu never shares one within an L1
        seen = bytearray(self.file_size // cs // 8 + 1)
        for index, (entry,) in enumerate(_U64.iter_unpack(bytes(self._l1))):
            if not entry:
                continue
            self._check_l1_entry(index, entry, need)
            cluster = (entry & t.OFFSET_MASK) // cs
            if cluster:
                if seen[cluster >> 3] & (1 << (cluster & 7)):
                    raise self._corrupt("L1 entry {} names the L2 table at {} a second time"
                                        .format(index, cluster * cs),
                                        h.l1_table_offset + index * 8, "l1_entry")
                seen[cluster >> 3] |= 1 << (cluster & 7)

    def _check_l1_entry(self, index, entry, need):
        at = self.header.l1_table_offset + index * 8
        off = entry & t.OFFSET_MASK
        if index >= need and off:
            raise self._corrupt("L1 entry {} points at an L2 table beyond the virtual size".format(
                index), at, "l1_entry")
        if entry & t.L1_RESERVED:
            raise self._corrupt("L1 entry {} has reserved bits set (0x{:016x})".format(
                index, entry), at, "l1_entry")
        if not off:
            return
        if off % self.cluster_size or off + self.cluster_size > self.file_size:
            raise self._corrupt("L1 entry {}: L2 table at {} unaligned or past the end of the "
                                "file".format(index, off), at, "l1_entry")
        what = self.in_fixed_metadata(off, self.cluster_size)
        if what:
            raise self._corrupt("L1 entry {}: L2 table at {} overlaps the {}".format(
                index, off, what), at, "l1_entry")

    # ------------------------------------------------------------ properties

    @property
    def virtual_size(self):
        return self.header.size

    @property
    def backing_name(self):
        return self.header.backing_name

    @property
    def backing_format(self):
        return self.header.backing_format

    @property
    def hidden(self):
        return self.header.hidden

    @property
    def version(self):
        return self.header.version

    @property
    def refcount_bits(self):
        return self.header.refcount_bits

    # ----------------------------------------------------------------- map

    def l1_entry(self, index):
        return t.read_u64(self._l1, index) if index < len(self._l1) // 8 else 0

    def l2_table(self, offset):
        table = self._l2_cache.get(offset)
        if table is not None:
            self._l2_cache.move_to_end(offset)
            return table
        table = bytearray(self._read(offset, self.cluster_size))
        if len(table) != self.cluster_size:
            raise self._corrupt("L2 table at {} runs past the end of the file".format(offset),
                                offset, "l2_table")
        if not _bit(self._scanned_l2, offset // self.cluster_size):
            self._claim_data_clusters(offset, table)
        self._l2_cache[offset] = table
        while len(self._l2_cache) > self._l2_cache_max:
            self._l2_cache.popitem(last=False)
        return table

    def _claim_data_clusters(self, offset, table):
        """First load of an L2 table: each data cluster it names must be named nowhere else
        in the active layer (qemu never maps one twice; sharing would let a small file read
        as far more data than it holds).  One bit per host cluster of the file."""
        cs = self.cluster_size
        words = struct.unpack(">{}Q".format(len(table) // 8), table)
        entries = words[::2] if self.extended else words   # extended: skip the bitmaps
        size = 16 if self.extended else 8
        in_file = -(-self.file_size // cs)      # clusters past EOF are refused when used
        bits = self._data_clusters
        if len(bits) <= in_file >> 3:
            bits += bytearray((in_file >> 3) - len(bits) + 1)
        mask, compressed, shift = t.OFFSET_MASK, t.COMPRESSED, self.cluster_bits
        for index, entry in enumerate(entries):
            if entry & compressed:
                continue        # compressed clusters may share
            cluster = (entry & mask) >> shift
            if cluster and cluster < in_file:
                bit = 1 << (cluster & 7)
                if bits[cluster >> 3] & bit:
                    raise self._corrupt("L2 entry maps host cluster {} that another guest "
                                        "cluster already maps".format(cluster * cs),
                                        offset + index * size, "l2_entry")
                bits[cluster >> 3] |= bit
        self._scanned_l2 = _set_bit(self._scanned_l2, offset // cs)

    def cluster_entry(self, cluster):
        """(entry, bitmap, L2 table offset) of guest ``cluster``; zeros if it has no L2 table."""
        l1i, l2i = divmod(cluster, self.l2_entries)
        l2 = self.l1_entry(l1i) & t.OFFSET_MASK
        if not l2:
            return 0, 0, 0
        entry, bitmap = t.l2_entry(self.l2_table(l2), l2i, self.extended)
        return entry, bitmap, l2

    def classify(self, cluster):
        """Runs (start in cluster, length, kind, host) that make up guest ``cluster``."""
        entry, bitmap, l2 = self.cluster_entry(cluster)
        cs = self.cluster_size
        where = l2 + (cluster % self.l2_entries) * t.l2_entry_size(self.extended)
        if entry & t.COMPRESSED:
            off, span = t.compressed_fields(entry, self.cluster_bits)
            if span > t.compressed_max_span(cs) or off >= self.file_size or bitmap:
                raise self._corrupt("compressed cluster at host {} spans {} bytes (cluster {}) "
                                    "or lies past the end of the file".format(off, span, cs),
                                    where, "l2_entry")
            if self.in_fixed_metadata(off, span):
                raise self._corrupt("compressed cluster at host {} overlaps metadata".format(off),
                                    where, "l2_entry")
            return [(0, cs, t.COMPRESSED_KIND, (off, span))]
        if entry & t.L2_RESERVED or (self.extended and entry & t.ZERO):
            raise self._corrupt("L2 entry for guest cluster {} has reserved bits set (0x{:016x})"
                                .format(cluster, entry), where, "l2_entry")
        host = entry & t.OFFSET_MASK
        if host:
            if host % cs or host >= self.file_size:
                raise self._corrupt("guest cluster {} maps to host {}: unaligned or past the end "
                                    "of the file".format(cluster, host), where, "l2_entry")
            what = self.in_fixed_metadata(host, cs)
            if what:
                raise self._corrupt("guest cluster {} maps to host {} inside the {}".format(
                    cluster, host, what), where, "l2_entry")
        elif entry & t.COPIED:
            raise self._corrupt("L2 entry for guest cluster {} has the copied bit but no offset"
                                .format(cluster), where, "l2_entry")
        if not self.extended:
            if entry & t.ZERO:
                if self.header.version < 3:
                    raise self._corrupt("zero cluster flag in a version 2 image", where,
                                        "l2_entry")
                return [(0, cs, t.ZERO_KIND, host or None)]   # host: a preallocated zero
            return [(0, cs, t.DATA if host else t.UNALLOCATED, host or None)]
        return self._classify_subclusters(cluster, host, bitmap, where)

    def _classify_subclusters(self, cluster, host, bitmap, where):
        alloc, zeros = bitmap & t.ALL_SUBCLUSTERS, bitmap >> t.SUBCLUSTERS
        if alloc & zeros or (alloc and not host):
            raise self._corrupt("subcluster bitmap 0x{:016x} of guest cluster {} is inconsistent"
                                .format(bitmap, cluster), where + 8, "l2_bitmap")
        runs = []
        sc = self.subcluster_size
        for i in range(t.SUBCLUSTERS):
            if alloc >> i & 1:
                kind, at = t.DATA, host + i * sc
            elif zeros >> i & 1:
                kind, at = t.ZERO_KIND, None
            else:
                kind, at = t.UNALLOCATED, None
            if runs and runs[-1][2] == kind:
                runs[-1][1] += sc
            else:
                runs.append([i * sc, sc, kind, at])
        return [tuple(r) for r in runs]

    def map(self, offset, length):
        """Yield (guest offset, length, kind, host) runs covering [offset, offset + length).

        ``host`` is the file offset for data, (offset, span) for a compressed cluster
        (then the run may start inside it: guest offset modulo cluster tells where).
        Adjacent data runs at contiguous host offsets are merged.
        """
        end = min(offset + length, self.virtual_size)
        cs = self.cluster_size
        pending = None
        while offset < end:
            cluster = offset // cs
            base = cluster * cs
            l1i = cluster // self.l2_entries
            if not self.l1_entry(l1i) & t.OFFSET_MASK:
                # no L2 table: the whole span it would map is unallocated, in one step
                span_end = min(end, (l1i + 1) * self.l2_entries * cs)
                runs = [(offset - base, span_end - offset, t.UNALLOCATED, None)]
                cs_step = span_end - base
            else:
                runs = None if self.extended else self._plain_span(cluster, -(-end // cs))
                if runs is None:
                    runs = self.classify(cluster)
                    cs_step = cs
                else:
                    cs_step = runs[0][1]
            for start, n, kind, host in runs:
                lo, hi = max(offset, base + start), min(end, base + start + n)
                if lo >= hi:
                    continue
                if kind == t.DATA:
                    host += lo - base - start
                if pending is not None and pending[2] == kind and kind != t.COMPRESSED_KIND and (
                        kind != t.DATA or pending[3] + pending[1] == host):
                    pending[1] += hi - lo
                    continue
                if pending is not None:
                    yield tuple(pending)
                pending = [lo, hi - lo, kind, host]
            offset = base + cs_step
        if pending is not None:
            yield tuple(pending)

    def _plain_span(self, cluster, stop):
        """[(0, length, kind, host)] for the clusters from ``cluster`` (before ``stop``, in
        one L2 table) whose standard entries repeat one pattern -- all unallocated, all
        zero-flagged, or data at contiguous host clusters -- checked as one span; None
        when ``cluster`` starts no such span (then :meth:`classify` judges it alone).

        Why: mapping one cluster at a time costs tens of microseconds of Python each,
        which made mapping a large part of an export; qemu writes long regular runs."""
        cs = self.cluster_size
        l2i = cluster % self.l2_entries
        table = self.l2_table(self.l1_entry(cluster // self.l2_entries) & t.OFFSET_MASK)
        last = min(self.l2_entries, l2i + stop - cluster)
        first = t.read_u64(table, l2i)
        step = cs if first & t.OFFSET_MASK else 0
        if first == 0 or (first == t.ZERO and self.header.version >= 3):
            kind, host = (t.UNALLOCATED if first == 0 else t.ZERO_KIND), None
        elif step and not first & ~(t.OFFSET_MASK | t.COPIED) and not (first & t.OFFSET_MASK) % cs:
            kind, host = t.DATA, first & t.OFFSET_MASK
        else:
            return None
        count, expect = 1, first + step
        while l2i + count < last:
            batch = min(last - l2i - count, 256)
            for entry in struct.unpack_from(">{}Q".format(batch), table, (l2i + count) * 8):
                if entry != expect:
                    break
                count += 1
                expect += step
            else:
                continue
            break
        if kind == t.DATA and (host + (count - 1) * cs >= self.file_size or
                               self.in_fixed_metadata(host, count * cs)):
            return None             # classify names the first bad cluster
        return [(0, count * cs, kind, host)]

    # ---------------------------------------------------------------- read

    def read_data(self, kind, host, guest, view):
        """Fill ``view`` from a data or compressed run found by :meth:`map`."""
        if kind == t.DATA:
            # straight into the caller's buffer: no intermediate bytes object
            want = max(0, min(len(view), self.file_size - host))
            got = 0
            if want:
                self._f.seek(host)
                while got < want:
                    n = self._f.readinto(view[got:want])
                    if not n:
                        break
                    got += n
            if got < len(view):             # a cluster cut by EOF reads as zeros, as in qemu
                view[got:] = bytes(len(view) - got)
            return
        cluster = self.decompress(host, guest)
        skip = guest % self.cluster_size
        view[:] = cluster[skip:skip + len(view)]

    def decompress(self, host, guest):
        off, span = host
        if self._zcache[0] == host:
            return self._zcache[1]
        data = self.inflate(self._read(off, span), host, guest)
        self._zcache = (host, data)
        return data

    def inflate(self, raw, host, guest):
        """The cluster that the compressed bytes ``raw`` of run ``host`` hold, checked.

        No file access and no state: safe from worker threads (export)."""
        off = host[0]
        engine = zlib.decompressobj(-12)
        try:
            data = engine.decompress(raw, self.cluster_size)
        except zlib.error as e:
            raise self._corrupt("compressed cluster at host {} (guest {}) does not inflate: {}"
                                .format(off, guest, e), off, "compressed_cluster")
        if len(data) != self.cluster_size:
            raise self._corrupt("compressed cluster at host {} inflates to {} bytes, not {}".format(
                off, len(data), self.cluster_size), off, "compressed_cluster")
        return data

    def read(self, offset, length):
        """``length`` bytes at guest ``offset`` of this file alone (backing ignored: zeros)."""
        if offset < 0 or length < 0 or offset + length > self.virtual_size:
            raise Qcow2FormatError("read of {} bytes at {} outside the virtual size {}".format(
                length, offset, self.virtual_size), path=self.path)
        buf = bytearray(length)
        view = memoryview(buf)
        for guest, n, kind, host in self.map(offset, length):
            if kind in (t.DATA, t.COMPRESSED_KIND):
                self.read_data(kind, host, guest, view[guest - offset:guest - offset + n])
        return buf

    def close(self):
        if self._f is not None:
            try:
                if self.writable:
                    self.flush()
            finally:
                self._f.close()
                self._f = None

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    def __repr__(self):
        return "Qcow2File({!r}, {!r})".format(self.path, self.header)
