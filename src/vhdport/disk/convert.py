"""Conversions any -> any, and store images (random access, untrusted) landed as SR disks.

The layers above ask in format-neutral terms: which format a raw image of this size lands
as (SM's ``preferred-image-formats`` rule), whether a format must be spooled to a file
before it can be checked (QCOW2 is random access; a VHD streams), which hostile headers to
refuse from the first bytes, and "make this spooled store image a disk of format X" --
adopted as it is when it already is exactly what SM writes, else rewritten.  The
per-format work is the engines'; this module only picks the engine by name.
"""

import os

from .. import qcow2 as qcow2_engine, vhd as vhd_engine
from ..errors import FormatError, IntegrityError, LimitError, NoSpaceError, VhdportError
from ..qcow2 import untrusted
from ..qcow2.convert import RawFile, copy_disk
from ..qcow2.format import tables as qcow2_tables
from . import digest, registry

#: SM's default ``preferred-image-formats``: the first whose size limit takes the disk wins
PREFERRED = ("vhd", "qcow2")


def format_for_size(virtual_size, name=None, subject="the image"):
    """The DiskFormat a disk of ``virtual_size`` bytes lands as; ``name`` forces one.

    Without ``name``: the first of PREFERRED (that the registry knows) whose size limit
    accepts the size, so a raw image over 2040 GiB becomes a QCOW2, as SM decides.
    """
    if name is not None:
        fmt = registry.by_name(name)
        if fmt is None:
            raise VhdportError("image format {!r} is not one of {}".format(
                name, ", ".join(sorted(registry.FORMATS))))
        if virtual_size > fmt.max_virtual_size:
            raise LimitError("{}: virtual size {} bytes is above the {} limit of {} bytes; "
                             "choose another image format".format(
                                 subject, virtual_size, fmt.name, fmt.max_virtual_size))
        return fmt
    for candidate in PREFERRED:
        fmt = registry.by_name(candidate)
        if fmt is not None and virtual_size <= fmt.max_virtual_size:
            return fmt
    raise LimitError("{}: virtual size {} bytes is above what any SR image format takes".format(
        subject, virtual_size))


# --- store images of random-access formats ---------------------------------------------


class _Qcow2Images(object):
    """The QCOW2 engine's answers for store images."""

    head_bytes_needed = staticmethod(untrusted.head_bytes_needed)
    refuse_hostile_head = staticmethod(untrusted.refuse_hostile_head)

    @staticmethod
    def virtual_size_of_head(head, name):
        return untrusted.refuse_hostile_head(head, name).size

    @staticmethod
    def open(path, name):
        return untrusted.StoreImage(path, name)

    @staticmethod
    def set_visible(path):
        qcow2_engine.set_hidden(path, False)

    @staticmethod
    def adoptable(image):
        return not untrusted.sm_layout_problems(image)

    @staticmethod
    def clusters_to_write(image):
        counts = image.census()
        return (counts[qcow2_tables.DATA] + counts[qcow2_tables.COMPRESSED_KIND]) * \
            image.image.cluster_size


#: formats whose store images are random access: spooled, then opened untrusted
_RANDOM_ACCESS = {"qcow2": _Qcow2Images}


def random_access(fmt):
    """Whether a store image of ``fmt`` must land in a file before it can be checked."""
    return fmt.name in _RANDOM_ACCESS


def store_image_head_bytes(fmt, head):
    """How many leading bytes :func:`refuse_hostile_head` needs, from the first few."""
    return _RANDOM_ACCESS[fmt.name].head_bytes_needed(head)


def refuse_hostile_head(fmt, head, name):
    """Refuse (typed error naming ``name`` and the field) a store image whose first bytes ask
    to read another file (backing file, external data file) or to decrypt; return its
    virtual size."""
    return _RANDOM_ACCESS[fmt.name].virtual_size_of_head(head, name)


def make_visible(fmt, path):
    """A disk we made lands as SM creates one: for QCOW2, SM's hidden extension present
    and 0 (a VHD's footer flag always exists; it is already 0 on a new disk)."""
    helper = _RANDOM_ACCESS.get(fmt.name)
    if helper is not None:
        helper.set_visible(path)


