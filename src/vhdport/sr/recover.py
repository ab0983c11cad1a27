"""Finish or undo a publish or snapshot whose process died half-way.

Why: a chain enters the SR one file at a time (leaf first, so a hidden parent is
never childless) and a snapshot is several links and renames, so a process killed
in between leaves a leaf whose parents still sit in its staging dir, or a snapshot
half made.  Both write a small journal into their staging dir before touching the
SR; whoever reclaims that dir (holding the SR lock) rolls the operation forward
when the SR already depends on it, and back when nothing in the SR does yet.
Files are recognised by inode, so a journal never acts on someone else's file.
"""

import json
import logging
import os

from .. import disk
from ..fsutil import fsync_dir
from .scan import os_error

log = logging.getLogger(__name__)

JOURNAL = ".journal.json"


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
        with open(tmp, "w") as f:
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


def snapshot_journal(staging_dir, vdi_uuid, base_uuid, snap_uuid, vdi_ino):
    write_journal(staging_dir, {"op": "snapshot", "vdi": vdi_uuid, "base": base_uuid,
                                "snap": snap_uuid, "ino": vdi_ino})


def recover(sr_path, staging_dir):
    """Act on the journal of a dead staging dir, if any; return what was done (or None).

    The caller holds the SR lock and removes the staging dir afterwards.
    """
    try:
        with open(os.path.join(staging_dir, JOURNAL)) as f:
            doc = json.load(f)
    except (OSError, ValueError):
        return None   # no journal (or one never completed): nothing reached the SR
    try:
        if doc.get("op") == "publish":
            done = _finish_publish(sr_path, staging_dir, doc["files"])
        elif doc.get("op") == "snapshot":
            done = _recover_snapshot(sr_path, staging_dir, doc)
        else:
            return None
    except (KeyError, TypeError, ValueError) as e:
        log.warning("ignoring unreadable journal in %s: %s", staging_dir, e)
        return None
    if done:
        log.warning("recovered an interrupted %s in SR %s: %s", doc["op"], sr_path, done)
    return done


def _finish_publish(sr_path, staging_dir, files):
    """Leaf already in the SR: move the rest of the chain in.  Otherwise: nothing to do."""
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
    vdi = os.path.join(sr_path, fmt.file_name(doc["vdi"]))
    base = os.path.join(sr_path, fmt.file_name(doc["base"]))
    snap = os.path.join(sr_path, fmt.file_name(doc["snap"]))
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
    if _ino(snap) is None and _ino(staged_snap) is not None:
        os.link(staged_snap, snap)
        fsync_dir(sr_path)
        done.append("linked snapshot " + doc["snap"])
    if _ino(snap) is not None and fmt.repair_hidden(base):
        done.append("hid base " + doc["base"])
    return "finished snapshot of {}: {}".format(doc["vdi"], ", ".join(done)) if done else None
