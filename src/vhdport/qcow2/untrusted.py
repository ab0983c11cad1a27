"""QCOW2 images that come from an image store: refused or accepted before anything reads them.

A cloud image is somebody else's file.  Its header can name a backing file or an external
data file (opening it would read another host file: /etc/passwd, another VDI of the SR) or
ask for decryption; those are refused from the header bytes alone, before the image is
opened as a disk.  What passes is opened as a single file (a backing name is never
followed), checked like ``qemu-img check`` and measured, so the caller can bound what
rewriting it will write.  :func:`sm_layout_problems` tells whether the file already is what
SM's ``qemu-img create`` makes, so it can be adopted without a rewrite.
"""

import struct

from ..errors import LimitError, Qcow2FormatError, Qcow2UnsupportedError
from .chain import Qcow2Chain
from .check import check_image
from .create import DEFAULT_CLUSTER_SIZE, MAX_VIRTUAL_SIZE
from .format import tables as t
from .format.header import (EXT_CRYPTO, EXT_DATA_FILE, EXT_FEATURE_TABLE, EXT_HIDDEN,
                            INCOMPAT_DATA_FILE, MAGIC, MAX_CLUSTER_BITS, MIN_CLUSTER_BITS,
                            V2_LENGTH, V3_LENGTH, Header)
from .image import Qcow2File

#: header extensions an adopted image may carry: qemu's feature name table and SM's flag
_SM_EXTENSIONS = frozenset([EXT_FEATURE_TABLE, EXT_HIDDEN])
_EXT = struct.Struct(">II")


def head_bytes_needed(head):
    """How many leading bytes :func:`refuse_hostile_head` wants: the image's first cluster."""
    if len(head) < 24 or bytes(head[:4]) != MAGIC:
        return V2_LENGTH
    bits = struct.unpack_from(">I", head, 20)[0]
    return 1 << min(max(bits, MIN_CLUSTER_BITS), MAX_CLUSTER_BITS)


def _refuse(name, field, offset, reason):
    return Qcow2UnsupportedError("refused: {}".format(reason), path=name,
                                 offset=offset, field=field)


def _walk_extensions(head, start, end):
    """Yield (offset, kind, length) of the raw extensions; stops at the end marker or garbage."""
    at = start
    while at + 8 <= end:
        kind, length = _EXT.unpack_from(head, at)
        if kind == 0:
            return
        yield at, kind, length
        at += 8 + ((length + 7) & ~7)


def refuse_hostile_head(head, name):
    """Refuse, from the first cluster's bytes alone, an image that would read another file.

    Checked on the raw fields before the header is parsed, so no later error can mask
    them: a backing file (offset 8), encryption (crypt_method at 32, or the crypto
    header extension), an external data file (incompatible bit 2, or its extension),
    and a virtual size above SM's QCOW2 limit.  Returns the parsed Header.
    """
    head = bytes(head)
    if len(head) < V2_LENGTH or head[:4] != MAGIC:
        raise Qcow2FormatError("not a QCOW2 image (no QFI\\xfb magic at offset 0)", path=name,
                               offset=0, field="magic")
    version, backing_offset, backing_size = struct.unpack_from(">IQI", head, 4)
    size, crypt_method = struct.unpack_from(">QI", head, 24)
    if backing_offset or backing_size:
        raise _refuse(name, "backing_file_offset", 8,
                      "it names a backing file (backing_file_offset {}, {} bytes); an image from "
                      "a store must be self-contained -- flatten it (qemu-img convert) and "
                      "upload that".format(backing_offset, backing_size))
    if crypt_method:
        raise _refuse(name, "crypt_method", 32, "it is encrypted (crypt_method {}); upload "
                      "it decrypted".format(crypt_method))
    if version >= 3 and len(head) >= 104:
        incompat, _compat, _autoclear, _order, header_length = struct.unpack_from(
            ">QQQII", head, 72)
        if incompat & INCOMPAT_DATA_FILE:
            raise _refuse(name, "incompatible_features", 72, "it keeps its data in an external "
                          "data file (incompatible feature bit 2); convert it to a plain "
                          "QCOW2 and upload that")
        for at, kind, _length in _walk_extensions(head, header_length, len(head)):
            if kind == EXT_DATA_FILE:
                raise _refuse(name, "data_file_extension", at, "its header names an external "
                              "data file")
            if kind == EXT_CRYPTO:
                raise _refuse(name, "crypto_extension", at, "its header carries an encryption "
                              "header extension")
    if size > MAX_VIRTUAL_SIZE:
        raise LimitError("{}: virtual size {} bytes is above SM's QCOW2 limit of {} bytes".format(
            name, size, MAX_VIRTUAL_SIZE))
    return Header.parse(head, name)


def _nonzero_slots(table, width):
    """Indexes of the non-zero ``width``-byte entries of an L2 table (zero runs skipped in C)."""
    zero = bytes(width)
    view = memoryview(table)
    step = 4096
    for chunk in range(0, len(table), step):
        piece = table[chunk:chunk + step]
        if piece.count(0) == len(piece):
            continue
        for at in range(0, len(piece), width):
            if view[chunk + at:chunk + at + width] != zero:
                yield (chunk + at) // width


class _NamedErrors(object):
    """Errors raised inside come out naming the store image, not the spool file in staging."""

    def __init__(self, name):
        self.name = name

    def __enter__(self):
        return self

    def __exit__(self, kind, error, _tb):
        if isinstance(error, Qcow2FormatError) and error.fields.get("path") != self.name:
            fields = dict(error.fields)
            fields["path"] = self.name
            reason = fields.pop("reason", str(error))
            raise type(error)(reason, **fields) from error
        return False


