"""Staging directories inside the SR: same filesystem, so hard links and renames work.

Layout under ``<sr>/.vhdport-staging/``: ``<name>/`` holds the files, and
``<name>.lock`` (flock held for the life of the staging, owner pid inside) says
it is in use.  ``.root.lock`` serialises creation against reclaiming, so a
half-created staging is never mistaken for the leftover of a dead process.
Scans and the GC only look at ``<uuid><suffix>`` files directly in the SR, so
nothing in here is ever seen by them (nor by XenServer's own scan).
"""

import binascii
import errno
import logging
import os
import shutil
import stat
import uuid as uuidlib

from .. import disk
from ..errors import ChainError, SRError, VhdportError
from ..fsutil import fsync_dir
from .lock import FileLock, open_lock_file, try_flock, write_owner
from .recover import recover
from .scan import is_uuid, os_error

log = logging.getLogger(__name__)

STAGING_DIR = ".vhdport-staging"
ROOT_LOCK = ".root.lock"
LOCK_SUFFIX = ".lock"


def _rmtree(path):
    """Staging dirs are only ever removed by their owner or a reclaimer holding its lock."""
    try:
        shutil.rmtree(path)
    except OSError as e:
        if e.errno != errno.ENOENT:
            raise


def _unlink(path):
    try:
        os.unlink(path)
    except OSError as e:
        if e.errno != errno.ENOENT:
            raise


def _lstat(path):
    try:
        return os.lstat(path)
    except OSError as e:
        if e.errno == errno.ENOENT:
            return None
        raise os_error(e, path, "inspect")


def _kind(st):
    if stat.S_ISLNK(st.st_mode):
        return "a symbolic link"
    if stat.S_ISREG(st.st_mode):
        return "a file"
    return "not a directory"


def _check_root(root):
    """The staging root's lstat, None if absent; SRError unless it is a real directory.

    Why: reclaiming removes directories found here, so a symlink planted as the root
    would make us delete directories outside the SR.
    """
    st = _lstat(root)
    if st is not None and not stat.S_ISDIR(st.st_mode):
        raise SRError("staging root {} is {}, not a directory; vhdport never follows links in "
                      "an SR: remove it (or move it away) and retry".format(root, _kind(st)))
    return st


def staging_root(sr_path):
    root = os.path.join(sr_path, STAGING_DIR)
    try:
        os.mkdir(root, 0o700)
    except OSError as e:
        if e.errno != errno.EEXIST:
            raise os_error(e, root, "create the staging root")
    _check_root(root)
    return root


def _same_dir(path, st):
    """``path`` is still the real directory ``st`` described (not swapped for a link)."""
    now = _lstat(path)
    return now is not None and stat.S_ISDIR(now.st_mode) and \
        (now.st_dev, now.st_ino) == (st.st_dev, st.st_ino)


def _real_subdir(root, name):
    """lstat of ``root/name`` if it is a real directory, else None (warned if it is a link)."""
    path = os.path.join(root, name)
    st = _lstat(path)
    if st is None:
        return None
    if not stat.S_ISDIR(st.st_mode):
        log.warning("staging entry %s is %s, not a directory: left alone", path, _kind(st))
        return None
    return st


def reclaim(sr_path):
    """Remove staging dirs whose owner is gone (lock free); return the removed dir paths.

    Only real directories directly inside the real staging root are ever removed.
    """
    root = os.path.join(sr_path, STAGING_DIR)
    root_st = _check_root(root)
    if root_st is None:
        return []
    removed = []
    with FileLock(os.path.join(root, ROOT_LOCK), "staging root of " + sr_path):
        if not _same_dir(root, root_st):
            _check_root(root)
            raise SRError("staging root {} changed while it was being locked; retry".format(root))
        names = set(os.listdir(root))
        for name in sorted(names):
            if name.startswith(".") or not name.endswith(LOCK_SUFFIX):
                continue
            stem = name[:-len(LOCK_SUFFIX)]
            try:
                fd = open_lock_file(os.path.join(root, name), create=False)
            except SRError as e:
                log.warning("%s: left alone", e)
                continue
            if fd is None:
                continue
            try:
                if not try_flock(fd):
                    continue          # in use by a live process
                stem_st = _real_subdir(root, stem)
                if stem in names and stem_st is None:
                    continue          # a link or file where our dir should be: not ours
                if stem_st is not None and not _recovered(sr_path, os.path.join(root, stem)):
                    continue          # keep the dir and its journal for the next try
                if stem_st is not None:
                    _remove_dir(root, root_st, stem, stem_st)
                _unlink(os.path.join(root, name))
                removed.append(os.path.join(root, stem))
            finally:
                os.close(fd)
        for name in sorted(names):
            if name.startswith(".") or name + LOCK_SUFFIX in names:
                continue
            st = _real_subdir(root, name)
            if st is not None:        # its owner removed the lock last, so this is debris
                _remove_dir(root, root_st, name, st)
                removed.append(os.path.join(root, name))
    return removed


