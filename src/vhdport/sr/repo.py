"""A file SR: graph queries, XenServer's GC rule, snapshot, and leaf-first publish.

Every change to the SR (publish, gc, snapshot) holds the SR-wide lock, and is
ordered so that a crash at any point never leaves a hidden VHD without
children in the SR -- the state XenServer's GC turns into deleted data.
"""

import contextlib
import errno
import os
import uuid as uuidlib

from .. import disk
from ..errors import ChainError, LimitError, SRError
from ..fsutil import fsync_dir, fsync_file
from .lock import DEFAULT_TIMEOUT, FileLock
from .scan import os_error, scan, uuid_of_name
from .recover import drop_journal, publish_journal, snapshot_journal
from .smlock import SMSRLock
from .staging import STAGING_DIR, Staging, check_chain_here, reclaim

LOCK_NAME = ".vhdport.lock"


class SR(object):
    """A directory of ``<uuid>.vhd`` and ``<uuid>.qcow2`` files (XenServer's file SR layout)."""

    def __init__(self, path, lock_timeout=DEFAULT_TIMEOUT):
        self.path = os.path.abspath(path)
        if not os.path.isdir(self.path):
            raise SRError("SR directory {} does not exist".format(self.path))
        self.lock_path = os.path.join(self.path, LOCK_NAME)
        self._lock = FileLock(self.lock_path, "SR " + self.path, lock_timeout)
        self._sm_lock = SMSRLock(self.path, lock_timeout)

    def __repr__(self):
        return "<SR {}>".format(self.path)

    def vdi_path(self, uuid, fmt=None):
        """Where VDI ``uuid`` lives: its existing file, else a new one of ``fmt`` (default:
        the disk face's default format)."""
        if fmt is None:
            for known in disk.FORMATS.values():
                path = os.path.join(self.path, known.file_name(uuid))
                if os.path.lexists(path):
                    return path
            fmt = disk.DEFAULT
        return os.path.join(self.path, fmt.file_name(uuid))

    def vdi_exists(self, uuid):
        """Whether a file of any disk format is named ``uuid`` in the SR."""
        return any(os.path.lexists(os.path.join(self.path, fmt.file_name(uuid)))
                   for fmt in disk.FORMATS.values())

    @contextlib.contextmanager
    def locked(self, timeout=None):
        """Hold the SR lock (re-entrant within this object) for publish / gc / snapshot.

        In dom0 SM's own SR lock too (smlock.py), taken second so that vhdport
        processes queue among themselves without blocking SM meanwhile.
        """
        self._lock.acquire(timeout)
        try:
            self._sm_lock.acquire(timeout)
            try:
                yield self
            finally:
                self._sm_lock.release()
        finally:
            self._lock.release()

    # ------------------------------------------------------------------ graph

    def vdis(self):
        """{uuid: VdiInfo} of every disk file (``<uuid>.vhd``, ``<uuid>.qcow2``) in the SR;
        unreadable files have ``error``."""
        return scan(self.path)

    def leaves(self, vdis=None):
        """Sorted uuids of the visible VDIs with no children (what a user attaches)."""
        vdis = self.vdis() if vdis is None else vdis
        return sorted(u for u, v in vdis.items() if not v.children and not v.hidden)

    def base_copies(self, vdis=None):
        """Sorted uuids of the hidden VHDs (base copies, and garbage if childless)."""
        vdis = self.vdis() if vdis is None else vdis
        return sorted(u for u, v in vdis.items() if v.hidden)

    def chain_paths(self, leaf_uuid, vdis=None, max_depth=None):
        """Absolute paths [leaf .. base] of ``leaf_uuid``'s chain; ChainError if broken.

        Deeper than ``max_depth`` (default: the leaf's format's limit) is a LimitError.
        """
        vdis = self.vdis() if vdis is None else vdis
        paths, seen, u = [], set(), leaf_uuid
        while u is not None:
            info = vdis.get(u)
            if info is None:
                if not paths:
                    raise ChainError("VDI {} not found in SR {}".format(u, self.path))
                raise ChainError("{}: parent {} is missing from SR {}".format(
                    paths[-1], disk.for_file_name(paths[-1]).file_name(u), self.path))
            if info.error:
                raise ChainError("{}: {}".format(info.path, info.error))
            if u in seen:
                raise ChainError("cycle in the chain of {} at {}".format(leaf_uuid, u))
            seen.add(u)
            paths.append(info.path)
            if max_depth is None:
                max_depth = disk.for_file_name(info.path).max_depth
            if len(paths) > max_depth:
                raise LimitError("chain of {} is deeper than {} (XenServer's limit)".format(
                    leaf_uuid, max_depth))
            u = info.parent_uuid
        return paths

    # --------------------------------------------------------------------- gc

    def gc(self, dry_run=False):
        """Delete hidden VHDs without children, recursively; return their uuids (children first).

        Like XenServer: a VHD whose parent is missing (or any unreadable VHD, whose
        parent we cannot know) aborts the pass before anything is deleted.
        """
        with self.locked():
            vdis = self.vdis()
            for u, info in sorted(vdis.items()):
                if info.error:
                    raise SRError("GC aborted, nothing deleted: {} cannot be read or linked "
                                  "({}); fix or remove it first".format(info.path, info.error))
                if info.parent_uuid is not None and info.parent_uuid not in vdis:
                    raise SRError("GC aborted, nothing deleted: parent {} of {} is missing "
                                  "from SR {}".format(
                                      disk.for_file_name(info.path).file_name(info.parent_uuid),
                                      info.path, self.path))
            garbage = garbage_order(vdis)
            if not dry_run:
                for u in garbage:
                    try:
                        os.unlink(vdis[u].path)
                    except OSError as e:
                        if e.errno != errno.ENOENT:
                            raise os_error(e, vdis[u].path, "delete")
                    fsync_dir(self.path)
            return garbage

    # --------------------------------------------------------------- staging

    def staging(self):
        """A new Staging (use ``with``); reclaims leftovers of dead processes first."""
        self.reclaim_staging()
        return Staging.create(self)

    def reclaim_staging(self):
        """Remove staging dirs whose owning process is gone; return their paths.

        Under the SR lock: a dead publish or snapshot is finished or undone first
        (see recover.py), and nothing else may change the SR meanwhile.
        """
        with self.locked():
            return reclaim(self.path)

    # --------------------------------------------------------------- publish

    def publish(self, paths, checked=False):
        """Move an adopted chain (leaf first) into the SR; return the final paths.

        Leaf first, then each parent: a hidden parent never sits in the SR
        without its child.  Never overwrites: on any failure everything moved
        so far goes back to where it came from and nothing stays in the SR.
        The chain rule (:func:`vhdport.disk.check_chain`) is applied unless the
        caller says it did (``checked``), as the download pipeline does.
        """
        paths = [os.path.abspath(p) for p in paths]
        if not paths:
            raise SRError("nothing to publish: the chain is empty")
        finals = []
        for p in paths:
            u = uuid_of_name(os.path.basename(p))
            if u is None:
                raise SRError("{} is not named <uuid>{}: adopt the staged chain first".format(
                    p, disk.DEFAULT.suffix))
            if os.path.dirname(p) == self.path:
                raise SRError("{} is already in the SR".format(p))
            finals.append(os.path.join(self.path, os.path.basename(p)))
        if not checked:
            check_chain_here(paths, "adopt the chain (in order) before publishing")
        with self.locked():
            for p in paths:
                _fsync_file(p)
            journal = _in_staging(self.path, paths[0])
            if journal:
                publish_journal(os.path.dirname(paths[0]), paths)   # a kill is finished later
            moved = []
            try:
                for src, dst in zip(paths, finals):
                    _move_no_replace(src, dst)
                    moved.append((src, dst))
                    fsync_dir(self.path)
            except BaseException:
                for src, dst in reversed(moved):
                    try:
                        os.rename(dst, src)
                    except OSError:
                        pass
                fsync_dir(self.path)
                raise
            if journal:
                drop_journal(os.path.dirname(paths[0]))
        return finals

    # -------------------------------------------------------------- snapshot

    def snapshot(self, uuid):
        """XenServer's snapshot of VDI ``uuid``: return (snapshot_uuid, base_uuid).

        The VDI's file becomes the hidden base copy ``<base><suffix>``; ``uuid`` keeps
        its name as a new empty leaf on it; the snapshot is a second leaf on it.
        """
        with self.locked():
            vdis = self.vdis()
            info = vdis.get(uuid)
            if info is None:
                raise SRError("VDI {} not found in SR {}".format(uuid, self.path))
            if info.error:
                raise SRError("cannot snapshot {}: {}".format(info.path, info.error))
            if info.hidden:
                raise SRError("cannot snapshot {}: it is hidden (a base copy, not a VDI)".format(
                    info.path))
            depth = len(self.chain_paths(uuid, vdis))
            limit = disk.for_file_name(info.path).max_depth
            if depth + 1 > limit:
                raise LimitError("cannot snapshot {}: its chain would be {} deep, beyond XenServer's "
                                 "limit of {}; coalesce first".format(uuid, depth + 1, limit))
            base_uuid, snap_uuid = _fresh_uuids(self, 2)
            with self.staging() as st:
                _snapshot_in(self, st, info, base_uuid, snap_uuid)
            return snap_uuid, base_uuid


