"""Finish or undo a publish or snapshot whose process died half-way.

Why: a chain enters the SR one file at a time (leaf first, so a hidden parent is
never childless) and a snapshot is several links and renames, so a process killed
in between leaves a leaf whose parents still sit in its staging dir, or a snapshot
half made.  Both write a small journal into their staging dir before touching the
SR; whoever reclaims that dir (holding the SR lock) rolls the operation forward
when the SR already depends on it, and back when nothing in the SR does yet.
Files are recognised by inode, so a journal never acts on someone else's file.
"""

import errno
import json
import logging
import os
import stat

from .. import disk
from ..fsutil import fsync_dir
from .scan import is_uuid, os_error

log = logging.getLogger(__name__)

JOURNAL = ".journal.json"
#: a journal names a chain of at most a few dozen files: anything bigger is not ours
MAX_JOURNAL_BYTES = 64 * 1024


class _Untrusted(ValueError):
    """A journal entry that could name a file outside the SR (or not a VDI of it)."""


def _vdi_name(name):
    """``name`` if it is a bare ``<uuid><suffix>`` of a known disk format; else _Untrusted.

    These are the only file names a journal may name (directly in the SR)."""
    if isinstance(name, str) and is_uuid(disk.stem_of(name)):
        return name
    raise _Untrusted("{!r} is not a bare <uuid>{} name of this SR".format(
        name, "|".join(disk.suffixes())))


def _uuid_field(doc, key):
    value = doc[key]
    if not is_uuid(value):
        raise _Untrusted("{} {!r} is not a uuid".format(key, value))
    return value


def _inode(value):
    if not isinstance(value, int) or isinstance(value, bool) or value <= 0:
        raise _Untrusted("{!r} is not an inode number".format(value))
    return value


