"""Durability helpers every layer that writes files shares (cross-cutting, like errors)."""

import os


def fsync_dir(path):
    """Make a rename, link or unlink in directory ``path`` durable."""
    fd = os.open(path, os.O_RDONLY | getattr(os, "O_DIRECTORY", 0))
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


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