class StoreImage(object):
    """A store's QCOW2 opened alone (never its backing file): a copy source and its facts.

    Every error names ``name`` (e.g. "image <id> from <store>"), never the spool file.
    """

    def __init__(self, path, name):
        self.path = path
        self.name = name
        self._named = _NamedErrors(name)
        with open(path, "rb") as f:
            head = f.read(V2_LENGTH + 32)
            head += f.read(max(0, head_bytes_needed(head) - len(head)))
        refuse_hostile_head(head, name)
        with self._named:
            image = Qcow2File.open(path)
        self.image = image
        # one image, no backing: the chain reader resolves unallocated ranges to zeros
        self.chain = Qcow2Chain([image])

    @property
    def virtual_size(self):
        return self.image.virtual_size

    def _runs(self):
        """(guest offset, length, kind, host) of every cluster an L2 entry names, in guest order.

        Only non-zero L2 entries are classified (and so validated), so the walk costs
        the L2 tables' size plus the allocated clusters, never the virtual size.
        """
        image = self.image
        cs, per = image.cluster_size, image.l2_entries
        width = t.l2_entry_size(image.extended)
        for l1i in range(len(image._l1) // 8):
            l2 = image.l1_entry(l1i) & t.OFFSET_MASK
            if not l2:
                continue
            table = bytes(image.l2_table(l2))
            first = l1i * per
            for index in _nonzero_slots(table, width):
                cluster = first + index
                base = cluster * cs
                if base >= image.virtual_size:
                    break
                for start, n, kind, host in image.classify(cluster):
                    if kind != t.UNALLOCATED:
                        yield base + start, min(n, image.virtual_size - base - start), kind, host

    def allocated_ranges(self):
        """Merged (offset, length) of data and compressed clusters: all the rest reads zeros.

        A generator, walked as the copy or digest goes: a fragmented image's map is never
        held as one list (memory would grow with the image)."""
        with self._named:
            pending = None
            for guest, n, kind, _host in self._runs():
                if kind == t.ZERO_KIND:
                    continue
                if pending is not None and pending[0] + pending[1] == guest:
                    pending[1] += n
                    continue
                if pending is not None:
                    yield tuple(pending)
                pending = [guest, n]
            if pending is not None:
                yield tuple(pending)

    def read(self, offset, length):
        with self._named:
            return self.chain.read(offset, length)

    def read_into(self, offset, view):
        with self._named:
            self.chain.read_into(offset, view)

    def defects(self):
        """What ``qemu-img check`` would report (leaks included), as Defects."""
        return check_image(self.path)

    def census(self):
        """{kind: clusters} of the active layer: how much a rewrite may have to write.

        Walks the L2 tables only (one L1 entry without a table skips its whole span), so
        a sparse 3 TiB image is counted in milliseconds.  Compressed clusters naming the
        same bytes twice are refused: qemu never writes that, and it would let a small
        file expand into any amount of data.
        """
        with self._named:
            return self._census()

    def _census(self):
        counts = {t.DATA: 0, t.COMPRESSED_KIND: 0, t.ZERO_KIND: 0}
        cs = self.image.cluster_size
        seen_compressed = set()
        for _guest, n, kind, host in self._runs():
            if kind == t.COMPRESSED_KIND:
                if host[0] in seen_compressed:
                    raise Qcow2UnsupportedError(
                        "refused: two compressed clusters share the bytes at {} (a "
                        "decompression bomb)".format(host[0]), path=self.path,
                        offset=host[0], field="compressed_cluster")
                seen_compressed.add(host[0])
            if kind in counts:
                counts[kind] += (n + cs - 1) // cs
        return counts

    def close(self):
        self.image.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()


def sm_layout_problems(store_image, cluster_size=DEFAULT_CLUSTER_SIZE):
    """Why this image is not exactly what SM's ``qemu-img create`` writes; [] when it is.

    SM's layout: version 3, ``cluster_size`` clusters, 16-bit refcounts, no feature bits
    (no lazy refcounts, extended L2, external data file or other compression type), no
    backing file, no internal snapshots, no extension besides the feature table and SM's
    hidden flag, no compressed clusters, and ``qemu-img check`` clean.  The hidden flag
    itself is not part of it (the caller sets it visible).
    """
    image = store_image.image
    h = image.header
    problems = []
    if h.version != 3:
        problems.append("version {}".format(h.version))
    if image.cluster_size != cluster_size:
        problems.append("{}-byte clusters".format(image.cluster_size))
    if h.refcount_bits != 16:
        problems.append("{}-bit refcounts".format(h.refcount_bits))
    if h.incompatible_features or h.compatible_features or h.autoclear_features:
        problems.append("feature bits 0x{:x}/0x{:x}/0x{:x}".format(
            h.incompatible_features, h.compatible_features, h.autoclear_features))
    if h.version == 3 and h.header_length != V3_LENGTH:
        problems.append("header length {}".format(h.header_length))
    if h.backing_name:
        problems.append("a backing file")
    if h.nb_snapshots:
        problems.append("{} internal snapshots".format(h.nb_snapshots))
    others = sorted("0x{:08x}".format(e.kind) for e in h.extensions
                    if e.kind not in _SM_EXTENSIONS)
    if others:
        problems.append("header extensions {}".format(", ".join(others)))
    hidden = h.extension(EXT_HIDDEN)
    if hidden is not None and len(hidden.data) != 8:
        problems.append("a {}-byte hidden flag".format(len(hidden.data)))
    if problems:
        return problems     # the census and the check below cost a walk of the tables
    if store_image.census()[t.COMPRESSED_KIND]:
        problems.append("compressed clusters")
    if store_image.defects():
        problems.append("qemu-img check defects")
    return problems
