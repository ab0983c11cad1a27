"""``upload --as qcow2|raw``: an SR chain as one flat image, into the local store and a REAL Glance.

The stored bytes are read back and turned into raw by qemu-img; their sha256 must be the one
the model of the writes gives (not one read back through vhdport's own chain reader).
"""

import hashlib
import json
import os
import pathlib
import random
import subprocess
import time
import urllib.request
import uuid

import pytest

from tests.peers.glance_server import glance_auth  # noqa: F401  (the session's Glance)
from tests.peers.require import require_qemu_img
from tests.transfer.helpers import (MiB, build_chain, make_sr, sr_tree, staging_leftovers,
                                    vdi_sha256)
from vhdport import disk, transfer
from vhdport.errors import StoreError, VhdportError
from vhdport.stores.glance import GlanceStore
from vhdport.stores.local import LocalStore
from vhdport.transfer import flat

QEMU_IMG = "/usr/bin/qemu-img"
QEMU_IO = "/usr/bin/qemu-io"
SYSTEM_PYTHON = "/usr/bin/python3"


@pytest.fixture(autouse=True)
def _qemu():
    require_qemu_img()


def fetch(store, image_id, path):
    """The stored bytes, to a file; return their size."""
    size = 0
    with store.open(image_id) as stream, open(str(path), "wb") as out:
        while True:
            data = stream.read(MiB)
            if not data:
                return size
            out.write(data)
            size += len(data)


def raw_sha256(path, disk_format, tmp_path):
    """sha256 of the image's contents as qemu-img sees them (converted to raw first)."""
    out = tmp_path / "converted.raw"
    subprocess.run([QEMU_IMG, "convert", "-f", disk_format, "-O", "raw", str(path), str(out)],
                   check=True)
    h = hashlib.sha256()
    with open(str(out), "rb") as f:
        for block in iter(lambda: f.read(4 * MiB), b""):
            h.update(block)
    os.unlink(str(out))
    return h.hexdigest()


def qemu_check(path):
    proc = subprocess.run([QEMU_IMG, "check", "--output=json", "-f", "qcow2", str(path)],
                          stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                          universal_newlines=True)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    report = json.loads(proc.stdout)
    assert report.get("corruptions", 0) == 0 and report.get("leaks", 0) == 0, report
    return report


def assert_image(store, image_id, as_format, size, expected, tmp_path):
    """Active, recorded as what it is, and its bytes are the chain's contents."""
    record = store.get(image_id)
    assert record["status"] == "active"
    assert (record["disk_format"], record["container_format"]) == (as_format, "bare")
    stored = tmp_path / "stored.img"
    assert fetch(store, image_id, stored) == record["size"]
    if as_format == "qcow2":
        report = qemu_check(stored)
        assert report.get("image-end-offset") == record["size"]
        info = json.loads(subprocess.run(
            [QEMU_IMG, "info", "--output=json", "-f", "qcow2", str(stored)],
            stdout=subprocess.PIPE, check=True).stdout)
        assert info["virtual-size"] == size and "backing-filename" not in info
    else:
        assert record["size"] == size
    assert raw_sha256(stored, as_format, tmp_path) == expected
    # the content digest recorded from the SR chain is the flat image's own
    assert record["properties"].get("vhdport_content_digest") == str(disk.content_digest(stored))
    return record, stored


@pytest.fixture
def env(tmp_path):
    class Env(object):
        src = make_sr(tmp_path / "sr-src")
        store = LocalStore(str(tmp_path / "store"))
    return Env


CASES = [(1, 8 * MiB + 512 * 3, False), (2, 48 * MiB, True), (3, 40 * MiB, False)]


@pytest.mark.parametrize("as_format", ["qcow2", "raw"])
@pytest.mark.parametrize("depth,size,dense", CASES,
                         ids=["d{}-{}-{}".format(d, s, "dense" if x else "sparse")
                              for d, s, x in CASES])
