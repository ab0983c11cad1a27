"""The 512-byte tar header: packed by the writer, parsed strictly by the reader.

We do the byte layout ourselves instead of letting :mod:`tarfile` loose on an
untrusted stream: tarfile happily follows pax overrides, long names and odd types
that the bundle rules must see (and refuse) before a byte is written.
"""

import struct

from .. import disk
from ..errors import BundleError
from .rules import show

BLOCK = 512
ZERO_BLOCK = bytes(BLOCK)
#: largest size the 11 octal digits of a ustar size field can hold (8 GiB - 1)
USTAR_MAX_SIZE = 0o77777777777
#: upper bound on the data of a pax or GNU long-name header we are willing to read
MAX_META_DATA = 64 * 1024

REGULAR_TYPES = (b"0", b"\x00")
DIRECTORY = b"5"
PAX_HEADER, PAX_GLOBAL = b"x", b"g"
GNU_LONGNAME, GNU_LONGLINK = b"L", b"K"

#: what each refused type flag is, for messages
TYPE_NAMES = {
    b"1": "hard link", b"2": "symbolic link", b"3": "character device",
    b"4": "block device", b"5": "directory", b"6": "FIFO", b"7": "contiguous file",
    b"S": "GNU sparse file", b"V": "volume label", b"M": "multi-volume continuation",
    b"D": "GNU dump directory", b"N": "GNU old long name",
}

_USTAR = struct.Struct("100s8s8s8s12s12s8sc100s6s2s32s32s8s8s155s12s")
_CHKSUM_OFFSET, _CHKSUM_SIZE = 148, 8
POSIX_MAGIC = b"ustar\x00"
GNU_MAGIC = b"ustar "


def _octal(value, width):
    """``width``-byte octal field with its NUL terminator."""
    return ("%0*o" % (width - 1, value)).encode("ascii") + b"\x00"


def _header_checksum(block):
    head = block[:_CHKSUM_OFFSET]
    tail = block[_CHKSUM_OFFSET + _CHKSUM_SIZE:]
    unsigned = sum(head) + sum(tail) + 8 * 0x20
    signed = unsigned - 2 * (sum(b for b in head if b > 127) + sum(b for b in tail if b > 127))
    return unsigned, signed


def _ustar_block(name, size, mtime, typeflag, mode=0o644):
    raw_name = name.encode("utf-8")
    if len(raw_name) > 100:
        raise BundleError("tar member name {!r} is longer than 100 bytes".format(name),
                          member=name)
    fields = _USTAR.pack(
        raw_name, _octal(mode, 8), _octal(0, 8), _octal(0, 8), _octal(size, 12),
        _octal(max(0, int(mtime)) & 0o77777777777, 12), b" " * 8, typeflag, b"",
        POSIX_MAGIC, b"00", b"root", b"root", _octal(0, 8), _octal(0, 8), b"", b"")
    block = bytearray(fields)
    unsigned, _ = _header_checksum(block)
    block[_CHKSUM_OFFSET:_CHKSUM_OFFSET + _CHKSUM_SIZE] = ("%06o" % unsigned).encode("ascii") + b"\x00 "
    return bytes(block)


def _pax_record(key, value):
    """One ``"len key=value\\n"`` record; the length counts its own digits."""
    body = " {}={}\n".format(key, value).encode("utf-8")
    length = len(body) + 1
    while len(str(length)) + len(body) != length:
        length += 1
    return str(length).encode("ascii") + body


def member_header(name, size, mtime):
    """Header block(s) for a regular file: plain ustar, or pax + ustar past 8 GiB."""
    if size <= USTAR_MAX_SIZE:
        return _ustar_block(name, size, mtime, b"0")
    records = _pax_record("size", size)
    pax = _ustar_block("PaxHeaders/" + name, len(records), mtime, PAX_HEADER)
    return pax + records + bytes(padding(len(records))) + _ustar_block(name, 0, mtime, b"0")


def padding(size):
    """Bytes of zero padding after ``size`` bytes of member data."""
    return -size % BLOCK


