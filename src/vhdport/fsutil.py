"""Durability helpers every layer that writes files shares (cross-cutting, like errors)."""

import errno
import os
import stat


def fsync_dir(path):
    """Make a rename, link or unlink in directory ``path`` durable."""
    fd = os.open(path, os.O_RDONLY | getattr(os, "O_DIRECTORY", 0))
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def fsync_file(path):
    """Make the data of the file at ``path`` durable (open, fsync, close)."""
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def write_atomic(path, data, prefix=".tmp-"):
    """Replace ``path`` with ``data`` so that a crash leaves the old or the new file.

    A temp file (``prefix``..``.tmp``) in the same directory is written, fsynced and
    renamed over ``path``; then the directory is fsynced.
    """
    import tempfile     # here: it costs a fifth of the start-up of every engine command

    directory = os.path.dirname(path) or "."
    fd, tmp = tempfile.mkstemp(dir=directory, prefix=prefix, suffix=".tmp")
    try:
        try:
            write_all(fd, data)
            os.fsync(fd)
        finally:
            os.close(fd)
        os.replace(tmp, path)
    except BaseException:
        unlink_quietly(tmp)
        raise
    fsync_dir(directory)


def file_identity(path):
    """(device, inode) of ``path``: the same file under any name (hard link, symlink,
    ``..``), which is what a cycle check must compare.  The real path if it cannot be stat'ed."""
    try:
        st = os.stat(path)
    except (OSError, ValueError):
        return os.path.realpath(path)
    return (st.st_dev, st.st_ino)


def write_all(fd, data):
    """os.write until every byte is out (it may write less than asked)."""
    view = memoryview(data)
    while view:
        view = view[os.write(fd, view):]


def unlink_quietly(path):
    """Remove ``path`` if it is there; clean-up paths must not mask the real error."""
    try:
        os.unlink(path)
    except OSError:
        pass


def open_disk_file(path, writable, error, kind):
    """``path`` opened unbuffered for a disk engine, or ``error(reason)`` raised.

    Never a FIFO: opening one blocks until a writer appears.  ``kind`` ("VHD", "QCOW2")
    names the format in the message for a missing file.
    """
    try:
        if stat.S_ISFIFO(os.stat(path).st_mode):
            raise error("not a regular file")
        return open(path, "r+b" if writable else "rb", buffering=0)
    except OSError as e:
        if e.errno == errno.ENOENT:
            raise error("no such {} file".format(kind))
        raise error("cannot open: {}".format(e.strerror))
