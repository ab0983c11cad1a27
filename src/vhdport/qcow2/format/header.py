"""The QCOW2 header (v2 and v3), its header extensions and the backing file name.

Everything lives in the first cluster.  Extensions vhdport does not interpret are kept
byte for byte (data and padding) so a rewritten header loses nothing; the backing file
name goes right after the end-of-extensions marker, where qemu puts it.
"""

import struct

from ...errors import Qcow2CorruptError, Qcow2FormatError, Qcow2UnsupportedError

MAGIC = b"QFI\xfb"
V2_LENGTH = 72
V3_MIN_LENGTH = 104
V3_LENGTH = 112                 # what qemu writes: 104 + compression_type + padding
MIN_CLUSTER_BITS, MAX_CLUSTER_BITS = 9, 21
MAX_BACKING_NAME = 1023

EXT_END = 0x00000000
EXT_BACKING_FORMAT = 0xE2792ACA
EXT_FEATURE_TABLE = 0x6803F857
EXT_BITMAPS = 0x23852875
EXT_CRYPTO = 0x0537BE77
EXT_DATA_FILE = 0x44415441
EXT_HIDDEN = 0x76617465         # "vate": XCP-ng SM's hidden flag, 8 data bytes

INCOMPAT_DIRTY = 1 << 0
INCOMPAT_CORRUPT = 1 << 1
INCOMPAT_DATA_FILE = 1 << 2
INCOMPAT_COMPRESSION = 1 << 3
INCOMPAT_EXTL2 = 1 << 4
INCOMPAT_KNOWN = 0x1F

_V2 = struct.Struct(">4sIQIIQIIQQIIQ")
_V3 = struct.Struct(">QQQII")
_EXT = struct.Struct(">II")
assert _V2.size == V2_LENGTH and V2_LENGTH + _V3.size == V3_MIN_LENGTH

#: the feature name table qemu writes into every v3 header it creates
FEATURE_NAMES = [(0, 0, b"dirty bit"), (0, 1, b"corrupt bit"), (0, 2, b"external data file"),
                 (0, 3, b"compression type"), (0, 4, b"extended L2 entries"),
                 (1, 0, b"lazy refcounts"), (2, 0, b"bitmaps"), (2, 1, b"raw external data")]


def feature_table():
    return b"".join(struct.pack(">BB46s", kind, bit, name) for kind, bit, name in FEATURE_NAMES)


def _pad8(n):
    return (n + 7) & ~7


class Extension(object):
    """One header extension: ``kind``, ``data`` and the padding bytes as found."""

    __slots__ = ("kind", "data", "padding")

    def __init__(self, kind, data, padding=None):
        self.kind = kind
        self.data = bytes(data)
        self.padding = bytes(_pad8(len(data)) - len(data)) if padding is None else bytes(padding)

    def pack(self):
        return _EXT.pack(self.kind, len(self.data)) + self.data + self.padding

    def __repr__(self):
        return "Extension(0x{:08x}, {} bytes)".format(self.kind, len(self.data))


