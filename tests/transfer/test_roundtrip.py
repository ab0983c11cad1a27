"""Upload a generated SR chain to a local store, download it into another SR, compare.

VHD chains and QCOW2 chains (made as SM makes them) alike.  Contents are compared
three ways: the model of the writes, the source chain and the downloaded chain (each
read through vhdport's engines; QCOW2 also by ``qemu-img compare``); the shape from
the files themselves; and vhd.check / ``qemu-img check`` over the new chain.
"""

import hashlib
import os

import pytest

from tests.transfer import qcow2_chains
from tests.transfer.helpers import (FORMATS, MiB, allocated_bytes, assert_model_written,
                                    build_chain, chain_shape, format_of, make_sr,
                                    new_uuid, sr_tree, staging_leftovers, vdi_file, vdi_sha256,
                                    write_into)
from vhdport import transfer
from vhdport.errors import ImageStateError, SRError, StoreError, VhdportError
from vhdport.sr import SR
from vhdport.stores.local import LocalStore
from vhdport.qcow2 import set_hidden as qcow2_set_hidden
from vhdport.vhd import VhdFile
from vhdport.vhd.check import check_chain

CASES = [
    # depth, virtual size, dense
    (1, 8 * MiB, False),
    (1, 48 * MiB, True),
    (2, 64 * MiB, True),
    (3, 200 * MiB, False),
    (4, 32 * MiB, True),
    (5, 200 * MiB, True),
    (5, 16 * MiB, False),
]


@pytest.fixture
def env(tmp_path):
    class Env(object):
        src = make_sr(tmp_path / "sr-src")
        dst = make_sr(tmp_path / "sr-dst")
        store = LocalStore(str(tmp_path / "store"))
    return Env


def internal_uuids(sr_path, leaf_uuid):
    out = []
    for path in SR(sr_path).chain_paths(leaf_uuid):
        with VhdFile.open(path) as disk:
            out.append(str(disk.uuid))
    return out


def assert_same_chain(src_sr, src_leaf, dst_sr, result, expected_sha):
    """Contents, shape, hidden flags, check, fresh names: everything a round trip must keep."""
    leaf = result["root"]["uuid"]
    chain = result["chain"]
    assert chain[0] == leaf
    src_shape, dst_shape = chain_shape(src_sr, src_leaf), chain_shape(dst_sr, leaf)
    assert [s[0] for s in dst_shape] == chain
    assert len(dst_shape) == len(src_shape)
    # leaf visible, every parent hidden, sizes and differencing flags as in the source
    assert [s[1] for s in dst_shape] == [False] + [True] * (len(chain) - 1)
    assert [s[3:] for s in dst_shape] == [s[3:] for s in src_shape]
    # fresh VDI names, none reused from the source SR, all distinct
    assert len(set(chain)) == len(chain)
    assert not set(chain) & set(SR(src_sr).vdis())
    src_file, dst_file = vdi_file(src_sr, src_leaf), vdi_file(dst_sr, leaf)
    assert format_of(dst_file) == format_of(src_file)
    if format_of(dst_file) == "qcow2":
        # each child names its parent relatively, <uuid>.qcow2, as SM's snapshot does
        assert qcow2_chains.backing_names(dst_file) == [u + ".qcow2" for u in chain[1:]] + [None]
        assert [s[2] for s in dst_shape] == chain[1:] + [None]
        for u in chain:
            qcow2_chains.qemu_check(os.path.join(dst_sr, u + ".qcow2"))
        assert qcow2_chains.qemu_chain_depth(dst_file) == len(chain)
        if all(n is None or "/" not in n for n in qcow2_chains.backing_names(src_file)):
            assert qcow2_chains.qemu_compare(src_file, dst_file)
    else:
        # each child records its parent's internal uuid (the VHDs keep theirs)
        dst_internal = internal_uuids(dst_sr, leaf)
        assert dst_internal == internal_uuids(src_sr, src_leaf)
        assert [s[2] for s in dst_shape] == dst_internal[1:] + [None]
        assert check_chain(dst_file) == []
    assert vdi_sha256(dst_sr, leaf) == expected_sha
    assert staging_leftovers(dst_sr) == []


