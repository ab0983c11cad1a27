"""Bare QCOW2 and raw images (vhdport.transfer.images) from a local store and the REAL Glance into
an SR: made with qemu-img / qemu-io (compressed and zero clusters, v2 and v3, other cluster
sizes), landed in SM's layout (or as a VHD), and compared with their source by qemu-img."""

import os
import time

import pytest

from tests.peers.glance_server import glance_auth  # noqa: F401
from tests.qcow2.qemu import qemu_img, qemu_io, require_qemu
from tests.qcow2.qemu import check as qemu_check
from tests.transfer.helpers import make_sr, staging_leftovers
from vhdport import disk, transfer
from vhdport.errors import IntegrityError, LimitError, StoreError
from vhdport.qcow2.format.header import EXT_HIDDEN
from vhdport.qcow2.untrusted import StoreImage, sm_layout_problems
from vhdport.sr import SR
from vhdport.stores.glance import GlanceStore
from vhdport.stores.local import LocalStore
from vhdport.vhd import Chain

MiB, TiB = 1 << 20, 1 << 40


@pytest.fixture(autouse=True)
def _qemu():
    require_qemu()


@pytest.fixture
def local(tmp_path):
    return LocalStore(str(tmp_path / "store"))


def made_qcow2(tmp_path, name, options=(), compressed=False, size="40M"):
    """A qemu-made QCOW2 with data, a zero cluster over data and holes; and its raw contents."""
    path = str(tmp_path / name)
    args = ["create", "-f", "qcow2"]
    for opt in options:
        args += ["-o", opt]
    qemu_img(*(args + [path, size]))
    writes = ["write -P 0x5a 0 1M", "write -P 0x3c 7M 200k", "write -P 0x11 33M 64k"]
    if "compat=0.10" not in options:
        writes.append("write -z 7M 64k")
    qemu_io(path, *writes)
    if compressed:
        qemu_img(*(["convert", "-c", "-O", "qcow2"] + sum((["-o", o] for o in options), []) +
                   [path, path + ".c"]))
        os.replace(path + ".c", path)
    raw = path + ".raw"
    qemu_img("convert", "-f", "qcow2", "-O", "raw", path, raw)
    return path, raw


def landed(sr, result):
    """The one file the download left in the SR, and its format."""
    leaf = result["root"]["uuid"]
    assert result["chain"] == [leaf]
    names = [n for n in os.listdir(sr) if n.startswith(leaf)]
    assert len(names) == 1, names
    assert staging_leftovers(sr) == []
    assert SR(sr).chain_paths(leaf) == [os.path.join(sr, names[0])]    # the SR's scan sees it
    return os.path.join(sr, names[0]), disk.for_file_name(names[0])


def assert_same_as_raw(path, fmt, raw):
    if fmt.name == "qcow2":
        qemu_check(path)
        with StoreImage(path, "landed") as image:
            assert sm_layout_problems(image) == []
            assert image.image.header.extension(EXT_HIDDEN).data == bytes(8)
        proc = qemu_img("compare", "-f", "qcow2", "-F", "raw", path, raw, check=False)
    else:
        assert fmt.check_file(path) == []
        with Chain.open(path) as chain:
            assert not chain.leaf.hidden
        proc = qemu_img("compare", "-f", "vpc", "-F", "raw", path, raw, check=False)
        if proc.returncode != 0:      # qemu's vpc may round the size by CHS: compare ourselves
            with Chain.open(path) as chain, open(raw, "rb") as f:
                for offset, data in chain.iter_blocks():
                    assert f.read(len(data)) == bytes(data), offset
            return
    assert proc.returncode == 0, proc.stdout + proc.stderr


QCOW2_CASES = [
    ("v3", [], False), ("v3-compressed", [], True), ("v2", ["compat=0.10"], False),
    ("v2-compressed", ["compat=0.10"], True), ("512b-clusters", ["cluster_size=512"], False),
    ("2m-clusters", ["cluster_size=2M"], False), ("refcount-8", ["refcount_bits=8"], False),
]


@pytest.mark.parametrize("label, options, compressed", QCOW2_CASES,
                         ids=[c[0] for c in QCOW2_CASES])
