"""What a bundle may contain, and how big each VHD member may be.

Names: ``N.vhd`` (leaf 0 .. base N-1), or the legacy ``snap.vhd`` / ``image.vhd`` /
``base.vhd``; ``swap.vhd`` is skipped; a ``./`` directory entry is tolerated.
Sizes: a member's first 1536 bytes (footer copy + dynamic header) bound the whole
file, so an oversized or bomb member is refused before its data is read.
"""

import array
import re
import sys

from ..errors import BundleError, FormatError
from ..format.footer import (COOKIE, DISK_DIFFERENCING, DISK_DYNAMIC, DISK_FIXED,
                             FOOTER_SIZE, Footer)
from ..format.header import HEADER_SIZE, DynamicHeader
from ..format.bat import ENTRY_SIZE, UNUSED, padded_size
from ..format.batmap import HEADER_SIZE as BATMAP_HEADER_SIZE, map_sectors
from ..format.bitmap import bitmap_bytes
from ..format.layout import DATA_ALIGN, SECTOR, dynamic_limits_problem, max_file_size

GIB = 1 << 30
#: XenServer's VHD SRs cap the virtual size at 2040 GiB
MAX_VIRTUAL_SIZE = 2040 * GIB
#: footer copy + dynamic header: what is read before a member's size is trusted
HEAD_SIZE = FOOTER_SIZE + HEADER_SIZE
MAX_MEMBERS = 31
#: how far past the BAT a member's metadata (batmap, locators) may reach
METADATA_SLACK = 64 << 20

#: legacy names, leaf first: present ones are renumbered 0, 1, 2 in this order
LEGACY_ORDER = ("snap", "image", "base")
IGNORED = "swap"

NUMBERED, LEGACY, SKIPPED, DOT_DIR = "numbered", "legacy", "skipped", "dot-dir"
_NUMBERED_RE = re.compile(r"^(0|[1-9][0-9]{0,8})\.vhd$")
_SHOW_MAX = 80


def show(name):
    """A name safe to print: escaped, and shortened if very long."""
    text = repr(name)[1:-1]
    if len(text) > _SHOW_MAX:
        text = "{}...{} ({} characters)".format(text[:40], text[-20:], len(name))
    return "'{}'".format(text)


def refuse(name, reason, advice=""):
    text = "bundle member {} refused: {}".format(show(name), reason)
    if advice:
        text += "; " + advice
    return BundleError(text, member=name)


ONLY_VHDS = "a bundle holds only regular files named 0.vhd .. N.vhd"


def classify(name, is_dir=False):
    """(kind, key) for an acceptable name, else raise BundleError naming it.

    kind is NUMBERED (key = int), LEGACY (key = "snap"|"image"|"base"),
    SKIPPED (swap.vhd) or DOT_DIR (the "./" entry).
    """
    if "\x00" in name:
        raise refuse(name, "NUL byte in its name")
    if not name:
        raise refuse(name, "empty name")
    if name.startswith("/"):
        raise refuse(name, "absolute path", ONLY_VHDS)
    parts = name.split("/")
    if ".." in parts:
        raise refuse(name, "path traversal ('..')", ONLY_VHDS)
    if "\\" in name:
        raise refuse(name, "backslash in its name", ONLY_VHDS)
    if is_dir:
        if name in (".", "./"):
            return DOT_DIR, None
        raise refuse(name, "directory", ONLY_VHDS)
    base = name[2:] if name.startswith("./") else name
    if "/" in base:
        raise refuse(name, "file in a subdirectory", ONLY_VHDS)
    match = _NUMBERED_RE.match(base)
    if match:
        return NUMBERED, int(match.group(1))
    stem = base[:-4] if base.endswith(".vhd") else None
    if stem in LEGACY_ORDER:
        return LEGACY, stem
    if stem == IGNORED:
        return SKIPPED, stem
    raise refuse(name, "unexpected member", ONLY_VHDS)


def legacy_numbers(stems):
    """{stem: number} the old plugin's way: present legacy names, leaf first, no gaps."""
    present = [stem for stem in LEGACY_ORDER if stem in stems]
    return {stem: i for i, stem in enumerate(present)}


