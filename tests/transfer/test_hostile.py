"""Hostile images through the whole download path (local store -> transfer.download -> SR).

Each bundle is stored as an image with transfer.import_image, then downloaded
into an SR that already holds a VM disk.  Every one must be refused with a
VhdportError naming the member at fault, leave the SR tree and the store
byte-identical, create nothing outside staging, and remove its staging dir.
"""

import gzip
import io
import os
import shutil
import tarfile

import pytest

from tests.transfer.helpers import (MiB, build_chain, make_sr, sr_tree, staging_leftovers, tree,
                                    vdi_sha256)
from vhdport import transfer
from vhdport.errors import VhdportError
from vhdport.sr import SR
from vhdport.stores.local import LocalStore
from vhdport.vhd import set_hidden

OUTSIDE = "/tmp/vhdport-transfer-hostile-{}".format(os.getpid())


def read(path):
    with open(path, "rb") as f:
        return f.read()


class Parts(object):
    """Bytes of a real 3-deep chain (leaf, mid, base), a hidden-leaf copy and a big member."""

    def __init__(self, workdir):
        scratch = make_sr(os.path.join(workdir, "parts"))
        uuids, _ = build_chain(scratch, 3, 8 * MiB, dense=True, seed=77)
        self.leaf, self.mid, self.base = [read(os.path.join(scratch, u + ".vhd")) for u in uuids]
        hidden = os.path.join(workdir, "hidden-leaf.vhd")
        shutil.copyfile(os.path.join(scratch, uuids[0] + ".vhd"), hidden)
        set_hidden(hidden, True)
        self.hidden_leaf = read(hidden)
        big, _ = build_chain(make_sr(os.path.join(workdir, "big")), 1, 32 * MiB, dense=True,
                             seed=78)
        self.big = read(os.path.join(workdir, "big", big[0] + ".vhd"))
        # a parent from another chain: right format, wrong uuid for the leaf's link
        other, _ = build_chain(make_sr(os.path.join(workdir, "other")), 2, 8 * MiB, seed=79)
        self.foreign_mid = read(os.path.join(workdir, "other", other[1] + ".vhd"))


def member(name, data, kind=tarfile.REGTYPE, linkname=""):
    info = tarfile.TarInfo(name)
    info.mode = 0o644
    info.type = kind
    info.linkname = linkname
    return info, data


def tarball(members, compress=True):
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.GNU_FORMAT) as tar:
        for info, data in members:
            if data is None:
                tar.addfile(info)
            else:
                info.size = len(data)
                tar.addfile(info, io.BytesIO(data))
    raw = buf.getvalue()
    return gzip.compress(raw, 6) if compress else raw


def declared(name, size, data):
    """A tar header that declares ``size`` bytes, followed by ``data`` (whatever its length)."""
    info = tarfile.TarInfo(name)
    info.size = size
    info.mode = 0o644
    return info.tobuf(format=tarfile.GNU_FORMAT) + data


def flip(data, offset):
    buf = bytearray(data)
    buf[offset] ^= 0x5A
    return bytes(buf)


def chain(p):
    return [member("0.vhd", p.leaf), member("1.vhd", p.mid), member("2.vhd", p.base)]


