"""Disk geometry (cylinders, heads, sectors per track) by the VHD spec's algorithm.

The algorithm rounds the size *down*; XenServer keeps the exact ``current_size`` and
only uses the geometry for the footer, so a check only requires it not to exceed it.
"""

MAX_CHS_SECTORS = 65535 * 16 * 255


def chs_for_size(size):
    """Return (cylinders, heads, sectors_per_track) for a virtual size in bytes."""
    total = min(size // 512, MAX_CHS_SECTORS)
    if total >= 65535 * 16 * 63:
        spt, heads = 255, 16
        cyl_heads = total // spt
    else:
        spt = 17
        cyl_heads = total // spt
        heads = (cyl_heads + 1023) // 1024
        if heads < 4:
            heads = 4
        if cyl_heads >= heads * 1024 or heads > 16:
            spt, heads = 31, 16
            cyl_heads = total // spt
        if cyl_heads >= heads * 1024:
            spt, heads = 63, 16
            cyl_heads = total // spt
    return cyl_heads // heads, heads, spt


def chs_size(geometry):
    """Bytes addressed by a (cylinders, heads, sectors) triple."""
    cyl, heads, spt = geometry
    return cyl * heads * spt * 512


def pack_geometry(geometry):
    cyl, heads, spt = geometry
    return (cyl << 16) | (heads << 8) | spt


def unpack_geometry(value):
    return (value >> 16) & 0xFFFF, (value >> 8) & 0xFF, value & 0xFF
