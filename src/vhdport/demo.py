"""The demo scenario of ``vhdport demo`` / ``make demo``, as library code.

It walks the main job on the embedded default (a local directory image store)
and proves, rather than claims, that it worked: the snapshot's virtual contents
are hashed before upload and after download, through each chain, and must agree;
the VDI keeps changing after the snapshot and must not leak into it.
Only library APIs are used, so the scenario doubles as an end-to-end test.
"""

import hashlib
import os
import time
import uuid as uuidlib

from vhdport.errors import VhdportError

MIB = 1 << 20
DISK_SIZE = 64 * MIB
HASH_CHUNK = 4 * MIB

#: (offset, length, seed) of the patterned writes before the snapshot: aligned,
#: block-crossing and unaligned, leaving holes in between
BEFORE_SNAPSHOT = (
    (0, 3 * MIB, 1),
    (5 * MIB - 4096, 2 * MIB + 8192, 2),
    (33 * MIB + 1234, 300 * 1024 + 77, 3),
    (DISK_SIZE - MIB, MIB, 4),
)
#: written into the VDI after the snapshot: must not show in the snapshot
AFTER_SNAPSHOT = (
    (1 * MIB, 2 * MIB, 5),
    (40 * MIB + 511, 4097, 6),
)


def pattern(length, seed):
    """Deterministic, non-repeating-looking bytes (so misplaced data cannot hash equal)."""
    out = bytearray()
    counter = 0
    while len(out) < length:
        out += hashlib.sha256("{}:{}".format(seed, counter).encode("ascii")).digest()
        counter += 1
    return bytes(out[:length])


def chain_sha256(leaf_path):
    """sha256 of the whole virtual disk read through the chain, in constant memory."""
    from vhdport import disk

    digest = hashlib.sha256()
    with disk.for_path(leaf_path).open_chain(leaf_path) as chain:
        for _, data in chain.iter_blocks(HASH_CHUNK):
            digest.update(data)
    return digest.hexdigest()


def _write_pattern(vhd_path, writes):
    from vhdport import disk

    total = 0
    with disk.for_path(vhd_path).open_chain(vhd_path, writable=True) as chain:
        for offset, length, seed in writes:
            chain.write(offset, pattern(length, seed))
            total += length
        chain.flush()
    return total


def _chain_shape(sr_path, leaf_uuid):
    """(depth, leaf hidden?, all parents hidden?) of a VDI's chain."""
    from vhdport import disk

    with disk.DEFAULT.open_chain(os.path.join(sr_path, disk.DEFAULT.file_name(leaf_uuid))) \
            as chain:
        return (chain.depth, chain.leaf.hidden,
                all(member.hidden for member in chain.disks[1:]))


