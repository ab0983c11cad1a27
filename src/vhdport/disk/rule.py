"""The one rule a chain meets before it moves between an SR and an image store.

Checked once per download (on the staged bundle members, before anything is
renamed or relinked) and once per upload (on the files linked into staging,
before a byte is sent); the SR's adopt and publish apply it too when called
without it.  Linkage is judged by position and uuid (member i records member
i+1's uuid as its parent), since the members' locators still name the files of
the SR they came from.
"""

import os

from ..errors import BundleError, FormatError
from .registry import for_path


def bundle_error(text, name):
    return BundleError(text, member=name)


def check_chain(paths, names=None, what="bundle member", error=bundle_error, hidden_error=None,
                hint=None, structural=False, refuse_hidden_leaf=True, allow_growth=True,
                max_depth=None):
    """Check ``paths`` [leaf .. base]; return their uuids, or raise naming the bad one.

    In this order: one format for the whole chain (SM never makes a mixed chain and
    blktap could not open one), each file's structure (``structural``: as ``vhd-util check``
    would, without following parents), the depth (at most ``max_depth`` files), a
    hidden leaf (XenServer's GC would delete it), then uuids and links: each file
    but the last differencing with the next one's uuid as parent, the last a
    base, no uuid twice, no child smaller than its parent (larger only with
    ``allow_growth``, as after a resize).  ``names`` are shown in messages (base
    names by default), ``what`` says what they are; ``error(text, name)`` builds
    the exception (``hidden_error`` the one for a hidden leaf), ``hint`` is added
    to linkage errors.
    """
    if not paths:
        raise error("empty chain: nothing to check", None)
    names = list(names) if names is not None else [os.path.basename(p) for p in paths]
    formats = [for_path(path) for path in paths]
    for name, fmt, prev_name, prev in zip(names[1:], formats[1:], names, formats):
        if fmt is not prev:
            raise error("{} {} refused: it is {} but {} above it is {}: a chain mixing disk "
                        "formats is never valid (SM and blktap cannot open one)".format(
                            what, name, fmt.name.upper(), prev_name, prev.name.upper()), name)
    if max_depth is None:
        max_depth = formats[0].max_depth
    if structural:
        for path, name, fmt in zip(paths, names, formats):
            defects = fmt.check_file(path, check_parent=False)
            if defects:
                first = defects[0]
                raise error("{} {} refused: {} at offset {}: {}{}".format(
                    what, name, first.field, first.offset, first.message,
                    " (+{} more defects)".format(len(defects) - 1) if len(defects) > 1 else ""),
                    name)
    if len(paths) > max_depth:
        name = names[max_depth]
        raise error("{} {} refused: the chain is {} deep, more than XenServer's limit of "
                    "{}; coalesce it before uploading".format(what, name, len(paths), max_depth),
                    name)
    facts = []
    for path, name, fmt in zip(paths, names, formats):
        try:
            facts.append(fmt.facts(path, name))
        except FormatError as err:
            raise error("{} {} is not a valid {}: {}".format(what, name, fmt.name.upper(), err),
                        name)
    if refuse_hidden_leaf and facts[0].hidden:
        raise (hidden_error or error)(
            "{}: hidden leaf refused: XenServer's GC would delete it (hidden leaf {} is a "
            "base copy, not a VDI; is the chain out of order?)".format(names[0], names[0]),
            names[0])
    _check_links(facts, names, what, error, hint, allow_growth)
    return [f.uuid for f in facts]


def _check_links(facts, names, what, error, hint, allow_growth):
    suffix = "; " + hint if hint else ""
    uuids = [f.uuid for f in facts]
    for i, child in enumerate(facts):
        name = names[i]
        if uuids.index(child.uuid) != i:
            raise error("{}s {} and {} have the same uuid {}{}".format(
                what, names[uuids.index(child.uuid)], name, child.uuid, suffix), name)
        if i + 1 == len(facts):
            if child.is_differencing:
                raise error("base {} has a parent ({}) outside the chain given: refused (pass "
                            "the whole chain down to the base){}".format(
                                name, child.parent_uuid, suffix), name)
            break
        parent = facts[i + 1]
        if not child.is_differencing:
            raise error("{} {} is a {} disk but {} follows it as its parent: chain order "
                        "broken (the first is the leaf, the last the base){}".format(
                            what, name, child.type_name, names[i + 1], suffix), name)
        if child.parent_uuid != parent.uuid:
            raise error("{} {} names parent {} but the next {} {} is {}: chain order "
                        "broken{}".format(what, name, child.parent_uuid, what, names[i + 1],
                                          parent.uuid, suffix), name)
        if child.virtual_size != parent.virtual_size and (
                child.virtual_size < parent.virtual_size or not allow_growth):
            raise error("{} {} has virtual size {} but its parent {} has {}{}".format(
                what, name, child.virtual_size, names[i + 1], parent.virtual_size, suffix),
                name)