def _reads_from(vdis, info):
    """Uuids of the SR files ``info`` may read through: its parent as the reader resolves
    it, any other file its locators name, and any file carrying the VHD uuid it records."""
    found = set(info.named)
    if info.parent_uuid is not None:
        found.add(info.parent_uuid)
    if info.parent_vhd_uuid is not None:
        found.update(u for u, v in vdis.items()
                     if v.vhd_uuid == info.parent_vhd_uuid and u != info.uuid)
    return found & set(vdis)


def garbage_order(vdis):
    """Uuids XenServer's GC would delete, each after all its children.

    A hidden file is garbage only when nothing left in the SR may read through it: not
    its children, and not a file whose locators name it or which records its VHD uuid
    (two files with one VHD uuid, or locators that disagree, are ambiguous: kept).
    """
    reads = dict((u, _reads_from(vdis, v)) for u, v in vdis.items())
    readers = dict((u, set()) for u in vdis)
    for u, targets in reads.items():
        for target in targets:
            readers[target].add(u)
    todo = sorted(u for u, v in vdis.items() if v.hidden and not readers[u])
    order = []
    while todo:
        u = todo.pop(0)
        order.append(u)
        for target in sorted(reads[u]):
            readers[target].discard(u)
            if not readers[target] and vdis[target].hidden and target not in order \
                    and target not in todo:
                todo.append(target)
    return order


