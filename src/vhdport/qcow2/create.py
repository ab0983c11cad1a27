"""Create QCOW2 images as SM does (``qemu-img create -f qcow2`` with QEMU 9.1's defaults).

Layout is qemu's: header cluster, refcount table, refcount block(s), L1 table; the file
ends where the L1 table ends.  With ``preallocate`` (SM's static VDIs, qemu's
``preallocation=full``) every guest cluster gets a data cluster after the L2 tables.
"""

import os

from ..errors import ChainError, LimitError, Qcow2FormatError
from .format import tables as t
from .format.header import (EXT_BACKING_FORMAT, EXT_FEATURE_TABLE, INCOMPAT_EXTL2, Extension,
                            Header, feature_table)
from .image import Qcow2File

DEFAULT_CLUSTER_SIZE = 64 * 1024
MAX_VIRTUAL_SIZE = 17589500641280       # SM's limit, just under 16 TiB
#: qemu-img (7.2 to 9.1) writes its feature name table only into clusters this large
FEATURE_TABLE_MIN_CLUSTER = 8192


def _cluster_bits(cluster_size):
    bits = cluster_size.bit_length() - 1
    if cluster_size != 1 << bits or not 9 <= bits <= 21:
        raise Qcow2FormatError("cluster size {} is not a power of two from 512 B to 2 MiB".format(
            cluster_size))
    return bits


def _refcount_order(refcount_bits):
    order = refcount_bits.bit_length() - 1
    if refcount_bits != 1 << order or order > 6:
        raise Qcow2FormatError("refcount width {} is not 1, 2, 4, 8, 16, 32 or 64".format(
            refcount_bits))
    return order


def new_header(size, cluster_size=DEFAULT_CLUSTER_SIZE, refcount_bits=16, version=3,
               backing_name=None, backing_format="qcow2", extended_l2=False):
    h = Header(version=version, cluster_bits=_cluster_bits(cluster_size), size=size,
               refcount_order=_refcount_order(refcount_bits))
    if version == 2:
        if refcount_bits != 16 or extended_l2:
            raise Qcow2FormatError("version 2 images have 16-bit refcounts and no extended L2")
        h.extra = b""
    else:
        if extended_l2:
            h.incompatible_features |= INCOMPAT_EXTL2
        if backing_name and backing_format:
            h.extensions.append(Extension(EXT_BACKING_FORMAT, backing_format.encode("utf-8")))
        if h.cluster_size >= FEATURE_TABLE_MIN_CLUSTER:
            h.extensions.append(Extension(EXT_FEATURE_TABLE, feature_table()))
    if version == 2 and backing_name and backing_format:
        h.extensions.append(Extension(EXT_BACKING_FORMAT, backing_format.encode("utf-8")))
    h.backing_name = backing_name
    return h


def _layout(h, data_clusters, l2_tables):
    """Cluster counts of refcount table and blocks that cover the whole file, themselves too."""
    cs = h.cluster_size
    l1_clusters = (h.l1_size * 8 + cs - 1) // cs
    rb_entries = cs * 8 // h.refcount_bits
    rt, rb = 1, 1
    while True:
        total = 1 + rt + rb + l1_clusters + l2_tables + data_clusters
        need_rb = (total + rb_entries - 1) // rb_entries
        need_rt = (need_rb * 8 + cs - 1) // cs
        if (need_rb, need_rt) == (rb, rt):
            return rt, rb, l1_clusters, total
        rb, rt = max(rb, need_rb), max(rt, need_rt)