def land_store_image(spooled, fmt, target, out_path, name, free_bytes=None):
    """Make the spooled store image ``spooled`` (of ``fmt``) a disk of ``target`` at ``out_path``.

    The image is opened alone (a backing file is refused, never followed), checked, and
    either adopted (renamed: it already is exactly SM's layout and ``target`` is its own
    format) or rewritten into ``target`` and verified by content digest.  Leaked clusters
    (harmless: nothing maps them) do not stop a rewrite; any other defect refuses the
    image.  A rewrite that could need more than ``free_bytes`` is refused before it
    starts.  The leaf lands visible.  Returns "adopted" or "rewritten"; ``spooled`` is
    gone either way when this returns.
    """
    helper = _RANDOM_ACCESS[fmt.name]
    with helper.open(spooled, name) as image:
        if target.max_virtual_size < image.virtual_size:
            raise LimitError("{}: virtual size {} bytes is above the {} limit of {} bytes; "
                             "choose another image format".format(
                                 name, image.virtual_size, target.name, target.max_virtual_size))
        adopt = target is fmt and helper.adoptable(image)
        if not adopt:
            defects = [d for d in image.defects() if d.field != "leak"]
            if defects:
                raise _defects_error(name, defects)
            need = helper.clusters_to_write(image)
            if free_bytes is not None and need > free_bytes:
                raise NoSpaceError(path="{} ({} needs up to {} bytes, {} free)".format(
                    out_path, name, need, free_bytes))
            convert(image, target, out_path)
            _verify_rewrite(image, out_path, name, target)
    if adopt:
        os.rename(spooled, out_path)
        helper.set_visible(out_path)
        return "adopted"
    os.unlink(spooled)
    return "rewritten"


def _verify_rewrite(source, out_path, name, target):
    """The rewritten disk reads as the store image did: same content digest (holes not read)."""
    want = digest.content_digest(source)
    got = digest.content_digest(out_path)
    if str(want) != str(got) or want.virtual_size != got.virtual_size:
        os.unlink(out_path)
        raise IntegrityError(what="content digest", subject="{} rewritten as {}".format(
            name, target.name), expected=str(want), actual=str(got))


def _defects_error(name, defects):
    first = defects[0]
    return FormatError("damaged ({} defect{}; first: {} at offset {}: {}); not landed".format(
        len(defects), "" if len(defects) == 1 else "s", first.field, first.offset,
        first.message), path=name, field=first.field, offset=first.offset)


# --- any -> any ---------------------------------------------------------------------------


def _write_vhd(source, out_path):
    size = (source.virtual_size + 511) // 512 * 512
    vhd_engine.create_dynamic(out_path, size)
    try:
        with vhd_engine.Chain.open(out_path, writable=True) as target:
            copy_disk(source, target)
            target.flush()
    except BaseException:
        os.unlink(out_path)
        raise


def _write_qcow2(source, out_path):
    qcow2_engine.import_disk(source, out_path)
    try:
        qcow2_engine.set_hidden(out_path, False)    # SM's flag present, visible
    except BaseException:
        os.unlink(out_path)
        raise


_WRITERS = {"vhd": _write_vhd, "qcow2": _write_qcow2}


def convert(source, target, out_path):
    """Write what ``source`` reads as into a new disk of format ``target`` at ``out_path``.

    ``source`` is any disk with ``virtual_size``, ``allocated_ranges()`` and
    ``read(offset, n)`` (a chain of either format, a raw file, a store image).  Holes
    and zeros are never written; memory stays a few chunks whatever the size.
    """
    try:
        writer = _WRITERS[target.name]
    except KeyError:
        raise VhdportError("no writer for image format {}".format(target.name))
    writer(source, out_path)


def convert_file(source_path, target, out_path):
    """Convert the disk (and its chain) at ``source_path`` into ``target`` at ``out_path``."""
    fmt = registry.for_path(source_path)
    chain = fmt.open_chain(source_path)
    try:
        convert(chain, target, out_path)
    finally:
        chain.close()


def convert_raw(raw_path, target, out_path):
    """A raw image file (holes found with SEEK_DATA are not read) as a new disk of ``target``."""
    source = RawFile(raw_path)
    try:
        convert(source, target, out_path)
    finally:
        source.close()
