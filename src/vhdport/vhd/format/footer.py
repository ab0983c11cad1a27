"""The 512-byte hard disk footer (and its copy at offset 0 of dynamic disks)."""

import struct
import time
import uuid as uuidlib

from ...errors import ChecksumError, CorruptError
from .checksum import ones_complement, seal
from .geometry import pack_geometry, unpack_geometry

FOOTER_SIZE = 512
COOKIE = b"conectix"
FEATURES_RESERVED = 0x2
FORMAT_VERSION = 0x00010000
NO_DATA_OFFSET = 0xFFFFFFFFFFFFFFFF

DISK_FIXED, DISK_DYNAMIC, DISK_DIFFERENCING = 2, 3, 4
DISK_TYPE_NAMES = {DISK_FIXED: "fixed", DISK_DYNAMIC: "dynamic",
                   DISK_DIFFERENCING: "differencing"}

#: what vhd-util writes: creator "tap\0", version 1.3, OS 0
CREATOR_TAP = b"tap\x00"
CREATOR_VERSION_TAP = 0x00010003

#: seconds between the Unix epoch and the VHD epoch (2000-01-01 00:00 UTC)
VHD_EPOCH = 946684800

_LAYOUT = struct.Struct(">8sIIQI4sI4sQQIII16sBB426s")
CHECKSUM_OFFSET = 64
HIDDEN_OFFSET = 85


def vhd_now():
    """Current time as a VHD timestamp."""
    return to_vhd_time(time.time())


def to_vhd_time(unix_seconds):
    return max(0, int(unix_seconds) - VHD_EPOCH) & 0xFFFFFFFF


def from_vhd_time(vhd_seconds):
    return vhd_seconds + VHD_EPOCH


class Footer(object):
    """One footer.  ``raw_tail`` keeps the reserved bytes so a rewrite changes nothing else."""

    __slots__ = ("cookie", "features", "version", "data_offset", "timestamp",
                 "creator_app", "creator_version", "creator_os", "original_size",
                 "current_size", "geometry", "disk_type", "checksum", "uuid",
                 "saved_state", "hidden", "reserved")

    def __init__(self, **fields):
        self.cookie = COOKIE
        self.features = FEATURES_RESERVED
        self.version = FORMAT_VERSION
        self.data_offset = NO_DATA_OFFSET
        self.timestamp = 0
        self.creator_app = CREATOR_TAP
        self.creator_version = CREATOR_VERSION_TAP
        self.creator_os = b"\x00\x00\x00\x00"
        self.original_size = 0
        self.current_size = 0
        self.geometry = (0, 0, 0)
        self.disk_type = DISK_FIXED
        self.checksum = 0
        self.uuid = uuidlib.UUID(int=0)
        self.saved_state = 0
        self.hidden = 0
        self.reserved = bytes(426)
        for name, value in fields.items():
            setattr(self, name, value)

    @classmethod
    def parse(cls, buf, path="<bytes>", offset=0, verify=True):
        """Parse 512 bytes (or a 511-byte legacy footer) found at ``offset`` of ``path``."""
        if len(buf) == 511:
            buf = bytes(buf) + b"\x00"
        if len(buf) != FOOTER_SIZE:
            raise CorruptError("footer at offset {} is {} bytes, expected 512".format(
                offset, len(buf)), path=path, offset=offset, field="footer")
        values = _LAYOUT.unpack(buf)
        if values[0] != COOKIE:
            raise CorruptError("bad footer cookie {!r} at offset {} (not a VHD footer)".format(
                values[0], offset), path=path, offset=offset, field="cookie")
        footer = cls()
        (footer.cookie, footer.features, footer.version, footer.data_offset,
         footer.timestamp, footer.creator_app, footer.creator_version,
         footer.creator_os, footer.original_size, footer.current_size, geometry,
         footer.disk_type, footer.checksum, raw_uuid, footer.saved_state,
         footer.hidden, footer.reserved) = values
        footer.geometry = unpack_geometry(geometry)
        footer.uuid = uuidlib.UUID(bytes=raw_uuid)
        if verify:
            computed = ones_complement(buf, CHECKSUM_OFFSET)
            if computed != footer.checksum:
                raise ChecksumError(path=path, what="footer", offset=offset,
                                    stored=footer.checksum, computed=computed)
        return footer

    def pack(self):
        """Serialize with a freshly computed checksum (stored back into ``checksum``)."""
        raw, self.checksum = seal(self._pack(), CHECKSUM_OFFSET)
        return raw

    def _pack(self):
        return _LAYOUT.pack(
            self.cookie, self.features, self.version, self.data_offset,
            self.timestamp, self.creator_app, self.creator_version, self.creator_os,
            self.original_size, self.current_size, pack_geometry(self.geometry),
            self.disk_type, self.checksum, self.uuid.bytes, self.saved_state,
            self.hidden, self.reserved)

    def copy(self):
        return Footer(**{name: getattr(self, name) for name in self.__slots__})

    @property
    def type_name(self):
        return DISK_TYPE_NAMES.get(self.disk_type, "unknown({})".format(self.disk_type))

    @property
    def is_dynamic(self):
        """True for dynamic and differencing disks (those with a header and BAT)."""
        return self.disk_type in (DISK_DYNAMIC, DISK_DIFFERENCING)

    def keeps_hidden_in_backup(self):
        """Old tapdisk (creator tap, version 0.1 or 1.1) kept the hidden flag in the copy at 0."""
        return self.creator_app == CREATOR_TAP and self.creator_version in (0x00000001, 0x00010001)

    def __eq__(self, other):
        return isinstance(other, Footer) and self._pack() == other._pack()

    def __ne__(self, other):
        return not self == other

    def __repr__(self):
        return "Footer(type={}, size={}, uuid={}, hidden={})".format(
            self.type_name, self.current_size, self.uuid, self.hidden)
