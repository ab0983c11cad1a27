"""Guest -> host mapping of one QCOW2 file: L1 / L2 lookups, entry checks, merged runs.

A mixin of :class:`.image.Qcow2File` (kept apart so each module stays small): it needs
the file's ``header``, ``cluster_size`` / ``cluster_bits``, ``l2_entries``, ``extended``,
``file_size``, ``_l1``, the L2 cache and ``_read`` / ``_corrupt`` /
``in_fixed_metadata``, all set up when the file is opened and validated.
"""

import struct

from .format import tables as t


def _bit(bits, index):
    return index >> 3 < len(bits) and bits[index >> 3] & (1 << (index & 7))


def _set_bit(bits, index):
    """Set bit ``index`` (growing the bytearray if needed); return the bytearray."""
    if index >> 3 >= len(bits):
        bits += bytearray((index >> 3) - len(bits) + 1)
    bits[index >> 3] |= 1 << (index & 7)
    return bits


class Maps(object):
    """Mapping guest clusters to host runs (see :meth:`map`)."""

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
        if kind == t.DATA:
            count = self._clean_prefix(host, count)
            if not count:
                return None         # classify names the bad cluster
        return [(0, count * cs, kind, host)]

    def _clean_prefix(self, host, count):
        """How many of ``count`` host clusters from ``host`` start before EOF and touch no
        fixed metadata.  A run cut short still maps as one span up to the bad cluster:
        giving up on the whole run would rescan it from every cluster before that one
        (quadratic in the L2 table's size on a truncated or hostile file)."""
        cs = self.cluster_size
        count = max(0, min(count, -(-(self.file_size - host) // cs)))
        if count and self.in_fixed_metadata(host, count * cs):
            good, bad = 0, count        # the overlap only grows with the length: bisect
            while bad - good > 1:
                mid = (good + bad) // 2
                if self.in_fixed_metadata(host, mid * cs):
                    bad = mid
                else:
                    good = mid
            count = good
        return count
