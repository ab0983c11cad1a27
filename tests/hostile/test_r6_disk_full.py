"""R6: disk full.  Each case mounts a size-limited tmpfs (root only; skipped elsewhere), puts
the SR, the store or the kernel dir on it, and checks: a NoSpaceError saying "no space",
the SR tree unchanged (tree_digest), no staging dir left, no temp files left."""

import errno
import os
import shutil
import subprocess

import pytest

from tests.allowed_skips import allowed_skip

from tests.hostile.conftest import (MIB, bundle_bytes, diff_digests, put_image, tree_digest)
from vhdport import kernel
from vhdport.errors import NoSpaceError
from vhdport.sr import SR
from vhdport.sr.staging import ROOT_LOCK, STAGING_DIR
from vhdport.stores.base import ACTIVE
from vhdport.stores.local import LocalStore
from vhdport.transfer import download, upload
from vhdport.vhd import Chain, create_dynamic, create_snapshot

pytestmark = pytest.mark.timeout(120)


@pytest.fixture
def tmpfs(tmp_path):
    """mount(name, size, nr_inodes=None) -> a fresh tmpfs dir; all unmounted afterwards."""
    if os.geteuid() != 0:
        allowed_skip("tmpfs", "not root")
    mounted = []

    def mount(name, size, nr_inodes=None):
        mnt = str(tmp_path / name)
        os.mkdir(mnt)
        options = "size={}".format(size) + (",nr_inodes={}".format(nr_inodes) if nr_inodes else "")
        done = subprocess.run(["mount", "-t", "tmpfs", "-o", options, "tmpfs", mnt],
                              stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                              universal_newlines=True)
        if done.returncode != 0:
            allowed_skip("tmpfs", done.stdout.strip())
        mounted.append(mnt)
        return mnt
    try:
        yield mount
    finally:
        for mnt in reversed(mounted):
            if subprocess.run(["umount", mnt]).returncode != 0:
                subprocess.run(["umount", "-l", mnt])


def _random_chain(directory, sizes_mib, virtual=16 * MIB):
    """A chain whose level i holds sizes_mib[i] MiB of random (incompressible) data,
    base first in ``sizes_mib``; returns the paths leaf first."""
    os.makedirs(directory, exist_ok=True)
    paths = []
    for level, mib in enumerate(sizes_mib):
        path = os.path.join(directory, "l{}.vhd".format(level))
        if level == 0:
            create_dynamic(path, virtual)
        else:
            create_snapshot(path, os.path.basename(paths[-1]))
        with Chain.open(path, writable=True) as chain:
            chain.write((level * 4 * MIB) % virtual, os.urandom(mib * MIB))
        paths.append(path)
    return list(reversed(paths))


def _fill(directory, keep=0):
    """Fill the filesystem of ``directory`` with a filler file, leaving ~``keep`` bytes."""
    st = os.statvfs(directory)
    room = st.f_bavail * st.f_frsize - keep
    path = os.path.join(directory, "filler")
    fd = os.open(path, os.O_WRONLY | os.O_CREAT, 0o644)
    try:
        block = b"\xa5" * (64 * 1024)
        written = 0
        while written < room:
            try:
                written += os.write(fd, block[:min(len(block), room - written)])
            except OSError as e:
                assert e.errno == errno.ENOSPC
                break
    finally:
        os.close(fd)
    return path


def _sr_on(mnt, template_sr):
    sr = os.path.join(mnt, "sr")
    shutil.copytree(template_sr, sr, symlinks=True)
    return sr


def _assert_no_space_and_unchanged(err, root, before, sr):
    text = str(err)
    assert "no space" in text.lower(), text
    assert "\n" not in text
    after = tree_digest(root)
    assert before == after, diff_digests(before, after)[:5]
    assert sorted(os.listdir(os.path.join(sr, STAGING_DIR))) == [ROOT_LOCK]


@pytest.fixture(scope="module")
def material(tmp_path_factory):
    """Images (bytes) for the download cases, built once."""
    root = str(tmp_path_factory.mktemp("r6"))
    return {
        "one-big-member": bundle_bytes(_random_chain(os.path.join(root, "big"), [12])),
        "fits-one-by-one": bundle_bytes(_random_chain(os.path.join(root, "three"), [3, 3, 3])),
        "bare-vhd": open(_random_chain(os.path.join(root, "bare"), [10])[0], "rb").read(),
        "raw": os.urandom(12 * MIB),
        "small": bundle_bytes(_random_chain(os.path.join(root, "small"), [1])),
    }


DOWNLOADS = {
    # case: (material, disk_format, container_format, fill the SR first?, inode limit)
    "a member larger than the free space (refused before writing)":
        ("one-big-member", "vhd", "ovf", False, None),
    "members that fit one by one but not together (ENOSPC mid-write)":
        ("fits-one-by-one", "vhd", "ovf", False, None),
    "a bare VHD stream (size unknown up front)": ("bare-vhd", "vhd", "bare", False, None),
    "a raw image converted while streaming": ("raw", "raw", "bare", False, None),
    "an SR filled to the last byte": ("small", "vhd", "ovf", True, None),
    "an SR out of inodes": ("small", "vhd", "ovf", False, 12),
}


