"""Structural validation of VHD files and chains, at least as strict as ``vhd-util check``.

Checking only reads: every file is opened read-only and nothing is ever written.
Problems come back as a list of :class:`Defect` rather than as exceptions so that a
caller sees all of them at once; an unreadable file is a defect too.  What
:meth:`VhdFile.open` already refuses (cookies, checksums, backup footer, BAT bounds)
becomes one defect; the checks below go further on files it accepts.
"""

import collections
import os
import stat
import time

from ..errors import ChecksumError, FormatError, VhdportError
from ..format import batmap as batmaps
from ..format import bitmap as bitmaps
from ..format.bat import UNUSED, padded_size
from ..format.footer import (CREATOR_TAP, CREATOR_VERSION_TAP, DISK_FIXED, FEATURES_RESERVED,
                             FORMAT_VERSION, NO_DATA_OFFSET, from_vhd_time)
from ..format.geometry import chs_for_size, pack_geometry
from ..format.header import HEADER_SIZE, HEADER_VERSION, LOCATORS_OFFSET, PARENT_NAME_SIZE
from ..format.layout import batmap_offset, block_count
from ..format.locator import (CODE_MACX, CODE_NONE, CODE_W2KU, CODE_W2RU, LOCATOR_SIZE,
                              decode_path)
from ..format.layout import MAX_LOCATOR_BYTES
from .chain import MAX_DEPTH, file_identity
from .checkbat import check_bat, check_batmap_bits
from .disk import MAX_VIRTUAL_SIZE, SECTOR, VhdFile

#: vhd-util allows timestamps this far in the future (clock skew with NFS servers)
TIMESTAMP_SLACK = 1800
FEATURE_TEMPORARY = 0x1
#: platform codes libvhd accepts: the three blktap writes plus Wi2r, Wi2k and "Mac "
CODE_WI2R, CODE_WI2K, CODE_MAC = 0x57693272, 0x5769326B, 0x4D616320
VALID_CODES = (CODE_NONE, CODE_MACX, CODE_W2KU, CODE_W2RU, CODE_WI2R, CODE_WI2K, CODE_MAC)
PATH_CODES = (CODE_MACX, CODE_W2KU, CODE_W2RU)
#: more defects of one kind than this are summarised in one line
MAX_PER_FIELD = 10


class Defect(collections.namedtuple("Defect", "field offset message path")):
    """One problem: which field, at which byte offset of the file, what is wrong, in which file."""

    __slots__ = ()

    def __str__(self):
        where = " at offset {}".format(self.offset)
        if where + ":" in self.message or self.message.endswith(where) or where + " " in self.message:
            where = ""      # the message already names the offset: say it once
        return "{}: {}{}: {}".format(self.path, self.field, where, self.message)


Defect.__new__.__defaults__ = (None,)


class _Report(object):
    """Collects defects of one file, capping each field so a garbage BAT stays readable."""

    def __init__(self, path):
        self.path = path
        self.defects = []
        self._counts = collections.Counter()

    def add(self, field, offset, message):
        self._counts[field] += 1
        if self._counts[field] <= MAX_PER_FIELD:
            self.defects.append(Defect(field, offset, message, self.path))

    def room(self, field):
        """How many more defects of ``field`` would still be listed."""
        return max(0, MAX_PER_FIELD - self._counts[field])

    def count_more(self, field, count):
        """Count ``count`` defects of ``field`` that are not described (past the cap)."""
        self._counts[field] += count

    def finish(self):
        for field, count in sorted(self._counts.items()):
            if count > MAX_PER_FIELD:
                self.defects.append(Defect(field, 0, "{} more {} defects not listed".format(
                    count - MAX_PER_FIELD, field), self.path))
        return self.defects


def defect_from_error(path, err):
    """The Defect equivalent of a FormatError raised while opening ``path``."""
    fields = getattr(err, "fields", {})
    offset = fields.get("offset")
    offset = offset if isinstance(offset, int) else 0
    if isinstance(err, ChecksumError):
        what = str(fields.get("what", "structure")).split(" (")[0]
        field = "header checksum" if what == "dynamic header" else what + " checksum"
        message = "stored 0x{:08x}, computed 0x{:08x}".format(fields["stored"], fields["computed"])
        return Defect(field, offset, message, path)
    message = fields.get("reason") or str(err)
    prefix = "{}: ".format(path)
    if message.startswith(prefix):
        message = message[len(prefix):]
    return Defect(fields.get("field") or "structure", offset, message, path)


def _now_vhd():
    return int(time.time()) - from_vhd_time(0)


