"""Scan a file SR: one VdiInfo per disk file ``<uuid><suffix>``, linked into a graph.

As XenServer's SM: files are found by the suffix of each known disk format, in the
face's order (VHD, then QCOW2), and then read as that format (a wrong magic is an
error).  A child's parent is the file its parent names resolve to (locators, or a
QCOW2 backing name -- the file the chain reader opens; the VDI uuid is the file
name), and that file must carry the uuid the child recorded and be of the child's
format -- otherwise the link is reported broken rather than guessed.  Every other SR
file a parent name names is kept in ``named``.  Two files for one uuid (``u`` in two
formats) are both reported as errors: which one SM would take is not ours to guess.
"""

import errno
import os
import re
import stat

from .. import disk
from ..errors import NoSpaceError, SRError, VhdportError
from ..fsutil import file_identity

UUID_RE = re.compile(r"^[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}"
                     r"-[0-9a-fA-F]{12}$")


def is_uuid(text):
    return isinstance(text, str) and UUID_RE.match(text) is not None


def uuid_of_name(name):
    """``<uuid>.vhd`` (any known format's suffix) -> uuid; else None (scans ignore it)."""
    stem = disk.stem_of(name)
    return stem if is_uuid(stem) else None


def os_error(e, path, action):
    """Turn an OSError into the vhdport error a caller can act on."""
    if e.errno in (errno.ENOSPC, errno.EDQUOT):
        return NoSpaceError(path=path)
    return SRError("cannot {} {}: {}".format(action, path, e.strerror or e))


class VdiInfo(object):
    """What a scan knows about one VDI; ``error`` is set when the file or its link is bad."""

    __slots__ = ("uuid", "path", "parent_uuid", "children", "hidden", "virtual_size",
                 "physical_size", "type", "error", "vhd_uuid", "parent_vhd_uuid", "named",
                 "format")

    def __init__(self, uuid, path, parent_uuid=None, children=None, hidden=False,
                 virtual_size=None, physical_size=None, type=None, error=None,
                 vhd_uuid=None, parent_vhd_uuid=None):
        self.uuid = uuid                      # the VDI uuid: the file name
        self.path = path                      # absolute path
        self.parent_uuid = parent_uuid        # parent's VDI uuid (file name), None for a base
        self.children = children if children is not None else []
        self.hidden = hidden
        self.virtual_size = virtual_size
        self.physical_size = physical_size
        self.type = type                      # "fixed", "dynamic", "differencing", None if unreadable
        self.error = error                    # None, or why the file / its parent link is bad
        self.vhd_uuid = vhd_uuid              # uuid inside the VHD footer (str)
        self.parent_vhd_uuid = parent_vhd_uuid  # parent uuid the child recorded (str)
        self.named = set()                    # VDI uuids any of its locators names
        fmt = disk.for_file_name(path)
        self.format = fmt.name if fmt is not None else None   # the disk format's name

    def to_dict(self):
        out = dict((name, getattr(self, name)) for name in self.__slots__)
        out["named"] = sorted(self.named)
        return out

    def __repr__(self):
        return "<VdiInfo {} {}{}{}{}>".format(
            self.uuid, self.type, " hidden" if self.hidden else "",
            " parent={}".format(self.parent_uuid) if self.parent_uuid else "",
            " error={!r}".format(self.error) if self.error else "")


def _named_uuids(described, names):
    """Uuids of SR files that any locator or the parent name names, by file name.

    Different readers try locators in different orders (tapdisk by slot, vhdport MacX
    first): every file named here may be read through, so GC must keep it.
    """
    found = set()
    for text in described.parent_names:
        u = uuid_of_name(os.path.basename(text.replace("\\", "/")))
        if u is not None and u in names:
            found.add(u)
    return found


