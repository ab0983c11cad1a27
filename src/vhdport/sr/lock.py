"""fcntl.flock-based locks: the SR-wide lock and the small files that own staging dirs.

flock is tied to an open file description, so a process that dies (even by
SIGKILL) releases its locks: a lock that can be taken means its owner is gone.
"""

import errno
import fcntl
import os
import stat
import threading
import time

from ..errors import NoSpaceError, SRError

#: how long SR operations wait for another process's publish / gc / snapshot
DEFAULT_TIMEOUT = 600.0
_POLL = 0.01


def open_lock_file(path, create=True):
    """Open (creating if asked) a lock file; None if it does not exist and create is False.

    Never through a symlink, and only a plain file with one name: the owner's pid is
    written into it, so a planted link must not let us change a file elsewhere.
    """
    flags = os.O_RDWR | getattr(os, "O_CLOEXEC", 0) | os.O_NOFOLLOW | os.O_NONBLOCK
    if create:
        flags |= os.O_CREAT
    try:
        fd = os.open(path, flags, 0o600)
    except OSError as e:
        if e.errno == errno.ENOENT and not create:
            return None
        if e.errno in (errno.ENOSPC, errno.EDQUOT):
            raise NoSpaceError(path=path)
        if e.errno in (errno.ELOOP, errno.EMLINK):
            raise SRError("lock file {} is a symbolic link; vhdport never follows links in "
                          "an SR: remove it".format(path))
        raise SRError("cannot open lock file {}: {}".format(path, e.strerror))
    st = os.fstat(fd)
    if not stat.S_ISREG(st.st_mode) or st.st_nlink != 1:
        os.close(fd)
        raise SRError("lock file {} is not a plain file of its own ({}); vhdport refuses to "
                      "use it: remove it".format(
                          path, "hard link" if stat.S_ISREG(st.st_mode) else "not a file"))
    return fd


def try_flock(fd):
    """Take an exclusive flock on ``fd`` without waiting; True if we got it."""
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        return True
    except OSError as e:
        if e.errno in (errno.EWOULDBLOCK, errno.EAGAIN, errno.EACCES):
            return False
        raise


def write_owner(fd):
    """Record our pid in a lock we hold, for the messages of whoever waits on it."""
    try:
        os.ftruncate(fd, 0)
        os.pwrite(fd, "{}\n".format(os.getpid()).encode("ascii"), 0)
    except OSError:
        pass  # the pid is only informative


def read_owner(path):
    try:
        with open(path, "rb") as f:
            text = f.read(32).decode("ascii", "replace").strip()
        return int(text) if text.isdigit() else None
    except OSError:
        return None


class FileLock(object):
    """An exclusive, process-wide, re-entrant lock on ``path`` (threads of one process queue)."""

    def __init__(self, path, what, timeout=DEFAULT_TIMEOUT):
        self.path = path
        self.what = what
        self.timeout = timeout
        self._fd = None
        self._depth = 0
        self._thread_lock = threading.RLock()

    def acquire(self, timeout=None):
        timeout = self.timeout if timeout is None else timeout
        if not self._thread_lock.acquire(timeout=-1 if timeout is None else timeout):
            raise SRError("{} lock {} is busy in this process".format(self.what, self.path))
        try:
            if self._depth == 0:
                self._fd = self._take(timeout)
            self._depth += 1
        except BaseException:
            self._thread_lock.release()
            raise

    def _take(self, timeout):
        fd = open_lock_file(self.path)
        deadline = None if timeout is None else time.monotonic() + timeout
        try:
            while not try_flock(fd):
                if deadline is not None and time.monotonic() >= deadline:
                    raise SRError(
                        "{} is locked by another vhdport operation (pid {}) for more than {:g} s "
                        "(lock file {}); retry when it has finished".format(
                            self.what, read_owner(self.path) or "unknown", timeout, self.path))
                time.sleep(_POLL)
        except BaseException:
            os.close(fd)
            raise
        write_owner(fd)
        return fd

    def release(self):
        self._depth -= 1
        if self._depth == 0:
            fd, self._fd = self._fd, None
            os.close(fd)   # closing the description drops the flock
        self._thread_lock.release()

    @property
    def held(self):
        return self._depth > 0

    def __enter__(self):
        self.acquire()
        return self

    def __exit__(self, *exc):
        self.release()
