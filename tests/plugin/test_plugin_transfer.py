"""download_vhd / upload_vhd through the installed plugin against a local image store."""

import hashlib
import os
import subprocess
import uuid

import pytest

from vhdport.bundle import write_bundle
from vhdport.stores.local import LocalStore
from vhdport.vhd import Chain, set_hidden
from tests.plugin.chains import make_chain
from tests.plugin.xapi import call, params_args
from tests.peers.require import require_qemu_img


def virtual_digest(sr_path, leaf_uuid):
    """sha256 of the whole virtual disk read through the chain, and the chain's file names."""
    digest = hashlib.sha256()
    with Chain.open(os.path.join(sr_path, leaf_uuid + ".vhd")) as chain:
        for _, data in chain.iter_blocks():
            digest.update(data)
        names = [os.path.basename(p)[:-4] for p in chain.paths()]
    return digest.hexdigest(), names


def store_bundle(store_path, paths, name="test image"):
    """Put a vhd/ovf bundle of ``paths`` (leaf first) into a local store; return the image id."""
    store = LocalStore(store_path)
    image_id = store.create(name, "vhd", "ovf")["id"]
    members = [("{}.vhd".format(i), p) for i, p in enumerate(paths)]
    store.put(image_id, write_bundle(members))
    return image_id


@pytest.fixture
def image(tmp_path):
    """A local store holding the bundle of a two-file chain: (store, image id, digest)."""
    source = str(tmp_path / "source-sr")
    leaf, base = make_chain(source)
    store = str(tmp_path / "store")
    paths = [os.path.join(source, u + ".vhd") for u in (leaf, base)]
    digest, _ = virtual_digest(source, leaf)
    return store, store_bundle(store, paths), digest


def new_sr(tmp_path, name):
    path = str(tmp_path / name)
    os.makedirs(path)
    return path


@pytest.mark.parametrize("fn", ["download_vhd", "download_vhd2"])
def test_download(plugin, image, tmp_path, fn):
    store, image_id, digest = image
    sr = new_sr(tmp_path, "sr")
    reply = call(plugin, fn, params_args(image_id=image_id, store=store, sr_path=sr))
    result = reply.json()
    leaf = result["root"]["uuid"]
    assert result["chain"][0] == leaf and len(result["chain"]) == 2
    got, names = virtual_digest(sr, leaf)
    assert got == digest
    assert names == result["chain"]


def test_download_with_uuid_stack_then_upload_back(plugin, image, tmp_path):
    store, image_id, digest = image
    sr = new_sr(tmp_path, "sr")
    stack = [str(uuid.uuid4()), str(uuid.uuid4())]
    result = call(plugin, "download_vhd", params_args(
        image_id=image_id, store="file://" + store, sr_path=sr, uuid_stack=stack,
        api_version=2)).json()
    # like the original plugin, uuids are popped from the end of the stack: leaf = last
    assert result == {"root": {"uuid": stack[-1]}, "chain": stack[::-1]}

    reply = call(plugin, "upload_vhd", params_args(
        store=store, sr_path=sr, vdi_uuids=stack[::-1], name="uploaded",
        properties={"os_type": "linux"}, compression_level=1))
    new_id = reply.json()["image_id"]
    assert new_id != image_id
    record = LocalStore(store).get(new_id)
    assert record["status"] == "active" and record["name"] == "uploaded"
    assert record["properties"].get("os_type") == "linux"
    assert record["properties"]["vhdport_content_digest"].startswith("blake2b-256/4MiB:")

    # the uploaded image comes back as the same disk
    sr2 = new_sr(tmp_path, "sr2")
    result = call(plugin, "download_vhd2",
                  params_args(image_id=new_id, store=store, sr_path=sr2)).json()
    assert virtual_digest(sr2, result["root"]["uuid"])[0] == digest