class MemberPlan(object):
    """What the head of a member says about it: kind, size bound, footer copy.

    For dynamic disks ``observe`` watches the BAT stream past and then lowers
    ``bound`` to the end of the last allocated block: a member is never allowed
    to be larger than its own BAT explains.
    """

    __slots__ = ("kind", "bound", "copy", "_bat")

    def __init__(self, kind, bound, copy=None, header=None):
        self.kind, self.bound, self.copy = kind, bound, copy
        self._bat = _BatWatch(header) if header is not None else None
        if self._bat is not None and self._bat.done:
            self._tighten()

    def observe(self, offset, data):
        """Feed the member's bytes at ``offset`` (in order)."""
        if self._bat is not None and not self._bat.done:
            self._bat.feed(offset, data)
            if self._bat.done:
                self._tighten()

    def _tighten(self):
        self.bound = min(self.bound, self._bat.file_end_limit())


class _BatWatch(object):
    """Largest BAT entry, read incrementally (a BAT can be far larger than a buffer)."""

    def __init__(self, header):
        self.header = header
        self.start = header.table_offset
        self.end = self.start + ENTRY_SIZE * header.max_table_entries
        self.max_sector = None
        self._carry = b""
        self.done = self.end == self.start

    def feed(self, offset, data):
        lo, hi = max(offset, self.start), min(offset + len(data), self.end)
        if lo < hi:
            part = self._carry + bytes(data[lo - offset:hi - offset])
            whole = len(part) // ENTRY_SIZE * ENTRY_SIZE
            entries = array.array("I", part[:whole])
            if sys.byteorder == "little":
                entries.byteswap()
            top = max(filter(UNUSED.__ne__, entries), default=None)   # C-level: no list
            if top is not None:
                self.max_sector = top if self.max_sector is None else max(self.max_sector, top)
            self._carry = part[whole:]
        if offset + len(data) >= self.end:
            self.done = True

    def file_end_limit(self):
        """Where the file must end: after its metadata or its last block, plus footer."""
        header = self.header
        entries = header.max_table_entries
        meta = max(HEAD_SIZE, header.table_offset + padded_size(entries) + BATMAP_HEADER_SIZE
                   + map_sectors(entries) * SECTOR)
        for loc in header.locators:
            if loc.in_use:
                meta = max(meta, loc.data_offset + loc.space_bytes)
        last = 0
        if self.max_sector is not None:
            last = self.max_sector * SECTOR + bitmap_bytes(header.block_size // SECTOR) \
                + header.block_size
        return max(meta, last) + DATA_ALIGN + FOOTER_SIZE


def plan_member(name, head, declared_size=None):
    """Inspect a member's first bytes; refuse one its own metadata cannot explain.

    ``declared_size`` (the tar header's size) is checked against the bound here;
    a bare stream (size unknown) is checked against ``plan.bound`` while copying.
    """
    if head[:8] == COOKIE and len(head) >= FOOTER_SIZE:
        copy = _parse(name, Footer.parse, head[:FOOTER_SIZE], 0, "footer copy at offset 0")
        if copy.disk_type in (DISK_DYNAMIC, DISK_DIFFERENCING):
            return _plan_dynamic(name, head, copy, declared_size)
        if copy.disk_type != DISK_FIXED:
            raise refuse(name, "unknown disk type {} in the footer copy at offset 0".format(
                copy.disk_type))
    # a fixed VHD: raw data first, the only footer at the end
    bound = MAX_VIRTUAL_SIZE + FOOTER_SIZE
    if declared_size is not None:
        if declared_size > bound:
            raise refuse(name, "declared size {} exceeds the largest fixed VHD XenServer "
                               "accepts ({} bytes)".format(declared_size, bound))
        if declared_size < FOOTER_SIZE - 1 or declared_size % FOOTER_SIZE not in (0, 511):
            raise refuse(name, "size {} is not a whole number of sectors: not a "
                               "VHD".format(declared_size))
    return MemberPlan("fixed", bound)


def _plan_dynamic(name, head, copy, declared_size):
    if copy.data_offset != FOOTER_SIZE:
        raise refuse(name, "dynamic header at offset {} (only 512 is supported)".format(
            copy.data_offset))
    if len(head) < HEAD_SIZE:
        raise refuse(name, "only {} bytes: too small for a dynamic VHD".format(len(head)))
    header = _parse(name, DynamicHeader.parse, head[FOOTER_SIZE:HEAD_SIZE], FOOTER_SIZE,
                    "dynamic header")
    block = header.block_size
    if block < 4096 or block & (block - 1):
        raise refuse(name, "block size {} is not a power of two of at least 4 KiB".format(block))
    if copy.current_size > MAX_VIRTUAL_SIZE:
        raise refuse(name, "virtual size {} exceeds XenServer's limit of 2040 GiB".format(
            copy.current_size))
    data_end = declared_size - FOOTER_SIZE if declared_size is not None else 1 << 62
    problem = dynamic_limits_problem(copy.current_size, header, data_end)
    if problem is not None:
        raise refuse(name, "{} (refused before reading it)".format(problem[2]))
    _check_metadata_placement(name, header)
    bound = max_file_size(copy, header)
    if declared_size is not None:
        if declared_size > bound:
            raise refuse(name, "declared size {} is larger than its own VHD metadata allows "
                               "({} bytes): corrupt or hostile".format(declared_size, bound))
        if declared_size % FOOTER_SIZE:
            raise refuse(name, "size {} is not a whole number of sectors: not a "
                               "VHD".format(declared_size))
        if declared_size < HEAD_SIZE + FOOTER_SIZE:
            raise refuse(name, "size {} cannot hold a dynamic VHD".format(declared_size))
    return MemberPlan("dynamic", bound, copy, header)


def _check_metadata_placement(name, header):
    """BAT and locators near the start, as every known writer puts them: a far-away
    offset would otherwise inflate the size bound without limit."""
    table = header.table_offset
    if table < HEAD_SIZE or table > METADATA_SLACK:
        raise refuse(name, "BAT at offset {} (expected after the header, within the first "
                           "{} bytes)".format(table, METADATA_SLACK))
    limit = table + padded_size(header.max_table_entries) + METADATA_SLACK
    for loc in header.locators:
        if loc.in_use and loc.data_offset + loc.space_bytes > limit:
            raise refuse(name, "parent locator data at offset {} is beyond the metadata "
                               "area (ends by {})".format(loc.data_offset, limit))


def _parse(name, parse, buf, offset, what):
    try:
        return parse(buf, name, offset)
    except FormatError as err:
        detail = str(err)
        if detail.startswith(name + ": "):
            detail = detail[len(name) + 2:]
        raise BundleError("bundle member {} refused: not a valid VHD ({}): {}".format(
            show(name), what, detail), member=name)


def check_tail(name, plan, tail, size):
    """The footer at the end of a landed member: valid, and agreeing with its head."""
    if size % FOOTER_SIZE == 511 and plan.kind == "fixed":
        buf, offset = bytes(tail[-511:]), size - 511
    elif size % FOOTER_SIZE == 0 and size >= FOOTER_SIZE:
        buf, offset = bytes(tail[-FOOTER_SIZE:]), size - FOOTER_SIZE
    else:
        raise refuse(name, "size {} is not a whole number of sectors: not a VHD".format(size))
    footer = _parse(name, Footer.parse, buf, offset, "footer at the end")
    if plan.kind == "fixed":
        if footer.is_dynamic:
            raise refuse(name, "{} VHD whose footer copy at offset 0 is missing or "
                               "damaged".format(footer.type_name))
        if footer.disk_type != DISK_FIXED:
            raise refuse(name, "unknown disk type {} in its footer".format(footer.disk_type))
        if footer.current_size != offset:
            raise refuse(name, "fixed VHD holds {} bytes of data but its footer says "
                               "{}".format(offset, footer.current_size))
        return footer
    copy = plan.copy
    for field in ("uuid", "disk_type", "current_size"):
        if getattr(footer, field) != getattr(copy, field):
            raise refuse(name, "footer at the end and its copy at offset 0 disagree on {} "
                               "({} vs {})".format(field, getattr(footer, field),
                                                   getattr(copy, field)))
    return footer