# name -> (bundle bytes from Parts, the member name the error must contain)
CASES = {
    "traversal": lambda p: (tarball([member("../0.vhd", p.leaf)]), "../0.vhd"),
    "traversal-deep": lambda p: (tarball([member("./a/../../../x.vhd", p.leaf)]),
                                 "./a/../../../x.vhd"),
    "absolute": lambda p: (tarball([member(OUTSIDE + "/0.vhd", p.leaf)]), OUTSIDE + "/0.vhd"),
    "symlink": lambda p: (tarball([member("0.vhd", None, tarfile.SYMTYPE, OUTSIDE)]), "0.vhd"),
    "symlink-then-write": lambda p: (tarball([
        member("1.vhd", None, tarfile.SYMTYPE, OUTSIDE), member("0.vhd", p.leaf),
        member("1.vhd", p.mid)]), "1.vhd"),
    "hardlink": lambda p: (tarball([member("0.vhd", p.leaf),
                                    member("1.vhd", None, tarfile.LNKTYPE, "0.vhd")]), "1.vhd"),
    "char-device": lambda p: (tarball([member("0.vhd", None, tarfile.CHRTYPE)]), "0.vhd"),
    "block-device": lambda p: (tarball([member("0.vhd", None, tarfile.BLKTYPE)]), "0.vhd"),
    "fifo": lambda p: (tarball([member("0.vhd", None, tarfile.FIFOTYPE)]), "0.vhd"),
    "directory": lambda p: (tarball([member("sub", None, tarfile.DIRTYPE),
                                     member("sub/0.vhd", p.leaf)]), "sub"),
    "duplicate": lambda p: (tarball(chain(p) + [member("./1.vhd", p.mid)]), "1.vhd"),
    "gap": lambda p: (tarball([member("0.vhd", p.leaf), member("2.vhd", p.base)]), "1.vhd"),
    "extra-member": lambda p: (tarball(chain(p) + [member("notes.txt", b"hello\n")]),
                               "notes.txt"),
    "oversize": lambda p: (gzip.compress(declared("0.vhd", len(p.leaf) + 256 * MiB,
                                                  p.leaf + bytes(64 * MiB))), "0.vhd"),
    "truncated-gzip": lambda p: (tarball([member("0.vhd", p.big)])[:-4096], "0.vhd"),
    "truncated-tar": lambda p: (tarball([member("0.vhd", p.big)], compress=False)[:3 * MiB],
                                "0.vhd"),
    "hidden-leaf": lambda p: (tarball([member("0.vhd", p.hidden_leaf), member("1.vhd", p.mid),
                                       member("2.vhd", p.base)]), "0.vhd"),
    "wrong-parent-order": lambda p: (tarball([member("0.vhd", p.leaf), member("1.vhd", p.base),
                                              member("2.vhd", p.mid)]), "1.vhd"),
    "foreign-parent": lambda p: (tarball([member("0.vhd", p.leaf), member("1.vhd", p.foreign_mid),
                                          member("2.vhd", p.base)]), "1.vhd"),
    "base-missing": lambda p: (tarball([member("0.vhd", p.leaf), member("1.vhd", p.mid)]),
                               "1.vhd"),
    "not-a-vhd": lambda p: (tarball([member("0.vhd", os.urandom(256 * 1024))]), "0.vhd"),
    "not-a-vhd-mid": lambda p: (tarball([member("0.vhd", p.leaf),
                                         member("1.vhd", b"MZ" + bytes(70000)),
                                         member("2.vhd", p.base)]), "1.vhd"),
    "footer-checksum": lambda p: (tarball([member("0.vhd", flip(p.leaf, len(p.leaf) - 512 + 48)),
                                           member("1.vhd", p.mid), member("2.vhd", p.base)]),
                                  "0.vhd"),
    "header-checksum": lambda p: (tarball([member("0.vhd", p.leaf),
                                           member("1.vhd", flip(p.mid, 512 + 36)),
                                           member("2.vhd", p.base)]), "1.vhd"),
    "backup-footer": lambda p: (tarball([member("0.vhd", p.leaf), member("1.vhd", p.mid),
                                         member("2.vhd", flip(p.base, 20))]), "2.vhd"),
}


@pytest.fixture(scope="module")
def parts(tmp_path_factory):
    return Parts(str(tmp_path_factory.mktemp("hostile-parts")))


@pytest.fixture(scope="module")
def world(tmp_path_factory, parts):
    """One SR (holding a VM disk) and one store with every hostile bundle as an image."""
    root = tmp_path_factory.mktemp("hostile")
    sr_path = make_sr(root / "sr")
    keep, model = build_chain(sr_path, 2, 8 * MiB, seed=5)
    store = LocalStore(str(root / "store"))
    blobs = root / "blobs"
    blobs.mkdir()
    images = {}
    for name, make in sorted(CASES.items()):
        data, fault = make(parts)
        path = str(blobs / (name + ".tgz"))
        with open(path, "wb") as f:
            f.write(data)
        images[name] = (transfer.import_image(store, path, name), fault)
    shutil.rmtree(str(blobs))
    return root, sr_path, store, images, keep, model.sha256()


def outside_state(root):
    """Everything under the test root except lock files and the (persistent) staging root."""
    return dict((k, v) for k, v in tree(root).items()
                if not k.endswith(".lock") and not k.endswith(".vhdport-staging"))


