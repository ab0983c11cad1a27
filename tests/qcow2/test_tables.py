"""Table entry layouts: refcount widths 1-64, compressed descriptors, L2 entries, snapshots."""

import struct

import pytest

from vhdport.qcow2.format import tables as t


@pytest.mark.parametrize("order", range(7))
def test_refcount_widths(order):
    bits = 1 << order
    block = bytearray(512)
    entries = 512 * 8 // bits
    values = [(i * 7919) % (t.refcount_max(order) + 1) for i in range(entries)]
    for i, v in enumerate(values):
        at, raw = t.refcount_set(block, i, order, v)
        assert block[at:at + len(raw)] == raw
    assert [t.refcount_get(block, i, order) for i in range(entries)] == values
    if bits < 8:       # bit 0 is the least significant bit of the first byte
        block = bytearray(1)
        t.refcount_set(block, 0, order, 1)
        assert block[0] == 1
    with pytest.raises(ValueError):
        t.refcount_set(bytearray(512), 0, order, t.refcount_max(order) + 1)


@pytest.mark.parametrize("cluster_bits", [9, 12, 16, 21])
def test_compressed_descriptor_round_trip(cluster_bits):
    for offset, length in [(0x10000 + 3, 100), (0x12345, 1 << cluster_bits), (511, 2)]:
        entry = t.pack_compressed(offset, length, cluster_bits)
        assert entry & t.COMPRESSED
        got_offset, span = t.compressed_fields(entry, cluster_bits)
        assert got_offset == offset
        assert length <= span < length + 1024


def test_l2_entries():
    assert t.l2_entries(16, False) == 8192 and t.l2_entries(16, True) == 4096
    assert t.l1_entries_needed(1 << 30, 16, False) == 2
    assert t.l1_entries_needed(0, 16, False) == 0
    raw = t.pack_l2_entry(5, 7, True)
    assert t.l2_entry(raw, 0, True) == (5, 7)
    assert t.l2_entry(t.pack_l2_entry(5, 0, False), 0, False) == (5, 0)


def test_snapshot_entry():
    raw = struct.pack(">QIHHIIQII", 0x30000, 4, 1, 4, 0, 0, 0, 0, 16) + bytes(16) + b"1" + b"snap"
    snap = t.parse_snapshot(raw + bytes(3), 0)
    assert (snap.l1_table_offset, snap.l1_size, snap.id, snap.name, snap.length) == \
        (0x30000, 4, "1", "snap", 64)
    assert t.parse_snapshot(raw[:50], 0) is None
    bad = struct.pack(">QIHHIIQII", 0, 0, 0, 0, 0, 0, 0, 0, 5000)
    with pytest.raises(ValueError):
        t.parse_snapshot(bad, 0)


def test_v3_snapshot_needs_its_extra_data():
    raw = struct.pack(">QIHHIIQII", 0, 0, 0, 0, 0, 0, 0, 0, 0)
    assert t.parse_snapshot(raw, 0).length == 40
    with pytest.raises(ValueError):
        t.parse_snapshot(raw, 0, min_extra=t.V3_SNAPSHOT_EXTRA)
