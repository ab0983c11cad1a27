"""Builders for bundle tests: real VHDs from qemu-img, tarballs from tarfile, tree snapshots."""

import gzip
import io
import os
import shutil
import subprocess
import tarfile

from vhdport.errors import BundleError

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
# vendored with the tests (tests/data/README.md): no file from outside the repository
FIXTURES_TGZ = os.path.join(REPO, "tests", "data", "vhd-util-fixtures.tgz")
QEMU_IMG = "/usr/bin/qemu-img"
MIB = 1 << 20


def pattern(size, seed=0):
    """Compressible but position-dependent bytes, so a misplaced chunk shows."""
    out = bytearray()
    i = 0
    while len(out) < size:
        out += (b"%016d" % (i * 7919 + seed)) * 32
        i += 1
    return bytes(out[:size])


def make_vhd(path, size_mib, subformat="dynamic", data=True, seed=0):
    """A VHD made by qemu-img, with data written through a raw image when ``data``."""
    if data:
        raw = path + ".raw"
        with open(raw, "wb") as out:
            out.write(pattern(size_mib * MIB // 2, seed))  # the first half written, rest zero
            out.truncate(size_mib * MIB)
        subprocess.check_call([QEMU_IMG, "convert", "-q", "-f", "raw", "-O", "vpc",
                               "-o", "subformat=" + subformat, raw, path])
        os.unlink(raw)
    else:
        subprocess.check_call([QEMU_IMG, "create", "-q", "-f", "vpc", "-o",
                               "subformat=" + subformat, path, "{}M".format(size_mib)])
    return path


def read(path):
    with open(path, "rb") as f:
        return f.read()


def tar_bytes(entries, fmt=tarfile.GNU_FORMAT, compress=True):
    """A tarball from [(TarInfo, data or None)], gzip'd unless ``compress`` is False."""
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=fmt) as tar:
        for info, data in entries:
            if data is not None:
                info.size = len(data)
                tar.addfile(info, io.BytesIO(data))
            else:
                tar.addfile(info)
    raw = buf.getvalue()
    return gzip.compress(raw) if compress else raw


def reg(name, data, **attrs):
    info = tarfile.TarInfo(name)
    info.mode = 0o644
    for key, value in attrs.items():
        setattr(info, key, value)
    return info, data


def special(name, kind, linkname=""):
    info = tarfile.TarInfo(name)
    info.type = kind
    info.linkname = linkname
    return info, None


def tree(root):
    """{relative path: (mode, size, mtime)} of everything under ``root``."""
    result = {}
    for dirpath, dirnames, filenames in os.walk(root):
        for name in dirnames + filenames:
            full = os.path.join(dirpath, name)
            st = os.lstat(full)
            # a directory's mtime moves when we create and remove temp files in it
            stamp = None if os.path.isdir(full) and not os.path.islink(full) else st.st_mtime_ns
            result[os.path.relpath(full, root)] = (st.st_mode, st.st_size, stamp)
    return result


class CountingReader(object):
    """A store-like stream over bytes that counts what was read, in small pieces."""

    def __init__(self, data, piece=64 * 1024):
        self._buf = io.BytesIO(data)
        self.bytes_read = 0
        self._piece = piece

    def read(self, n=-1):
        if n is None or n < 0 or n > self._piece:
            n = self._piece
        data = self._buf.read(n)
        self.bytes_read += len(data)
        return data


def expect_refusal(extract, data, staging, member, **kwargs):
    """Run ``extract`` on ``data``; it must raise BundleError naming ``member`` and leave
    ``staging`` empty.  Returns the error."""
    try:
        extract(CountingReader(data), staging, **kwargs)
    except BundleError as err:
        text = str(err)
        assert member in text, "message {!r} does not name {!r}".format(text, member)
        assert os.listdir(staging) == [], os.listdir(staging)
        return err
    raise AssertionError("accepted a bundle that must be refused (member {!r})".format(member))


def copy_as(src, dst_dir, name):
    dst = os.path.join(dst_dir, name)
    shutil.copyfile(src, dst)
    return dst
