"""Hostile-suite fixtures and the reliability report hooks (see tests/hostile/report.py).

Helpers other hostile tests may import: ``tree_digest(root)`` (what "the SR is unchanged"
means here), ``put_image(store, data, ...)``, ``make_chain(directory, depth)``.
"""

import hashlib
import os
import shutil
import stat

import pytest

from tests.hostile.report import (  # noqa: F401  (pytest finds hooks and fixtures by name)
    pytest_configure, pytest_deselected, pytest_runtest_makereport, pytest_runtest_setup,
    pytest_sessionfinish,
    reliability_case)
from vhdport import disk
from vhdport.bundle import write_bundle
from vhdport.stores.local import LocalStore
from vhdport.vhd import Chain, VhdFile, create_dynamic, create_snapshot

MIB = 1 << 20

#: lock files whose *contents* (the owner's pid) may change when a later run takes them;
#: they must still exist (or not) exactly as before, with the same type and mode.
VOLATILE_CONTENT = frozenset([".vhdport.lock", ".root.lock", "lock"])


def _sha(path):
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while True:
            data = f.read(MIB)
            if not data:
                return h.hexdigest()
            h.update(data)


def tree_digest(root):
    """{relative path: (kind, mode, size, sha256 / link target)} of everything under ``root``.

    Hidden files and directories included; symlinks are recorded, never followed.  Directory
    mtimes are left out (creating and removing a staging dir moves them), and so are the
    contents of the lock files in VOLATILE_CONTENT (a pid written by whoever took the lock).
    """
    result = {}
    for dirpath, dirnames, filenames in os.walk(root):
        for name in sorted(dirnames + filenames):
            full = os.path.join(dirpath, name)
            st = os.lstat(full)
            rel = os.path.relpath(full, root)
            mode = stat.S_IMODE(st.st_mode)
            if stat.S_ISLNK(st.st_mode):
                result[rel] = ("link", mode, 0, os.readlink(full))
            elif stat.S_ISDIR(st.st_mode):
                result[rel] = ("dir", mode, 0, None)
            elif stat.S_ISREG(st.st_mode):
                content = None if name in VOLATILE_CONTENT else _sha(full)
                result[rel] = ("file", mode, None if content is None else st.st_size, content)
            else:
                result[rel] = ("special", st.st_mode, 0, None)
    return result


def diff_digests(before, after):
    """One line per difference, for assertion messages."""
    lines = []
    for path in sorted(set(before) | set(after)):
        if before.get(path) != after.get(path):
            lines.append("{}: {} -> {}".format(path, before.get(path), after.get(path)))
    return lines


def put_image(store, data, disk_format="vhd", container_format="ovf", name="hostile"):
    """A new active image holding ``data`` (bytes); returns its id."""
    record = store.create(name, disk_format, container_format)
    store.put(record["id"], [data])
    return record["id"]


def fill(path, writes):
    """Write (offset, length, byte) runs through the chain whose leaf is ``path``."""
    with Chain.open(path, writable=True) as chain:
        for offset, length, byte in writes:
            chain.write(offset, bytes([byte]) * length)


def make_chain(directory, depth, size=4 * MIB, block_size=None):
    """A chain of ``depth`` VHDs in ``directory`` (base.vhd, s1.vhd, ...); each level writes a
    little data.  Returns the paths leaf first."""
    os.makedirs(directory, exist_ok=True)
    kwargs = {"block_size": block_size} if block_size else {}
    base = os.path.join(directory, "base.vhd")
    create_dynamic(base, size, **kwargs)
    fill(base, [(0, 64 * 1024, 1)])
    paths = [base]
    for level in range(1, depth):
        child = os.path.join(directory, "s{}.vhd".format(level))
        create_snapshot(child, os.path.basename(paths[-1]), **kwargs)
        with VhdFile.open(child, writable=True) as disk:   # not through the chain: depth 31 works
            disk.write_sectors((level * 16) % (size // 512 - 8), bytes([level % 250 + 2]) * 4096)
            disk.flush()
        paths.append(child)
    return list(reversed(paths))


def bundle_bytes(paths, level=1):
    """A bundle of ``paths`` (leaf first, one format) made by our own writer."""
    members = [(disk.for_path(p).file_name(i), p) for i, p in enumerate(paths)]
    return b"".join(write_bundle(members, level=level))


@pytest.fixture(scope="session")
def template_sr(tmp_path_factory):
    """An SR that already holds a downloaded 2-deep chain (hidden base + leaf), its lock
    files and staging root: the "busy" state every hostile download must leave untouched."""
    from vhdport.transfer import download
    root = str(tmp_path_factory.mktemp("template"))
    sr = os.path.join(root, "sr")
    os.mkdir(sr)
    store = LocalStore(os.path.join(root, "store"))
    chain = make_chain(os.path.join(root, "src"), 2)
    image = put_image(store, bundle_bytes(chain))
    download(store, image, sr)
    return sr


@pytest.fixture
def hostile_env(template_sr, tmp_path):
    """(root, sr, store, outside): a fresh copy of the template SR, an empty local store and
    an 'outside' canary dir, all under ``root`` so one tree_digest covers them."""
    root = str(tmp_path / "env")
    os.mkdir(root)
    sr = os.path.join(root, "sr")
    shutil.copytree(template_sr, sr, symlinks=True)
    outside = os.path.join(root, "outside")
    os.mkdir(outside)
    with open(os.path.join(outside, "canary"), "wb") as f:
        f.write(b"must stay")
    store = LocalStore(os.path.join(root, "store"))
    return root, sr, store, outside
