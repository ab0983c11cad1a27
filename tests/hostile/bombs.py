"""Hostile VHD files that declare far more than they hold, and a fresh-process meter.

``write_bomb`` lays out a dynamic (or differencing) VHD from chosen header values: footer
copy, header, a few real BAT bytes, everything else a hole up to the apparent size where
the footer sits.  Such a file takes a few KiB on disk whatever it declares.

``measure(argv)`` runs a command in a new process and returns (exit code, output, seconds,
peak RSS in MiB of that process alone, from wait4).
"""

import hashlib
import os
import signal
import stat
import subprocess
import sys
import tempfile
import time
import uuid as uuidlib

from vhdport.format.footer import (CREATOR_TAP, DISK_DIFFERENCING, DISK_DYNAMIC, Footer,
                                   vhd_now)
from vhdport.format.geometry import chs_for_size
from vhdport.format.header import DynamicHeader
from vhdport.format.locator import CODE_MACX, ParentLocator

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
MIB = 1 << 20


def write_bomb(path, virtual_size, block_size, entries, file_size, table_offset=1536,
               bat_bytes=b"", locators=(), parent_uuid=None, data_offset=512,
               extra=(), own_uuid=None):
    """Write the hostile file; ``extra`` is (offset, bytes) pieces written as real data.

    ``locators``: (code, data_space, data_length, data_offset) tuples.
    """
    footer = Footer(data_offset=data_offset, timestamp=vhd_now(), original_size=virtual_size,
                    current_size=virtual_size, geometry=chs_for_size(virtual_size),
                    disk_type=DISK_DIFFERENCING if parent_uuid else DISK_DYNAMIC,
                    uuid=own_uuid or uuidlib.uuid4(), creator_app=CREATOR_TAP)
    header = DynamicHeader(table_offset=table_offset, max_table_entries=entries,
                           block_size=block_size)
    if parent_uuid:
        header.parent_uuid = parent_uuid
        header.parent_name = "parent.vhd"
        for i, (code, space, length, offset) in enumerate(locators or
                                                          [(CODE_MACX, 512, 18, 4096)]):
            header.locators[i] = ParentLocator(code, space, length, offset)
    raw_footer = footer.pack()
    with open(path, "wb") as f:
        f.truncate(file_size)
        f.seek(0)
        f.write(raw_footer)
        f.seek(data_offset)
        f.write(header.pack())
        if bat_bytes:
            f.seek(table_offset)
            f.write(bat_bytes)
        for offset, data in extra:
            f.seek(offset)
            f.write(data)
        f.seek(file_size - 512)
        f.write(raw_footer)
    return footer.uuid


def allocated_bytes(path):
    return os.stat(path).st_blocks * 512


#: run in a small fresh interpreter: fork + exec the command, report its own peak RSS.  Measuring
#: from the test process would count the pages a fork of the (large) pytest process shares.
_WRAPPER = """
import os, sys
out, argv = sys.argv[1], sys.argv[2:]
pid = os.fork()
if pid == 0:
    try:
        os.execv(argv[0], argv)
    finally:
        os._exit(127)
_, status, usage = os.wait4(pid, 0)
with open(out, "w") as f:
    f.write(str(usage.ru_maxrss))
sys.exit(os.WEXITSTATUS(status) if os.WIFEXITED(status) else 128 + os.WTERMSIG(status))
"""


def measure(argv, timeout=60):
    """(exit code, output, seconds, peak RSS in MiB) of ``argv`` run in a new process.

    The RSS is that process's own (os.wait4 in a small wrapper that forked it), not the
    test runner's; the exit code is None when it ran past ``timeout`` (then killed).
    """
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join([os.path.join(REPO, "src"), REPO,
                                         env.get("PYTHONPATH", "")])
    fd, rss_path = tempfile.mkstemp(prefix="bomb-rss-")
    os.close(fd)
    started = time.monotonic()
    try:
        proc = subprocess.Popen([sys.executable, "-c", _WRAPPER, rss_path] + list(argv),
                                stdout=subprocess.PIPE, stderr=subprocess.STDOUT, env=env,
                                start_new_session=True)
        try:
            out, _ = proc.communicate(timeout=timeout)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            out, _ = proc.communicate()
            return None, out.decode("utf-8", "replace"), time.monotonic() - started, None
        elapsed = time.monotonic() - started
        with open(rss_path) as f:
            rss = int(f.read() or 0) / 1024.0
    finally:
        os.unlink(rss_path)
    return proc.returncode, out.decode("utf-8", "replace"), elapsed, rss


def vhdport_cli(*args):
    """argv running the vhdport CLI in a fresh interpreter."""
    return [sys.executable, "-m", "vhdport.cli.main"] + [str(a) for a in args]


def sparse_sha(path):
    """sha256 of the size and of every non-zero MiB with its offset, reading only the data
    extents (SEEK_DATA / SEEK_HOLE): "unchanged" as a full hash would judge it (zeros and holes
    read alike), without reading the TiB of holes a bomb declares."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        fd = f.fileno()
        size = os.fstat(fd).st_size
        h.update(str(size).encode())
        offset = 0
        while offset < size:
            try:
                start = os.lseek(fd, offset, os.SEEK_DATA)
            except OSError:
                break   # only a hole is left
            end = os.lseek(fd, start, os.SEEK_HOLE)
            f.seek(start)
            pos = start
            while pos < end:
                data = f.read(min(MIB, end - pos))
                if not data:
                    break
                if data.strip(b"\0"):
                    h.update(str(pos).encode())
                    h.update(data)
                pos += len(data)
            offset = end
    return h.hexdigest()


def env_digest(root):
    """tree_digest (tests/hostile/conftest.py) with sparse-aware file hashes: every path under
    ``root`` with its kind, mode, size and content, symlinks recorded and never followed."""
    result = {}
    for dirpath, dirnames, filenames in os.walk(root):
        for name in sorted(dirnames + filenames):
            full = os.path.join(dirpath, name)
            st = os.lstat(full)
            rel = os.path.relpath(full, root)
            mode = stat.S_IMODE(st.st_mode)
            if stat.S_ISLNK(st.st_mode):
                result[rel] = ("link", mode, os.readlink(full))
            elif stat.S_ISDIR(st.st_mode):
                result[rel] = ("dir", mode, None)
            elif stat.S_ISREG(st.st_mode):
                result[rel] = ("file", mode, sparse_sha(full))
            else:
                result[rel] = ("special", st.st_mode, None)
    return result