def test_qcow2_image_lands_as_qcow2(tmp_path, local, label, options, compressed):
    src, raw = made_qcow2(tmp_path, "src.qcow2", options, compressed)
    image_id = transfer.import_image(local, src, label, disk_format="qcow2",
                                     container_format="bare")
    sr = make_sr(tmp_path / "sr")
    path, fmt = landed(sr, transfer.download(local, image_id, sr))
    assert fmt is disk.by_name("qcow2")
    assert_same_as_raw(path, fmt, raw)


@pytest.mark.parametrize("options, compressed", [([], True), (["compat=0.10"], False)])
def test_qcow2_image_lands_as_vhd_when_asked(tmp_path, local, options, compressed):
    src, raw = made_qcow2(tmp_path, "src.qcow2", options, compressed)
    image_id = transfer.import_image(local, src, "q", disk_format="qcow2",
                                     container_format="bare")
    sr = make_sr(tmp_path / "sr")
    path, fmt = landed(sr, transfer.download(local, image_id, sr, image_format="vhd"))
    assert fmt is disk.by_name("vhd")
    assert_same_as_raw(path, fmt, raw)


def test_sm_layout_image_is_adopted_byte_for_byte(tmp_path, local):
    src, raw = made_qcow2(tmp_path, "src.qcow2")
    disk.by_name("qcow2").set_hidden(src, False)        # exactly what SM would hold
    image_id = transfer.import_image(local, src, "sm", disk_format="qcow2",
                                     container_format="bare")
    sr = make_sr(tmp_path / "sr")
    path, fmt = landed(sr, transfer.download(local, image_id, sr))
    with open(src, "rb") as a, open(path, "rb") as b:
        assert a.read() == b.read()
    assert_same_as_raw(path, fmt, raw)


def raw_image(tmp_path, size=24 * MiB):
    raw = str(tmp_path / "src.raw")
    with open(raw, "wb") as f:
        f.truncate(size)
        f.seek(3 * MiB)
        f.write(os.urandom(MiB + 4096))
    return raw


@pytest.mark.parametrize("image_format, expected", [(None, "vhd"), ("vhd", "vhd"),
                                                    ("qcow2", "qcow2")])
def test_raw_image_lands_by_sm_rule_or_as_asked(tmp_path, local, image_format, expected):
    raw = raw_image(tmp_path)
    image_id = transfer.import_image(local, raw, "r", disk_format="raw", container_format="bare")
    sr = make_sr(tmp_path / "sr")
    path, fmt = landed(sr, transfer.download(local, image_id, sr, image_format=image_format))
    assert fmt is disk.by_name(expected)
    assert_same_as_raw(path, fmt, raw)


def test_too_large_for_vhd_is_refused_before_spooling(tmp_path, local):
    src = str(tmp_path / "big.qcow2")
    qemu_img("create", "-f", "qcow2", src, "3T")
    image_id = transfer.import_image(local, src, "b", disk_format="qcow2",
                                     container_format="bare")
    sr = make_sr(tmp_path / "sr")
    with pytest.raises(LimitError):
        transfer.download(local, image_id, sr, image_format="vhd")
    assert [n for n in os.listdir(sr) if not n.startswith(".")] == []


def test_image_format_is_refused_for_a_bare_vhd(tmp_path, local):
    vhd = str(tmp_path / "a.vhd")
    disk.by_name("vhd").create(vhd, 4 * MiB)
    image_id = transfer.import_image(local, vhd, "v", disk_format="vhd", container_format="bare")
    with pytest.raises(StoreError):
        transfer.download(local, image_id, make_sr(tmp_path / "sr"), image_format="qcow2")


def test_stream_longer_than_its_record_stops(tmp_path, local):
    src, _raw = made_qcow2(tmp_path, "src.qcow2")
    image_id = transfer.import_image(local, src, "l", disk_format="qcow2",
                                     container_format="bare")
    blob = [os.path.join(local.images_dir, image_id + ".data")]
    with open(blob[0], "ab") as f:          # the store now serves more than it recorded
        f.write(os.urandom(3 * MiB))
    sr = make_sr(tmp_path / "sr")
    with pytest.raises(IntegrityError):
        transfer.download(local, image_id, sr)
    assert [n for n in os.listdir(sr) if not n.startswith(".")] == []