@pytest.mark.parametrize("name", sorted(DOWNLOADS))
def test_download_into_a_full_sr(name, material, template_sr, tmpfs, tmp_path,
                                 reliability_case):
    case = reliability_case("R6", "download: " + name,
                            "NoSpaceError ('no space'); SR tree unchanged; staging removed")
    key, disk_format, container_format, fill_first, inodes = DOWNLOADS[name]
    mnt = tmpfs("sr-fs", "8m", inodes)
    sr = _sr_on(mnt, template_sr)
    store = LocalStore(str(tmp_path / "store"))
    image = put_image(store, material[key], disk_format, container_format)
    if fill_first:
        _fill(mnt)
    if inodes:
        n = 0
        while True:
            try:
                open(os.path.join(mnt, "i{}".format(n)), "wb").close()
            except OSError as e:
                assert e.errno == errno.ENOSPC
                break
            n += 1
    before = tree_digest(mnt)
    with pytest.raises(NoSpaceError) as info:
        download(store, image, sr)
    _assert_no_space_and_unchanged(info.value, mnt, before, sr)
    # space back: the same download now succeeds (nothing half-done blocks it)
    for entry in os.listdir(mnt):
        if entry == "filler" or (inodes and entry.startswith("i")):
            os.unlink(os.path.join(mnt, entry))
    if key == "small":
        assert download(store, image, sr)["chain"]
    case.detail = str(info.value)


def test_upload_from_a_full_sr(template_sr, tmpfs, tmp_path, reliability_case):
    """Upload staging only hard-links the chain: a full SR must still upload."""
    case = reliability_case("R6", "upload from an SR filled to the last byte",
                            "succeeds (staging is hard links, no data copied); SR unchanged")
    mnt = tmpfs("sr-fs", "8m")
    sr = _sr_on(mnt, template_sr)
    leaf = SR(sr).leaves()[0]
    _fill(mnt)
    before = tree_digest(mnt)
    store = LocalStore(str(tmp_path / "store"))
    image = upload(sr, leaf, store, name="from-full")
    assert store.get(image)["status"] == ACTIVE
    assert tree_digest(mnt) == before
    assert sorted(os.listdir(os.path.join(sr, STAGING_DIR))) == [ROOT_LOCK]
    case.detail = "image {} active".format(image)


def test_upload_into_a_full_store(tmpfs, tmp_path, reliability_case):
    case = reliability_case("R6", "upload into a local store on a full filesystem",
                            "NoSpaceError; the new image removed; SR unchanged; no temp files")
    from tests.hostile.conftest import make_chain  # noqa: F401  (same helpers as R1)
    sr = str(tmp_path / "sr")
    os.mkdir(sr)
    paths = _random_chain(str(tmp_path / "src"), [10])
    store_src = LocalStore(str(tmp_path / "srcstore"))
    download(store_src, put_image(store_src, bundle_bytes(paths)), sr)
    leaf = SR(sr).leaves()[0]
    before = tree_digest(sr)
    mnt = tmpfs("store-fs", "4m")
    store = LocalStore(os.path.join(mnt, "store"))
    with pytest.raises(NoSpaceError) as info:
        upload(sr, leaf, store, name="into-full", compression_level=1)
    assert "no space" in str(info.value).lower()
    assert [r for r in store.list()] == []
    leftovers = [n for n in os.listdir(store.images_dir) if n.endswith((".tmp", ".data"))]
    assert leftovers == []
    assert tree_digest(sr) == before
    case.detail = str(info.value)


def test_kernel_copy_onto_a_full_fs(tmpfs, tmp_path, reliability_case):
    case = reliability_case("R6", "copy_kernel into a kernel dir on a full filesystem",
                            "NoSpaceError; no partial or temp file in the kernel dir")
    sr = str(tmp_path / "sr")
    os.mkdir(sr)
    import uuid
    vdi = str(uuid.uuid4())
    create_dynamic(os.path.join(sr, vdi + ".vhd"), 8 * MIB)
    with Chain.open(os.path.join(sr, vdi + ".vhd"), writable=True) as chain:
        chain.write(0, os.urandom(4 * MIB))
    kdir = tmpfs("kernel-fs", "1m")
    with open(os.path.join(kdir, "existing"), "wb") as f:
        f.write(b"keep")
    with pytest.raises(NoSpaceError) as info:
        kernel.copy_kernel(sr, vdi, 4 * MIB, kernel_dir_path=kdir)
    assert "no space" in str(info.value).lower()
    assert sorted(os.listdir(kdir)) == ["existing"]
    case.detail = str(info.value)