class _Reader(object):
    """Bounded read-only access for the checks (separate from the VhdFile's own handle)."""

    def __init__(self, fileobj, size):
        self._f = fileobj
        self.size = size

    def read(self, offset, length):
        if offset < 0 or offset >= self.size or length <= 0:
            return b""
        self._f.seek(offset)
        return self._f.read(min(length, self.size - offset)) or b""


# ------------------------------------------------------------------ one file


def check_file(path, check_parent=True):
    """Return the list of defects of the VHD file ``path`` (empty when it is valid).

    With ``check_parent`` (what ``vhd-util check`` does) a differencing disk's
    parent must be found through its locators and carry the recorded uuid; pass
    False to check a file alone, e.g. before its chain is relinked.
    """
    report = _Report(path)
    try:
        mode = os.stat(path).st_mode
    except (OSError, ValueError) as e:
        report.add("file", 0, "cannot stat: {}".format(getattr(e, "strerror", None) or e))
        return report.finish()
    if not stat.S_ISREG(mode) and not stat.S_ISBLK(mode):
        report.add("file", 0, "not a regular file or block device")
        return report.finish()
    try:
        disk = VhdFile.open(path)
    except FormatError as e:
        report.defects.append(defect_from_error(path, e))
        return report.finish()
    try:
        with disk, open(path, "rb", buffering=0) as raw:
            reader = _Reader(raw, disk.file_size)
            _check_footer(disk, report)
            if disk.footer.is_dynamic:
                _check_dynamic(disk, reader, report)
                if disk.is_differencing and check_parent:
                    _check_parent_link(disk, report)
    except OSError as e:
        report.add("file", 0, "read error: {}".format(e.strerror or e))
    except VhdportError as e:
        report.defects.append(defect_from_error(path, e))
    return report.finish()


def _check_footer(disk, report):
    footer, at = disk.footer, disk.footer_offset
    if not footer.features & FEATURES_RESERVED:
        report.add("features", at + 8, "reserved feature bit 0x2 is not set")
    if footer.features & ~(FEATURES_RESERVED | FEATURE_TEMPORARY):
        report.add("features", at + 8, "unknown feature bits 0x{:08x}".format(footer.features))
    if footer.version != FORMAT_VERSION:
        report.add("format version", at + 12, "file format version 0x{:08x}, expected 0x00010000"
                   .format(footer.version))
    expected = NO_DATA_OFFSET if footer.disk_type == DISK_FIXED else 512
    if footer.data_offset != expected:
        report.add("data offset", at + 16, "data offset {} for a {} disk, expected {}".format(
            footer.data_offset, footer.type_name, expected))
    ahead = footer.timestamp - _now_vhd()
    if ahead > TIMESTAMP_SLACK:
        report.add("timestamp", at + 24, "creation time {} s in the future".format(ahead))
    if footer.creator_app == CREATOR_TAP and footer.creator_version > CREATOR_VERSION_TAP:
        report.add("creator version", at + 32, "unsupported tap creator version 0x{:08x}".format(
            footer.creator_version))
    size = footer.current_size
    if size % SECTOR:
        report.add("virtual size", at + 48, "virtual size {} is not a multiple of 512".format(size))
    if size > MAX_VIRTUAL_SIZE:
        report.add("virtual size", at + 48, "virtual size {} exceeds XenServer's limit of 2040 GiB"
                   .format(size))
    if pack_geometry(footer.geometry) > pack_geometry(chs_for_size(size)):
        report.add("geometry", at + 56, "geometry {} larger than {} computed for {} bytes".format(
            footer.geometry, chs_for_size(size), size))
    if footer.saved_state not in (0, 1):
        report.add("saved state", at + 84, "saved state {} is not 0 or 1".format(footer.saved_state))
    for name, copy, base in (("footer", footer, at), ("backup footer", disk.backup_footer, 0)):
        if copy is not None and copy.hidden not in (0, 1):
            report.add("hidden", base + 85, "{} hidden flag {} is not 0 or 1".format(name, copy.hidden))
    backup = disk.backup_footer
    if backup is not None and backup.hidden != footer.hidden:
        report.add("backup footer", 85, "hidden flag {} in the copy at offset 0 but {} in the footer "
                   "at offset {} (an interrupted set-hidden: setting the flag again repairs it)"
                   .format(backup.hidden, footer.hidden, at))
    if any(footer.reserved):
        report.add("reserved", at + 86, "reserved footer bytes are not zero")
    if footer.uuid.int == 0:
        report.add("uuid", at + 68, "uuid is all zero")
    if footer.disk_type == DISK_FIXED:
        if at != size:
            report.add("size", at, "fixed disk of {} bytes has its footer at offset {}".format(
                size, at))
    elif disk.file_size % SECTOR not in (0, SECTOR - 1):
        report.add("size", disk.file_size, "file size {} is not a whole number of sectors".format(
            disk.file_size))