@pytest.mark.parametrize("case", sorted(CASES))
def test_refused_and_nothing_changes(world, case):
    root, sr_path, store, images, keep, keep_sha = world
    image_id, fault = images[case]
    before_sr, before_all = sr_tree(sr_path), outside_state(str(root))
    with pytest.raises(VhdportError) as info:
        transfer.download(store, image_id, sr_path)
    message = str(info.value)
    assert fault in message, (case, message)
    assert sr_tree(sr_path) == before_sr
    assert outside_state(str(root)) == before_all
    assert staging_leftovers(sr_path) == []
    assert not os.path.lexists(OUTSIDE)
    assert not os.path.lexists(os.path.join(os.path.dirname(sr_path), "0.vhd"))
    assert sorted(SR(sr_path).vdis()) == sorted(keep)
    assert vdi_sha256(sr_path, keep[0]) == keep_sha


def test_valid_control_lands(world, parts, tmp_path):
    """The same parts in the right order download fine: the refusals are about the faults."""
    root, sr_path, store, images, keep, keep_sha = world
    path = str(tmp_path / "good.tgz")
    with open(path, "wb") as f:
        f.write(tarball(chain(parts)))
    image_id = transfer.import_image(store, path, "good")
    dst = make_sr(tmp_path / "sr")
    result = transfer.download(store, image_id, dst)
    assert len(result["chain"]) == 3


def test_formats_must_agree_with_bytes(world, parts, tmp_path):
    """The record's formats say what the bytes are; bytes that disagree are refused by name."""
    root, sr_path, store, images, keep, keep_sha = world
    before = sr_tree(sr_path)
    bundle = str(tmp_path / "bundle.tgz")
    with open(bundle, "wb") as f:
        f.write(tarball(chain(parts)))
    bare = str(tmp_path / "leaf.vhd")
    with open(bare, "wb") as f:
        f.write(parts.leaf)
    junk = str(tmp_path / "junk.bin")
    with open(junk, "wb") as f:
        f.write(b"\x00" * 4096 + b"junk" * 1000)
    cases = [
        (bundle, "raw", "bare"),      # a tarball recorded as a raw disk
        (junk, "vhd", "ovf"),         # not a tarball, recorded as a bundle
        (bare, "vhd", "ovf"),         # a bare VHD recorded as a bundle
        (junk, "vhd", "bare"),        # not a VHD, recorded as a bare VHD
        (bare, "vhd", "bare"),        # a differencing VHD alone: its parent is missing
        (bundle, "qcow2", "bare"),    # a format vhdport cannot place in an SR
    ]
    for path, disk, container in cases:
        image_id = transfer.import_image(store, path, "mismatch", disk_format=disk,
                                         container_format=container)
        with pytest.raises(VhdportError) as info:
            transfer.download(store, image_id, sr_path)
        assert str(info.value), (disk, container)
        assert sr_tree(sr_path) == before, (disk, container)
        assert staging_leftovers(sr_path) == []


def test_image_not_active_refused(world):
    root, sr_path, store, images, keep, keep_sha = world
    record = store.create("never-uploaded")
    before = sr_tree(sr_path)
    with pytest.raises(VhdportError) as info:
        transfer.download(store, record["id"], sr_path)
    assert record["id"] in str(info.value) and "queued" in str(info.value)
    assert sr_tree(sr_path) == before



# --- QCOW2 bundles: backing files and data files that point out of the chain ----------------

def _qcow2_parts(workdir):
    """{name: bytes} of QCOW2 files made by qemu-img: a good 2-deep chain as its bundle sends
    it (the child names "1.qcow2"), and files whose backing or data file points elsewhere."""
    from tests.transfer import qcow2_chains as q
    q.require_qemu()
    d = os.path.join(workdir, "q")
    os.makedirs(d)
    out = {}
    uuids, _ = build_chain(d, 2, 8 * MiB, dense=True, seed=80, fmt="qcow2")
    leaf, base = [os.path.join(d, u + ".qcow2") for u in uuids]
    q.run("qemu-img", "rebase", "-u", "-f", "qcow2", "-F", "qcow2", "-b", "1.qcow2", leaf)
    out["leaf"], out["base"] = read(leaf), read(base)
    made = {
        "etc": ["-b", "/etc/hostname", "-F", "raw"],
        "up": ["-b", "../../outside.qcow2", "-F", "qcow2"],
        "data-file": ["-o", "data_file=" + os.path.join(d, "data.raw")],
    }
    for name, args in made.items():
        path = os.path.join(d, name + ".qcow2")
        q.run(*(["qemu-img", "create", "-q", "-f", "qcow2", "-u"] + args + [path, str(8 * MiB)]))
        out[name] = read(path)
    # qcow2's own AES encryption: LUKS would do too, but its key setup times the CPU and
    # fails under load ("Unable to get accurate CPU usage")
    path = os.path.join(d, "aes.qcow2")
    q.run("qemu-img", "create", "-q", "-f", "qcow2", "--object", "secret,id=s0,data=hush",
          "-o", "encrypt.format=aes,encrypt.key-secret=s0", path, str(8 * MiB))
    out["encrypted"] = read(path)
    return out