def test_download_verifies_contents_unless_told_not_to(plugin, image, tmp_path):
    """A recorded content digest the landed disk does not match refuses the download."""
    store, image_id, digest = image
    LocalStore(store).update(image_id, properties={
        "vhdport_content_digest": "blake2b-256/4MiB:" + "0" * 64})
    sr = new_sr(tmp_path, "sr")
    code, message = call(plugin, "download_vhd", params_args(
        image_id=image_id, store=store, sr_path=sr)).error
    assert code == "INTEGRITY" and "content digest mismatch" in message
    assert [n for n in os.listdir(sr) if n.endswith(".vhd")] == []
    code, message = call(plugin, "download_vhd", params_args(
        image_id=image_id, store=store, sr_path=sr, verify_contents="no")).error
    assert code == "PLUGIN_ARGS" and "verify_contents" in message
    result = call(plugin, "download_vhd", params_args(
        image_id=image_id, store=store, sr_path=sr, verify_contents=False)).json()
    assert virtual_digest(sr, result["root"]["uuid"])[0] == digest


def test_upload_into_a_queued_image(plugin, tmp_path):
    sr = str(tmp_path / "sr")
    leaf, _ = make_chain(sr)
    store = str(tmp_path / "store")
    image_id = LocalStore(store).create("queued by nova", "vhd", "ovf")["id"]
    reply = call(plugin, "upload_vhd2", params_args(
        image_id=image_id, store=store, sr_path=sr, vdi_uuid=leaf))
    assert reply.json() == {"image_id": image_id}
    assert LocalStore(store).get(image_id)["status"] == "active"


def test_upload_threads_param(plugin, tmp_path):
    sr = str(tmp_path / "sr")
    leaf, _ = make_chain(sr)
    store = str(tmp_path / "store")
    reply = call(plugin, "upload_vhd", params_args(store=store, sr_path=sr, vdi_uuid=leaf,
                                                   name="two threads", threads=2))
    assert LocalStore(store).get(reply.json()["image_id"])["status"] == "active"
    code, message = call(plugin, "upload_vhd", params_args(
        store=store, sr_path=sr, vdi_uuid=leaf, name="bad", threads=0)).error
    assert "'threads' must be a positive integer" in message
    assert [r["name"] for r in LocalStore(store).list()] == ["two threads"]


def test_missing_image(plugin, image, tmp_path):
    store, _, _ = image
    sr = new_sr(tmp_path, "sr")
    missing = str(uuid.uuid4())
    code, message = call(plugin, "download_vhd", params_args(
        image_id=missing, store=store, sr_path=sr)).error
    assert code == "IMAGE_NOT_FOUND"
    assert missing in message
    assert [n for n in os.listdir(sr) if n.endswith(".vhd")] == []


def test_hidden_leaf_in_the_bundle(plugin, tmp_path):
    source = str(tmp_path / "source-sr")
    leaf, base = make_chain(source)
    leaf_path = os.path.join(source, leaf + ".vhd")
    set_hidden(leaf_path, True)
    store = str(tmp_path / "store")
    image_id = store_bundle(store, [leaf_path, os.path.join(source, base + ".vhd")])
    sr = new_sr(tmp_path, "sr")
    code, message = call(plugin, "download_vhd", params_args(
        image_id=image_id, store=store, sr_path=sr)).error
    assert code == "BUNDLE_ERROR"
    assert "hidden" in message and "0.vhd" in message
    assert [n for n in os.listdir(sr) if n.endswith(".vhd")] == []


def test_upload_missing_vdi(plugin, tmp_path):
    sr = new_sr(tmp_path, "sr")
    missing = str(uuid.uuid4())
    code, message = call(plugin, "upload_vhd", params_args(
        store=str(tmp_path / "store"), sr_path=sr, vdi_uuid=missing, name="x")).error
    assert code == "VHD_CHAIN" and missing in message