class Header(object):
    """Header fields by their spec names, plus ``extensions`` (a list) and ``backing_name``."""

    FIELDS = ("version", "backing_file_offset", "backing_file_size", "cluster_bits", "size",
              "crypt_method", "l1_size", "l1_table_offset", "refcount_table_offset",
              "refcount_table_clusters", "nb_snapshots", "snapshots_offset",
              "incompatible_features", "compatible_features", "autoclear_features",
              "refcount_order", "header_length")
    __slots__ = FIELDS + ("extra", "extensions", "backing_name", "extensions_end")

    def __init__(self, **fields):
        for name in self.FIELDS:
            setattr(self, name, 0)
        self.version = 3
        self.cluster_bits = 16
        self.refcount_order = 4
        self.header_length = V3_LENGTH
        self.extra = bytes(V3_LENGTH - V3_MIN_LENGTH)   # compression_type 0 (zlib) + padding
        self.extensions = []
        self.backing_name = None
        self.extensions_end = None
        for name, value in fields.items():
            setattr(self, name, value)

    # ------------------------------------------------------------- derived

    @property
    def cluster_size(self):
        return 1 << self.cluster_bits

    @property
    def refcount_bits(self):
        return 1 << self.refcount_order

    @property
    def extended_l2(self):
        return bool(self.incompatible_features & INCOMPAT_EXTL2)

    @property
    def compression_type(self):
        return self.extra[0] if self.extra else 0

    def extension(self, kind):
        for ext in self.extensions:
            if ext.kind == kind:
                return ext
        return None

    @property
    def backing_format(self):
        ext = self.extension(EXT_BACKING_FORMAT)
        return ext.data.decode("utf-8", "replace") if ext is not None else None

    @property
    def hidden(self):
        ext = self.extension(EXT_HIDDEN)
        return bool(ext is not None and ext.data[:1] not in (b"", b"\x00"))

    # --------------------------------------------------------------- parse

    @classmethod
    def parse(cls, buf, path="<bytes>"):
        """Parse the first cluster (or more of the file start); validate what the header alone can."""
        if len(buf) < V2_LENGTH or bytes(buf[:4]) != MAGIC:
            raise Qcow2FormatError("not a QCOW2 image (no QFI\\xfb magic at offset 0)", path=path,
                                   offset=0, field="magic")
        h = cls()
        (_magic, h.version, h.backing_file_offset, h.backing_file_size, h.cluster_bits, h.size,
         h.crypt_method, h.l1_size, h.l1_table_offset, h.refcount_table_offset,
         h.refcount_table_clusters, h.nb_snapshots, h.snapshots_offset) = _V2.unpack_from(buf)
        if h.version not in (2, 3):
            raise Qcow2UnsupportedError("QCOW2 version {} (only 2 and 3 exist)".format(h.version),
                                        path=path, offset=4, field="version")
        if not MIN_CLUSTER_BITS <= h.cluster_bits <= MAX_CLUSTER_BITS:
            raise Qcow2CorruptError("cluster_bits {} outside 9..21 (512 B to 2 MiB clusters)".format(
                h.cluster_bits), path=path, offset=20, field="cluster_bits")
        cs = h.cluster_size
        if h.version == 2:
            h.incompatible_features = h.compatible_features = h.autoclear_features = 0
            h.refcount_order, h.header_length, h.extra = 4, V2_LENGTH, b""
        else:
            if len(buf) < V3_MIN_LENGTH:
                raise Qcow2CorruptError("v3 header truncated", path=path, offset=72, field="header")
            (h.incompatible_features, h.compatible_features, h.autoclear_features,
             h.refcount_order, h.header_length) = _V3.unpack_from(buf, V2_LENGTH)
            if h.header_length < V3_MIN_LENGTH or h.header_length % 8 or h.header_length > cs \
                    or h.header_length > len(buf):
                raise Qcow2CorruptError("header_length {} is not a multiple of 8 between 104 and "
                                        "the cluster size".format(h.header_length), path=path,
                                        offset=100, field="header_length")
            h.extra = bytes(buf[V3_MIN_LENGTH:h.header_length])
            if h.refcount_order > 6:
                raise Qcow2CorruptError("refcount_order {} above 6 (64-bit refcounts)".format(
                    h.refcount_order), path=path, offset=96, field="refcount_order")
        h._check_features(path)
        h._parse_extensions(buf, path)
        h._parse_backing_name(buf, path)
        return h

    def _check_features(self, path):
        if self.crypt_method:
            raise Qcow2UnsupportedError("encrypted image (crypt_method {}): vhdport does not "
                                        "decrypt".format(self.crypt_method), path=path, offset=32,
                                        field="crypt_method")
        bits = self.incompatible_features
        if bits & ~INCOMPAT_KNOWN:
            raise Qcow2UnsupportedError("unknown incompatible feature bits 0x{:x}".format(
                bits & ~INCOMPAT_KNOWN), path=path, offset=72, field="incompatible_features")
        if bits & INCOMPAT_CORRUPT:
            raise Qcow2CorruptError("the corrupt bit is set: repair with qemu-img check -r all "
                                    "before use", path=path, offset=72, field="incompatible_features")
        if bits & INCOMPAT_DATA_FILE:
            raise Qcow2UnsupportedError("external data file (incompatible bit 2): the image would "
                                        "read another host file; refused", path=path, offset=72,
                                        field="incompatible_features")
        if bits & INCOMPAT_COMPRESSION or self.compression_type != 0:
            raise Qcow2UnsupportedError("compression type {} (only zlib is supported)".format(
                self.compression_type), path=path, offset=104, field="compression_type")
        if bits & INCOMPAT_EXTL2 and self.cluster_bits < 14:
            raise Qcow2CorruptError("extended L2 entries need clusters of 16 KiB or more",
                                    path=path, offset=20, field="cluster_bits")

    def _parse_extensions(self, buf, path):
        cs = self.cluster_size
        end = min(cs, len(buf))
        at = self.header_length
        seen = set()
        while True:
            if at + 8 > end:
                raise Qcow2CorruptError("header extensions run past the first cluster", path=path,
                                        offset=at, field="extensions")
            kind, length = _EXT.unpack_from(buf, at)
            if kind == EXT_END:
                self.extensions_end = at
                return
            padded = _pad8(length)
            if at + 8 + padded > end:
                raise Qcow2CorruptError("header extension 0x{:08x} of {} bytes runs past the first "
                                        "cluster".format(kind, length), path=path, offset=at,
                                        field="extensions")
            if kind in seen and kind in (EXT_BACKING_FORMAT, EXT_DATA_FILE, EXT_CRYPTO, EXT_HIDDEN):
                raise Qcow2CorruptError("header extension 0x{:08x} appears twice".format(kind),
                                        path=path, offset=at, field="extensions")
            seen.add(kind)
            data = bytes(buf[at + 8:at + 8 + length])
            if kind == EXT_DATA_FILE:
                raise Qcow2UnsupportedError("external data file name extension: refused (the image "
                                            "would read another host file)", path=path, offset=at,
                                            field="extensions")
            if kind == EXT_CRYPTO:
                raise Qcow2UnsupportedError("encryption header extension: encrypted images are "
                                            "refused", path=path, offset=at, field="extensions")
            self.extensions.append(Extension(kind, data, buf[at + 8 + length:at + 8 + padded]))
            at += 8 + padded

    def _parse_backing_name(self, buf, path):
        if not self.backing_file_offset:
            return
        off, n = self.backing_file_offset, self.backing_file_size
        if n > MAX_BACKING_NAME or n == 0:
            raise Qcow2CorruptError("backing file name of {} bytes (1..1023 allowed)".format(n),
                                    path=path, offset=16, field="backing_file_size")
        if off < self.extensions_end + 8 or off + n > min(self.cluster_size, len(buf)):
            raise Qcow2CorruptError("backing file name at {} (+{}) is not between the header "
                                    "extensions and the end of the first cluster".format(off, n),
                                    path=path, offset=8, field="backing_file_offset")
        raw = bytes(buf[off:off + n])
        try:
            self.backing_name = raw.decode("utf-8")
        except UnicodeDecodeError:
            raise Qcow2CorruptError("backing file name is not UTF-8", path=path, offset=off,
                                    field="backing_file_name")
        if "\x00" in self.backing_name:
            raise Qcow2CorruptError("backing file name holds a NUL byte", path=path, offset=off,
                                    field="backing_file_name")

    # ---------------------------------------------------------------- pack

    def pack_fields(self):
        """The fixed fields and the v3 additional fields (header_length bytes)."""
        head = _V2.pack(MAGIC, self.version, self.backing_file_offset, self.backing_file_size,
                        self.cluster_bits, self.size, self.crypt_method, self.l1_size,
                        self.l1_table_offset, self.refcount_table_offset,
                        self.refcount_table_clusters, self.nb_snapshots, self.snapshots_offset)
        if self.version == 2:
            return head
        return head + _V3.pack(self.incompatible_features, self.compatible_features,
                               self.autoclear_features, self.refcount_order,
                               self.header_length) + self.extra

    def pack(self):
        """Header, extensions, end marker and backing name, as qemu lays them out.

        Sets ``backing_file_offset``/``backing_file_size`` and ``extensions_end``.
        Raises if it does not fit in the first cluster.
        """
        if self.version == 3:
            self.header_length = V3_MIN_LENGTH + len(self.extra)
        body = self.pack_fields()
        body += b"".join(ext.pack() for ext in self.extensions)
        self.extensions_end = len(body)
        body += _EXT.pack(EXT_END, 0)
        if self.backing_name:
            raw = self.backing_name.encode("utf-8")
            if len(raw) > MAX_BACKING_NAME:
                raise Qcow2FormatError("backing file name {!r} longer than 1023 bytes".format(
                    self.backing_name))
            self.backing_file_offset, self.backing_file_size = len(body), len(raw)
            body = _V2.pack(MAGIC, self.version, self.backing_file_offset, len(raw),
                            *self._tail_fields()) + body[V2_LENGTH:] + raw
        else:
            self.backing_file_offset = self.backing_file_size = 0
            body = _V2.pack(MAGIC, self.version, 0, 0, *self._tail_fields()) + body[V2_LENGTH:]
        if len(body) > self.cluster_size:
            raise Qcow2FormatError("header, extensions and backing name ({} bytes) do not fit the "
                                   "{}-byte first cluster".format(len(body), self.cluster_size))
        return body

    def _tail_fields(self):
        return (self.cluster_bits, self.size, self.crypt_method, self.l1_size,
                self.l1_table_offset, self.refcount_table_offset, self.refcount_table_clusters,
                self.nb_snapshots, self.snapshots_offset)

    def __repr__(self):
        return "Header(v{}, size={}, cluster={}, refcount_bits={}, backing={!r})".format(
            self.version, self.size, self.cluster_size, self.refcount_bits, self.backing_name)