def test_vhd_chain_uploads_flat_to_the_local_store(env, tmp_path, as_format, depth, size, dense):
    uuids, model = build_chain(env.src, depth, size, dense=dense, seed=depth * 7 + size)
    expected = model.sha256()
    before = sr_tree(env.src)
    image_id = transfer.upload(env.src, uuids[0], env.store, name="flat", as_format=as_format,
                               properties={"os_distro": "debian"})
    record, _ = assert_image(env.store, image_id, as_format, size, expected, tmp_path)
    assert record["properties"].get("os_distro") == "debian"
    assert sr_tree(env.src) == before and staging_leftovers(env.src) == []


def test_flat_qcow2_of_a_sparse_disk_is_small(env, tmp_path):
    uuids, model = build_chain(env.src, 2, 256 * MiB, seed=5)
    image_id = transfer.upload(env.src, uuids[0], env.store, name="flat", as_format="qcow2")
    record, _ = assert_image(env.store, image_id, "qcow2", 256 * MiB, model.sha256(), tmp_path)
    assert record["size"] < 64 * MiB        # allocated clusters and tables only


def test_progress_counts_up_to_the_known_size(env):
    uuids, _ = build_chain(env.src, 1, 8 * MiB, seed=1)
    seen = []
    transfer.upload(env.src, uuids[0], env.store, name="flat", as_format="qcow2",
                    progress=lambda sent, total: seen.append((sent, total)))
    total = seen[-1][1]
    assert total is not None and seen[-1][0] == total
    assert all(t == total for _s, t in seen)


def test_into_a_queued_image_of_the_same_formats(env, tmp_path):
    uuids, model = build_chain(env.src, 2, 8 * MiB, seed=2)
    image_id = env.store.create("flat", disk_format="raw", container_format="bare")["id"]
    assert transfer.upload(env.src, uuids[0], env.store, image_id=image_id,
                           as_format="raw") == image_id
    assert_image(env.store, image_id, "raw", 8 * MiB, model.sha256(), tmp_path)


def test_a_queued_image_of_other_formats_is_refused_untouched(env):
    uuids, _ = build_chain(env.src, 1, 8 * MiB, seed=3)
    image_id = env.store.create("nova", disk_format="vhd", container_format="ovf")["id"]
    with pytest.raises(StoreError, match="disk_format=vhd container_format=ovf.*flat qcow2"):
        transfer.upload(env.src, uuids[0], env.store, image_id=image_id, as_format="qcow2")
    assert env.store.get(image_id)["status"] == "queued"
    assert staging_leftovers(env.src) == []


def test_an_unknown_format_is_refused_before_anything(env):
    uuids, _ = build_chain(env.src, 1, 8 * MiB, seed=4)
    before = sr_tree(env.src)
    with pytest.raises(StoreError, match="cannot upload as 'vmdk'.*bundle, qcow2, raw"):
        transfer.upload(env.src, uuids[0], env.store, name="x", as_format="vmdk")
    assert not os.path.exists(env.store.root) and sr_tree(env.src) == before


def test_a_read_failure_mid_stream_leaves_no_image(env):
    """The base shrinks under the upload (a broken disk): the store keeps nothing."""
    uuids, _ = build_chain(env.src, 2, 32 * MiB, dense=True, seed=6)
    base = os.path.join(env.src, uuids[1] + ".vhd")

    def cut(sent, total):
        if sent and os.path.getsize(base) > MiB:
            os.truncate(base, MiB)

    with pytest.raises(VhdportError):
        transfer.upload(env.src, uuids[0], env.store, name="flat", as_format="raw", progress=cut)
    assert list(env.store.list()) == [] and staging_leftovers(env.src) == []


def test_the_as_choices():
    assert flat.AS_FORMATS == ("bundle", "qcow2", "raw")
    assert not flat.is_flat(None) and not flat.is_flat("bundle") and flat.is_flat("raw")