def test_upload_a_single_vhd_and_back(plugin, tmp_path):
    from vhdport.vhd import create_dynamic
    sr = new_sr(tmp_path, "sr")
    vdi = str(uuid.uuid4())
    path = os.path.join(sr, vdi + ".vhd")
    create_dynamic(path, 4 * 1024 * 1024, uuid=uuid.UUID(vdi))
    with Chain.open(path, writable=True) as chain:
        chain.write(12345, b"kernel-ish bytes" * 1000)
        chain.flush()
    digest, _ = virtual_digest(sr, vdi)
    store = str(tmp_path / "store")
    new_id = call(plugin, "upload_vhd", params_args(
        store=store, sr_path=sr, vdi_uuids=[vdi], name="single")).json()["image_id"]
    sr2 = new_sr(tmp_path, "sr2")
    result = call(plugin, "download_vhd", params_args(
        image_id=new_id, store=store, sr_path=sr2)).json()
    assert len(result["chain"]) == 1
    assert virtual_digest(sr2, result["root"]["uuid"])[0] == digest


def qcow2_round_trip(plugin, tmp_path, python=None):
    """A 3-deep QCOW2 chain made as SM makes it goes out with upload_vhd and comes back with
    download_vhd, same names and arguments as for VHD chains; judged by qemu-img."""
    from tests.transfer import qcow2_chains
    from tests.transfer.helpers import build_chain, chain_shape
    sr = new_sr(tmp_path, "sr-qcow2")
    uuids, _ = build_chain(sr, 3, 16 * 1024 * 1024, dense=True, seed=36, fmt="qcow2")
    store = str(tmp_path / "store")
    kw = {} if python is None else {"python": python}
    new_id = call(plugin, "upload_vhd", params_args(
        store=store, sr_path=sr, vdi_uuids=[uuids[0]], name="qcow2 chain"), **kw).json()["image_id"]
    record = LocalStore(store).get(new_id)
    assert (record["status"], record["disk_format"], record["container_format"]) == \
        ("active", "qcow2", "ovf")
    sr2 = new_sr(tmp_path, "sr2-qcow2")
    stack = [str(uuid.uuid4()) for _ in range(16)]
    result = call(plugin, "download_vhd", params_args(
        image_id=new_id, store=store, sr_path=sr2, uuid_stack=stack), **kw).json()
    assert result["chain"] == stack[::-1][:3]
    leaf = os.path.join(sr2, result["root"]["uuid"] + ".qcow2")
    assert [s[1] for s in chain_shape(sr2, result["root"]["uuid"])] == [False, True, True]
    assert qcow2_chains.backing_names(leaf) == [u + ".qcow2" for u in result["chain"][1:]] + [None]
    for u in result["chain"]:
        qcow2_chains.qemu_check(os.path.join(sr2, u + ".qcow2"))
    assert qcow2_chains.qemu_compare(os.path.join(sr, uuids[0] + ".qcow2"), leaf)
    assert sorted(n for n in os.listdir(sr2) if not n.startswith(".")) == \
        sorted(u + ".qcow2" for u in result["chain"])


def test_qcow2_chain_round_trip(plugin, tmp_path):
    qcow2_round_trip(plugin, tmp_path)


def test_original_mapping_refused_for_a_qcow2_chain(plugin, tmp_path):
    """The original's {"snap": .., "image": ..} names are VHD member names: a QCOW2 chain given
    that way is refused before a byte is sent, saying how to name it."""
    from tests.transfer.helpers import build_chain
    sr = new_sr(tmp_path, "sr-qcow2")
    uuids, _ = build_chain(sr, 2, 4 * 1024 * 1024, seed=37, fmt="qcow2")
    store = str(tmp_path / "store")
    code, message = call(plugin, "upload_vhd", params_args(
        store=store, sr_path=sr, vdi_uuids={"snap": uuids[0], "image": uuids[1]},
        name="legacy")).error
    assert "VHD members only" in message and "0.qcow2 .. N.qcow2" in message, (code, message)
    assert not os.path.isdir(store) or list(LocalStore(store).list()) == []