def coalesceable(vdis):
    """Sorted uuids SM's GC would coalesce into their parent (cleanup.py's rule, any format).

    A hidden VDI with children whose parent has it as its only child; nothing on a
    link with a scan error (SM skips those too).
    """
    return sorted(u for u, v in vdis.items() if v.hidden and v.children and _only_child(vdis, v))


def leaf_coalesceable(vdis):
    """Sorted uuids of visible leaves SM may leaf-coalesce: the parent's only child."""
    return sorted(u for u, v in vdis.items()
                  if not v.hidden and not v.children and _only_child(vdis, v))


def _only_child(vdis, info):
    parent = vdis.get(info.parent_uuid) if info.parent_uuid else None
    return info.error is None and parent is not None and parent.error is None \
        and parent.children == [info.uuid]


def _fresh_uuids(sr, count):
    while True:
        chosen = [str(uuidlib.uuid4()) for _ in range(count)]
        if not any(sr.vdi_exists(u) for u in chosen):
            return chosen


def _in_staging(sr_path, path):
    staging_root = os.path.join(sr_path, STAGING_DIR)
    return os.path.dirname(os.path.dirname(os.path.abspath(path))) == staging_root


def _fsync_file(path):
    try:
        fsync_file(path)
    except OSError as e:
        raise os_error(e, path, "fsync")