def _resolved_parent(path_of_disk, described, names):
    """(parent VDI uuid, error): the file the chain reader really opens, as an SR VDI.

    The reader (Chain, vhd-util alike) takes the first locator naming an existing file;
    judging the link by any other rule (e.g. the first name that looks like a VDI) can
    pick a different file than the one the data is read from.
    """
    path = described.parent_path
    fmt = disk.for_file_name(path_of_disk)
    if path is None:
        return None, "differencing disk whose locators name no parent"
    u = uuid_of_name(os.path.basename(path))
    sr_dir = os.path.dirname(path_of_disk)
    in_sr = os.path.dirname(os.path.normpath(path)) == os.path.normpath(sr_dir)
    if u is None:
        return None, "its parent resolves to {}, not a {} of this SR".format(
            path, fmt.file_name("<uuid>"))
    if not os.path.lexists(path):
        if in_sr:
            return u, None          # a missing parent: the caller decides (GC aborts)
        return None, "its parent resolves to {}, which does not exist".format(path)
    if u not in names or not in_sr \
            or file_identity(path) != file_identity(names[u]):
        return None, "its parent resolves to {}, not to the SR's {}".format(
            path, fmt.file_name(u))
    return u, None


def _read_one(path, uuid, names):
    info = VdiInfo(uuid, path)
    if uuid in names.duplicates:
        info.error = "{} and {} both claim VDI {}: remove one".format(
            *(sorted(os.path.basename(p) for p in names.duplicates[uuid]) + [uuid]))
        return info
    described = disk.for_file_name(path).describe(path)
    info.type = described.type_name
    info.hidden = described.hidden
    info.virtual_size = described.virtual_size
    info.physical_size = described.physical_size
    info.vhd_uuid = described.uuid
    if described.is_differencing:
        info.parent_vhd_uuid = described.parent_uuid
        info.parent_uuid, info.error = _resolved_parent(path, described, names)
        info.named = _named_uuids(described, names)
    return info


class _Names(dict):
    """{uuid: path}, plus ``duplicates``: {uuid: [paths]} of uuids with several files."""

    def __init__(self):
        dict.__init__(self)
        self.duplicates = {}


def _format_rank(name):
    return list(disk.FORMATS.values()).index(disk.for_file_name(name))


def list_names(sr_path):
    """{uuid: absolute path} of the regular ``<uuid><suffix>`` files directly in the SR.

    In the face's order of formats (SM's: ``.vhd`` first); ``duplicates`` lists the
    uuids that have a file in more than one format.
    """
    names = _Names()
    try:
        entries = list(os.scandir(sr_path))
    except OSError as e:
        raise SRError("cannot list SR {}: {}".format(sr_path, e.strerror))
    for entry in sorted(entries, key=lambda e: (_format_rank(e.name) if uuid_of_name(e.name)
                                                else -1, e.name)):
        u = uuid_of_name(entry.name)
        if u is None:
            continue
        try:
            if not stat.S_ISREG(entry.stat(follow_symlinks=False).st_mode):
                continue
        except OSError:
            continue   # vanished since the listing
        path = os.path.join(sr_path, entry.name)
        if u in names:
            names.duplicates.setdefault(u, [names[u]]).append(path)
            continue
        names[u] = path
    return names


def scan(sr_path):
    """Return {uuid: VdiInfo} for the SR at ``sr_path`` (absolute), graph linked."""
    names = list_names(sr_path)
    vdis = {}
    for u, path in sorted(names.items()):
        try:
            vdis[u] = _read_one(path, u, names)
        except (VhdportError, OSError) as e:
            if not os.path.lexists(path):
                continue   # deleted (GC) or renamed (snapshot) while we scanned
            vdis[u] = VdiInfo(u, path, error=str(e))
    for info in vdis.values():
        if info.parent_uuid is None:
            continue
        parent = vdis.get(info.parent_uuid)
        if parent is None:
            continue   # missing parent: the caller decides (GC aborts, chains break)
        parent.children.append(info.uuid)
        if info.error is None and parent.format != info.format:
            info.error = ("its parent {} is {}, it is {}: a chain mixing disk formats is never "
                          "valid (broken link)".format(os.path.basename(parent.path),
                                                       parent.format, info.format))
        if parent.vhd_uuid is not None and info.error is None \
                and parent.vhd_uuid != info.parent_vhd_uuid:
            info.error = ("parent {} has uuid {} but this child records {} "
                          "(broken link)".format(os.path.basename(parent.path), parent.vhd_uuid,
                                                 info.parent_vhd_uuid))
    for info in vdis.values():
        info.children.sort()
    return vdis