def qcow2_image(tmp_path, disk_format="qcow2"):
    """A qemu-made v2 QCOW2 (or its raw contents) in a local store: (store, image id, raw)."""
    from tests.qcow2.qemu import qemu_img, qemu_io, require_qemu
    from vhdport import transfer
    require_qemu()
    src = str(tmp_path / "src.qcow2")
    qemu_img("create", "-f", "qcow2", "-o", "compat=0.10", src, "8M")
    qemu_io(src, "write -P 0x42 1M 512k", "write -P 0x43 6M 64k")
    raw = str(tmp_path / "src.raw")
    qemu_img("convert", "-O", "raw", src, raw)
    store = str(tmp_path / "store")
    image_id = transfer.import_image(LocalStore(store), src if disk_format == "qcow2" else raw,
                                     "cloud", disk_format=disk_format, container_format="bare")
    return store, image_id, raw


def landed_file(sr, reply):
    leaf = reply.json()["root"]["uuid"]
    names = [n for n in os.listdir(sr) if not n.startswith(".")]
    assert len(names) == 1 and names[0].startswith(leaf), names
    return os.path.join(sr, names[0])


@pytest.mark.parametrize("disk_format, image_format, suffix", [
    ("qcow2", None, ".qcow2"), ("qcow2", "vhd", ".vhd"), ("raw", None, ".vhd"),
    ("raw", "qcow2", ".qcow2")])
def test_download_cloud_image_with_image_format(plugin, tmp_path, disk_format, image_format,
                                                suffix):
    from tests.qcow2.qemu import qemu_img
    store, image_id, raw = qcow2_image(tmp_path, disk_format)
    sr = new_sr(tmp_path, "sr")
    params = dict(image_id=image_id, store=store, sr_path=sr)
    if image_format:
        params["image_format"] = image_format
    path = landed_file(sr, call(plugin, "download_vhd", params_args(**params)))
    assert path.endswith(suffix)
    proc = qemu_img("compare", "-f", "qcow2" if suffix == ".qcow2" else "vpc", "-F", "raw",
                    path, raw, check=False)
    assert proc.returncode == 0, proc.stdout


def test_download_bad_image_format(plugin, tmp_path):
    store, image_id, _raw = qcow2_image(tmp_path)
    sr = new_sr(tmp_path, "sr")
    for bad, words in (("vmdk", "'vmdk' is not one of"), ("", "must be a non-empty str")):
        code, message = call(plugin, "download_vhd", params_args(
            image_id=image_id, store=store, sr_path=sr, image_format=bad)).error
        assert words in message, message
    assert os.listdir(sr) == [] or all(n.startswith(".") for n in os.listdir(sr))


@pytest.mark.parametrize("image_format", ["qcow2", "raw"])
def test_upload_as_a_flat_image_for_kvm(plugin, tmp_path, image_format):
    qemu_img = require_qemu_img()
    sr = str(tmp_path / "sr")
    leaf, _ = make_chain(sr)
    digest, _ = virtual_digest(sr, leaf)
    store = str(tmp_path / "store")
    reply = call(plugin, "upload_vhd", params_args(store=store, sr_path=sr, vdi_uuid=leaf,
                                                   name="for kvm", image_format=image_format))
    record = LocalStore(store).get(reply.json()["image_id"])
    assert (record["disk_format"], record["container_format"], record["status"]) == (
        image_format, "bare", "active")
    stored, raw = str(tmp_path / "stored"), str(tmp_path / "raw")
    with LocalStore(store).open(record["id"]) as stream, open(stored, "wb") as f:
        f.write(stream.read())
    subprocess.run([qemu_img, "convert", "-f", image_format, "-O", "raw", stored, raw], check=True)
    with open(raw, "rb") as f:
        assert hashlib.sha256(f.read()).hexdigest() == digest


def test_upload_image_format_that_is_no_choice(plugin, tmp_path):
    sr = str(tmp_path / "sr")
    leaf, _ = make_chain(sr)
    store = str(tmp_path / "store")
    code, message = call(plugin, "upload_vhd", params_args(
        store=store, sr_path=sr, vdi_uuid=leaf, name="x", image_format="vmdk")).error
    assert "cannot upload as 'vmdk'" in message and "bundle, qcow2, raw" in message
    assert not os.path.exists(store)