def _check_dynamic(disk, reader, report):
    header, hat = disk.header, disk.footer.data_offset
    entries = header.max_table_entries
    if header.data_offset != NO_DATA_OFFSET:
        report.add("header data offset", hat + 8, "header data offset {} is not all ones".format(
            header.data_offset))
    if header.version != HEADER_VERSION:
        report.add("header version", hat + 24, "header version 0x{:08x}, expected 0x00010000"
                   .format(header.version))
    table_end = header.table_offset + padded_size(entries)
    if header.table_offset == 0 or header.table_offset % SECTOR:
        report.add("table offset", hat + 16, "BAT offset {} is not a non-zero multiple of 512"
                   .format(header.table_offset))
    for start, end, name in ((0, SECTOR, "footer copy"), (hat, hat + HEADER_SIZE, "header")):
        if _overlaps(header.table_offset, table_end, start, end):
            report.add("table offset", hat + 16, "BAT at {} overlaps the {}".format(
                header.table_offset, name))
    if header.reserved1 != bytes(4) or any(header.reserved2):
        report.add("header reserved", hat + 60, "reserved header bytes are not zero")
    need = block_count(disk.virtual_size, header.block_size)
    _check_parent_fields(disk, reader, report)
    regions = [(0, SECTOR, "footer copy"), (hat, hat + HEADER_SIZE, "header"),
               (header.table_offset, table_end, "BAT")]
    batmap_regions, batmap_header = _check_batmap(disk, reader, report)
    regions += batmap_regions
    regions += _check_locators(disk, reader, report, regions)
    end_of_metadata = max(end for _start, end, _name in regions)
    check_bat(disk, report, end_of_metadata, need)
    if batmap_header is not None:
        check_batmap_bits(disk, reader, report, batmap_header)


def _overlaps(a_start, a_end, b_start, b_end):
    return a_start < b_end and b_start < a_end


def _check_parent_fields(disk, reader, report):
    header, hat = disk.header, disk.footer.data_offset
    raw_name = reader.read(hat + 64, PARENT_NAME_SIZE)
    if not disk.is_differencing:
        if header.parent_uuid.int:
            report.add("parent uuid", hat + 40, "dynamic disk records a parent uuid")
        if header.parent_timestamp:
            report.add("parent timestamp", hat + 56, "dynamic disk records a parent timestamp")
        if any(raw_name):
            report.add("parent name", hat + 64, "dynamic disk records a parent name")
        raw_locators = reader.read(hat + LOCATORS_OFFSET, 8 * LOCATOR_SIZE)
        if any(raw_locators):
            report.add("parent locator", hat + LOCATORS_OFFSET, "dynamic disk has parent locators")
        return
    if header.parent_uuid.int == 0:
        report.add("parent uuid", hat + 40, "differencing disk records no parent uuid")
    elif header.parent_uuid == disk.uuid:
        report.add("parent", hat + 40, "cycle: records its own uuid {} as its parent's (a disk "
                   "cannot be its own parent)".format(disk.uuid))
    ahead = header.parent_timestamp - _now_vhd()
    if ahead > TIMESTAMP_SLACK:
        report.add("parent timestamp", hat + 56, "parent time {} s in the future".format(ahead))
    try:
        text = _strip_name(raw_name).decode("utf-16-be")
    except UnicodeDecodeError:
        report.add("parent name", hat + 64, "parent name is not valid UTF-16BE")
        return
    if not text:
        report.add("parent name", hat + 64, "differencing disk has an empty parent name")


def _strip_name(raw):
    for i in range(0, len(raw) - 1, 2):
        if raw[i] == 0 and raw[i + 1] == 0:
            return raw[:i]
    return raw


