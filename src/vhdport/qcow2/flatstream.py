"""One flat QCOW2 image of any chain, written as a stream: no temporary file, no seeking.

A store wants the image's size before the first byte (Content-Length) and a KVM host
wants a plain, self-contained QCOW2.  So the layout is fixed from the source's
allocation map alone, before any data is read: header, refcount table, refcount
blocks, L1, L2 tables, then the data clusters in guest order -- the order XAPI's
exporter writes and its importer (qcow-stream-tool) requires.

The source is any chain object with ``virtual_size``, ``allocated_ranges()`` (sorted
byte ranges; the rest reads as zeros) and ``read_into(offset, view)``.  The map is
kept as cluster runs in one array (16 bytes a run) and each L2 table is generated
when its turn comes, so memory does not grow with the virtual size.
"""

import struct
import sys
from array import array

from ..errors import ChainError, Qcow2FormatError, VhdportError
from .format import tables as t
from .format.header import MAX_CLUSTER_BITS, MIN_CLUSTER_BITS, Header

CLUSTER_BITS = 16
#: bytes read from the source per chunk (whole clusters)
CHUNK = 4 << 20
SECTOR = 512
_U64 = struct.Struct(">Q")


def _ceil_div(a, b):
    return -(-a // b)


def _big_endian(entries):
    """``array('Q')`` as the on-disk big-endian bytes."""
    if sys.byteorder == "little":
        entries.byteswap()
    return entries.tobytes()


def cluster_runs(ranges, cluster_size, clusters):
    """Sorted byte ranges -> ``array('Q')`` of interleaved (first cluster, count) runs.

    Overlapping and touching ranges merge; ranges past ``clusters`` are clipped.
    """
    runs = array("Q")
    for offset, length in ranges:
        if length <= 0:
            continue
        first = offset // cluster_size
        end = min(clusters, _ceil_div(offset + length, cluster_size))
        if first >= end:
            continue
        if runs:
            last_first, last_end = runs[-2], runs[-2] + runs[-1]
            if first < last_first:
                raise ChainError("allocated ranges out of order: {} after cluster {}".format(
                    offset, last_first))
            if first <= last_end:
                if end > last_end:
                    runs[-1] = end - last_first
                continue
        runs.append(first)
        runs.append(end - first)
    return runs


def allocated_ranges(source):
    """The source's allocated (offset, length) ranges in order, lazily where it can.

    A QCOW2 chain's ``extents()`` is a generator, so the ranges are never all in a
    list at once; other sources give ``allocated_ranges()``.
    """
    extents = getattr(source, "extents", None)
    if extents is None:
        return source.allocated_ranges()
    return ((offset, length) for offset, length, kind in extents() if kind == t.DATA)


def read_range(source, offset, length, chunk=CHUNK):
    """Yield the source's virtual bytes [offset, offset + length) as bytes chunks.

    Whole sectors go through ``read_into`` (a VHD chain takes nothing else); a
    sub-sector tail (a size not a multiple of 512) through ``read``.
    """
    end = offset + length
    buf = bytearray(min(chunk, length - length % SECTOR))
    view = memoryview(buf)
    while end - offset >= SECTOR:
        n = min(chunk, (end - offset) - (end - offset) % SECTOR)
        part = view[:n]
        source.read_into(offset, part)
        yield bytes(part)
        offset += n
    if offset < end:
        yield bytes(source.read(offset, end - offset))


class FlatQcow2(object):
    """Iterate to get the image's bytes; ``size`` is known from construction.

    Reading ``allocated_ranges()`` happens here; data is read only while iterating.
    The source must stay open (and unchanged) until the iteration ends.
    """

    container_format = "bare"
    disk_format = "qcow2"

    def __init__(self, source, cluster_bits=CLUSTER_BITS, chunk=CHUNK):
        if not MIN_CLUSTER_BITS <= cluster_bits <= MAX_CLUSTER_BITS:
            raise Qcow2FormatError("cluster_bits {} outside {}..{}".format(
                cluster_bits, MIN_CLUSTER_BITS, MAX_CLUSTER_BITS))
        self.source = source
        self.virtual_size = int(source.virtual_size)
        self.cluster_bits = cluster_bits
        self.cluster_size = cs = 1 << cluster_bits
        self.chunk = max(cs, chunk - chunk % cs)
        self.l2_entries = cs // 8
        self.refblock_entries = cs * 8 // 16          # 16-bit refcounts
        clusters = _ceil_div(self.virtual_size, cs)
        self.runs = cluster_runs(allocated_ranges(source), cs, clusters)
        self.data_clusters = sum(self.runs[1::2])
        self.l2_indices = self._l2_indices()
        self.l1_size = _ceil_div(clusters, self.l2_entries)
        self.l1_clusters = _ceil_div(self.l1_size * 8, cs)     # none for an empty disk
        self._lay_out()

    def _l2_indices(self):
        """The L1 slots that get an L2 table: those covering an allocated cluster."""
        shift = self.l2_entries.bit_length() - 1
        indices = array("Q")
        runs = self.runs
        for i in range(0, len(runs), 2):
            first, last = runs[i] >> shift, (runs[i] + runs[i + 1] - 1) >> shift
            if indices and indices[-1] >= first:
                first = indices[-1] + 1
            indices.extend(range(first, last + 1))
        return indices

    def _lay_out(self):
        cs = self.cluster_size
        fixed = 1 + self.l1_clusters + len(self.l2_indices) + self.data_clusters
        refblocks, reftable = 0, 1
        while True:   # the refcount structures count themselves: iterate to the fixed point
            total = fixed + reftable + refblocks
            need_blocks = _ceil_div(total, self.refblock_entries)
            need_table = max(1, _ceil_div(need_blocks * 8, cs))
            if (need_blocks, need_table) == (refblocks, reftable):
                break
            refblocks, reftable = need_blocks, need_table
        self.refcount_table_clusters, self.refcount_blocks = reftable, refblocks
        self.host_clusters = fixed + reftable + refblocks
        self.refcount_table_offset = cs
        self.refblocks_offset = self.refcount_table_offset + reftable * cs
        self.l1_offset = self.refblocks_offset + refblocks * cs
        self.l2_offset = self.l1_offset + self.l1_clusters * cs
        self.data_offset = self.l2_offset + len(self.l2_indices) * cs
        self.size = self.host_clusters * cs

    # ------------------------------------------------------------------ bytes

    def __iter__(self):
        sent = 0
        for part in (self._header(), self._reftable(), self._refblocks(), self._l1(),
                     self._l2_tables(), self._data()):
            for chunk in part:
                if chunk:             # an empty chunk ends a chunked HTTP body
                    sent += len(chunk)
                    yield chunk
        if sent != self.size:
            raise VhdportError("flat QCOW2 of {}: wrote {} bytes, laid out {} (a bug in "
                               "vhdport; nothing usable was made)".format(
                                   getattr(self.source, "path", "the chain"), sent, self.size))

    def header(self):
        """The header fields (for inspection; the stream carries the packed form)."""
        return Header(version=3, cluster_bits=self.cluster_bits, size=self.virtual_size,
                      l1_size=self.l1_size, l1_table_offset=self.l1_offset,
                      refcount_table_offset=self.refcount_table_offset,
                      refcount_table_clusters=self.refcount_table_clusters, refcount_order=4)

    def _header(self):
        body = self.header().pack()
        yield body + bytes(self.cluster_size - len(body))

    def _reftable(self):
        entries = array("Q", bytes(self.refcount_table_clusters * self.cluster_size))
        cs = self.cluster_size
        for i in range(self.refcount_blocks):
            entries[i] = self.refblocks_offset + i * cs
        yield _big_endian(entries)

    def _refblocks(self):
        per_block = self.refblock_entries
        full = b"\x00\x01" * per_block
        left = self.host_clusters
        for _ in range(self.refcount_blocks):
            n = min(left, per_block)
            yield full if n == per_block else full[:2 * n] + bytes(2 * (per_block - n))
            left -= n

    def _l1(self):
        entries = array("Q", bytes(self.l1_clusters * self.cluster_size))
        at = self.l2_offset
        for index in self.l2_indices:
            entries[index] = at | t.COPIED
            at += self.cluster_size
        yield _big_endian(entries)

    def _l2_tables(self):
        """One table per L2 index, from a sweep over the runs (each run's data rank)."""
        cs, per_table, runs = self.cluster_size, self.l2_entries, self.runs
        run, rank = 0, 0              # current run (index into runs) and clusters before it
        for index in self.l2_indices:
            lo, hi = index * per_table, (index + 1) * per_table
            entries = array("Q", bytes(cs))
            while run < len(runs):
                first, count = runs[run], runs[run + 1]
                start, end = max(first, lo), min(first + count, hi)
                if start < end:
                    host = (self.data_offset + (rank + start - first) * cs) | t.COPIED
                    entries[start - lo:end - lo] = array("Q", range(host, host + (end - start) * cs,
                                                                    cs))
                if first + count > hi:
                    break             # the run goes on in the next table
                rank += count
                run += 2
            yield _big_endian(entries)

    def _data(self):
        cs, size, runs = self.cluster_size, self.virtual_size, self.runs
        for i in range(0, len(runs), 2):
            offset, end = runs[i] * cs, (runs[i] + runs[i + 1]) * cs
            readable = min(end, size) - offset
            for chunk in read_range(self.source, offset, readable, self.chunk):
                yield chunk
            if end - offset > readable:
                yield bytes(end - offset - readable)    # the last cluster past the disk's end


def flat_qcow2(source, cluster_bits=CLUSTER_BITS):
    """A sized iterable of bytes: ``source``'s contents as one standalone QCOW2 image."""
    return FlatQcow2(source, cluster_bits=cluster_bits)