def _move_no_replace(src, dst):
    """link + unlink: EEXIST instead of silently replacing an existing VDI."""
    try:
        os.link(src, dst)
    except OSError as e:
        if e.errno == errno.EEXIST:
            raise SRError("{} already exists in the SR; nothing was published (choose other "
                          "uuids)".format(dst))
        if e.errno == errno.EXDEV:
            raise SRError("{} is not on the SR's filesystem: stage it in sr.staging()".format(src))
        raise os_error(e, dst, "link {} to".format(src))
    try:
        os.unlink(src)
    except OSError as e:
        os.unlink(dst)
        raise os_error(e, src, "remove staged")


def _snapshot_in(sr, st, info, base_uuid, snap_uuid):
    """The snapshot steps, crash-safe in this order (see docs of each step).

    SM's sequence for both formats (FileSR: hard-link the leaf to the new base name,
    create the child on top with a relative parent name, rename it over the leaf,
    hide the base), with the new files made in staging so a crash is journaled:
    1. staging/<base><suffix> = hard link of the VDI's file; both new leaves are
       created in staging against it (relative parent name ``<base><suffix>``, the
       parent's block / cluster size), fsynced.
    2. <sr>/<base><suffix> = another link: the old file under two visible names.
    3. rename staging/<uuid><suffix> over <sr>/<uuid><suffix>: the VDI is now the new leaf.
    4. link the snapshot leaf in; 5. only now set the base hidden (it has children).
    """
    vdi_path = info.path
    fmt = disk.for_file_name(vdi_path)
    base_path, snap_path = sr.vdi_path(base_uuid, fmt), sr.vdi_path(snap_uuid, fmt)
    staged_base = os.path.join(st.path, fmt.file_name(base_uuid))
    staged_leaf = os.path.join(st.path, fmt.file_name(info.uuid))
    staged_snap = os.path.join(st.path, fmt.file_name(snap_uuid))
    block_size = fmt.describe(vdi_path).block_size
    try:
        os.link(vdi_path, staged_base)
    except OSError as e:
        raise os_error(e, staged_base, "link {} to".format(vdi_path))
    try:
        fmt.snapshot(staged_leaf, fmt.file_name(base_uuid), block_size=block_size)
        fmt.snapshot(staged_snap, fmt.file_name(base_uuid), block_size=block_size)
    except OSError as e:
        raise os_error(e, st.path, "create snapshot leaves in")
    fsync_dir(st.path)
    snapshot_journal(st.path, info.uuid, base_uuid, snap_uuid, os.stat(vdi_path).st_ino,
                     fmt.name)
    done = []
    try:
        _move_no_replace_keep(vdi_path, base_path)
        done.append("base")
        fsync_dir(sr.path)
        os.rename(staged_leaf, vdi_path)
        done.append("leaf")
        fsync_dir(sr.path)
        _move_no_replace(staged_snap, snap_path)
        done.append("snap")
        fsync_dir(sr.path)
        set_hidden(base_path, True)
    except BaseException:
        _undo_snapshot(done, vdi_path, base_path, snap_path)
        fsync_dir(sr.path)
        raise


def _move_no_replace_keep(src, dst):
    try:
        os.link(src, dst)
    except OSError as e:
        raise os_error(e, dst, "link {} to".format(src))


def set_hidden(path, hidden):
    """Set a disk's hidden flag through its format (one seam for the snapshot steps)."""
    disk.for_file_name(path).set_hidden(path, hidden)


def _undo_snapshot(done, vdi_path, base_path, snap_path):
    """Put the VDI's original file back under its name; drop the new names."""
    if "snap" in done:
        _quiet(os.unlink, snap_path)
    if "leaf" in done:
        _quiet(os.rename, base_path, vdi_path)
    elif "base" in done:
        _quiet(os.unlink, base_path)
    if "snap" in done:   # the failure may have come after the hidden flag was written
        _quiet(set_hidden, vdi_path, False)


def _quiet(func, *args):
    try:
        func(*args)
    except Exception:
        pass
