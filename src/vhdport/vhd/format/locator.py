"""Parent locators: where a differencing disk finds its parent file.

vhd-util writes three, each in its own 512-byte slot, all relative to the child's
directory: MacX (``file://./name.vhd``, UTF-8), W2ku and W2ru (``.\\name.vhd``,
UTF-16LE).  The spec says ``data_space`` counts sectors; libvhd writes bytes.
"""

import struct

from ...errors import CorruptError, FormatError

LOCATOR_SIZE = 24
LOCATOR_COUNT = 8
SLOT_SIZE = 512

CODE_NONE = 0
CODE_MACX = 0x4D616358
CODE_W2KU = 0x57326B75
CODE_W2RU = 0x57327275
CODE_NAMES = {CODE_MACX: "MacX", CODE_W2KU: "W2ku", CODE_W2RU: "W2ru"}

_LAYOUT = struct.Struct(">IIIIQ")


class ParentLocator(object):
    """One 24-byte locator entry of the dynamic header."""

    __slots__ = ("code", "data_space", "data_length", "reserved", "data_offset")

    def __init__(self, code=CODE_NONE, data_space=0, data_length=0, data_offset=0, reserved=0):
        self.code = code
        self.data_space = data_space
        self.data_length = data_length
        self.reserved = reserved
        self.data_offset = data_offset

    @classmethod
    def parse(cls, buf):
        code, space, length, reserved, offset = _LAYOUT.unpack(buf)
        return cls(code, space, length, offset, reserved)

    def pack(self):
        return _LAYOUT.pack(self.code, self.data_space, self.data_length,
                            self.reserved, self.data_offset)

    @property
    def in_use(self):
        return self.code != CODE_NONE

    @property
    def space_bytes(self):
        """Room for the path: values below 512 are sectors (the spec), larger ones bytes (libvhd)."""
        if self.data_space < SLOT_SIZE:
            return self.data_space * SLOT_SIZE
        return self.data_space

    @property
    def name(self):
        return CODE_NAMES.get(self.code, "0x{:08x}".format(self.code))

    def __repr__(self):
        return "ParentLocator({}, offset={}, length={})".format(
            self.name, self.data_offset, self.data_length)


def encode_path(code, relative_name):
    """The locator payload naming ``relative_name`` (a file beside the child)."""
    if code == CODE_MACX:
        return ("file://./" + relative_name).encode("utf-8")
    if code in (CODE_W2KU, CODE_W2RU):
        return (".\\" + relative_name).encode("utf-16-le")
    raise FormatError("unknown parent locator code 0x{:08x}".format(code))


def decode_path(code, payload, path="<bytes>"):
    """Return the parent path as a POSIX path (relative or absolute) from a locator payload."""
    try:
        if code == CODE_MACX:
            text = payload.decode("utf-8").rstrip("\x00")
            if text.startswith("file://"):
                text = text[len("file://"):]
            return text
        if code in (CODE_W2KU, CODE_W2RU):
            text = payload.decode("utf-16-le").rstrip("\x00")
            return _windows_to_posix(text)
    except UnicodeDecodeError:
        raise CorruptError("parent locator {} holds an undecodable path".format(
            CODE_NAMES.get(code, code)), path=path)
    return None


def _windows_to_posix(text):
    if len(text) >= 2 and text[1] == ":":
        text = text[2:]          # drive letters mean nothing on a XenServer host
    return text.replace("\\", "/")