# --------------------------------------------------------------------- Glance


def glance_image(server, image_id):
    """The image as Glance's API shows it (virtual_size is what its format inspector found)."""
    request = urllib.request.Request("{}/v2/images/{}".format(server.url, image_id),
                                     headers={"X-Auth-Token": server.token})
    with urllib.request.urlopen(request, timeout=20) as response:
        return json.loads(response.read().decode("utf-8"))


def glance_inspects(path, disk_format):
    """Glance's own format inspector (the packaged one) over the bytes: (match, size, safe)."""
    script = ("import sys\nfrom glance.common import format_inspector as fi\n"
              "insp = fi.get_inspector(sys.argv[2])()\n"
              "with open(sys.argv[1], 'rb') as f:\n"
              "    for chunk in iter(lambda: f.read(65536), b''):\n"
              "        insp.eat_chunk(chunk)\n"
              "print(insp.format_match, insp.virtual_size, insp.safety_check())\n")
    env = {"PATH": "/usr/bin:/bin", "HOME": os.environ.get("HOME", "/tmp")}
    out = subprocess.run([SYSTEM_PYTHON, "-c", script, str(path), disk_format], env=env,
                         stdout=subprocess.PIPE, check=True, universal_newlines=True).stdout
    match, size, safe = out.split()
    return match == "True", int(size), safe == "True"


@pytest.mark.peer
@pytest.mark.parametrize("source", ["vhd", "qcow2"])
@pytest.mark.parametrize("as_format", ["qcow2", "raw"])
def test_flat_upload_to_the_real_glance(glance_auth, tmp_path, as_format, source):  # noqa: F811
    src = make_sr(tmp_path / "sr")
    size = 40 * MiB
    if source == "vhd":
        uuids, model = build_chain(src, 3, size, dense=True, seed=77)
        leaf, expected = uuids[0], model.sha256()
        assert vdi_sha256(src, leaf) == expected
    else:
        leaf, expected = qcow2_chain(src, 3, size, seed=77)
    store = GlanceStore(glance_auth.url, auth_token=glance_auth.token, retry_delay=0.01,
                        timeout=20)
    started = time.monotonic()
    image_id = transfer.upload(src, leaf, store, name="vhdport-flat-" + as_format,
                               as_format=as_format, properties={"vhdport-test": "flat"})
    try:
        assert time.monotonic() - started < 60
        _record, stored = assert_image(store, image_id, as_format, size, expected, tmp_path)
        # Glance inspected the bytes in flight as the recorded format and found the disk size
        assert glance_image(glance_auth, image_id)["virtual_size"] == size
        if as_format == "qcow2":
            assert glance_inspects(stored, "qcow2") == (True, size, True)
    finally:
        store.delete(image_id)


@pytest.mark.peer
def test_flat_qcow2_through_glances_import_workflow(glance_auth, tmp_path):  # noqa: F811
    """An import-only cloud: staged with glance-direct, then imported; Glance inspects it."""
    src = make_sr(tmp_path / "sr")
    uuids, model = build_chain(src, 2, 16 * MiB, dense=True, seed=3)
    store = GlanceStore(glance_auth.url, auth_token=glance_auth.token, retry_delay=0.01,
                        timeout=20)
    store.place_uploads(use_import=True)
    image_id = transfer.upload(src, uuids[0], store, name="vhdport-flat-import",
                               as_format="qcow2")
    try:
        assert_image(store, image_id, "qcow2", 16 * MiB, model.sha256(), tmp_path)
        assert glance_image(glance_auth, image_id)["virtual_size"] == 16 * MiB
    finally:
        store.delete(image_id)


# ---------------------------------------------------------------- QCOW2 chains


