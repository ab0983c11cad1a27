"""QCOW2 VDI chains in an SR directory, made the way XCP-ng 8.3's SM makes them, and qemu's verdicts.

SM drives everything through ``/usr/bin/qemu-img``: a base is ``qemu-img create -f qcow2 PATH
SIZE``, a snapshot child ``qemu-img create -f qcow2 -F qcow2 -b <uuid>.qcow2 -o
cluster_size=<parent's> CHILD`` (a relative backing name), and its GC relinks with ``qemu-img
rebase -u -f qcow2 -F qcow2 -b /var/run/sr-mount/<sr>/<uuid>.qcow2`` (an absolute name, which
names this SR when the SR directory's basename is its uuid).  Data goes in through qemu-io,
the hidden flag through the engine's ``set_hidden`` (SM's own extension bytes).  The real
qemu-img then judges the chains that come back: ``compare`` and ``check``.
"""

import json
import os
import shutil
import subprocess
import tempfile

from tests.peers.require import require_peer, require_qemu_img
from vhdport.qcow2 import Qcow2Chain, Qcow2File, local_backing, set_hidden

QEMU_IO = "/usr/bin/qemu-io"
SUFFIX = ".qcow2"
#: where dom0 mounts an SR: SM's absolute backing names start here
SR_MOUNT = "/var/run/sr-mount"


def require_qemu():
    require_qemu_img()
    require_peer("qemu-io (qemu-utils)", os.path.exists(QEMU_IO), QEMU_IO + " not found")


def run(*args, **kw):
    """Run a qemu tool; assert it succeeded (its output in the message) unless check=False."""
    proc = subprocess.run([str(a) for a in args], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                          universal_newlines=True, cwd=kw.get("cwd"))
    if kw.get("check", True):
        assert proc.returncode == 0, "{} failed ({}): {}{}".format(
            " ".join(str(a) for a in args), proc.returncode, proc.stdout, proc.stderr)
    return proc


def sm_create(path, size):
    """A base VDI, as SM's create: QEMU's defaults (v3, 64 KiB clusters, refcount 16)."""
    run("qemu-img", "create", "-q", "-f", "qcow2", path, str(size))


def sm_snapshot(child_path, parent_name):
    """An empty child of ``parent_name`` (relative, ``<uuid>.qcow2``), as SM's snapshot makes it."""
    parent = os.path.join(os.path.dirname(child_path), parent_name)
    with Qcow2File.open(parent) as image:
        cluster = image.cluster_size
    run("qemu-img", "create", "-q", "-f", "qcow2", "-F", "qcow2", "-b", parent_name,
        "-o", "cluster_size={}".format(cluster), child_path)


def absolute_name(sr_path, uuid):
    """SM's absolute backing name for VDI ``uuid`` of the SR at ``sr_path``."""
    return "{}/{}/{}{}".format(SR_MOUNT, os.path.basename(os.path.abspath(sr_path)), uuid, SUFFIX)


def sm_relink_absolute(child_path, parent_uuid):
    """The GC's relink: the same parent, named by its absolute dom0 path (no data moves)."""
    run("qemu-img", "rebase", "-u", "-f", "qcow2", "-F", "qcow2", "-b",
        absolute_name(os.path.dirname(child_path), parent_uuid), child_path)


def qemu_write(path, writes):
    """Write each (offset, bytes) of ``writes`` into the image (through its chain) with qemu-io."""
    if not writes:
        return
    tmp = tempfile.mkdtemp(prefix="qemu-io-")
    try:
        commands = []
        for i, (offset, data) in enumerate(writes):
            source = os.path.join(tmp, str(i))
            with open(source, "wb") as f:
                f.write(data)
            commands += ["-c", "write -q -s {} {} {}".format(source, offset, len(data))]
        run(*([QEMU_IO, "-f", "qcow2"] + commands + [path]))
    finally:
        shutil.rmtree(tmp)


