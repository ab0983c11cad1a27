"""Local store records and files: read without following links, validated before use.

Why: a record's own fields once chose where it was saved (a lying "id" wrote outside the
store) and a planted symlink could make a lock or record file land elsewhere.  Paths come
only from the id asked for; what is read is checked here before anything acts on it.
"""

import errno
import os
import stat

from vhdport import errors
from vhdport.stores import base

#: a record is a few hundred bytes; anything far bigger is not one of ours
MAX_RECORD_BYTES = 1 << 20
#: status shown by list() for a record that cannot be read or fails validation
DAMAGED = "damaged"


def open_nofollow(path, flags, mode=0o644):
    """os.open that never follows a symlink and only ever yields a plain file of one name.

    Why: a link planted in the store (lock file, record, data) must not make us read
    or create a file outside it.
    """
    try:
        fd = os.open(path, flags | os.O_NOFOLLOW | os.O_NONBLOCK | getattr(os, "O_CLOEXEC", 0),
                     mode)
    except OSError as exc:
        if exc.errno == errno.ELOOP:
            raise errors.StoreError("{}: is a symbolic link; the store never follows links: "
                                    "remove it".format(path)) from None
        raise
    st = os.fstat(fd)
    if not stat.S_ISREG(st.st_mode) or st.st_nlink != 1:
        os.close(fd)
        raise errors.StoreError("{}: is not a plain file of its own ({}); the store refuses to "
                                "use it: remove it".format(
                                    path, "hard link" if stat.S_ISREG(st.st_mode) else
                                    "not a file"))
    return fd


_OPTIONAL_STR = ("name", "disk_format", "container_format", "checksum", "os_hash_algo",
                 "os_hash_value", "visibility", "created_at", "updated_at")


def validate_record(doc, image_id, path):
    """(record, created_ns) from a parsed record file, or StoreError naming what is wrong."""
    def bad(why):
        return errors.StoreError("{}: damaged image record ({}); delete the image and upload "
                                 "it again".format(path, why))
    if not isinstance(doc, dict) or not isinstance(doc.get("record"), dict):
        raise bad("not a record document")
    record, created_ns = doc["record"], doc.get("created_ns")
    if not isinstance(created_ns, int) or isinstance(created_ns, bool):
        raise bad("created_ns is not an integer")
    if record.get("id") != image_id:
        raise bad("its id {!r} is not the id of its file name".format(record.get("id"))[:200])
    if record.get("status") not in (base.QUEUED, base.SAVING, base.ACTIVE, base.KILLED):
        raise bad("unknown status {!r}".format(record.get("status"))[:200])
    for field in _OPTIONAL_STR:
        if record.get(field) is not None and not isinstance(record[field], str):
            raise bad("{} is not a string".format(field))
    size = record.get("size")
    if size is not None and (not isinstance(size, int) or isinstance(size, bool) or size < 0):
        raise bad("size {!r} is not a byte count".format(size)[:200])
    props = record.get("properties")
    if not isinstance(props, dict) or not all(
            isinstance(k, str) and isinstance(v, str) for k, v in props.items()):
        raise bad("properties are not a string map")
    if record["status"] == base.ACTIVE and (
            size is None or not record.get("checksum") or not record.get("os_hash_value")):
        raise bad("active without size and hashes")
    return base.new_record(**{k: record.get(k) for k in base.RECORD_FIELDS}), created_ns


def damaged_record(image_id, reason):
    """What list() shows for a record it cannot use: the others stay listed."""
    return base.new_record(id=image_id, name="<damaged record>", status=DAMAGED,
                           properties={"damage": reason})
