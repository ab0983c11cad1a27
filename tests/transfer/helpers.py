"""Builders and observers for the transfer tests: real SR chains, content hashes, tree snapshots.

Chains are made with the real vhd layer; the expected virtual contents come from
a model of the writes (not from reading the chain back), so a chain that reads
wrong on both sides of a round trip still fails the test.
"""

import hashlib
import os
import random
import stat

from tests.helpers import make_chain, new_uuid  # noqa: F401  (new_uuid: for the tests)
from vhdport.sr import SR
from vhdport.vhd import Chain, VhdFile

MiB = 1 << 20
SECTOR = 512
WINDOW = 4 * MiB
_ZEROS = bytes(WINDOW)


def make_sr(directory):
    os.makedirs(str(directory), exist_ok=True)
    return str(directory)


def pattern(rng, length):
    """Random-ish but cheap bytes: a random 4 KiB tile repeated, then a random tag per tile."""
    tile = rng.getrandbits(4096 * 8).to_bytes(4096, "little")
    out = bytearray(tile * (length // 4096 + 1))[:length]
    for pos in range(0, length, 4096):
        out[pos:pos + 8] = rng.getrandbits(64).to_bytes(8, "little")
    return bytes(out)


class ChainModel(object):
    """The writes made into a chain (in order), enough to compute its expected contents."""

    def __init__(self, size):
        self.size = size
        self.writes = []   # (offset, bytes), later writes win

    def add(self, offset, data):
        self.writes.append((offset, data))

    def windows(self):
        """The virtual disk as the writes define it (zeros elsewhere), in 4 MiB windows."""
        for start in range(0, self.size, WINDOW):
            end = min(start + WINDOW, self.size)
            hits = [(o, d) for o, d in self.writes if o < end and o + len(d) > start]
            if not hits:
                yield _ZEROS[:end - start]
                continue
            buf = bytearray(end - start)
            for off, data in hits:
                lo, hi = max(off, start), min(off + len(data), end)
                buf[lo - start:hi - start] = data[lo - off:hi - off]
            yield bytes(buf)

    def sha256(self):
        """sha256 of the virtual disk as the writes define it."""
        h = hashlib.sha256()
        for window in self.windows():
            h.update(window)
        return h.hexdigest()

    def content_digest(self):
        """The content digest (vhdport.disk.digest) as its documentation defines it, by hand."""
        outer = hashlib.blake2b(digest_size=32)
        outer.update("vhdport content digest\nalgorithm=blake2b-256\nblock_size={}\n"
                     "virtual_size={}\n".format(WINDOW, self.size).encode("ascii"))
        for window in self.windows():
            outer.update(hashlib.blake2b(window, digest_size=32).digest())
        return "blake2b-256/4MiB:" + outer.hexdigest()


def build_chain(sr_path, depth, size, dense=False, seed=0, hide_parents=True):
    """A chain of ``depth`` VHDs in the SR; return (uuids leaf..base, ChainModel).

    Each level writes its own data (sparse: a few sector runs scattered over the
    disk; dense: several MiB-sized runs), some overlapping earlier levels' data
    so a read through the chain must take the newest copy.
    """
    rng = random.Random(seed)
    model = ChainModel(size)

    def fill(level, path):
        with Chain.open(path, writable=True) as chain:
            for offset, length in _write_plan(rng, size, dense, level):
                data = pattern(rng, length)
                chain.write(offset, data)
                model.add(offset, data)
            chain.flush()
    paths = make_chain(sr_path, depth, size, fill=fill, hide_parents=hide_parents)
    return [os.path.basename(p)[:-len(".vhd")] for p in paths], model


def _write_plan(rng, size, dense, level):
    plan = []
    if dense:
        for _ in range(4):
            length = rng.randrange(1, 5) * MiB + rng.randrange(0, 64) * SECTOR
            offset = rng.randrange(0, (size - length) // SECTOR) * SECTOR
            plan.append((offset, length))
    else:
        for _ in range(12):
            length = rng.randrange(1, 17) * SECTOR
            offset = rng.randrange(0, (size - length) // SECTOR) * SECTOR
            plan.append((offset, length))
    # the first and last sector: edge cases of BAT and backup footer placement
    if level == 0:
        plan.append((0, SECTOR))
        plan.append((size - SECTOR, SECTOR))
    return plan


def chain_sha256(leaf_path):
    """sha256 of the virtual contents read through the chain (zeros where nothing is allocated)."""
    h = hashlib.sha256()
    with Chain.open(leaf_path) as chain:
        pos = 0
        for off, length in chain.allocated_ranges() + [(chain.virtual_size, 0)]:
            while pos < off:
                n = min(WINDOW, off - pos)
                h.update(_ZEROS[:n])
                pos += n
            end = off + length
            while pos < end:
                n = min(WINDOW, end - pos)
                h.update(bytes(chain.read(pos, n)))
                pos += n
    return h.hexdigest()


def vdi_sha256(sr_path, u):
    return chain_sha256(os.path.join(sr_path, u + ".vhd"))


def chain_shape(sr_path, leaf_uuid):
    """[(uuid, hidden, parent_uuid, virtual_size, is_differencing)] leaf..base, from the files."""
    shape = []
    for path in SR(sr_path).chain_paths(leaf_uuid):
        with VhdFile.open(path) as disk:
            parent = str(disk.parent_uuid) if disk.is_differencing else None
            shape.append((os.path.basename(path)[:-4], bool(disk.hidden), parent,
                          disk.virtual_size, disk.is_differencing))
    return shape


def file_sha256(path):
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while True:
            data = f.read(MiB)
            if not data:
                return h.hexdigest()
            h.update(data)


def tree(root):
    """{relative path: description} of everything under ``root`` (files hashed, dirs listed)."""
    result = {}
    root = str(root)
    for dirpath, dirnames, filenames in os.walk(root):
        for name in dirnames + filenames:
            path = os.path.join(dirpath, name)
            rel = os.path.relpath(path, root)
            st = os.lstat(path)
            if stat.S_ISLNK(st.st_mode):
                result[rel] = ("link", os.readlink(path))
            elif stat.S_ISDIR(st.st_mode):
                result[rel] = ("dir", stat.S_IMODE(st.st_mode))
            elif stat.S_ISREG(st.st_mode):
                result[rel] = ("file", st.st_size, st.st_nlink, file_sha256(path))
            else:
                result[rel] = ("other", st.st_mode)
    return result


def sr_tree(sr_path):
    """The SR tree, staging dirs included, without what the SR keeps for itself: lock files
    and the staging root directory (made on first use and kept; what is *in* it counts)."""
    return dict((k, v) for k, v in tree(sr_path).items()
                if not k.endswith(".lock") and k != ".vhdport-staging")


def staging_leftovers(sr_path):
    """Names inside the staging root other than lock files (a finished transfer leaves none)."""
    root = os.path.join(sr_path, ".vhdport-staging")
    if not os.path.isdir(root):
        return []
    return sorted(n for n in os.listdir(root) if not n.endswith(".lock"))