def make_qcow2_chain(directory, depth, size, names=None, fill=None, hide_parents=True):
    """A chain of ``depth`` files ``<name>.qcow2``; return their paths leaf first.

    As :func:`tests.helpers.make_chain` for VHDs: the base is ``size`` bytes, each next level
    an SM snapshot of the one before; ``fill(level, path)`` writes a level's data right after
    it is made (level 0 is the base); parents are hidden unless ``hide_parents`` is off.
    """
    require_qemu()
    import uuid as uuidlib
    names = list(reversed(names)) if names else [str(uuidlib.uuid4()) for _ in range(depth)]
    paths = []
    for level, name in enumerate(names):
        path = os.path.join(str(directory), name + SUFFIX)
        if paths:
            sm_snapshot(path, os.path.basename(paths[-1]))
        else:
            sm_create(path, size)
        if fill is not None:
            fill(level, path)
        paths.append(path)
    if hide_parents:
        for path in paths[:-1]:
            set_hidden(path, True)
    return list(reversed(paths))


def sr_backing(sr_path):
    """A backing resolver for chain reads in tests: relative names and SM's absolute ones
    for this SR land in ``sr_path``; anything else is not followed."""
    prefix = absolute_name(sr_path, "")[:-len(SUFFIX)]

    def backing(child_path, name, _fmt):
        if name.startswith(prefix) and "/" not in name[len(prefix):]:
            return os.path.join(sr_path, name[len(prefix):])
        if os.path.isabs(name) or "/" in name:
            return None
        return local_backing(child_path, name, _fmt)
    return backing


def open_chain(leaf_path):
    return Qcow2Chain.open(leaf_path, backing=sr_backing(os.path.dirname(leaf_path)))


def shape(leaf_path):
    """[(uuid, hidden, parent_uuid, virtual_size, is_differencing)] leaf..base, read from the
    files themselves (the parent uuid is the backing name's stem, as SM takes it)."""
    out = []
    sr_path = os.path.dirname(os.path.abspath(leaf_path))
    backing = sr_backing(sr_path)
    path = leaf_path
    while path is not None:
        with Qcow2File.open(path) as image:
            name = image.backing_name
            parent = os.path.basename(name)[:-len(SUFFIX)] if name else None
            out.append((os.path.basename(path)[:-len(SUFFIX)], bool(image.hidden), parent,
                        image.virtual_size, name is not None))
        path = backing(path, name, "qcow2") if name else None
    return out


def backing_names(leaf_path):
    """The backing names as stored, leaf first (None for the base)."""
    out = []
    path = leaf_path
    backing = sr_backing(os.path.dirname(os.path.abspath(leaf_path)))
    while path is not None:
        with Qcow2File.open(path) as image:
            out.append(image.backing_name)
            path = backing(path, image.backing_name, "qcow2") if image.backing_name else None
    return out


def qemu_compare(leaf_a, leaf_b):
    """qemu-img compare of two chains' virtual contents: True when identical (rc 0)."""
    proc = run("qemu-img", "compare", "-q", "-f", "qcow2", "-F", "qcow2", leaf_a, leaf_b,
               check=False)
    assert proc.returncode in (0, 1), "qemu-img compare failed: {}{}".format(proc.stdout,
                                                                           proc.stderr)
    return proc.returncode == 0


def qemu_check(path):
    """qemu-img check's JSON of one image (its backing opened); asserts it is clean."""
    proc = run("qemu-img", "check", "--output=json", "-f", "qcow2", path, check=False)
    assert proc.returncode == 0, "qemu-img check {}: rc {}\n{}{}".format(
        path, proc.returncode, proc.stdout, proc.stderr)
    report = json.loads(proc.stdout)
    assert report.get("corruptions", 0) == 0 and report.get("leaks", 0) == 0, report
    return report


def qemu_chain_depth(leaf_path):
    """The depth SM counts: entries of ``qemu-img info --backing-chain``."""
    proc = run("qemu-img", "info", "--output=json", "--backing-chain", "-f", "qcow2", leaf_path)
    return len(json.loads(proc.stdout))
