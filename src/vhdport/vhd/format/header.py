"""The 1024-byte dynamic disk header of dynamic and differencing disks."""

import struct
import uuid as uuidlib

from ...errors import ChecksumError, CorruptError
from .checksum import ones_complement, seal
from .locator import LOCATOR_COUNT, LOCATOR_SIZE, ParentLocator

HEADER_SIZE = 1024
COOKIE = b"cxsparse"
HEADER_VERSION = 0x00010000
DEFAULT_BLOCK_SIZE = 2 * 1024 * 1024
NO_DATA_OFFSET = 0xFFFFFFFFFFFFFFFF

_LAYOUT = struct.Struct(">8sQQIIII16sI4s512s")
LOCATORS_OFFSET = 576
CHECKSUM_OFFSET = 36
PARENT_NAME_OFFSET = 64
PARENT_NAME_SIZE = 512


class DynamicHeader(object):
    """The dynamic header; ``locators`` is always a list of 8 ParentLocator."""

    __slots__ = ("cookie", "data_offset", "table_offset", "version",
                 "max_table_entries", "block_size", "checksum", "parent_uuid",
                 "parent_timestamp", "reserved1", "parent_name", "locators", "reserved2")

    def __init__(self, **fields):
        self.cookie = COOKIE
        self.data_offset = NO_DATA_OFFSET
        self.table_offset = 1536
        self.version = HEADER_VERSION
        self.max_table_entries = 0
        self.block_size = DEFAULT_BLOCK_SIZE
        self.checksum = 0
        self.parent_uuid = uuidlib.UUID(int=0)
        self.parent_timestamp = 0
        self.reserved1 = b"\x00" * 4
        self.parent_name = ""
        self.locators = [ParentLocator() for _ in range(LOCATOR_COUNT)]
        self.reserved2 = bytes(256)
        for name, value in fields.items():
            setattr(self, name, value)

    @classmethod
    def parse(cls, buf, path="<bytes>", offset=512, verify=True):
        if len(buf) != HEADER_SIZE:
            raise CorruptError("dynamic header at offset {} is truncated ({} of 1024 bytes)".format(
                offset, len(buf)), path=path, offset=offset, field="header")
        values = _LAYOUT.unpack_from(buf)
        if values[0] != COOKIE:
            raise CorruptError("bad dynamic header cookie {!r} at offset {}".format(
                values[0], offset), path=path, offset=offset, field="cookie")
        header = cls()
        (header.cookie, header.data_offset, header.table_offset, header.version,
         header.max_table_entries, header.block_size, header.checksum, raw_uuid,
         header.parent_timestamp, header.reserved1, raw_name) = values
        header.parent_uuid = uuidlib.UUID(bytes=raw_uuid)
        header.parent_name = _decode_name(raw_name)
        header.locators = [
            ParentLocator.parse(buf[LOCATORS_OFFSET + i * LOCATOR_SIZE:
                                    LOCATORS_OFFSET + (i + 1) * LOCATOR_SIZE])
            for i in range(LOCATOR_COUNT)]
        header.reserved2 = bytes(buf[LOCATORS_OFFSET + LOCATOR_COUNT * LOCATOR_SIZE:])
        if verify:
            computed = ones_complement(buf, CHECKSUM_OFFSET)
            if computed != header.checksum:
                raise ChecksumError(path=path, what="dynamic header", offset=offset,
                                    stored=header.checksum, computed=computed)
        return header

    def pack(self):
        raw, self.checksum = seal(self._pack(), CHECKSUM_OFFSET)
        return raw

    def _pack(self):
        head = _LAYOUT.pack(
            self.cookie, self.data_offset, self.table_offset, self.version,
            self.max_table_entries, self.block_size, self.checksum,
            self.parent_uuid.bytes, self.parent_timestamp, self.reserved1,
            encode_name(self.parent_name))
        return head + b"".join(loc.pack() for loc in self.locators) + self.reserved2

    @property
    def has_parent(self):
        return self.parent_uuid.int != 0

    def __repr__(self):
        return "DynamicHeader(blocks={}x{}, parent={})".format(
            self.max_table_entries, self.block_size, self.parent_uuid if self.has_parent else None)


def encode_name(name):
    """Parent unicode name, UTF-16BE, zero padded to 512 bytes."""
    raw = name.encode("utf-16-be")
    if len(raw) > PARENT_NAME_SIZE:
        raise CorruptError("parent name {!r} longer than 256 UTF-16 units".format(name))
    return raw + bytes(PARENT_NAME_SIZE - len(raw))


def _decode_name(raw):
    raw = bytes(raw)
    for i in range(0, len(raw) - 1, 2):
        if raw[i] == 0 and raw[i + 1] == 0:
            raw = raw[:i]
            break
    return raw.decode("utf-16-be", "replace")