def test_3tib_sparse_qcow2_downloads_fast(tmp_path, local):
    src = str(tmp_path / "big.qcow2")
    qemu_img("create", "-f", "qcow2", "-o", "cluster_size=1M", src, "3T")
    qemu_io(src, "write -P 1 0 2M", "write -P 2 2T 1M", "write -P 3 3071G 1M")
    image_id = transfer.import_image(local, src, "big", disk_format="qcow2",
                                     container_format="bare")
    sr = make_sr(tmp_path / "sr")
    start = time.monotonic()
    path, fmt = landed(sr, transfer.download(local, image_id, sr))
    assert time.monotonic() - start < 15
    assert fmt is disk.by_name("qcow2")
    qemu_check(path)
    proc = qemu_img("compare", "-f", "qcow2", "-F", "qcow2", path, src, check=False)
    assert proc.returncode == 0, proc.stdout + proc.stderr


# --- the real Glance --------------------------------------------------------------------------


@pytest.fixture
def glance(glance_auth):  # noqa: F811
    store = GlanceStore(glance_auth.url, auth_token=glance_auth.token, retry_delay=0.01,
                        timeout=20)
    made = []
    yield store, made
    for image_id in made:
        try:
            store.delete(image_id)
        except Exception:
            pass


@pytest.mark.peer
@pytest.mark.parametrize("label, options, compressed", [QCOW2_CASES[1], QCOW2_CASES[2],
                                                        QCOW2_CASES[5]],
                         ids=["v3-compressed", "v2", "2m-clusters"])
def test_glance_qcow2_image_into_sr(tmp_path, glance, label, options, compressed):
    store, made = glance
    src, raw = made_qcow2(tmp_path, "src.qcow2", options, compressed)
    image_id = transfer.import_image(store, src, "vhdport-" + label, disk_format="qcow2",
                                     container_format="bare")
    made.append(image_id)
    sr = make_sr(tmp_path / "sr")
    path, fmt = landed(sr, transfer.download(store, image_id, sr))
    assert fmt is disk.by_name("qcow2")
    assert_same_as_raw(path, fmt, raw)
    sr2 = make_sr(tmp_path / "sr2")
    path, fmt = landed(sr2, transfer.download(store, image_id, sr2, image_format="vhd"))
    assert_same_as_raw(path, fmt, raw)


@pytest.mark.peer
def test_glance_raw_image_into_sr(tmp_path, glance):
    store, made = glance
    raw = raw_image(tmp_path)
    image_id = transfer.import_image(store, raw, "vhdport-raw", disk_format="raw",
                                     container_format="bare")
    made.append(image_id)
    for image_format, expected in ((None, "vhd"), ("qcow2", "qcow2")):
        sr = make_sr(tmp_path / ("sr-" + expected))
        path, fmt = landed(sr, transfer.download(store, image_id, sr, image_format=image_format))
        assert fmt is disk.by_name(expected)
        assert_same_as_raw(path, fmt, raw)


def test_memory_stays_flat_while_spooling_and_rewriting(tmp_path, local):
    import tracemalloc
    src = str(tmp_path / "dense.qcow2")
    qemu_img("create", "-f", "qcow2", "-o", "compat=0.10", src, "256M")     # rewritten
    qemu_io(src, "write -P 0x6b 0 128M")
    image_id = transfer.import_image(local, src, "dense", disk_format="qcow2",
                                     container_format="bare")
    sr = make_sr(tmp_path / "sr")
    tracemalloc.start()
    try:
        path, fmt = landed(sr, transfer.download(local, image_id, sr))
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert fmt is disk.by_name("qcow2")
    assert peak < 40 * MiB, peak            # 128 MiB of data went through, twice
    proc = qemu_img("compare", "-f", "qcow2", "-F", "qcow2", path, src, check=False)
    assert proc.returncode == 0, proc.stdout
