"""Benchmark input: a 3-layer VHD chain in an SR, plus the raw image it must read as.

The raw reference file is written independently of vhdport's reader (plain
pwrite of the same bytes), so every vhdport output can be checked against it.
Data mix per written piece: random (already-compressed or encrypted files),
compressible (text- and binary-like, ~1/3 under gzip -6) and zeros (freed
blocks a guest left behind).  Upper layers overwrite parts of blocks, so reads
go through bitmaps and all three layers.
"""

import hashlib
import os
import random
import uuid as uuidlib

from vhdport.vhd import VhdFile, create_dynamic, create_snapshot, set_hidden

MIB = 1 << 20
BLOCK = 2 * MIB
#: (fraction of the disk's 2 MiB blocks written, whole blocks?) base .. leaf
LAYERS = ((0.40, True), (0.10, False), (0.05, False))
#: share of written pieces that are random / compressible / zero
MIX = (("random", 0.30), ("text", 0.45), ("zero", 0.25))
POOL = 8


def _text_pool(rng, size):
    """Log/config/binary-table-like bytes that gzip -6 shrinks to roughly a third."""
    words = ["".join(rng.choice("etaoinshrdlucmfwypvbgk") for _ in range(rng.randint(3, 9)))
             for _ in range(400)]
    lines, n = [], 0
    while n < size:
        kind = rng.random()
        if kind < 0.6:
            line = "{} {:02d}:{:02d}:{:02d} {} {}[{}]: {} {} {}\n".format(
                rng.choice(("Jan", "Feb", "Mar")), rng.randint(0, 23), rng.randint(0, 59),
                rng.randint(0, 59), rng.choice(words[:20]), rng.choice(words[:40]),
                rng.randint(100, 999), rng.choice(words), rng.choice(words), rng.choice(words))
        elif kind < 0.85:
            line = "{}={}\n".format(rng.choice(words[:60]), rng.randint(0, 9999))
        else:   # a small binary record table: little-endian ints with many zero bytes
            line = "".join(chr(rng.randint(0, 255)) if i % 4 == 0 else "\x00"
                           for i in range(64))
        lines.append(line)
        n += len(line)
    return "".join(lines).encode("latin-1")[:size]


class DataGen(object):
    """Deterministic pieces of each kind; every piece is stamped so no two are alike."""

    def __init__(self, seed):
        self.rng = random.Random(seed)
        self.random_pool = [os.urandom(MIB) * 2 for _ in range(POOL)]
        self.text_pool = [_text_pool(self.rng, MIB) * 2 for _ in range(POOL)]
        self.serial = 0

    def kind(self):
        x, acc = self.rng.random(), 0.0
        for name, share in MIX:
            acc += share
            if x < acc:
                return name
        return MIX[-1][0]

    def piece(self, kind, length):
        if kind == "zero":
            return bytes(length)
        pool = self.random_pool if kind == "random" else self.text_pool
        out = bytearray(length)
        pos = 0
        while pos < length:
            src = self.rng.choice(pool)
            start = self.rng.randrange(MIB)
            n = min(MIB, length - pos)
            out[pos:pos + n] = src[start:start + n]
            pos += n
        self.serial += 1
        stamp = b"vhdport-bench %016x" % self.serial
        for at in range(0, length - len(stamp), 64 * 1024):
            out[at:at + len(stamp)] = stamp
        return bytes(out)


def _pieces(gen, virtual, fraction, whole, rng):
    blocks = virtual // BLOCK
    chosen = sorted(rng.sample(range(blocks), max(1, int(blocks * fraction))))
    for block in chosen:
        start = block * BLOCK
        if whole:
            yield start, BLOCK
        else:
            off = rng.randrange(0, BLOCK // 4096) * 4096
            length = min(BLOCK - off, rng.choice((64, 256, 1024, 2048)) * 1024)
            yield start + off, length


def make_chain(sr_dir, ref_raw, virtual, seed=1, layers=LAYERS):
    """Create base, middle, leaf in ``sr_dir``; write the same bytes into ``ref_raw``.

    Returns {"leaf": uuid, "chain": [leaf, middle, base uuids], "written": bytes}.
    """
    assert virtual % BLOCK == 0, "virtual size must be a multiple of 2 MiB"
    os.makedirs(sr_dir, exist_ok=True)
    gen = DataGen(seed)
    rng = random.Random(seed + 1)
    uuids = [str(uuidlib.UUID(int=rng.getrandbits(128), version=4)) for _ in layers]
    written = 0
    fd = os.open(ref_raw, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
    try:
        os.ftruncate(fd, virtual)
        parent = None
        for u, (fraction, whole) in zip(uuids, layers):
            path = os.path.join(sr_dir, u + ".vhd")
            if parent is None:
                create_dynamic(path, virtual, uuid=u)
            else:
                create_snapshot(path, os.path.basename(parent), uuid=u)
                set_hidden(parent, True)
            with VhdFile.open(path, writable=True) as disk:
                for offset, length in _pieces(gen, virtual, fraction, whole, rng):
                    data = gen.piece(gen.kind(), length)
                    disk.write_sectors(offset // 512, data)
                    os.pwrite(fd, data, offset)
                    written += length
                disk.flush()
            parent = path
        os.fsync(fd)
    finally:
        os.close(fd)
    return {"leaf": uuids[-1], "chain": list(reversed(uuids)), "written": written}


def sparse_digest(path, size=None, chunk=MIB):
    """md5 over (offset, chunk) of every non-zero 1 MiB chunk; holes are skipped fast."""
    zeros = bytes(chunk)
    digest = hashlib.md5()
    with open(path, "rb") as f:
        fd = f.fileno()
        end = os.fstat(fd).st_size if size is None else size
        pos = 0
        while pos < end:
            try:
                data_at = os.lseek(fd, pos, os.SEEK_DATA)
            except OSError:
                break   # only a hole is left
            pos = data_at // chunk * chunk
            hole = min(os.lseek(fd, data_at, os.SEEK_HOLE), end)
            while pos < hole:
                n = min(chunk, end - pos)
                data = os.pread(fd, n, pos)
                if data != zeros[:len(data)]:
                    digest.update(b"%d:" % pos)
                    digest.update(data)
                pos += n
    return digest.hexdigest()


def chain_digest(leaf_path, chunk=MIB):
    """The same digest as :func:`sparse_digest`, read through a VHD chain by vhdport."""
    from vhdport.vhd import Chain
    zeros = bytes(chunk)
    digest = hashlib.md5()
    with Chain.open(leaf_path) as chain:
        done = -1
        for start, length in chain.allocated_ranges():
            pos = max(start // chunk * chunk, done)
            while pos < start + length:
                n = min(chunk, chain.virtual_size - pos)
                data = bytes(chain.read(pos, n))
                if data != zeros[:n]:
                    digest.update(b"%d:" % pos)
                    digest.update(data)
                pos += n
            done = pos
    return digest.hexdigest()