def create(path, size, cluster_size=DEFAULT_CLUSTER_SIZE, preallocate=False, refcount_bits=16,
           version=3, backing_name=None, backing_format="qcow2", extended_l2=False):
    """A new image of ``size`` bytes (rounded up to 512, as qemu-img does); never overwrites."""
    size = (size + 511) // 512 * 512
    if size < 0 or size > MAX_VIRTUAL_SIZE:
        raise LimitError("{}: size {} outside 0..{} bytes (SM's QCOW2 limit)".format(
            path, size, MAX_VIRTUAL_SIZE))
    try:
        h = new_header(size, cluster_size, refcount_bits, version, backing_name, backing_format,
                       extended_l2)
    except Qcow2FormatError as e:      # say which file the bad option was for
        raise Qcow2FormatError(e.fields.get("reason"), path=path)
    cs = h.cluster_size
    h.l1_size = t.l1_entries_needed(size, h.cluster_bits, extended_l2)
    guest_clusters = (size + cs - 1) // cs if preallocate else 0
    l2_tables = h.l1_size if preallocate else 0
    rt, rb, l1_clusters, total = _layout(h, guest_clusters, l2_tables)
    h.refcount_table_offset, h.refcount_table_clusters = cs, rt
    h.l1_table_offset = (1 + rt + rb) * cs if h.l1_size else 0
    header = h.pack()
    try:
        fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_EXCL, 0o644)
    except OSError as e:
        raise Qcow2FormatError("cannot create: {}".format(e.strerror), path=path)
    try:
        with os.fdopen(fd, "r+b") as f:
            _write_metadata(f, h, header, rt, rb, total)
            if preallocate:
                _write_preallocated(f, h, l1_clusters, guest_clusters)
            else:
                f.seek(h.l1_table_offset)
                f.write(bytes(h.l1_size * 8))
                f.truncate(h.l1_table_offset + h.l1_size * 8 if h.l1_size else
                           (1 + rt + rb) * cs)
            f.flush()
            os.fsync(f.fileno())
    except BaseException:
        os.unlink(path)
        raise
    return h


def _write_metadata(f, h, header, rt, rb, total):
    cs = h.cluster_size
    f.write(header)
    table = bytearray(rt * cs)
    for i in range(rb):
        table[i * 8:(i + 1) * 8] = ((1 + rt + i) * cs).to_bytes(8, "big")
    f.seek(cs)
    f.write(table)
    rb_entries = cs * 8 // h.refcount_bits
    for i in range(rb):
        block = bytearray(cs)
        for index in range(min(rb_entries, total - i * rb_entries)):
            t.refcount_set(block, index, h.refcount_order, 1)
        f.write(block)


def _write_preallocated(f, h, l1_clusters, guest_clusters):
    cs = h.cluster_size
    per_l2 = t.l2_entries(h.cluster_bits, h.extended_l2)
    l2_start = h.l1_table_offset + l1_clusters * cs
    data_start = l2_start + h.l1_size * cs
    l1 = bytearray(l1_clusters * cs)
    for i in range(h.l1_size):
        l1[i * 8:(i + 1) * 8] = ((l2_start + i * cs) | t.COPIED).to_bytes(8, "big")
    f.seek(h.l1_table_offset)
    f.write(l1)
    bitmap = t.ALL_SUBCLUSTERS if h.extended_l2 else 0
    for i in range(h.l1_size):
        table = bytearray(cs)
        for j in range(min(per_l2, guest_clusters - i * per_l2)):
            host = data_start + (i * per_l2 + j) * cs
            raw = t.pack_l2_entry(host | t.COPIED, bitmap, h.extended_l2)
            table[j * len(raw):(j + 1) * len(raw)] = raw
        f.write(table)
    end = data_start + guest_clusters * cs
    f.truncate(end)
    try:
        os.posix_fallocate(f.fileno(), data_start, end - data_start)
    except (AttributeError, OSError):
        pass        # a sparse file still reads as zeros


def create_snapshot(child_path, parent_path, cluster_size=None):
    """A child whose backing file is ``parent_path``, named relative to the child's directory."""
    child_dir = os.path.dirname(os.path.abspath(child_path))
    parent_abs = os.path.abspath(os.path.join(child_dir, parent_path))
    with Qcow2File.open(parent_abs) as parent:
        size, parent_cs = parent.virtual_size, parent.cluster_size
    name = os.path.relpath(parent_abs, child_dir)
    if len(name.encode("utf-8")) > 1023:
        raise ChainError("backing name {!r} longer than 1023 bytes".format(name))
    return create(child_path, size, cluster_size or parent_cs, backing_name=name,
                  backing_format="qcow2")
