"""Consistency check of a QCOW2 file, like ``qemu-img check``: refcounts against references.

Checking only reads.  Every cluster the metadata references (header, L1 / L2 tables of
the active layer and of internal snapshots, data and compressed clusters, refcount table
and blocks, snapshot table, bitmaps) is counted in a bytearray of one byte per host
cluster of the file -- memory follows the file, never the virtual size, so a 16 TiB
sparse image checks in a few KiB.  Counted references are then compared with the stored
refcounts: fewer stored is a corruption (``refcount``), more is a ``leak``.  Problems come
back as :class:`Defect` (field, file offset, message), not exceptions.
"""

import collections
import struct

from ..errors import VhdportError
from .chain import Qcow2Chain, local_backing
from .format import tables as t
from .format.header import EXT_BACKING_FORMAT, EXT_BITMAPS, EXT_HIDDEN, INCOMPAT_DIRTY
from .image import Qcow2File

MAX_PER_FIELD = 10
MAX_BITMAP_DIRECTORY = 64 * 1024 * 1024
_BITMAP_DIR = struct.Struct(">QIIBBHI")
_U64 = struct.Struct(">Q")


class Defect(collections.namedtuple("Defect", "field offset message path")):
    """One problem: which field, at which byte offset of the file, what is wrong, in which file."""

    __slots__ = ()

    def __str__(self):
        return "{}: {} at offset {}: {}".format(self.path, self.field, self.offset, self.message)


class _Report(object):
    def __init__(self, path):
        self.path = path
        self.defects = []
        self._counts = collections.Counter()

    def add(self, field, offset, message):
        self._counts[field] += 1
        if self._counts[field] <= MAX_PER_FIELD:
            self.defects.append(Defect(field, offset, message, self.path))

    def finish(self):
        for field, n in sorted(self._counts.items()):
            if n > MAX_PER_FIELD:
                self.defects.append(Defect(field, None, "{} more {} defects not listed".format(
                    n - MAX_PER_FIELD, field), self.path))
        return self.defects


class _Counter(object):
    """References per host cluster: one saturating byte each, exact counts above 254 kept aside."""

    def __init__(self, clusters):
        self.counts = bytearray(clusters)
        self.big = {}

    def add(self, cluster, weight=1):
        if cluster >= len(self.counts):
            return False
        value = self.counts[cluster]
        if value == 255:
            self.big[cluster] += weight
        elif value + weight >= 255:
            self.counts[cluster] = 255
            self.big[cluster] = value + weight
        else:
            self.counts[cluster] = value + weight
        return True

    def get(self, cluster):
        value = self.counts[cluster] if cluster < len(self.counts) else 0
        return self.big[cluster] if value == 255 else value