QCOW2_CASES = {
    # (members, the member the refusal must name); sr_vdi: a VDI of the destination SR
    # base whose backing file is a host file
    "base-backs-on-etc": lambda p, sr_vdi: ([("0.qcow2", p["leaf"]), ("1.qcow2", p["etc"])],
                                            "1.qcow2"),
    # a lone leaf naming a file above the staging dir
    "leaf-backs-outside": lambda p, sr_vdi: ([("0.qcow2", p["up"])], "0.qcow2"),
    # a child naming a VDI of the destination SR instead of the next member
    "child-names-an-sr-vdi": lambda p, sr_vdi: ([("0.qcow2", p["names-sr-vdi"]),
                                                ("1.qcow2", p["base"])], "0.qcow2"),
    "lone-child-of-an-sr-vdi": lambda p, sr_vdi: ([("0.qcow2", p["names-sr-vdi"])], "0.qcow2"),
    "external-data-file": lambda p, sr_vdi: ([("0.qcow2", p["data-file"])], "0.qcow2"),
    "encrypted": lambda p, sr_vdi: ([("0.qcow2", p["encrypted"])], "0.qcow2"),
    "members-swapped": lambda p, sr_vdi: ([("0.qcow2", p["base"]), ("1.qcow2", p["leaf"])],
                                          "0.qcow2"),
    "mixed-formats": lambda p, sr_vdi: ([("0.qcow2", p["leaf"]), ("1.vhd", p["vhd"])],
                                        "1.vhd"),
}


@pytest.fixture(scope="module")
def qcow2_world(tmp_path_factory, parts):
    root = tmp_path_factory.mktemp("hostile-qcow2")
    qparts = _qcow2_parts(str(root))
    qparts["vhd"] = parts.base
    sr_path = make_sr(root / "sr")
    keep, model = build_chain(sr_path, 2, 8 * MiB, seed=6, fmt="qcow2")
    # the leaf, naming the destination SR's base copy as its parent (relative, as SM would)
    from tests.transfer import qcow2_chains as q
    named = str(root / "names-sr-vdi.qcow2")
    with open(named, "wb") as f:
        f.write(qparts["leaf"])
    q.run("qemu-img", "rebase", "-u", "-f", "qcow2", "-F", "qcow2", "-b", keep[1] + ".qcow2", named)
    qparts["names-sr-vdi"] = read(named)
    os.unlink(named)
    return root, sr_path, LocalStore(str(root / "store")), qparts, keep, model.sha256()


@pytest.mark.parametrize("case", sorted(QCOW2_CASES))
def test_qcow2_bundle_refused_and_nothing_changes(qcow2_world, tmp_path, case):
    root, sr_path, store, qparts, keep, keep_sha = qcow2_world
    members, fault = QCOW2_CASES[case](qparts, keep[1])
    path = str(tmp_path / "bundle.tgz")
    with open(path, "wb") as f:
        f.write(tarball([member(n, d) for n, d in members]))
    image_id = transfer.import_image(store, path, case, disk_format="qcow2")
    before_sr, before_all = sr_tree(sr_path), outside_state(str(root))
    with pytest.raises(VhdportError) as info:
        transfer.download(store, image_id, sr_path)
    assert fault in str(info.value), (case, str(info.value))
    assert sr_tree(sr_path) == before_sr
    assert outside_state(str(root)) == before_all
    assert staging_leftovers(sr_path) == []
    assert sorted(SR(sr_path).vdis()) == sorted(keep)
    assert vdi_sha256(sr_path, keep[0]) == keep_sha


def test_qcow2_valid_control_lands(qcow2_world, tmp_path):
    """The good parts in order land: the refusals above are about their faults."""
    root, sr_path, store, qparts, keep, keep_sha = qcow2_world
    path = str(tmp_path / "good.tgz")
    with open(path, "wb") as f:
        f.write(tarball([member("0.qcow2", qparts["leaf"]), member("1.qcow2", qparts["base"])]))
    image_id = transfer.import_image(store, path, "good-qcow2", disk_format="qcow2")
    result = transfer.download(store, image_id, make_sr(tmp_path / "sr"))
    assert len(result["chain"]) == 2