def _check_locators(disk, reader, report, metadata):
    """Validate the 8 parent locators; return the regions their data occupies."""
    if not disk.is_differencing:
        return []
    header, hat = disk.header, disk.footer.data_offset
    regions, seen, found = [], set(), 0
    parent_base = os.path.basename(header.parent_name.replace("\\", "/"))
    for i, loc in enumerate(header.locators):
        at = hat + LOCATORS_OFFSET + i * LOCATOR_SIZE
        if loc.code not in VALID_CODES:
            report.add("parent locator", at, "locator {} has invalid platform code 0x{:08x}".format(
                i, loc.code))
            continue
        if loc.code == CODE_NONE:
            if loc.data_space or loc.data_length or loc.data_offset or loc.reserved:
                report.add("parent locator", at, "unused locator {} is not zeroed".format(i))
            continue
        if loc.code in seen:
            report.add("parent locator", at, "duplicate {} locator {}".format(loc.name, i))
        seen.add(loc.code)
        size = loc.space_bytes if loc.data_space < SECTOR or loc.data_space % SECTOR == 0 else 0
        problems = []
        if not loc.data_offset:
            problems.append("data offset is zero")
        if not size:
            problems.append("data space {} is neither sectors nor whole sectors of bytes".format(
                loc.data_space))
        if not loc.data_length or loc.data_length > size:
            problems.append("data length {} not within its space of {} bytes".format(
                loc.data_length, size))
        if size > MAX_LOCATOR_BYTES:
            problems.append("data space {} larger than the {} bytes a parent path needs".format(
                size, MAX_LOCATOR_BYTES))
        if loc.data_offset + size > disk.footer_offset:
            problems.append("data at {}+{} lies beyond the data end {}".format(
                loc.data_offset, size, disk.footer_offset))
        if loc.reserved:
            problems.append("reserved field is not zero")
        for start, end, name in metadata + regions:
            if _overlaps(loc.data_offset, loc.data_offset + size, start, end):
                problems.append("data overlaps the {}".format(name))
        if problems:
            report.add("parent locator", at, "{} locator {}: {}".format(
                loc.name, i, "; ".join(problems)))
            continue
        regions.append((loc.data_offset, loc.data_offset + size, "{} locator".format(loc.name)))
        if loc.code not in PATH_CODES:
            continue
        try:
            text = decode_path(loc.code, reader.read(loc.data_offset, loc.data_length), disk.path)
        except FormatError:
            report.add("parent locator", at, "{} locator {} holds an undecodable path".format(
                loc.name, i))
            continue
        name = os.path.basename(text or "")
        if name != parent_base:
            report.add("parent locator", at, "{} locator {} names {!r}, the header names {!r}".format(
                loc.name, i, name, parent_base))
            continue
        found += 1
    if not found:
        report.add("parent locator", hat + LOCATORS_OFFSET,
                   "no valid MacX, W2ku or W2ru locator names the parent")
    return regions


def _batmap_expected(disk):
    footer = disk.footer
    return footer.creator_app == CREATOR_TAP and footer.creator_version >= 0x00010002


def _check_batmap(disk, reader, report):
    """Validate blktap's batmap header and map; return (regions they occupy, header or None)."""
    footer, header = disk.footer, disk.header
    if footer.creator_app != CREATOR_TAP or footer.creator_version < 0x00010001:
        return [], None
    at = batmap_offset(header.table_offset, header.max_table_entries)
    raw = reader.read(at, batmaps.HEADER_SIZE)
    if raw[:8] != batmaps.COOKIE or len(raw) < batmaps.HEADER_SIZE:
        if _batmap_expected(disk):
            report.add("batmap", at, "no batmap header (cookie tdbatmap) after the BAT")
        return [], None
    hdr = batmaps.BatmapHeader.parse(raw, disk.path, at)
    regions = [(at, at + batmaps.HEADER_SIZE, "batmap header")]
    problems = []
    if hdr.version > batmaps.VERSION:
        problems.append("unsupported version 0x{:08x}".format(hdr.version))
    if hdr.map_sectors == 0:
        problems.append("map size is zero")
    elif hdr.map_sectors * SECTOR * 8 < header.max_table_entries:
        problems.append("map of {} sectors cannot cover {} BAT entries".format(
            hdr.map_sectors, header.max_table_entries))
    elif hdr.map_sectors > batmaps.map_sectors(header.max_table_entries):
        problems.append("map of {} sectors is larger than the {} its {} BAT entries need".format(
            hdr.map_sectors, batmaps.map_sectors(header.max_table_entries),
            header.max_table_entries))
    size = hdr.map_sectors * SECTOR
    if hdr.map_offset == 0 or hdr.map_offset % SECTOR:
        problems.append("map offset {} is not a non-zero multiple of 512".format(hdr.map_offset))
    if hdr.map_offset + size > disk.footer_offset:
        problems.append("map at {}+{} lies beyond the data end {}".format(
            hdr.map_offset, size, disk.footer_offset))
    if _overlaps(hdr.map_offset, hdr.map_offset + size, 0, at + batmaps.HEADER_SIZE):
        problems.append("map at {} overlaps the header, BAT or batmap header".format(hdr.map_offset))
    if problems:
        report.add("batmap", at, "; ".join(problems))
        return regions, None    # its bits mean nothing: do not verify them
    regions.append((hdr.map_offset, hdr.map_offset + size, "batmap"))
    data = reader.read(hdr.map_offset, size)
    computed = batmaps.checksum(data)
    if hdr.version == 0x00010001:   # batmap 1.1 summed signed chars
        computed = (~(sum(data) - 256 * sum(1 for b in data if b & 0x80))) & 0xFFFFFFFF
    if computed != hdr.checksum:
        report.add("batmap checksum", at + 24, "stored 0x{:08x}, computed 0x{:08x}".format(
            hdr.checksum, computed))
    return regions, hdr


