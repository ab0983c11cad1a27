"""Create fixed, dynamic and differencing disks laid out exactly as blktap's vhd-util does.

Layout of a dynamic disk: footer copy (0), header (512), BAT (1536, padded to a
sector), batmap header and map, then -- for a differencing disk -- three 512-byte
parent locator slots (MacX, W2ku, W2ru), then blocks whose data is 4 KiB aligned,
then the footer.  Creator ``tap`` version 1.3, as XenServer's own files.
"""

import os

from ..errors import ChainError, FormatError, LimitError
from ..format import batmap as batmaps
from ..format.bat import Bat
from ..format.footer import (DISK_DIFFERENCING, DISK_DYNAMIC, DISK_FIXED, FOOTER_SIZE,
                             NO_DATA_OFFSET, Footer, to_vhd_time, vhd_now)
from ..format.geometry import chs_for_size
from ..format.header import DEFAULT_BLOCK_SIZE, DynamicHeader, encode_name
from ..format.layout import (HEADER_OFFSET, MAX_BAT_ENTRIES, MAX_BLOCK_SIZE, MIN_BLOCK_SIZE,
                             TABLE_OFFSET, batmap_offset, block_count)
from ..format.locator import (CODE_MACX, CODE_W2KU, CODE_W2RU, SLOT_SIZE, ParentLocator,
                              encode_path)
from .disk import MAX_VIRTUAL_SIZE, SECTOR, VhdFile, new_uuid

LOCATOR_CODES = (CODE_MACX, CODE_W2KU, CODE_W2RU)


def check_size(size, path="<new disk>"):
    if size <= 0 or size % SECTOR:
        raise FormatError("virtual size {} must be a positive multiple of 512".format(size),
                          path=path)
    if size > MAX_VIRTUAL_SIZE:
        raise LimitError("virtual size {} exceeds XenServer's VHD limit of 2040 GiB".format(size))


def _check_block_size(block_size, path="<new disk>"):
    if block_size < MIN_BLOCK_SIZE or block_size & (block_size - 1) \
            or block_size > MAX_BLOCK_SIZE:
        raise FormatError("block size {} must be a power of two between {} B and {} MiB".format(
            block_size, MIN_BLOCK_SIZE, MAX_BLOCK_SIZE >> 20), path=path)


def _footer(size, disk_type, uuid):
    return Footer(
        data_offset=NO_DATA_OFFSET if disk_type == DISK_FIXED else HEADER_OFFSET,
        timestamp=vhd_now(), original_size=size, current_size=size,
        geometry=chs_for_size(size), disk_type=disk_type, uuid=new_uuid(uuid))


def _write_new(path, pieces, end):
    """Write (offset, bytes) pieces into a new file of ``end`` bytes; refuse to overwrite."""
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
    except OSError as e:
        raise FormatError("cannot create: {}".format(e.strerror), path=path)
    try:
        with os.fdopen(fd, "wb") as f:
            f.truncate(end)
            for offset, data in pieces:
                f.seek(offset)
                f.write(data)
            f.flush()
            os.fsync(f.fileno())
    except BaseException:
        os.unlink(path)
        raise


def create_fixed(path, size, uuid=None):
    """A fixed disk: ``size`` bytes of data (sparse zeros) and a footer."""
    check_size(size, path)
    footer = _footer(size, DISK_FIXED, uuid)
    _write_new(path, [(size, footer.pack())], size + FOOTER_SIZE)
    return footer.uuid


def create_dynamic(path, size, block_size=DEFAULT_BLOCK_SIZE, uuid=None, _parent=None):
    """A dynamic disk (or, with ``_parent``, a differencing one) with nothing allocated."""
    check_size(size, path)
    _check_block_size(block_size, path)
    entries = block_count(size, block_size)
    if entries > MAX_BAT_ENTRIES:
        raise LimitError("{} bytes in blocks of {} need {} BAT entries, more than the {} "
                         "supported: use larger blocks".format(size, block_size, entries,
                                                               MAX_BAT_ENTRIES))
    footer = _footer(size, DISK_DIFFERENCING if _parent else DISK_DYNAMIC, uuid)
    header = DynamicHeader(table_offset=TABLE_OFFSET, max_table_entries=entries,
                           block_size=block_size)
    bat = Bat.empty(entries)
    bm_at = batmap_offset(TABLE_OFFSET, entries)
    map_sectors = batmaps.map_sectors(entries)
    map_bytes = bytes(map_sectors * SECTOR)
    bm_header = batmaps.BatmapHeader(map_offset=bm_at + batmaps.HEADER_SIZE,
                                     map_sectors=map_sectors,
                                     checksum=batmaps.checksum(map_bytes))
    end = bm_header.map_offset + len(map_bytes)
    pieces = [(TABLE_OFFSET, bat.pack()), (bm_at, bm_header.pack()),
              (bm_header.map_offset, map_bytes)]
    if _parent is not None:
        parent_uuid, parent_mtime, parent_name = _parent
        header.parent_uuid = parent_uuid
        header.parent_timestamp = to_vhd_time(parent_mtime)
        header.parent_name = parent_name
        for i, code in enumerate(LOCATOR_CODES):
            payload = encode_path(code, parent_name)
            header.locators[i] = ParentLocator(code, SLOT_SIZE, len(payload), end)
            pieces.append((end, payload))
            end += SLOT_SIZE
    raw_footer = footer.pack()
    pieces[:0] = [(0, raw_footer), (HEADER_OFFSET, header.pack())]
    pieces.append((end, raw_footer))
    _write_new(path, pieces, end + FOOTER_SIZE)
    return footer.uuid


def parent_link(child_path, parent_path):
    """(uuid, mtime, relative name) of ``parent_path`` as seen from the child's directory."""
    child_dir = os.path.dirname(os.path.abspath(child_path))
    parent_abs = os.path.abspath(os.path.join(child_dir, parent_path))
    with VhdFile.open(parent_abs) as parent:
        parent_uuid, size = parent.uuid, parent.virtual_size
    name = os.path.relpath(parent_abs, child_dir)
    try:
        encode_name(name)
    except FormatError:
        raise ChainError("parent path {!r} is too long for the VHD header".format(name))
    return parent_uuid, os.stat(parent_abs).st_mtime, name, size


def create_snapshot(child_path, parent_path, uuid=None, block_size=DEFAULT_BLOCK_SIZE):
    """A differencing child of ``parent_path`` (relative to the child's dir, or absolute)."""
    parent_uuid, mtime, name, size = parent_link(child_path, parent_path)
    return create_dynamic(child_path, size, block_size, uuid, _parent=(parent_uuid, mtime, name))
