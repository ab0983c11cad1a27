"""L1 / L2 / refcount table entries and the snapshot table, as bit layouts.

Pure functions on integers and byte strings; the image module decides what an
entry means for a read and the checker what it means for consistency.
"""

import struct

OFFSET_MASK = 0x00FFFFFFFFFFFE00        # bits 9-55: host offset of a table / cluster
COPIED = 1 << 63                         # refcount is exactly one
COMPRESSED = 1 << 62
ZERO = 1                                 # standard descriptor bit 0 (v3, no extended L2)
L1_RESERVED = 0x7F000000000001FF         # bits 0-8 and 56-62
L2_RESERVED = 0x3F000000000001FE         # bits 1-8 and 56-61 of a standard entry
REFTABLE_RESERVED = 0x1FF

# what a guest cluster (or subcluster) is
UNALLOCATED, ZERO_KIND, DATA, COMPRESSED_KIND = "unallocated", "zero", "data", "compressed"
SUBCLUSTERS = 32
ALL_SUBCLUSTERS = (1 << SUBCLUSTERS) - 1

_U64 = struct.Struct(">Q")
_U128 = struct.Struct(">QQ")


def l2_entry_size(extended):
    return 16 if extended else 8


def l2_entries(cluster_bits, extended):
    return (1 << cluster_bits) // l2_entry_size(extended)


def l1_entries_needed(size, cluster_bits, extended):
    span = (1 << cluster_bits) * l2_entries(cluster_bits, extended)
    return (size + span - 1) // span


def read_u64(buf, index):
    return _U64.unpack_from(buf, index * 8)[0]


def l2_entry(buf, index, extended):
    """(entry, bitmap) of L2 slot ``index``; bitmap is 0 without extended L2."""
    if extended:
        return _U128.unpack_from(buf, index * 16)
    return _U64.unpack_from(buf, index * 8)[0], 0


def pack_l2_entry(entry, bitmap, extended):
    return _U128.pack(entry, bitmap) if extended else _U64.pack(entry)


def compressed_fields(entry, cluster_bits):
    """(host offset, byte span from that offset to the end of its last sector)."""
    x = 62 - (cluster_bits - 8)
    offset = entry & ((1 << x) - 1)
    sectors = (entry >> x) & ((1 << (cluster_bits - 8)) - 1)
    return offset, (sectors + 1) * 512 - (offset & 511)


def pack_compressed(offset, length, cluster_bits):
    """Descriptor for ``length`` compressed bytes at host ``offset`` (length >= 1)."""
    x = 62 - (cluster_bits - 8)
    sectors = ((offset + length - 1) >> 9) - (offset >> 9)
    return COMPRESSED | (sectors << x) | offset


def compressed_max_span(cluster_size):
    """Largest span a compressed cluster may take: less than a cluster of data, unaligned."""
    return cluster_size + 511


# ------------------------------------------------------------- refcounts


def refcount_get(block, index, order):
    """Entry ``index`` of a refcount block of 2**order-bit entries (bit 0 = least significant)."""
    bits = 1 << order
    if bits >= 8:
        width = bits // 8
        return int.from_bytes(block[index * width:(index + 1) * width], "big")
    per_byte = 8 // bits
    byte = block[index // per_byte]
    shift = (index % per_byte) * bits
    return (byte >> shift) & ((1 << bits) - 1)


def refcount_set(block, index, order, value):
    """Set entry ``index`` in the bytearray ``block``; return (byte offset, bytes changed)."""
    bits = 1 << order
    if value < 0 or value >= (1 << bits):
        raise ValueError("refcount {} does not fit {} bits".format(value, bits))
    if bits >= 8:
        width = bits // 8
        start = index * width
        block[start:start + width] = value.to_bytes(width, "big")
        return start, bytes(block[start:start + width])
    per_byte = 8 // bits
    pos = index // per_byte
    shift = (index % per_byte) * bits
    mask = ((1 << bits) - 1) << shift
    block[pos] = (block[pos] & ~mask & 0xFF) | (value << shift)
    return pos, bytes(block[pos:pos + 1])


def refcount_max(order):
    return (1 << (1 << order)) - 1


# --------------------------------------------------------------- snapshots

_SNAP = struct.Struct(">QIHHIIQII")
SNAPSHOT_FIXED = _SNAP.size          # 40
MAX_SNAPSHOTS = 65536
MAX_SNAPSHOT_EXTRA = 1024
V3_SNAPSHOT_EXTRA = 16


class Snapshot(object):
    __slots__ = ("l1_table_offset", "l1_size", "id", "name", "offset", "length")

    def __init__(self, l1_table_offset, l1_size, ident, name, offset, length):
        self.l1_table_offset, self.l1_size = l1_table_offset, l1_size
        self.id, self.name, self.offset, self.length = ident, name, offset, length


def parse_snapshot(buf, at, min_extra=0):
    """One snapshot table entry starting at ``buf[at]``; None when ``buf`` ends too early.

    ``min_extra``: version 3 entries carry at least 16 bytes of extra data (VM state size
    and virtual disk size).
    """
    if at + SNAPSHOT_FIXED > len(buf):
        return None
    (l1_off, l1_size, id_len, name_len, _s, _ns, _vm_clock, _vm_state,
     extra) = _SNAP.unpack_from(buf, at)
    if extra > MAX_SNAPSHOT_EXTRA or extra < min_extra:
        raise ValueError("snapshot extra data of {} bytes".format(extra))
    end = at + SNAPSHOT_FIXED + extra + id_len + name_len
    if end > len(buf):
        return None
    pos = at + SNAPSHOT_FIXED + extra
    ident = bytes(buf[pos:pos + id_len]).decode("utf-8", "replace")
    name = bytes(buf[pos + id_len:end]).decode("utf-8", "replace")
    length = (end - at + 7) & ~7
    return Snapshot(l1_off, l1_size, ident, name, at, length)
