"""The content digest through the pipelines: upload records it, download reads the landed
chain back and refuses a disk that is not the one that left (stream hashes alone pass).

A "tampered" image here is a store whose data and stream hashes were swapped for another
valid bundle: every check before this one passes, only the content digest can tell.
"""

import logging
import shutil

import pytest

from tests.transfer.helpers import build_chain, sr_tree, staging_leftovers, store_env
from tests.transfer.test_integrity import digests
from vhdport import disk, transfer
from vhdport.errors import IntegrityError
from vhdport.sr import SR
from vhdport.transfer.contents import PROPERTY, UploadDigest, verify_landed

MiB = 1 << 20


def make_env(tmp_path):
    """Two SRs (the target not empty) and a local store; data and record editable."""
    return store_env(tmp_path, keep_depth=1, keep_seed=3)


@pytest.fixture
def env(tmp_path):
    return make_env(tmp_path)


def leaf_path(sr_path, leaf_uuid):
    return SR(sr_path).chain_paths(leaf_uuid)[0]


def test_upload_records_the_digest_download_lands_the_same(env):
    uuids, model = build_chain(env.src, 3, 20 * MiB, dense=True, seed=5)
    image_id = transfer.upload(env.src, uuids[0], env.store, name="digest")
    recorded = env.store.get(image_id)["properties"][PROPERTY]
    assert recorded == model.content_digest()
    assert recorded == str(disk.content_digest(leaf_path(env.src, uuids[0])))
    result = transfer.download(env.store, image_id, env.dst)
    assert str(disk.content_digest(leaf_path(env.dst, result["root"]["uuid"]))) == recorded


def tampered(env):
    """Image A whose data (and stream hashes) are image B's: a valid bundle of other contents."""
    a_uuids, a_model = build_chain(env.src, 2, 12 * MiB, dense=True, seed=21)
    b_uuids, b_model = build_chain(env.src, 2, 12 * MiB, dense=True, seed=22)
    a = transfer.upload(env.src, a_uuids[0], env.store, name="a")
    b = transfer.upload(env.src, b_uuids[0], env.store, name="b")
    shutil.copyfile(env.data_path(b), env.data_path(a))
    size, md5, sha512 = digests(env.data_path(a))
    env.edit_record(a, size=size, checksum=md5, os_hash_value=sha512)
    return a, a_model.content_digest(), b_model.content_digest()


def test_tampered_contents_refused_sr_unchanged(env):
    image_id, expected, actual = tampered(env)
    before = sr_tree(env.dst)
    with pytest.raises(IntegrityError) as info:
        transfer.download(env.store, image_id, env.dst)
    message = str(info.value)
    assert "content digest mismatch" in message
    assert expected in message and actual in message
    assert sr_tree(env.dst) == before
    assert staging_leftovers(env.dst) == []
    assert sorted(SR(env.dst).vdis()) == sorted(env.keep)


def test_verify_contents_off_lands_it(env):
    image_id, _expected, actual = tampered(env)
    result = transfer.download(env.store, image_id, env.dst, verify_contents=False)
    assert str(disk.content_digest(leaf_path(env.dst, result["root"]["uuid"]))) == actual


def test_record_contents_off_records_nothing(env):
    uuids, _ = build_chain(env.src, 1, 8 * MiB, seed=7)
    image_id = transfer.upload(env.src, uuids[0], env.store, name="plain",
                               properties={"k": "v"}, record_contents=False)
    assert env.store.get(image_id)["properties"] == {"k": "v"}
    transfer.download(env.store, image_id, env.dst)


def test_unknown_digest_algorithm_is_not_compared(env, caplog):
    uuids, _ = build_chain(env.src, 1, 8 * MiB, seed=8)
    image_id = transfer.upload(env.src, uuids[0], env.store, name="future")
    env.store.update(image_id, properties={PROPERTY: "sha3-512/1MiB:" + "0" * 128})
    with caplog.at_level(logging.WARNING, logger="vhdport.transfer.contents"):
        transfer.download(env.store, image_id, env.dst)
    assert "not compared" in caplog.text


def test_wrong_digest_of_our_algorithm_is_refused(env):
    uuids, model = build_chain(env.src, 1, 8 * MiB, seed=9)
    record = {"properties": {PROPERTY: "blake2b-256/4MiB:" + "0" * 64}}
    leaf = leaf_path(env.src, uuids[0])
    with pytest.raises(IntegrityError, match="0{64}"):
        verify_landed(record, leaf, "test")
    assert verify_landed({"properties": {PROPERTY: model.content_digest()}}, leaf, "test") \
        == model.content_digest()
    assert verify_landed({"properties": {}}, leaf, "test") is None
    assert verify_landed(record, leaf, "test", verify=False) is None


def test_upload_digest_is_stopped_and_closed(env):
    uuids, _ = build_chain(env.src, 2, 64 * MiB, dense=True, seed=10)
    chain = SR(env.src).chain_paths(uuids[0])
    with UploadDigest() as background:
        background.start(chain)
    assert background._chain is None and not background._thread.is_alive()
    with UploadDigest(enabled=False) as off:
        off.start(chain)
        assert off.result() is None
    with UploadDigest() as done:
        done.start(chain)
        assert done.result() == str(disk.content_digest(chain[0]))


def test_verify_landed_reads_a_qcow2_chain_through_the_face(tmp_path):
    from tests.disk.test_digest import LEVELS, SIZE, qcow2_chain, reference, write_raw

    raw = str(tmp_path / "same.raw")
    write_raw(raw, SIZE, LEVELS)
    leaf = qcow2_chain(tmp_path, LEVELS)
    expected = reference(raw)
    assert verify_landed({"properties": {PROPERTY: expected}}, leaf, "qcow2") == expected
    with pytest.raises(IntegrityError):
        verify_landed({"properties": {PROPERTY: "blake2b-256/4MiB:" + "1" * 64}}, leaf, "qcow2")