def _read_journal(path):
    """The journal's JSON, or None; never through a link, never more than a small file."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK)
    except OSError as e:
        if e.errno == errno.ELOOP:
            log.warning("journal %s is a symbolic link: ignored and left alone", path)
        return None
    try:
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode) or st.st_size > MAX_JOURNAL_BYTES:
            log.warning("journal %s is not a small plain file: ignored and left alone", path)
            return None
        with os.fdopen(os.dup(fd), "rb") as f:
            data = f.read(MAX_JOURNAL_BYTES + 1)
        return json.loads(data.decode("utf-8"))
    except (OSError, ValueError, RecursionError):
        return None   # one never completed: nothing reached the SR
    finally:
        os.close(fd)


def _ino(path):
    try:
        return os.lstat(path).st_ino
    except OSError:
        return None


def write_journal(staging_dir, doc):
    """Durably record what is about to happen (temp file, fsync, rename, fsync dir)."""
    path = os.path.join(staging_dir, JOURNAL)
    tmp = path + ".tmp"
    try:
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_NOFOLLOW, 0o600)
        with os.fdopen(fd, "w") as f:
            json.dump(doc, f)
            f.flush()
            os.fsync(f.fileno())
        os.rename(tmp, path)
        fsync_dir(staging_dir)
    except OSError as e:   # before anything in the SR changed: the operation just fails
        raise os_error(e, path, "write the recovery journal")


def drop_journal(staging_dir):
    """The operation finished: nothing is left to recover."""
    try:
        os.unlink(os.path.join(staging_dir, JOURNAL))
    except OSError:
        pass


def publish_journal(staging_dir, paths):
    """Journal of a publish of ``paths`` (leaf first, all in ``staging_dir``)."""
    write_journal(staging_dir, {"op": "publish", "files": [
        [os.path.basename(p), _ino(p)] for p in paths]})


def snapshot_journal(staging_dir, vdi_uuid, base_uuid, snap_uuid, vdi_ino, format_name):
    """Journal of a snapshot; ``format_name`` (the disk face's) says which files it names."""
    write_journal(staging_dir, {"op": "snapshot", "vdi": vdi_uuid, "base": base_uuid,
                                "snap": snap_uuid, "ino": vdi_ino, "format": format_name})


def recover(sr_path, staging_dir):
    """Act on the journal of a dead staging dir, if any; return what was done (or None).

    The caller holds the SR lock and removes the staging dir afterwards.
    """
    doc = _read_journal(os.path.join(staging_dir, JOURNAL))
    if not isinstance(doc, dict):
        return None   # no journal (or one never completed): nothing reached the SR
    try:
        if doc.get("op") == "publish":
            done = _finish_publish(sr_path, staging_dir, doc["files"])
        elif doc.get("op") == "snapshot":
            done = _recover_snapshot(sr_path, staging_dir, doc)
        else:
            return None
    except _Untrusted as e:
        log.warning("ignoring journal in %s that names something outside SR %s: %s; "
                    "nothing touched", staging_dir, sr_path, e)
        return None
    except (KeyError, TypeError, ValueError, IndexError) as e:
        log.warning("ignoring unreadable journal in %s: %s", staging_dir, e)
        return None
    if done:
        log.warning("recovered an interrupted %s in SR %s: %s", doc["op"], sr_path, done)
    return done


def _finish_publish(sr_path, staging_dir, files):
    """Leaf already in the SR: move the rest of the chain in.  Otherwise: nothing to do."""
    if not isinstance(files, list) or not files:
        raise _Untrusted("the file list is {!r}".format(files))
    files = [(_vdi_name(name), _inode(ino)) for name, ino in files]
    leaf_name, leaf_ino = files[0]
    if _ino(os.path.join(sr_path, leaf_name)) != leaf_ino:
        return None
    moved = []
    for name, ino in files[1:]:
        dst = os.path.join(sr_path, name)
        found = _ino(dst)
        if found == ino:
            continue
        src = os.path.join(staging_dir, name)
        if found is None and _ino(src) == ino and not stat.S_ISREG(os.lstat(src).st_mode):
            log.error("cannot finish the publish of %s: %s in staging is not a plain file",
                      leaf_name, name)
            break
        if found is not None or _ino(src) != ino:
            log.error("cannot finish the publish of %s: %s is %s", leaf_name, name,
                      "taken by another file" if found is not None else "missing from staging")
            break
        os.link(src, dst)
        fsync_dir(sr_path)
        moved.append(name)
    return "published the rest of the chain of {}: {}".format(leaf_name, moved) if moved \
        else None


def _recover_snapshot(sr_path, staging_dir, doc):
    """Before the VDI's rename: drop the extra name of its file.  After: finish."""
    fmt = disk.by_name(doc.get("format", disk.DEFAULT.name))
    if fmt is None:
        raise ValueError("unknown disk format {!r}".format(doc.get("format")))
    vdi = os.path.join(sr_path, fmt.file_name(_uuid_field(doc, "vdi")))
    base = os.path.join(sr_path, fmt.file_name(_uuid_field(doc, "base")))
    snap = os.path.join(sr_path, fmt.file_name(_uuid_field(doc, "snap")))
    _inode(doc["ino"])
    if _ino(vdi) == doc["ino"]:
        if _ino(base) == doc["ino"]:
            os.unlink(base)
            fsync_dir(sr_path)
            return "undid snapshot of {} (removed {})".format(doc["vdi"], doc["base"])
        return None
    if _ino(base) != doc["ino"]:
        return None   # not the state this journal describes: touch nothing
    done = []
    staged_snap = os.path.join(staging_dir, fmt.file_name(doc["snap"]))
    if _ino(snap) is None and _ino(staged_snap) is not None \
            and stat.S_ISREG(os.lstat(staged_snap).st_mode):
        os.link(staged_snap, snap)
        fsync_dir(sr_path)
        done.append("linked snapshot " + doc["snap"])
    if _ino(snap) is not None and fmt.repair_hidden(base):
        done.append("hid base " + doc["base"])
    return "finished snapshot of {}: {}".format(doc["vdi"], ", ".join(done)) if done else None
