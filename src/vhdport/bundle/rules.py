"""What a bundle may contain: member names, one disk format, who bounds each member's size.

Names: ``N.<suffix>`` (leaf 0 .. base N-1, the suffix of a known disk format), or
the legacy ``snap`` / ``image`` / ``base`` names of the old plugin (VHD only); ``swap``
is skipped; a ``./`` directory entry is tolerated.  Format: every member of one bundle
has the same (a chain never mixes formats: SM cannot open a QCOW2 child on a VHD
parent), so a mixed bundle is refused.  Sizes: the member's disk format bounds the
whole file from its first bytes (``DiskFormat.plan_member``), so an oversized or
bomb member is refused before its data is read.
"""

import re

from .. import disk
from ..errors import BundleError

MAX_MEMBERS = 31
#: the format of the legacy names (the old dom0 plugin knew only VHD)
LEGACY_FORMAT = disk.by_name("vhd")

#: legacy names, leaf first: present ones are renumbered 0, 1, 2 in this order
LEGACY_ORDER = ("snap", "image", "base")
IGNORED = "swap"

NUMBERED, LEGACY, SKIPPED, DOT_DIR = "numbered", "legacy", "skipped", "dot-dir"
_NUMBERED_RE = re.compile(r"^(0|[1-9][0-9]{0,8})(\.[a-z0-9]+)$")
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


def only_disks():
    """The advice for a refused name, naming every known format's member names."""
    names = " or ".join("{} .. {}".format(fmt.file_name(0), fmt.file_name("N"))
                        for fmt in disk.FORMATS.values())
    return "a bundle holds only regular files named {}, all of one disk format".format(names)



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
        raise refuse(name, "absolute path", only_disks())
    parts = name.split("/")
    if ".." in parts:
        raise refuse(name, "path traversal ('..')", only_disks())
    if "\\" in name:
        raise refuse(name, "backslash in its name", only_disks())
    if is_dir:
        if name in (".", "./"):
            return DOT_DIR, None
        raise refuse(name, "directory", only_disks())
    base = name[2:] if name.startswith("./") else name
    if "/" in base:
        raise refuse(name, "file in a subdirectory", only_disks())
    match = _NUMBERED_RE.match(base)
    if match and match.group(2) in disk.suffixes():
        return NUMBERED, int(match.group(1))
    fmt = disk.for_file_name(base)
    if fmt is not None and fmt is not LEGACY_FORMAT and disk.stem_of(base) in LEGACY_ORDER:
        raise refuse(name, "{}/{}/{} are the old plugin's names for VHD members only".format(
            *LEGACY_ORDER), "name {} members {} .. {}".format(
                fmt.name.upper(), fmt.file_name(0), fmt.file_name("N")))
    stem = base[:-len(LEGACY_FORMAT.suffix)] if base.endswith(LEGACY_FORMAT.suffix) else None
    if stem in LEGACY_ORDER:
        return LEGACY, stem
    if stem == IGNORED:
        return SKIPPED, stem
    raise refuse(name, "unexpected member", only_disks())


def member_format(name):
    """The disk format of a member (or staged file) by its name's suffix."""
    base = name.rsplit("/", 1)[-1]
    return disk.for_file_name(base) or LEGACY_FORMAT


def check_one_format(name, fmt, first):
    """Refuse member ``name`` of format ``fmt`` when the bundle's first member was ``first``.

    ``first`` is (name, format) of the first disk member, or None.  Why: a chain never
    mixes formats, and a bundle that did could not land as one VDI chain.
    """
    if first is not None and first[1] is not fmt:
        raise refuse(name, "mixes disk formats: it is a {} member but {} is {}".format(
            fmt.name.upper(), show(first[0]), first[1].name.upper()),
            "a bundle holds one chain of one disk format")


def legacy_numbers(stems):
    """{stem: number} the old plugin's way: present legacy names, leaf first, no gaps."""
    present = [stem for stem in LEGACY_ORDER if stem in stems]
    return {stem: i for i, stem in enumerate(present)}