def _check_parent_link(disk, report):
    """The parent the locators name exists, opens and carries the uuid this disk records."""
    hat = disk.footer.data_offset
    try:
        parent_path = disk.parent_locator_path()
    except FormatError as e:
        report.add("parent locator", hat + LOCATORS_OFFSET, "cannot read the locators: {}".format(
            defect_from_error(disk.path, e).message))
        return
    if parent_path is None:
        report.add("parent", hat + LOCATORS_OFFSET, "no locator names the parent")
        return
    if not os.path.isfile(parent_path):
        report.add("parent", hat + LOCATORS_OFFSET, "parent {} (uuid {}) not found".format(
            parent_path, disk.parent_uuid))
        return
    if file_identity(parent_path) == file_identity(disk.path):
        report.add("parent", hat + LOCATORS_OFFSET, "cycle: the locators resolve to this file "
                   "itself ({}): a disk cannot be its own parent".format(parent_path))
        return
    try:
        with VhdFile.open(parent_path) as parent:
            parent_uuid = parent.uuid
    except FormatError as e:
        report.add("parent", hat + LOCATORS_OFFSET, "parent {} cannot be opened: {}".format(
            parent_path, e))
        return
    if parent_uuid != disk.parent_uuid:
        report.add("parent uuid", hat + 40, "records parent uuid {} but {} has uuid {}".format(
            disk.parent_uuid, parent_path, parent_uuid))


# ----------------------------------------------------------------- chains


def check_chain(leaf_path, max_depth=MAX_DEPTH):
    """Defects of every file from ``leaf_path`` down to its base, and of the links between them.

    Links: each parent found through the locators, with the uuid its child
    records, no file twice (cycle), at most ``max_depth`` files, and no child
    smaller than its parent.
    """
    defects, seen, uuids = [], set(), set()
    path, child = leaf_path, None
    while True:
        if len(seen) >= max_depth:
            defects.append(Defect("depth", 0, "chain deeper than {} files (XenServer's limit)"
                                  .format(max_depth), leaf_path))
            break
        key = file_identity(path)
        if key in seen:
            defects.append(Defect("parent", child[3] + LOCATORS_OFFSET,
                                  "cycle: parent {} is already in the chain".format(path), child[0]))
            break
        seen.add(key)
        defects.extend(check_file(path, check_parent=False))
        try:
            disk = VhdFile.open(path)
        except FormatError:
            break   # reported by check_file
        with disk:
            if child is not None and _link_defects(child, disk, defects):
                break
            if not disk.is_differencing:
                break
            hat = disk.footer.data_offset
            try:
                parent_path = disk.parent_locator_path()
            except FormatError:
                break   # reported by check_file (parent locator)
            if parent_path is None or not os.path.isfile(parent_path):
                defects.append(Defect("parent", hat + LOCATORS_OFFSET, "parent {} (uuid {}) not found"
                                      .format(parent_path, disk.parent_uuid), path))
                break
            uuids.add(disk.uuid)
            if disk.parent_uuid in uuids:
                defects.append(Defect("parent", hat + 40, "cycle: parent uuid {} is already in "
                                      "the chain".format(disk.parent_uuid), path))
                break
            child = (path, disk.parent_uuid, disk.virtual_size, hat)
            path = parent_path
    return defects


def _link_defects(child, parent, defects):
    """Add defects of the child->parent link; True when the chain is broken there."""
    child_path, parent_uuid, child_size, hat = child
    if parent.uuid != parent_uuid:
        defects.append(Defect("parent uuid", hat + 40, "records parent uuid {} but {} has uuid {}"
                              .format(parent_uuid, parent.path, parent.uuid), child_path))
        return True
    if child_size < parent.virtual_size:
        defects.append(Defect("virtual size", 48, "virtual size {} smaller than the parent's {} ({})"
                              .format(child_size, parent.virtual_size, parent.path), child_path))
    return False


__all__ = ["Defect", "check_file", "check_chain", "defect_from_error"]