def _remove_dir(root, root_st, name, st):
    """rmtree of ``root/name`` only while both are still the real directories we checked."""
    path = os.path.join(root, name)
    if not (_same_dir(root, root_st) and _same_dir(path, st)):
        raise SRError("{} changed while reclaiming it (replaced by a link?); left alone".format(
            path))
    _rmtree(path)


def _recovered(sr_path, path):
    """Finish or undo a publish/snapshot the dead owner journaled; False if that failed."""
    try:
        recover(sr_path, path)
        return True
    except (VhdportError, OSError) as e:
        log.error("could not recover the interrupted operation in %s (kept): %s", path, e)
        return False


class Staging(object):
    """A private directory inside the SR, removed by :meth:`close` (the ``with`` block's end)."""

    def __init__(self, sr, name, path, lock_fd):
        self.sr = sr
        self.name = name
        self.path = path
        self._lock_fd = lock_fd

    @classmethod
    def create(cls, sr):
        root = staging_root(sr.path)
        with FileLock(os.path.join(root, ROOT_LOCK), "staging root of " + sr.path):
            name = binascii.hexlify(os.urandom(12)).decode("ascii")
            lock_path = os.path.join(root, name + LOCK_SUFFIX)
            fd = open_lock_file(lock_path)
            try:
                if not try_flock(fd):
                    raise SRError("staging lock {} is unexpectedly busy".format(lock_path))
                write_owner(fd)
                path = os.path.join(root, name)
                try:
                    os.mkdir(path, 0o700)
                except OSError as e:
                    raise os_error(e, path, "create staging directory")
            except BaseException:
                os.close(fd)
                _unlink(lock_path)
                raise
        return cls(sr, name, path, fd)

    def close(self):
        """Remove the directory, then the lock file, then drop the lock (that order)."""
        if self._lock_fd is None:
            return
        try:
            _rmtree(self.path)
            _unlink(self.path + LOCK_SUFFIX)
        except OSError:
            pass   # left with its lock released: the next reclaim removes it
        finally:
            os.close(self._lock_fd)
            self._lock_fd = None

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    # ----------------------------------------------------------------- upload

    def link_chain(self, paths):
        """Hard-link ``paths`` (leaf first) here as ``0<suffix>`` .. ``N<suffix>``; return them.

        The links keep the data alive if a GC deletes the SR files mid-upload.
        """
        links = []
        try:
            for i, src in enumerate(paths):
                dst = os.path.join(self.path, disk.for_file_name(src).file_name(i))
                try:
                    os.link(src, dst)
                except OSError as e:
                    if e.errno == errno.ENOENT:
                        raise SRError("{} vanished while linking the chain into staging (deleted "
                                      "or renamed by a GC or snapshot); retry".format(src))
                    raise os_error(e, dst, "hard-link {} to".format(src))
                links.append(dst)
            _check_links(links, paths)
        except BaseException:
            for dst in links:
                _unlink(dst)
            raise
        return links

    def link_vdi(self, leaf_uuid):
        """``link_chain(sr.chain_paths(leaf_uuid))`` under the SR lock (no GC in between)."""
        with self.sr.locked():
            return self.link_chain(self.sr.chain_paths(leaf_uuid))

    # --------------------------------------------------------------- download

    def adopt(self, staged, uuids=None, checked=False):
        """Rename staged files (leaf first) to ``<uuid><suffix>``, relink, validate the chain.

        The VDI uuid is the file name; each disk keeps its internal uuid, and the
        relink records the parent's internal uuid in the child.  Before anything is
        touched the chain rule (:func:`vhdport.disk.check_chain`) is applied, unless
        the caller says it already did (``checked``), as the download pipeline does.
        """
        staged = [os.path.abspath(p) for p in staged]
        if not staged:
            raise SRError("nothing to adopt: the staged chain is empty")
        for p in staged:
            if os.path.dirname(p) != self.path:
                raise SRError("{} is not in staging directory {}".format(p, self.path))
        uuids = self._choose_uuids(len(staged), uuids)
        if not checked:
            # before touching anything, so a misordered chain is never relinked into a lie
            check_chain_here(staged, "the chain is out of order or its files do not belong "
                                     "together", structural=True)
        new_paths = self._rename_all(staged, [
            os.path.join(self.path, disk.for_file_name(p).file_name(u)) for p, u in zip(staged, uuids)])
        for child, parent in zip(new_paths, new_paths[1:]):
            try:
                disk.for_file_name(child).relink(child, os.path.basename(parent))
            except OSError as e:
                raise os_error(e, child, "relink")
        validate_chain(new_paths)
        fsync_dir(self.path)
        return new_paths

    @staticmethod
    def _rename_all(sources, targets):
        """Rename without replacing; on failure put back what was renamed (caller may retry)."""
        done = []
        try:
            for src, dst in zip(sources, targets):
                if src == dst:
                    continue
                try:
                    os.link(src, dst)
                except OSError as e:
                    if e.errno == errno.EEXIST:
                        raise SRError("staging already holds {}".format(dst))
                    raise os_error(e, dst, "rename {} to".format(src))
                os.unlink(src)
                done.append((src, dst))
        except BaseException:
            for src, dst in reversed(done):
                os.rename(dst, src)
            raise
        return list(targets)

    def _choose_uuids(self, count, uuids):
        if uuids is None:
            while True:
                chosen = [str(uuidlib.uuid4()) for _ in range(count)]
                if not any(self.sr.vdi_exists(u) for u in chosen):
                    return chosen
        uuids = list(uuids)
        if len(uuids) != count:
            raise SRError("{} uuids given for a chain of {} files".format(len(uuids), count))
        normal = []
        for u in uuids:
            if not is_uuid(u):
                raise SRError("{!r} is not a uuid (expected 8-4-4-4-12 hex digits)".format(u))
            normal.append(u.lower())
        dup = sorted(set(u for u in normal if normal.count(u) > 1))
        if dup:
            raise SRError("uuid {} given more than once".format(", ".join(dup)))
        taken = [u for u in normal if self.sr.vdi_exists(u)]
        if taken:
            raise SRError("uuid {} already in SR {}; choose new uuids".format(
                ", ".join(taken), self.sr.path))
        return normal


def _chain_error(text, _name):
    return ChainError(text)


def _hidden_leaf_error(text, _name):
    return SRError(text)


def check_chain_here(paths, hint, structural=False):
    """The chain rule on files in staging or the SR, in the SR's error types."""
    disk.check_chain(paths, names=paths, what="file", error=_chain_error,
                     hidden_error=_hidden_leaf_error, hint=hint, structural=structural)


def _check_links(links, sources):
    """The links made for an upload still form the chain the SR scan found."""
    disk.check_chain(links, names=sources, what="file", error=_chain_error,
                     hint="the chain changed (coalesce?) -- retry", refuse_hidden_leaf=False)


def validate_chain(paths):
    """After the relink: the chain opens from the leaf and resolves to exactly ``paths``."""
    try:
        chain = disk.for_file_name(paths[0]).open_chain(paths[0])
    except VhdportError as e:
        raise ChainError("staged chain is not valid: {}".format(e))
    try:
        got = chain.paths()
    finally:
        chain.close()
    if [os.path.abspath(p) for p in got] != [os.path.abspath(p) for p in paths]:
        raise ChainError("staged chain resolves to {} instead of {}".format(got, paths))
