"""Guest kernels and ramdisks in dom0: copy one out of a VDI, remove them again, confined to one dir.

PV guests boot from a kernel/ramdisk file in dom0, so the plugin copies the first bytes of a
VDI into the kernel directory and later removes them.  The old plugin deleted any path it was
handed; here every removal is confined to the kernel directory, and the directory is chosen by
the host's administrator (environment or config file), never by the caller's arguments.

Kernel directory, first match wins:

1. environment ``VHDPORT_KERNEL_DIR``;
2. the config file (``VHDPORT_CONFIG`` names it, default ``/etc/vhdport.conf``): either a JSON
   object ``{"kernel_dir": "/path"}`` or lines ``kernel_dir = /path`` (``#`` starts a comment);
3. ``/boot/guest``.

It must be an absolute path; it is created (mode 0755) if missing.
"""

import errno
import json
import os
import re
import stat
import tempfile

from . import disk
from .errors import ChainError, LimitError, NoSpaceError, PluginError
from .fsutil import fsync_dir, write_all

DEFAULT_KERNEL_DIR = "/boot/guest"
DEFAULT_CONFIG = "/etc/vhdport.conf"
#: nova's cap on a kernel or ramdisk copied out of a VDI
DEFAULT_CAP = 16 * 1024 * 1024
COPY_CHUNK = 1024 * 1024

_UUID_RE = re.compile(r"\A[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}\Z")


# --- where kernels live ---------------------------------------------------------------------


def _config_kernel_dir(config_path):
    """The kernel_dir set in ``config_path`` (JSON or ``key = value`` lines), or None."""
    try:
        with open(config_path, "r") as f:
            text = f.read()
    except (IOError, OSError) as exc:
        if exc.errno in (errno.ENOENT, errno.ENOTDIR):
            return None
        raise PluginError("{}: cannot read the vhdport config file: {}".format(
            config_path, exc.strerror or exc))
    stripped = text.strip()
    if stripped.startswith("{"):
        try:
            data = json.loads(stripped)
        except ValueError as exc:
            raise PluginError("{}: not valid JSON ({}); write {{\"kernel_dir\": \"/path\"}} or a "
                              "line kernel_dir = /path".format(config_path, exc))
        value = data.get("kernel_dir") if isinstance(data, dict) else None
        if value is not None and not isinstance(value, str):
            raise PluginError("{}: kernel_dir must be a string path".format(config_path))
        return value
    for number, line in enumerate(text.splitlines(), 1):
        line = line.split("#", 1)[0].strip()
        if not line:
            continue
        key, sep, value = line.partition("=")
        if not sep:
            raise PluginError("{} line {}: expected 'key = value', got {!r}".format(
                config_path, number, line[:80]))
        if key.strip() == "kernel_dir":
            return value.strip()
    return None


def kernel_dir(environ=None):
    """The configured kernel directory (absolute, normalised), without creating it."""
    environ = os.environ if environ is None else environ
    where = "environment VHDPORT_KERNEL_DIR"
    path = environ.get("VHDPORT_KERNEL_DIR") or None
    if path is None:
        config_path = environ.get("VHDPORT_CONFIG") or DEFAULT_CONFIG
        where = config_path
        path = _config_kernel_dir(config_path)
    if path is None:
        return DEFAULT_KERNEL_DIR
    if not os.path.isabs(path):
        raise PluginError("kernel_dir {!r} from {} is not an absolute path; set an absolute "
                          "directory such as {}".format(path, where, DEFAULT_KERNEL_DIR))
    return os.path.normpath(path)


def ensure_kernel_dir(path):
    """Create ``path`` if missing; return its resolved (symlink-free) form."""
    try:
        os.makedirs(path, mode=0o755, exist_ok=True)
    except OSError as exc:
        raise PluginError("{}: cannot create the kernel directory: {}".format(
            path, exc.strerror or exc))
    real = os.path.realpath(path)
    if not os.path.isdir(real):
        raise PluginError("{}: the kernel directory is not a directory".format(path))
    return real


# --- copy -------------------------------------------------------------------------------------


def check_uuid(value, what="vdi uuid"):
    """``value`` if it is a canonical lowercase uuid; anything else (paths, '..') is refused."""
    if not isinstance(value, str) or not _UUID_RE.match(value):
        raise PluginError("{} {!r} is not a canonical uuid like "
                          "01234567-89ab-cdef-0123-456789abcdef".format(what, value))
    return value


def check_image_size(value, cap=DEFAULT_CAP):
    """``value`` (int or decimal string) as an int in 1..cap."""
    try:
        size = int(value)
    except (TypeError, ValueError):
        raise PluginError("image size {!r} is not a whole number of bytes".format(value))
    if size <= 0:
        raise PluginError("image size {} must be positive".format(size))
    if size > cap:
        raise LimitError("image size {} bytes is over the kernel/ramdisk cap of {} bytes; a "
                         "kernel or ramdisk that large is refused".format(size, cap))
    return size