@pytest.mark.parametrize("fmt", FORMATS)
@pytest.mark.parametrize("depth,size,dense", CASES,
                         ids=["d{}-{}M-{}".format(d, s // MiB, "dense" if x else "sparse")
                              for d, s, x in CASES])
def test_roundtrip(env, depth, size, dense, fmt):
    uuids, model = build_chain(env.src, depth, size, dense=dense, seed=depth * 1000 + size,
                               fmt=fmt)
    expected = model.sha256()
    assert vdi_sha256(env.src, uuids[0]) == expected
    before = sr_tree(env.src)

    image_id = transfer.upload(env.src, uuids[0], env.store, name="rt-{}".format(depth),
                               properties={"vhdport-test": "roundtrip"})
    # the upload only reads the source SR and cleans its staging up
    assert sr_tree(env.src) == before
    assert staging_leftovers(env.src) == []
    record = env.store.get(image_id)
    assert (record["status"], record["disk_format"], record["container_format"]) == \
        ("active", fmt, "ovf")
    # the content digest of the chain, as the model of the writes defines it
    assert record["properties"] == {"vhdport-test": "roundtrip",
                                    "vhdport_content_digest": model.content_digest()}

    result = transfer.download(env.store, image_id, env.dst)
    assert_same_chain(env.src, uuids[0], env.dst, result, expected)
    # the SR holds exactly the new chain
    assert sorted(SR(env.dst).vdis()) == sorted(result["chain"])


@pytest.mark.parametrize("fmt", FORMATS)
def test_xenserver_snapshot_chain(env, fmt):
    """A chain made the XenServer way (SR.snapshot), with writes between snapshots."""
    vdi, model = build_chain(env.src, 1, 40 * MiB, dense=True, seed=7, fmt=fmt)
    vdi = vdi[0]
    sr = SR(env.src)
    snaps = []
    for round_ in range(3):
        snap, _base = sr.snapshot(vdi)
        snaps.append((snap, model.sha256()))
        data = bytes([round_ + 1]) * (3 * MiB + 1024)
        write_into(vdi_file(env.src, vdi), [(5 * MiB * round_ + 512, data)])
        model.add(5 * MiB * round_ + 512, data)
    # the VDI itself (depth 4) and the first snapshot (depth 2)
    for leaf, expected in [(vdi, model.sha256()), snaps[0]]:
        image_id = transfer.upload(env.src, leaf, env.store, name="snap")
        result = transfer.download(env.store, image_id, env.dst)
        assert_same_chain(env.src, leaf, env.dst, result, expected)
    assert len(chain_shape(env.src, vdi)) == 4
    assert len(chain_shape(env.src, snaps[0][0])) == 2


@pytest.mark.parametrize("fmt", FORMATS)
def test_given_uuids_are_used(env, fmt):
    uuids, model = build_chain(env.src, 3, 8 * MiB, seed=3, fmt=fmt)
    image_id = transfer.upload(env.src, uuids[0], env.store, name="given")
    wanted = [new_uuid() for _ in range(3)]
    result = transfer.download(env.store, image_id, env.dst, uuids=wanted)
    assert result == {"root": {"uuid": wanted[0]}, "chain": wanted}
    assert_same_chain(env.src, uuids[0], env.dst, result, model.sha256())


@pytest.mark.parametrize("fmt", FORMATS)
@pytest.mark.parametrize("bad", ["short", "taken", "duplicate", "not-a-uuid"])
def test_bad_uuid_lists_refused_sr_unchanged(env, bad, fmt):
    uuids, _ = build_chain(env.src, 2, 4 * MiB, seed=4, fmt=fmt)
    image_id = transfer.upload(env.src, uuids[0], env.store, name="bad-uuids")
    # the occupant is of the other format: a uuid is taken whatever its file's suffix
    occupant, _ = build_chain(env.dst, 1, 4 * MiB, seed=5,
                              fmt="vhd" if fmt == "qcow2" else "qcow2")
    lists = {"short": [new_uuid()],
             "taken": [new_uuid(), occupant[0]],
             "duplicate": [uuids[0], uuids[0]],
             "not-a-uuid": [new_uuid(), "../../etc/passwd"]}
    before = sr_tree(env.dst)
    with pytest.raises(SRError):
        transfer.download(env.store, image_id, env.dst, uuids=lists[bad])
    assert sr_tree(env.dst) == before
    assert staging_leftovers(env.dst) == []


@pytest.mark.parametrize("level", [0, 1, 9])
def test_compression_levels(env, level):
    uuids, model = build_chain(env.src, 2, 24 * MiB, dense=True, seed=level)
    image_id = transfer.upload(env.src, uuids[0], env.store, name="lvl",
                               compression_level=level)
    with env.store.open(image_id) as stream:
        magic = stream.read(2)
    assert (magic == b"\x1f\x8b") == (level != 0)
    result = transfer.download(env.store, image_id, env.dst)
    assert_same_chain(env.src, uuids[0], env.dst, result, model.sha256())


@pytest.mark.parametrize("threads", [1, 3])
def test_upload_threads_give_the_same_chain(env, threads):
    uuids, model = build_chain(env.src, 2, 24 * MiB, dense=True, seed=threads)
    image_id = transfer.upload(env.src, uuids[0], env.store, name="threads",
                               threads=threads)
    result = transfer.download(env.store, image_id, env.dst)
    assert_same_chain(env.src, uuids[0], env.dst, result, model.sha256())


@pytest.mark.parametrize("fmt", FORMATS)
def test_second_generation_and_two_copies(env, tmp_path, fmt):
    """Download twice into one SR (independent chains), re-upload a copy, download again."""
    uuids, model = build_chain(env.src, 3, 16 * MiB, dense=True, seed=9, fmt=fmt)
    expected = model.sha256()
    image_id = transfer.upload(env.src, uuids[0], env.store, name="gen1")
    first = transfer.download(env.store, image_id, env.dst)
    second = transfer.download(env.store, image_id, env.dst)
    assert not set(first["chain"]) & set(second["chain"])
    for result in (first, second):
        assert vdi_sha256(env.dst, result["root"]["uuid"]) == expected
    image2 = transfer.upload(env.dst, second["root"]["uuid"], env.store, name="gen2")
    third_sr = make_sr(tmp_path / "sr-third")
    third = transfer.download(env.store, image2, third_sr)
    assert_same_chain(env.src, uuids[0], third_sr, third, expected)


def test_progress_reports(env):
    uuids, _ = build_chain(env.src, 2, 32 * MiB, dense=True, seed=11)
    up = []
    image_id = transfer.upload(env.src, uuids[0], env.store, name="progress",
                               progress=lambda done, total: up.append(done))
    size = env.store.get(image_id)["size"]
    assert up and up == sorted(up) and up[-1] == size
    down = []
    transfer.download(env.store, image_id, env.dst,
                      progress=lambda done, total: down.append((done, total)))
    assert down and [d for d, _ in down] == sorted(d for d, _ in down)
    assert down[-1] == (size, size)


def test_upload_into_given_queued_image(env):
    uuids, model = build_chain(env.src, 2, 8 * MiB, seed=12)
    record = env.store.create("pre-made", "vhd", "ovf")
    got = transfer.upload(env.src, uuids[0], env.store, image_id=record["id"],
                          properties={"k": "v"})
    assert got == record["id"]
    after = env.store.get(got)
    assert after["status"] == "active" and after["properties"] == {
        "k": "v", "vhdport_content_digest": model.content_digest()}
    result = transfer.download(env.store, got, env.dst)
    assert_same_chain(env.src, uuids[0], env.dst, result, model.sha256())


def test_upload_into_active_image_refused(env):
    uuids, _ = build_chain(env.src, 1, 4 * MiB, seed=13)
    image_id = transfer.upload(env.src, uuids[0], env.store, name="once")
    data_path = os.path.join(env.store.images_dir, image_id + ".data")
    before = hashlib.sha256(open(data_path, "rb").read()).hexdigest()
    with pytest.raises(ImageStateError) as info:
        transfer.upload(env.src, uuids[0], env.store, image_id=image_id)
    assert image_id in str(info.value) and "active" in str(info.value)
    assert hashlib.sha256(open(data_path, "rb").read()).hexdigest() == before
    assert env.store.get(image_id)["status"] == "active"


def test_upload_of_missing_vdi_creates_no_image(env):
    with pytest.raises(VhdportError) as info:
        transfer.upload(env.src, new_uuid(), env.store, name="ghost")
    assert "not found" in str(info.value)
    # a store that was never made holds no image (reading it is an error since #10)
    assert not os.path.isdir(env.store.root) or list(env.store.list()) == []


@pytest.mark.parametrize("fmt", FORMATS)
def test_upload_of_hidden_base_copy_refused(env, fmt):
    """A hidden disk is a base copy, not a VDI: its bundle would be refused on download."""
    uuids, _ = build_chain(env.src, 2, 4 * MiB, seed=14, fmt=fmt)
    with pytest.raises(VhdportError) as info:
        transfer.upload(env.src, uuids[1], env.store, name="base-copy")
    assert uuids[1] in str(info.value) and "hidden" in str(info.value)
    # a store that was never made holds no image (reading it is an error since #10)
    assert not os.path.isdir(env.store.root) or list(env.store.list()) == []


def test_upload_needs_name_or_image(env):
    uuids, _ = build_chain(env.src, 1, 4 * MiB, seed=15)
    with pytest.raises(StoreError, match="upload needs an existing queued image id or a name"):
        transfer.upload(env.src, uuids[0], env.store)


class Interrupt(Exception):
    """Raised from a progress callback, as a Ctrl-C in the middle of a transfer would be."""


def interrupt_after(limit):
    def progress(done, total):
        if done >= limit:
            raise Interrupt(done)
    return progress


def test_interrupted_upload_leaves_no_image(env):
    uuids, _ = build_chain(env.src, 3, 32 * MiB, dense=True, seed=16)
    before = sr_tree(env.src)
    with pytest.raises(Interrupt):
        transfer.upload(env.src, uuids[0], env.store, name="interrupted",
                        progress=interrupt_after(200 * 1024), compression_level=1)
    # a store that was never made holds no image (reading it is an error since #10)
    assert not os.path.isdir(env.store.root) or list(env.store.list()) == []
    assert sorted(os.listdir(env.store.images_dir)) == []
    assert sr_tree(env.src) == before
    assert staging_leftovers(env.src) == []


@pytest.mark.parametrize("fmt", FORMATS)
def test_interrupted_download_lands_nothing(env, fmt):
    uuids, _ = build_chain(env.src, 3, 32 * MiB, dense=True, seed=17, fmt=fmt)
    image_id = transfer.upload(env.src, uuids[0], env.store, name="to-interrupt",
                               compression_level=0)
    keep, _ = build_chain(env.dst, 1, 4 * MiB, seed=18)
    before = sr_tree(env.dst)
    with pytest.raises(Interrupt):
        transfer.download(env.store, image_id, env.dst,
                          progress=interrupt_after(env.store.get(image_id)["size"] // 2))
    assert sr_tree(env.dst) == before
    assert staging_leftovers(env.dst) == []


@pytest.mark.parametrize("fmt", FORMATS)
def test_chain_at_xenserver_depth_limit(env, fmt):
    """30 disks (SM's limit) go up and come down; one more level is refused on upload."""
    uuids, model = build_chain(env.src, 30, 4 * MiB, seed=30, fmt=fmt)
    image_id = transfer.upload(env.src, uuids[0], env.store, name="deep")
    result = transfer.download(env.store, image_id, env.dst)
    assert len(result["chain"]) == 30
    assert_same_chain(env.src, uuids[0], env.dst, result, model.sha256())
    deeper = new_uuid()
    if fmt == "qcow2":
        qcow2_chains.sm_snapshot(os.path.join(env.src, deeper + ".qcow2"), uuids[0] + ".qcow2")
        qcow2_set_hidden(os.path.join(env.src, uuids[0] + ".qcow2"), True)
    else:
        from vhdport.vhd import create_snapshot, set_hidden
        create_snapshot(os.path.join(env.src, deeper + ".vhd"), uuids[0] + ".vhd")
        set_hidden(os.path.join(env.src, uuids[0] + ".vhd"), True)
    images = len(list(env.store.list()))
    with pytest.raises(VhdportError) as info:
        transfer.upload(env.src, deeper, env.store, name="too-deep")
    assert "30" in str(info.value)
    assert len(list(env.store.list())) == images


@pytest.mark.parametrize("fmt", FORMATS)
def test_uuid_stack_longer_than_the_chain(env, fmt):
    """nova passes a uuid_stack of 16 whatever the depth: the first ones name the chain."""
    uuids, model = build_chain(env.src, 3, 8 * MiB, seed=19, fmt=fmt)
    image_id = transfer.upload(env.src, uuids[0], env.store, name="stack")
    stack = [new_uuid() for _ in range(16)]
    result = transfer.download(env.store, image_id, env.dst, uuids=stack)
    assert result["chain"] == stack[:3]
    assert sorted(SR(env.dst).vdis()) == sorted(stack[:3])
    assert_same_chain(env.src, uuids[0], env.dst, result, model.sha256())


def test_qcow2_chain_relinked_by_sms_gc(env, tmp_path):
    """SM's GC relinks with absolute /var/run/sr-mount/<sr>/<uuid>.qcow2 names: such a chain
    uploads (the names resolved inside this SR) and lands with relative names."""
    src = make_sr(tmp_path / "sr-mount" / "0ab2c3d4-0000-4000-8000-00000000c0de")
    uuids, model = build_chain(src, 3, 16 * MiB, dense=True, seed=21, fmt="qcow2")
    for child, parent in zip(uuids, uuids[1:]):
        qcow2_chains.sm_relink_absolute(os.path.join(src, child + ".qcow2"), parent)
    assert all(n is None or n.startswith("/var/run/sr-mount/")
               for n in qcow2_chains.backing_names(os.path.join(src, uuids[0] + ".qcow2")))
    image_id = transfer.upload(src, uuids[0], env.store, name="relinked")
    result = transfer.download(env.store, image_id, env.dst)
    assert_same_chain(src, uuids[0], env.dst, result, model.sha256())


def test_qcow2_bundle_members_name_each_other(env, tmp_path):
    """The bundle of a QCOW2 chain is 0.qcow2 .. N.qcow2, leaf first, each child's backing
    name its parent's member name: unpacked, qemu-img reads the chain as the SR's."""
    import tarfile
    uuids, model = build_chain(env.src, 3, 16 * MiB, dense=True, seed=22, fmt="qcow2")
    image_id = transfer.upload(env.src, uuids[0], env.store, name="members")
    out = tmp_path / "unpacked"
    out.mkdir()
    with env.store.open(image_id) as stream, tarfile.open(fileobj=stream, mode="r|gz") as tar:
        names = []
        for member in tar:
            names.append(member.name)
            with open(str(out / member.name), "wb") as f:
                f.write(tar.extractfile(member).read())
    assert names == ["0.qcow2", "1.qcow2", "2.qcow2"]
    leaf = str(out / "0.qcow2")
    assert qcow2_chains.backing_names(leaf) == ["1.qcow2", "2.qcow2", None]
    assert qcow2_chains.qemu_compare(leaf, os.path.join(env.src, uuids[0] + ".qcow2"))
    # the SR's files kept their own names
    assert qcow2_chains.backing_names(os.path.join(env.src, uuids[0] + ".qcow2")) == \
        [uuids[1] + ".qcow2", uuids[2] + ".qcow2", None]


TiB = 1 << 40


def test_qcow2_sparse_2_5_tib_round_trip(env):
    """A 2.5 TiB virtual QCOW2 (past VHD's 2040 GiB) with a few MiB written goes up and comes
    down in seconds: time grows with the data, not the virtual size."""
    import time
    size = 5 * TiB // 2
    uuids, model = build_chain(env.src, 2, size, dense=True, seed=25, fmt="qcow2")
    src_leaf = os.path.join(env.src, uuids[0] + ".qcow2")
    started = time.monotonic()
    image_id = transfer.upload(env.src, uuids[0], env.store, name="sparse")
    result = transfer.download(env.store, image_id, env.dst)
    took = time.monotonic() - started
    assert took < 30, "2.5 TiB virtual, {} MiB of data took {:.1f} s".format(
        allocated_bytes(src_leaf) >> 20, took)
    assert env.store.get(image_id)["size"] < 64 * MiB
    leaf = result["root"]["uuid"]
    dst_leaf = os.path.join(env.dst, leaf + ".qcow2")
    shape = chain_shape(env.dst, leaf)
    assert [s[1] for s in shape] == [False, True]
    assert [s[3:] for s in shape] == [s[3:] for s in chain_shape(env.src, uuids[0])]
    assert qcow2_chains.backing_names(dst_leaf) == [result["chain"][1] + ".qcow2", None]
    for u in result["chain"]:
        qcow2_chains.qemu_check(os.path.join(env.dst, u + ".qcow2"))
    assert qcow2_chains.qemu_compare(src_leaf, dst_leaf)
    assert_model_written(dst_leaf, model)
    # the content digest upload recorded is the source's and the landed chain's
    from vhdport.disk.digest import content_digest
    recorded = str(env.store.get(image_id)["properties"]["vhdport_content_digest"])
    assert str(content_digest(dst_leaf)) == recorded
    assert allocated_bytes(dst_leaf) == allocated_bytes(src_leaf)