class Scenario(object):
    """State carried between steps; each step method returns its one-line detail."""

    def __init__(self, workdir):
        self.workdir = os.path.abspath(workdir)
        self.sr_a = os.path.join(self.workdir, "sr-a")
        self.sr_b = os.path.join(self.workdir, "sr-b")
        self.store_dir = os.path.join(self.workdir, "images")
        self.vdi = str(uuidlib.uuid4())
        self.snapshot = self.base = self.image_id = self.leaf_b = None
        self.hash_before = self.hash_snapshot = None

    def vdi_path(self, sr_path, uuid):
        from vhdport import disk

        return os.path.join(sr_path, disk.DEFAULT.file_name(uuid))

    def make_disk(self):
        from vhdport import disk

        for path in (self.sr_a, self.sr_b):
            os.makedirs(path, exist_ok=True)
        path = self.vdi_path(self.sr_a, self.vdi)
        disk.DEFAULT.create(path, DISK_SIZE, uuid=uuidlib.UUID(self.vdi))
        written = _write_pattern(path, BEFORE_SNAPSHOT)
        self.hash_before = chain_sha256(path)
        return "VDI {} ({} MiB virtual) in {}, {} bytes of patterned data in {} writes".format(
            self.vdi, DISK_SIZE // MIB, self.sr_a, written, len(BEFORE_SNAPSHOT))

    def take_snapshot(self):
        from vhdport.sr import SR

        self.snapshot, self.base = SR(self.sr_a).snapshot(self.vdi)
        self.snapshot, self.base = str(self.snapshot), str(self.base)
        self.hash_snapshot = chain_sha256(self.vdi_path(self.sr_a, self.snapshot))
        if self.hash_snapshot != self.hash_before:
            raise AssertionError("snapshot {} reads differently from the VDI it was taken "
                                 "of".format(self.snapshot))
        return "snapshot {} on hidden base {}; contents equal the VDI's".format(
            self.snapshot, self.base)

    def write_more(self):
        path = self.vdi_path(self.sr_a, self.vdi)
        written = _write_pattern(path, AFTER_SNAPSHOT)
        if chain_sha256(path) == self.hash_before:
            raise AssertionError("writing to VDI {} did not change it".format(self.vdi))
        if chain_sha256(self.vdi_path(self.sr_a, self.snapshot)) != self.hash_snapshot:
            raise AssertionError("writing to VDI {} changed snapshot {}".format(
                self.vdi, self.snapshot))
        return "{} more bytes into VDI {}; the snapshot is unchanged".format(written, self.vdi)

    def upload(self):
        from vhdport import transfer
        from vhdport.stores import open_store

        with open_store(self.store_dir) as store:
            self.image_id = transfer.upload(
                self.sr_a, self.snapshot, store, name="vhdport-demo-snapshot",
                properties={"vhdport_demo": "1", "source_vdi": self.snapshot})
            record = store.get(self.image_id)
        return "snapshot chain -> image {} in {} ({}, {} bytes, md5 {})".format(
            self.image_id, self.store_dir, record.get("status"), record.get("size"),
            record.get("checksum"))

    def download(self):
        from vhdport import transfer
        from vhdport.stores import open_store

        with open_store(self.store_dir) as store:
            result = transfer.download(store, self.image_id, self.sr_b)
        self.leaf_b = result["root"]["uuid"]
        return "image {} -> {} VHD(s) in {}, leaf {}".format(
            self.image_id, len(result["chain"]), self.sr_b, self.leaf_b)

    def compare(self):
        got = chain_sha256(self.vdi_path(self.sr_b, self.leaf_b))
        if got != self.hash_snapshot:
            raise AssertionError("downloaded leaf {} sha256 {} differs from snapshot {} "
                                 "sha256 {}".format(self.leaf_b, got, self.snapshot,
                                                    self.hash_snapshot))
        return "sha256 {}... identical through both chains".format(got[:16])

    def check(self):
        from vhdport import disk

        defects = disk.DEFAULT.check_chain(self.vdi_path(self.sr_b, self.leaf_b))
        if defects:
            raise AssertionError("check --chain: " + "; ".join(str(d) for d in defects[:5]))
        src = _chain_shape(self.sr_a, self.snapshot)
        dst = _chain_shape(self.sr_b, self.leaf_b)
        if dst[0] != src[0]:
            raise AssertionError("chain depth {} after download, {} before".format(dst[0], src[0]))
        if dst[1] or not dst[2]:
            raise AssertionError("downloaded chain: leaf hidden={}, all parents hidden={}"
                                 .format(dst[1], dst[2]))
        return "chain of {} passes check --chain; leaf visible, parents hidden".format(dst[0])


STEPS = (
    ("create VM disk", "make_disk"),
    ("snapshot", "take_snapshot"),
    ("write after snapshot", "write_more"),
    ("upload snapshot", "upload"),
    ("download", "download"),
    ("compare contents", "compare"),
    ("check chain", "check"),
)


def run(workdir, report=None):
    """Run the scenario in ``workdir``; return step records {step, ok, detail, seconds}.

    Stops at the first failing step (its record has ok=False and the error as detail).
    ``report`` is called with each record as it completes.
    """
    scenario = Scenario(workdir)
    records = []
    for title, method in STEPS:
        started = time.monotonic()
        try:
            detail, ok = getattr(scenario, method)(), True
        except VhdportError as exc:  # the library's own message says what and where
            detail, ok = str(exc), False
        except Exception as exc:  # a demo reports every failure as a failed step
            detail, ok = "{}: {}".format(type(exc).__name__, exc), False
        record = {"step": title, "ok": ok, "detail": detail,
                  "seconds": round(time.monotonic() - started, 3)}
        records.append(record)
        if report is not None:
            report(record)
        if not ok:
            break
    return records