def qcow2_chain(sr_path, depth, size, seed):
    """A chain of ``depth`` QCOW2 VDIs as SM makes them (qemu-img, relative backing names,
    hidden parents); return (leaf uuid, sha256 of its contents as qemu-img reads them)."""
    rng = random.Random(seed)
    names = [str(uuid.UUID(int=rng.getrandbits(128), version=4)) for _ in range(depth)]
    parent = None
    for level, name in enumerate(names):
        path = os.path.join(sr_path, name + ".qcow2")
        args = [QEMU_IMG, "create", "-q", "-f", "qcow2"]
        if parent:
            args += ["-F", "qcow2", "-b", parent + ".qcow2"]
        subprocess.run(args + [path, str(size)], check=True)
        writes = []
        for _ in range(6):
            length = rng.randrange(1, 300) * 1024
            offset = rng.randrange(0, size - length)
            writes += ["-c", "write -P {} {} {}".format(rng.randrange(1, 255), offset, length)]
        writes += ["-c", "write -z {} 64k".format(rng.randrange(0, size // 65536) * 65536)]
        if level == 0:
            writes += ["-c", "write -P 7 {} 512".format(size - 512)]
        subprocess.run([QEMU_IO, "-f", "qcow2"] + writes + [path], check=True,
                       stdout=subprocess.DEVNULL)
        if parent:
            disk.for_path(path).set_hidden(os.path.join(sr_path, parent + ".qcow2"), True)
        parent = name
    leaf = os.path.join(sr_path, parent + ".qcow2")
    return parent, raw_sha256(leaf, "qcow2", pathlib.Path(sr_path).parent)


@pytest.mark.parametrize("as_format", ["qcow2", "raw"])
@pytest.mark.parametrize("depth", [1, 2, 3])
def test_qcow2_chain_uploads_flat(env, tmp_path, as_format, depth):
    size = 24 * MiB + 64 * 1024 * 3
    leaf, expected = qcow2_chain(env.src, depth, size, seed=depth)
    before = sr_tree(env.src)
    image_id = transfer.upload(env.src, leaf, env.store, name="flat", as_format=as_format)
    assert_image(env.store, image_id, as_format, size, expected, tmp_path)
    assert sr_tree(env.src) == before and staging_leftovers(env.src) == []


def test_a_huge_sparse_qcow2_chain_uploads_flat_fast(env, tmp_path):
    size = 5 * (1 << 40) // 2                     # 2.5 TiB: a QCOW2 VDI, over VHD's limit
    base, leaf = (os.path.join(env.src, str(uuid.uuid4()) + ".qcow2") for _ in range(2))
    subprocess.run([QEMU_IMG, "create", "-q", "-f", "qcow2", base, str(size)], check=True)
    subprocess.run([QEMU_IO, "-f", "qcow2", "-c", "write -P 1 0 1M", "-c", "write -P 2 1T 64k",
                    "-c", "write -P 3 {} 512".format(size - 512), base], check=True,
                   stdout=subprocess.DEVNULL)
    subprocess.run([QEMU_IMG, "create", "-q", "-f", "qcow2", "-F", "qcow2", "-b",
                    os.path.basename(base), leaf, str(size)], check=True)
    subprocess.run([QEMU_IO, "-f", "qcow2", "-c", "write -P 4 2000G 2M", leaf], check=True,
                   stdout=subprocess.DEVNULL)
    disk.for_path(base).set_hidden(base, True)
    started = time.monotonic()
    image_id = transfer.upload(env.src, os.path.basename(leaf)[:-len(".qcow2")], env.store,
                               name="huge", as_format="qcow2")
    assert time.monotonic() - started < 20         # about a second here
    record = env.store.get(image_id)
    assert record["size"] < 8 * MiB
    stored = tmp_path / "stored.qcow2"
    fetch(env.store, image_id, stored)
    qemu_check(stored)
    proc = subprocess.run([QEMU_IMG, "compare", "-f", "qcow2", "-F", "qcow2", leaf, str(stored)],
                          stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                          universal_newlines=True)
    assert proc.returncode == 0, proc.stdout