class TarHeader(object):
    """The fields of one header block that the reader needs."""

    __slots__ = ("name", "raw_name", "typeflag", "size", "linkname", "offset")

    def __init__(self, name, raw_name, typeflag, size, linkname, offset):
        self.name, self.raw_name, self.typeflag = name, raw_name, typeflag
        self.size, self.linkname, self.offset = size, linkname, offset

    @property
    def type_name(self):
        if self.typeflag in REGULAR_TYPES:
            return "regular file"
        return TYPE_NAMES.get(self.typeflag, "unknown type {!r}".format(self.typeflag))


def field_text(raw, what, offset):
    """A NUL-terminated name field; bytes after the first NUL must all be NUL too."""
    end = raw.find(b"\x00")
    if end >= 0:
        if raw[end:].strip(b"\x00"):
            shown = raw.rstrip(b"\x00").decode("utf-8", "replace")
            raise BundleError(
                "bundle member {} refused: NUL byte inside its {} (tar header at offset "
                "{})".format(show(shown), what, offset), member=shown)
        raw = raw[:end]
    return raw


def decode_name(raw, offset):
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError:
        shown = raw.decode("utf-8", "replace")
        raise BundleError("bundle member {} refused: name is not valid UTF-8 "
                          "(tar header at offset {})".format(show(shown), offset), member=shown)


def _number(raw, what, offset):
    """Octal (NUL/space padded) or GNU base-256 numeric field."""
    if raw[:1] == b"\x80":
        return int.from_bytes(raw[1:], "big")
    if raw[:1] == b"\xff":
        raise BundleError("tar header at offset {}: negative {}".format(offset, what))
    text = raw.replace(b"\x00", b" ").strip()
    if not text:
        return 0
    try:
        return int(text, 8)
    except ValueError:
        raise BundleError("tar header at offset {}: {} field {!r} is not a number "
                          "(not a tar archive or corrupt)".format(offset, what, raw))


def parse_header(block, offset):
    """Parse one non-zero header block found at stream ``offset``; refuse bad checksums."""
    (name, _mode, _uid, _gid, size, _mtime, chksum, typeflag, linkname, magic,
     _version, _uname, _gname, _major, _minor, prefix, _pad) = _USTAR.unpack(block)
    try:
        stored = _number(chksum, "checksum", offset)
    except BundleError:
        stored = None
    if stored not in _header_checksum(block):
        hint = ""
        fmt = disk.sniff(block)
        if fmt is not None:
            hint = "; it looks like a bare {} (disk format {}, not a tarball)".format(
                fmt.name.upper(), fmt.name)
        raise BundleError("bad tar header checksum at offset {} (not a tar archive, or "
                          "corrupt){}".format(offset, hint), offset=offset)
    raw_name = field_text(name, "name", offset)
    if magic == POSIX_MAGIC:
        raw_prefix = field_text(prefix, "name prefix", offset)
        if raw_prefix:
            raw_name = raw_prefix + b"/" + raw_name
    raw_link = field_text(linkname, "link name", offset)
    return TarHeader(decode_name(raw_name, offset), raw_name, typeflag,
                     _number(size, "size", offset), raw_link, offset)


def parse_pax(data, offset):
    """Records of a pax header as {key: value str}; refuse malformed records."""
    records = {}
    pos = 0
    data = bytes(data)
    while pos < len(data):
        if data[pos:].strip(b"\x00") == b"":
            break
        space = data.find(b" ", pos)
        try:
            length = int(data[pos:space]) if space > pos else 0
        except ValueError:
            length = 0
        record = data[pos:pos + length]
        if length <= 0 or space < 0 or pos + length > len(data) or not record.endswith(b"\n") \
                or b"=" not in record:
            raise BundleError("malformed pax header record at offset {} (corrupt archive)".format(
                offset + pos), offset=offset)
        key, _, value = record[space - pos + 1:-1].partition(b"=")
        try:
            records[key.decode("utf-8")] = value.decode("utf-8")
        except UnicodeDecodeError:
            raise BundleError("pax header at offset {} holds a record that is not UTF-8".format(
                offset), offset=offset)
        pos += length
    return records
