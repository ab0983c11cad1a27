"""Builders and observers for the transfer tests: real SR chains, content hashes, tree snapshots.

Chains are VHD (made with the real vhd layer) or QCOW2 (made as SM makes them, with
qemu-img and qemu-io: tests.transfer.qcow2_chains); ``fmt`` picks, "vhd" by default.
The expected virtual contents come from a model of the writes (not from reading the
chain back), so a chain that reads wrong on both sides of a round trip still fails.
"""

import hashlib
import json
import os
import random
import stat

from tests.helpers import make_chain, new_uuid  # noqa: F401  (new_uuid: for the tests)
from tests.transfer import qcow2_chains
from vhdport.sr import SR
from vhdport.vhd import Chain, VhdFile

#: disk formats the transfer tests run over, and each one's file suffix
FORMATS = ("vhd", "qcow2")
SUFFIXES = {"vhd": ".vhd", "qcow2": ".qcow2"}

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


def build_chain(sr_path, depth, size, dense=False, seed=0, hide_parents=True, fmt="vhd",
                names=None):
    """A chain of ``depth`` disks of format ``fmt`` in the SR; return (uuids leaf..base, ChainModel).

    Each level writes its own data (sparse: a few sector runs scattered over the
    disk; dense: several MiB-sized runs), some overlapping earlier levels' data
    so a read through the chain must take the newest copy.  ``names``: the VDI
    uuids, leaf first (default: fresh ones).
    """
    rng = random.Random(seed)
    model = ChainModel(size)

    def writes_of(level):
        out = []
        for offset, length in _write_plan(rng, size, dense, level):
            data = pattern(rng, length)
            out.append((offset, data))
            model.add(offset, data)
        return out

    def fill(level, path):
        write_into(path, writes_of(level))
    if fmt == "qcow2":
        paths = qcow2_chains.make_qcow2_chain(sr_path, depth, size, names=names, fill=fill,
                                              hide_parents=hide_parents)
    else:
        paths = make_chain(sr_path, depth, size, names=names, fill=fill,
                           hide_parents=hide_parents)
    return [os.path.basename(p)[:-len(SUFFIXES[fmt])] for p in paths], model


def write_into(path, writes):
    """Write each (offset, bytes) through the chain of ``path``: vhdport's VHD layer for a VHD,
    qemu-io (as a VM's writes land through tapdisk's QEMU block layer) for a QCOW2."""
    if path.endswith(SUFFIXES["qcow2"]):
        qcow2_chains.qemu_write(path, writes)
        return
    with Chain.open(path, writable=True) as chain:
        for offset, data in writes:
            chain.write(offset, data)
        chain.flush()


def vdi_file(sr_path, u):
    """The file of VDI ``u`` in the SR, whatever its format."""
    for suffix in SUFFIXES.values():
        path = os.path.join(sr_path, u + suffix)
        if os.path.exists(path):
            return path
    raise AssertionError("no file for VDI {} in {}".format(u, sr_path))


def format_of(path):
    return "qcow2" if path.endswith(SUFFIXES["qcow2"]) else "vhd"


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


def assert_model_written(leaf_path, model):
    """Every range the model wrote reads back as the model says (for disks too big to hash:
    the rest is compared with qemu-img compare against the source)."""
    opener = qcow2_chains.open_chain if format_of(leaf_path) == "qcow2" else Chain.open
    with opener(leaf_path) as chain:
        assert chain.virtual_size == model.size
        for offset, data in model.writes:
            expected = bytearray(data)
            for off2, data2 in model.writes[model.writes.index((offset, data)) + 1:]:
                lo, hi = max(offset, off2), min(offset + len(data), off2 + len(data2))
                if lo < hi:
                    expected[lo - offset:hi - offset] = data2[lo - off2:hi - off2]
            assert bytes(chain.read(offset, len(data))) == bytes(expected), offset


def allocated_bytes(leaf_path):
    """Bytes of the virtual disk the chain holds data for (the rest reads as zeros)."""
    opener = qcow2_chains.open_chain if format_of(leaf_path) == "qcow2" else Chain.open
    with opener(leaf_path) as chain:
        return sum(n for _, n in chain.allocated_ranges())


def assert_chain_clean(sr_path, leaf_uuid):
    """The landed chain passes its format's own check: vhd.check for a VHD chain, qemu-img
    check of every file for a QCOW2 chain."""
    leaf = vdi_file(sr_path, leaf_uuid)
    if format_of(leaf) == "qcow2":
        for u, _hidden, _parent, _size, _diff in qcow2_chains.shape(leaf):
            qcow2_chains.qemu_check(os.path.join(sr_path, u + SUFFIXES["qcow2"]))
        return
    from vhdport.vhd.check import check_chain
    assert check_chain(leaf) == []


def chain_sha256(leaf_path):
    """sha256 of the virtual contents read through the chain (zeros where nothing is allocated)."""
    h = hashlib.sha256()
    opener = qcow2_chains.open_chain if format_of(leaf_path) == "qcow2" else Chain.open
    with opener(leaf_path) as chain:
        pos = 0
        for off, length in list(chain.allocated_ranges()) + [(chain.virtual_size, 0)]:
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
    return chain_sha256(vdi_file(sr_path, u))


def chain_shape(sr_path, leaf_uuid):
    """[(uuid, hidden, parent_uuid, virtual_size, is_differencing)] leaf..base, from the files.

    A VHD's parent is its parent's internal uuid; a QCOW2's the stem of its backing name
    (it has no uuid of its own: SM takes the parent's from that name).
    """
    leaf = vdi_file(sr_path, leaf_uuid)
    if format_of(leaf) == "qcow2":
        return qcow2_chains.shape(leaf)
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


def store_env(tmp_path, keep_depth, keep_seed):
    """Two SRs (the target holding a chain of ``keep_depth``, so it is not empty) and a local
    store whose image data and records a test may edit."""
    from vhdport.stores.local import LocalStore

    class Env(object):
        src = make_sr(tmp_path / "src")
        dst = make_sr(tmp_path / "dst")
        store = LocalStore(str(tmp_path / "store"))

        @classmethod
        def data_path(cls, image_id):
            return os.path.join(cls.store.images_dir, image_id + ".data")

        @classmethod
        def edit_record(cls, image_id, **changes):
            path = os.path.join(cls.store.images_dir, image_id + ".json")
            with open(path) as f:
                doc = json.load(f)
            doc["record"].update(changes)
            with open(path, "w") as f:
                json.dump(doc, f)
    Env.keep, _ = build_chain(Env.dst, keep_depth, 4 * MiB, seed=keep_seed)
    return Env
