"""Chain order of staged members, checked with the format layer only.

The caller relinks and checks the chain with the vhd engine; this is the cheap
first look that names the bad member before anything is renamed into the SR.
"""

import os

from ..errors import BundleError, FormatError
from ..format.footer import DISK_DIFFERENCING, FOOTER_SIZE, Footer
from ..format.header import HEADER_SIZE, DynamicHeader


def _read_at(fobj, offset, size):
    fobj.seek(offset)
    return fobj.read(size)


def read_metadata(path):
    """(footer, footer copy or None, header or None) of the VHD at ``path``."""
    name = os.path.basename(path)
    try:
        with open(path, "rb") as fobj:
            size = os.fstat(fobj.fileno()).st_size
            if size < FOOTER_SIZE - 1:
                raise BundleError("bundle member {}: {} bytes, too small to be a VHD".format(
                    name, size), member=name)
            if size % FOOTER_SIZE == 511:
                footer = Footer.parse(_read_at(fobj, size - 511, 511), name, size - 511)
            else:
                footer = Footer.parse(_read_at(fobj, size - FOOTER_SIZE, FOOTER_SIZE), name,
                                      size - FOOTER_SIZE)
            copy = header = None
            if footer.is_dynamic:
                copy = Footer.parse(_read_at(fobj, 0, FOOTER_SIZE), name, 0)
                header = DynamicHeader.parse(
                    _read_at(fobj, footer.data_offset, HEADER_SIZE), name, footer.data_offset)
            return footer, copy, header
    except FormatError as err:
        raise BundleError("bundle member {} is not a valid VHD: {}".format(name, err),
                          member=name)


def _hidden(footer, copy):
    """Old tapdisk kept the authoritative hidden flag in the copy at offset 0."""
    if copy is not None and footer.keeps_hidden_in_backup():
        return bool(copy.hidden)
    return bool(footer.hidden)


def check_sequence(paths, allow_growth=False):
    """Check [leaf .. base] ordering by uuids; return the members' uuids in that order.

    Each member but the last must be differencing with parent uuid == the next
    member's uuid; the base must have no parent; the leaf must not be hidden; all
    virtual sizes equal (``allow_growth``: a child may be larger than its parent,
    as after a resize of a snapshotted disk).
    """
    if not paths:
        raise BundleError("empty chain: the bundle holds no VHD")
    metas = [read_metadata(path) for path in paths]
    names = [os.path.basename(path) for path in paths]
    uuids = [meta[0].uuid for meta in metas]
    for i, (footer, copy, header) in enumerate(metas):
        name = names[i]
        if uuids.index(footer.uuid) != i:
            raise BundleError("bundle members {} and {} have the same uuid {}".format(
                names[uuids.index(footer.uuid)], name, footer.uuid), member=name)
        if i + 1 < len(metas):
            parent_footer = metas[i + 1][0]
            if footer.disk_type != DISK_DIFFERENCING:
                raise BundleError(
                    "bundle member {} is a {} disk but {} follows it as its parent: chain "
                    "order broken (0.vhd is the leaf, the last is the base)".format(
                        name, footer.type_name, names[i + 1]), member=name)
            if header.parent_uuid != parent_footer.uuid:
                raise BundleError(
                    "bundle member {} names parent {} but the next member {} is {}: chain "
                    "order broken".format(name, header.parent_uuid, names[i + 1],
                                          parent_footer.uuid), member=name)
            smaller = footer.current_size < parent_footer.current_size
            if footer.current_size != parent_footer.current_size and (smaller or not allow_growth):
                raise BundleError(
                    "bundle member {} has virtual size {} but its parent {} has {}".format(
                        name, footer.current_size, names[i + 1], parent_footer.current_size),
                    member=name)
        elif footer.disk_type == DISK_DIFFERENCING:
            raise BundleError("base {} has a parent ({}) outside the bundle: refused".format(
                name, header.parent_uuid), member=name)
    if _hidden(metas[0][0], metas[0][1]):
        raise BundleError("hidden leaf {} refused: XenServer's GC would delete it".format(
            names[0]), member=names[0])
    return uuids