def _any_from(block, index, order):
    """Whether any refcount from entry ``index`` to the end of ``block`` is non-zero."""
    bits = 1 << order
    byte = (index * bits + 7) // 8
    for i in range(index, byte * 8 // bits):
        if t.refcount_get(block, i, order):
            return True
    tail = block[byte:]
    return tail.count(0) != len(tail)


def check_image(path):
    """Return the defects of one QCOW2 file (an empty list when it is consistent)."""
    report = _Report(path)
    try:
        image = Qcow2File.open(path)
    except VhdportError as e:
        report.add(e.fields.get("field", "file"), e.fields.get("offset"), str(e))
        return report.finish()
    with image:
        _Checker(image, report).run()
    return report.finish()


def check_chain(path, backing=local_backing):
    """Defects of every file of the chain ending at ``path``, and of the links between them."""
    report = _Report(path)
    try:
        chain = Qcow2Chain.open(path, backing=backing)
    except VhdportError as e:
        report.add(e.fields.get("field", "chain"), e.fields.get("offset"), str(e))
        return report.finish()
    with chain:
        paths = chain.paths()
        for child, parent in zip(chain.images, chain.images[1:]):
            if child.backing_format != "qcow2":
                report.add("backing_format", None, "{}: backing format {!r}, expected 'qcow2' "
                           "(as SM writes it)".format(child.path, child.backing_format))
            if parent.cluster_size != child.cluster_size:
                report.add("cluster_bits", 20, "{}: cluster size {} differs from its backing "
                           "file's {} (SM snapshots keep it)".format(
                               child.path, child.cluster_size, parent.cluster_size))
    defects = report.finish()
    for one in paths:
        defects += check_image(one)
    return defects


def _check_header(image, report):
    h = image.header
    if h.version == 3 and any(h.extra[1:]):
        report.add("header_length", 100, "non-zero header padding after compression_type")
    if h.backing_name is None and h.extension(EXT_BACKING_FORMAT) is not None:
        report.add("extensions", h.header_length, "backing format extension without a "
                   "backing file")
    hidden = h.extension(EXT_HIDDEN)
    if hidden is not None and len(hidden.data) != 8:
        report.add("extensions", h.header_length, "hidden flag extension of {} bytes, SM writes "
                   "8".format(len(hidden.data)))
    if h.autoclear_features & ~0x3:
        report.add("autoclear_features", 88, "unknown autoclear bits 0x{:x}".format(
            h.autoclear_features & ~0x3))
    if h.autoclear_features & 1 and h.extension(EXT_BITMAPS) is None:
        report.add("autoclear_features", 88, "bitmaps bit set without the bitmaps extension")
    if h.size % 512:
        report.add("size", 24, "virtual size {} is not a multiple of 512".format(h.size))


class _Checker(object):

    def __init__(self, image, report):
        self.image = image
        self.report = report
        self.cs = image.cluster_size
        self.clusters = (image.file_size + self.cs - 1) // self.cs
        self.refs = _Counter(self.clusters)
        self.blocks = {}
        self._l2_uses = {}
        self.rb_entries = 1
        self._block_cache = {}

    def ref(self, offset, length, what, where, weight=1):
        first, last = offset // self.cs, (offset + max(length, 1) - 1) // self.cs
        for cluster in range(first, last + 1):
            if not self.refs.add(cluster, weight):
                self.report.add(what, where, "{} at {} lies past the end of the file ({} bytes)"
                                .format(what, cluster * self.cs, self.image.file_size))
                return

    def run(self):
        image, h = self.image, self.image.header
        if h.incompatible_features & INCOMPAT_DIRTY:
            self.report.add("incompatible_features", 72, "dirty bit set: refcounts may be stale")
        _check_header(image, self.report)
        self._load_refcount_table()
        self.ref(0, self.cs, "header", 0)
        if h.l1_size:
            self.ref(h.l1_table_offset, h.l1_size * 8, "l1_table", 40)
        self._walk_l1(bytes(image._l1), h.l1_table_offset, True)
        for snap in image.snapshots:
            raw = image._read(snap.l1_table_offset, snap.l1_size * 8)
            if snap.l1_size:
                self.ref(snap.l1_table_offset, snap.l1_size * 8, "snapshot_l1", snap.offset)
            self._walk_l1(raw, snap.l1_table_offset, False)
        if h.nb_snapshots:
            end = image.snapshots[-1].offset + image.snapshots[-1].length
            self.ref(h.snapshots_offset, end - h.snapshots_offset, "snapshot_table", 64)
        for l2, (weight, active) in sorted(self._l2_uses.items()):
            self._walk_l2(image._read(l2, self.cs), l2, weight, active)
        self._bitmaps()
        self._refcounts()

    def _walk_l1(self, l1, l1_offset, active):
        image, cs, uses, refs = self.image, self.cs, self._l2_uses, self.refs
        for index, (entry,) in enumerate(_U64.iter_unpack(l1[:len(l1) // 8 * 8])):
            if not entry:
                continue
            l2 = entry & t.OFFSET_MASK
            at = l1_offset + index * 8
            if entry & t.L1_RESERVED:
                self.report.add("l1_entry", at, "reserved bits set in 0x{:016x}".format(entry))
            if not l2:
                continue
            if l2 % cs or l2 + cs > image.file_size:
                self.report.add("l1_entry", at, "L2 table at {} unaligned or past EOF".format(l2))
                continue
            refs.add(l2 // cs)
            if active:
                self._copied(entry, l2, "l1_entry", at)
            # each L1 reaching an L2 table adds one reference to every cluster it maps:
            # count the L1 references first and walk each table once, weighted
            use = uses.get(l2)
            if use is None:
                uses[l2] = [1, active]
            else:
                use[0] += 1
                use[1] = use[1] or active

    def _walk_l2(self, table, l2, weight, active):
        image = self.image
        size = t.l2_entry_size(image.extended)
        for index in range(len(table) // size):
            entry, bitmap = t.l2_entry(table, index, image.extended)
            if not entry and not bitmap:
                continue
            at = l2 + index * size
            if entry & t.COMPRESSED:
                off, span = t.compressed_fields(entry, image.cluster_bits)
                if span > t.compressed_max_span(self.cs) or bitmap:
                    self.report.add("l2_entry", at, "compressed cluster of {} bytes".format(span))
                    continue
                self.ref(off, span, "compressed_cluster", at, weight)
                continue
            host = entry & t.OFFSET_MASK
            if entry & t.L2_RESERVED or (image.extended and entry & t.ZERO):
                self.report.add("l2_entry", at, "reserved bits set in 0x{:016x}".format(entry))
            if image.extended and (bitmap & t.ALL_SUBCLUSTERS) & (bitmap >> 32):
                self.report.add("l2_bitmap", at + 8, "subcluster both allocated and zero")
            if entry & t.ZERO and image.version < 3 and not image.extended:
                self.report.add("l2_entry", at, "zero flag in a version 2 image")
            if not host:
                if image.extended and bitmap & t.ALL_SUBCLUSTERS:
                    self.report.add("l2_bitmap", at + 8, "allocated subclusters without offset")
                continue
            if host % self.cs:
                self.report.add("l2_entry", at, "data cluster at {} not cluster aligned".format(
                    host))
                continue
            what = image.in_fixed_metadata(host, self.cs)
            if what:
                self.report.add("l2_entry", at, "data cluster at {} overlaps the {}".format(
                    host, what))
            self.ref(host, self.cs, "data_cluster", at, weight)
            if active:
                self._copied(entry, host, "l2_entry", at)

    def _copied(self, entry, host, field, at):
        stored = self._stored(host // self.cs)
        if bool(entry & t.COPIED) != (stored == 1):
            self.report.add("copied_flag", at, "copied flag {} but refcount {}".format(
                int(bool(entry & t.COPIED)), stored))

    def _stored(self, cluster):
        index, i = divmod(cluster, self.rb_entries)
        off = self.blocks.get(index)
        if not off:
            return 0
        block = self._block_cache.get(off)
        if block is None:
            block = self.image._read(off, self.cs)
            if len(self._block_cache) > 16:
                self._block_cache.clear()
            self._block_cache[off] = block
        return t.refcount_get(block, i, self.image.header.refcount_order)

    def _bitmaps(self):
        ext = self.image.header.extension(EXT_BITMAPS)
        if ext is None or len(ext.data) < 24:
            return
        if not self.image.header.autoclear_features & 1:
            # like qemu: bitmaps without their autoclear bit are stale and their clusters
            # count as leaks (a program without bitmap support wrote the image)
            self.report.add("autoclear_features", 88, "bitmaps extension present but its "
                            "autoclear bit is clear: the bitmaps are inconsistent")
            return
        _n, _r, dir_size, dir_off = struct.unpack(">IIQQ", ext.data[:24])
        file_size = self.image.file_size
        if dir_size > min(MAX_BITMAP_DIRECTORY, file_size) or dir_off % self.cs:
            self.report.add("bitmaps", None, "bitmap directory of {} bytes at {}".format(
                dir_size, dir_off))
            return
        self.ref(dir_off, dir_size, "bitmap_directory", None)
        raw = self.image._read(dir_off, dir_size)
        at, walked = 0, 0
        while at + _BITMAP_DIR.size <= len(raw):
            table_off, table_size, _f, _ty, _g, name_size, extra = _BITMAP_DIR.unpack_from(raw, at)
            walked += table_size * 8
            if walked > file_size:      # tables are disjoint in a sound file: no re-walk bombs
                self.report.add("bitmaps", dir_off + at, "bitmap tables add up to more than "
                                "the file holds")
                return
            if table_size:
                self.ref(table_off, table_size * 8, "bitmap_table", dir_off + at)
                self._bitmap_table(table_off, table_size * 8)
            at += (_BITMAP_DIR.size + extra + name_size + 7) & ~7

    def _bitmap_table(self, offset, length):
        """Count the data clusters one bitmap table names, reading it 1 MiB at a time."""
        done = 0
        while done < length:
            chunk = self.image._read(offset + done, min(1 << 20, length - done))
            if not chunk:
                return
            for i, (entry,) in enumerate(_U64.iter_unpack(chunk[:len(chunk) // 8 * 8])):
                data = entry & t.OFFSET_MASK
                if data:
                    self.ref(data, self.cs, "bitmap_data", offset + done + i * 8)
            done += len(chunk)

    def _load_refcount_table(self):
        image, h = self.image, self.image.header
        rt_off, rt_len = h.refcount_table_offset, h.refcount_table_clusters * self.cs
        table = image._read(rt_off, rt_len)
        self.rb_entries = self.cs * 8 // h.refcount_bits
        for index in range(len(table) // 8):
            entry = t.read_u64(table, index)
            if not entry:
                continue
            off = entry & ~t.REFTABLE_RESERVED
            at = rt_off + index * 8
            if entry & t.REFTABLE_RESERVED or off % self.cs or off + self.cs > image.file_size:
                self.report.add("refcount_table", at, "refcount block at {} unaligned or past "
                                "EOF".format(entry))
                continue
            self.blocks[index] = off

    def _refcounts(self):
        image, h = self.image, self.image.header
        self.ref(h.refcount_table_offset, h.refcount_table_clusters * self.cs,
                 "refcount_table", 48)
        for index, off in sorted(self.blocks.items()):
            self.ref(off, self.cs, "refcount_block", h.refcount_table_offset + index * 8)
        for cluster in range(self.clusters):
            want, have = self.refs.get(cluster), self._stored(cluster)
            if have < want:
                self.report.add("refcount", cluster * self.cs, "cluster {} has {} references "
                                "but refcount {}".format(cluster, want, have))
            elif have > want:
                self.report.add("leak", cluster * self.cs, "cluster {} leaked (refcount {}, "
                                "{} references)".format(cluster, have, want))
        for index, off in sorted(self.blocks.items()):
            first = index * self.rb_entries
            block = image._read(off, self.cs)
            if _any_from(block, max(0, self.clusters - first), h.refcount_order):
                self.report.add("leak", off, "refcount block {} counts clusters past the end of "
                                "the file".format(index))