def copy_kernel(sr_path, vdi_uuid, image_size, kernel_dir_path=None, cap=DEFAULT_CAP):
    """Copy the first ``image_size`` virtual bytes of VDI ``vdi_uuid`` to <kernel_dir>/<uuid>.

    Reads through the VDI's chain in the SR, so a kernel in a snapshot's parent is found.
    The file appears atomically (temp in the same dir, fsync, rename); returns its path.
    """
    check_uuid(vdi_uuid)
    size = check_image_size(image_size, cap)
    if not isinstance(sr_path, str) or not os.path.isdir(sr_path):
        raise PluginError("SR path {!r} is not a directory".format(sr_path))
    fmt = next((f for f in disk.FORMATS.values()
                if os.path.isfile(os.path.join(sr_path, f.file_name(vdi_uuid)))), disk.DEFAULT)
    leaf_path = os.path.join(sr_path, fmt.file_name(vdi_uuid))
    if not os.path.isfile(leaf_path):
        raise ChainError("VDI {} not found: no {} in the SR".format(vdi_uuid, leaf_path))
    target_dir = ensure_kernel_dir(kernel_dir_path or kernel_dir())
    final = os.path.join(target_dir, vdi_uuid)
    with fmt.open_chain(leaf_path) as chain:
        if size > chain.virtual_size:
            raise PluginError("image size {} is larger than VDI {}'s virtual size {}".format(
                size, vdi_uuid, chain.virtual_size))
        try:
            fd, temp = tempfile.mkstemp(prefix=".vhdport-", suffix=".tmp", dir=target_dir)
        except OSError as exc:
            raise _os_error(exc, os.path.join(target_dir, vdi_uuid))
        try:
            for _, data in chain.iter_blocks(COPY_CHUNK, 0, size):
                write_all(fd, data)
            os.fchmod(fd, 0o644)
            os.fsync(fd)
            os.close(fd)
            fd = None
            os.rename(temp, final)
        except BaseException as exc:
            if fd is not None:
                os.close(fd)
            try:
                os.unlink(temp)
            except OSError:
                pass
            if isinstance(exc, OSError):
                raise _os_error(exc, final)
            raise
    fsync_dir(target_dir)
    return final


def _os_error(exc, path):
    """A full kernel dir is the user's to fix: say so (NoSpaceError), not a bare OSError."""
    if exc.errno in (errno.ENOSPC, errno.EDQUOT):
        return NoSpaceError(path=path)
    return PluginError("{}: cannot write the kernel file: {}".format(path, exc.strerror or exc))


# --- remove -----------------------------------------------------------------------------------


def _confined(path, real_dir, shown_dir):
    """The file name of ``path`` inside ``real_dir``, or PluginError saying why it is refused."""
    if not isinstance(path, str) or "\0" in path:
        raise PluginError("kernel file {!r} is not a usable path".format(path))
    if ".." in path.replace("\\", "/").split("/"):
        raise PluginError("kernel file {!r} contains '..'; give the path copy_kernel_vdi "
                          "returned".format(path))
    full = path if os.path.isabs(path) else os.path.join(real_dir, path)
    parent = os.path.realpath(os.path.dirname(full))
    name = os.path.basename(full)
    if parent != real_dir or not name or name in (".", ".."):
        raise PluginError("kernel file {!r} is outside the kernel directory {}; only files "
                          "directly in it can be removed".format(path, shown_dir))
    try:
        st = os.lstat(os.path.join(real_dir, name))
    except OSError as exc:
        if exc.errno == errno.ENOENT:
            return name
        raise PluginError("kernel file {!r}: {}".format(path, exc.strerror or exc))
    if stat.S_ISLNK(st.st_mode):
        raise PluginError("kernel file {!r} is a symbolic link; only regular files in {} can be "
                          "removed".format(path, shown_dir))
    if not stat.S_ISREG(st.st_mode):
        raise PluginError("kernel file {!r} is not a regular file; refusing to remove "
                          "it".format(path))
    return name


def remove_kernel_files(paths, kernel_dir_path=None):
    """Remove kernel/ramdisk files; empty entries are skipped, missing files are fine.

    Every path is validated before anything is removed: one path outside the kernel
    directory (absolute elsewhere, '..', a symlink) fails the call with nothing removed.
    Returns the paths actually removed.
    """
    shown = kernel_dir_path or kernel_dir()
    real_dir = ensure_kernel_dir(shown)
    names = [_confined(p, real_dir, shown) for p in paths if p]
    removed = []
    dir_fd = os.open(real_dir, os.O_RDONLY | getattr(os, "O_DIRECTORY", 0))
    try:
        for name in names:
            try:
                os.unlink(name, dir_fd=dir_fd)
            except OSError as exc:
                if exc.errno == errno.ENOENT:
                    continue
                raise PluginError("{}: cannot remove: {}".format(
                    os.path.join(shown, name), exc.strerror or exc))
            removed.append(os.path.join(real_dir, name))
        if removed:
            os.fsync(dir_fd)
    finally:
        os.close(dir_fd)
    return removed
