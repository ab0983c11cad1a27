"""XenServer SM's own SR lock, so SM's GC and coalescer stay out while vhdport changes an SR.

In dom0, SM serialises every operation on an SR, and its GC takes the same lock
before it deletes or coalesces, on ``/var/lock/sm/<sr_uuid>/sr``: a POSIX
record lock (``fcntl`` F_WRLCK over the whole file).  Record locks do not
interact with ``flock(2)``, so vhdport's own SR lock does not keep SM out;
this one does.  vhdport holds it only around short critical sections (publish,
snapshot, gc, linking a chain for upload), never while data streams.

Record locks belong to a *process*: the same process re-locking always
succeeds, and closing *any* descriptor of the file drops the lock.  So each
lock file is opened once per process and shared through a registry; threads
of the process queue on a threading lock in front of it.

Off dom0 (no ``/var/lock/sm`` and no XenServer inventory) nothing happens.
``VHDPORT_SM_LOCK_DIR`` replaces ``/var/lock/sm`` (for tests).
"""

import errno
import fcntl
import os
import struct
import threading
import time

from ..errors import SRError
from .scan import is_uuid

SM_LOCK_DIR = "/var/lock/sm"
LOCK_DIR_ENV = "VHDPORT_SM_LOCK_DIR"
#: SM's lock name for the SR lock (vhdutil.LOCK_TYPE_SR); the namespace dir is the SR uuid
SR_LOCK_NAME = "sr"
#: present on every XenServer / XCP-ng host, even before SM has created its lock dir
XENSOURCE_INVENTORY = "/etc/xensource-inventory"

_POLL_FIRST, _POLL_MAX = 0.01, 0.1
_ENOENT_RETRIES = 10

_registry_guard = threading.Lock()
_registry = {}


def lock_dir():
    """SM's lock directory, or None when this is not a dom0 (nothing to coordinate with)."""
    configured = os.environ.get(LOCK_DIR_ENV)
    root = configured or SM_LOCK_DIR
    if os.path.isdir(root):
        return root
    if not configured and os.path.exists(XENSOURCE_INVENTORY):
        return root     # a XenServer host whose SM has not locked anything yet: create it
    return None


def sr_uuid_of(sr_path):
    """The SR uuid SM uses for ``sr_path`` (the last element of /var/run/sr-mount/<uuid>)."""
    for candidate in (os.path.abspath(sr_path), os.path.realpath(sr_path)):
        name = os.path.basename(candidate.rstrip(os.sep))
        if is_uuid(name):
            return name.lower()
    return None


def sr_lock_path(sr_path):
    """``<lock dir>/<sr_uuid>/sr`` for ``sr_path``, or None off dom0 or for a non-SM SR."""
    root = lock_dir()
    uuid = sr_uuid_of(sr_path)
    if root is None or uuid is None:
        return None
    return os.path.join(root, uuid, SR_LOCK_NAME)


class _Held(object):
    """This process's hold on one lock file: threads queue on ``mutex``."""

    def __init__(self):
        self.mutex = threading.RLock()
        self.fd = None
        self.depth = 0
        self.pid = os.getpid()


def _entry(path):
    with _registry_guard:
        held = _registry.get(path)
        if held is None or held.pid != os.getpid():   # a forked child holds no record locks
            held = _registry[path] = _Held()
        return held


def _open_like_sm(path):
    """mkdir -p the namespace dir and open the file "w+", as SM's lock.py does (umask applies)."""
    flags = os.O_RDWR | os.O_CREAT | os.O_TRUNC | getattr(os, "O_CLOEXEC", 0) \
        | getattr(os, "O_NOFOLLOW", 0)
    for _ in range(_ENOENT_RETRIES + 1):
        try:
            os.makedirs(os.path.dirname(path))
        except OSError as e:
            if e.errno != errno.EEXIST:
                raise SRError("cannot create SM's lock directory {}: {}".format(
                    os.path.dirname(path), e.strerror))
        try:
            return os.open(path, flags, 0o666)
        except OSError as e:
            last = e
            if e.errno != errno.ENOENT:     # ENOENT: SM removed the namespace dir meanwhile
                break
    raise SRError("cannot open SM's SR lock {}: {}".format(path, last.strerror))


def _try_lock(fd):
    """F_SETLK with F_WRLCK over the whole file (lockf's LOCK_EX): True if we got it."""
    try:
        fcntl.lockf(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        return True
    except OSError as e:
        if e.errno in (errno.EACCES, errno.EAGAIN):
            return False
        raise


def holder_pid(fd):
    """The pid holding a conflicting record lock on ``fd`` (F_GETLK), or None."""
    try:
        probe = struct.pack("hhqqi4x", fcntl.F_WRLCK, os.SEEK_SET, 0, 0, 0)
        l_type, _, _, _, pid = struct.unpack("hhqqi4x", fcntl.fcntl(fd, fcntl.F_GETLK, probe))
    except (OSError, struct.error):
        return None
    return pid if l_type != fcntl.F_UNLCK and pid > 0 else None


def _take(path, timeout):
    fd = _open_like_sm(path)
    try:
        deadline = None if timeout is None else time.monotonic() + timeout
        pause = _POLL_FIRST
        while not _try_lock(fd):
            if deadline is not None and time.monotonic() >= deadline:
                raise SRError(
                    "the SR is locked by XenServer's storage manager (SM; pid {}, lock {}) for "
                    "more than {:g} s; retry when its operation (GC, coalesce, snapshot...) has "
                    "finished".format(holder_pid(fd) or "unknown", path, timeout))
            time.sleep(pause)
            pause = min(pause * 2, _POLL_MAX)
    except BaseException:
        os.close(fd)
        raise
    return fd


class SMSRLock(object):
    """SM's SR lock for one SR path: re-entrant, process-wide, a no-op off dom0."""

    def __init__(self, sr_path, timeout=None):
        self.sr_path = sr_path
        self.timeout = timeout
        self._local = threading.local()   # per thread: a stack of the _Held taken (None: none)

    def _stack(self):
        stack = getattr(self._local, "stack", None)
        if stack is None:
            stack = self._local.stack = []
        return stack

    def acquire(self, timeout=None):
        timeout = self.timeout if timeout is None else timeout
        path = sr_lock_path(self.sr_path)
        if path is None:
            self._stack().append(None)
            return
        held = _entry(path)
        if not held.mutex.acquire(timeout=-1 if timeout is None else timeout):
            raise SRError("SM's SR lock {} is busy in this process for more than {:g} s".format(
                path, timeout))
        try:
            if held.depth == 0:
                held.fd = _take(path, timeout)
            held.depth += 1
        except BaseException:
            held.mutex.release()
            raise
        self._stack().append(held)

    def release(self):
        held = self._stack().pop()
        if held is None:
            return
        held.depth -= 1
        if held.depth == 0:
            fd, held.fd = held.fd, None
            try:
                fcntl.lockf(fd, fcntl.LOCK_UN)
            finally:
                os.close(fd)
        held.mutex.release()

    def __enter__(self):
        self.acquire()
        return self

    def __exit__(self, *exc):
        self.release()
