"""Integrity of stored images: what upload records is what is stored, and a record or data
file that does not match refuses the download with an IntegrityError before the SR changes."""

import hashlib
import os

import pytest

from tests.transfer.helpers import MiB, build_chain, sr_tree, staging_leftovers, store_env
from vhdport import transfer
from vhdport.errors import IntegrityError
from vhdport.sr import SR


def digests(path):
    md5, sha512, size = hashlib.md5(), hashlib.sha512(), 0
    with open(path, "rb") as f:
        while True:
            data = f.read(MiB)
            if not data:
                return size, md5.hexdigest(), sha512.hexdigest()
            size += len(data)
            md5.update(data)
            sha512.update(data)


@pytest.fixture
def env(tmp_path):
    return store_env(tmp_path, keep_depth=2, keep_seed=1)   # the SR is not empty


@pytest.mark.parametrize("level", [0, 6])
def test_upload_records_what_is_stored(env, level):
    uuids, _ = build_chain(env.src, 3, 24 * MiB, dense=True, seed=level)
    image_id = transfer.upload(env.src, uuids[0], env.store, name="digests",
                               compression_level=level)
    record = env.store.get(image_id)
    size, md5, sha512 = digests(env.data_path(image_id))
    assert record["status"] == "active"
    assert (record["size"], record["checksum"]) == (size, md5)
    assert (record["os_hash_algo"], record["os_hash_value"]) == ("sha512", sha512)


def test_import_records_what_is_stored(env, tmp_path):
    blob = str(tmp_path / "blob")
    with open(blob, "wb") as f:
        f.write(os.urandom(3 * MiB + 17))
    image_id = transfer.import_image(env.store, blob, "blob", disk_format="raw",
                                     container_format="bare")
    record = env.store.get(image_id)
    assert digests(env.data_path(image_id)) == digests(blob)
    assert (record["size"], record["checksum"], record["os_hash_value"]) == digests(blob)


def uploaded(env, level=6):
    uuids, _ = build_chain(env.src, 3, 16 * MiB, dense=True, seed=40 + level)
    return transfer.upload(env.src, uuids[0], env.store, name="tamper",
                           compression_level=level)


def assert_refused_unchanged(env, image_id, what):
    before = sr_tree(env.dst)
    with pytest.raises(IntegrityError) as info:
        transfer.download(env.store, image_id, env.dst)
    message = str(info.value)
    assert what in message, message
    assert sr_tree(env.dst) == before
    assert staging_leftovers(env.dst) == []
    assert sorted(SR(env.dst).vdis()) == sorted(env.keep)
    return info.value


@pytest.mark.parametrize("field,what", [("os_hash_value", "sha512"), ("checksum", "md5"),
                                        ("size+1", "size"), ("size-1", "size")])
def test_tampered_record(env, field, what):
    image_id = uploaded(env)
    record = env.store.get(image_id)
    if field.startswith("size"):
        env.edit_record(image_id, size=record["size"] + int(field[4:]))
    else:
        wrong = hashlib.new("sha512" if field == "os_hash_value" else "md5",
                            b"not the image").hexdigest()
        env.edit_record(image_id, **{field: wrong})
    err = assert_refused_unchanged(env, image_id, what)
    if not field.startswith("size"):
        assert image_id in str(err) and wrong in str(err)


def test_flipped_byte_in_stored_data(env):
    """A plain-tar image whose VHD data (not its structure) changed: only the hashes notice."""
    image_id = uploaded(env, level=0)
    path = env.data_path(image_id)
    with open(path, "rb") as f:
        tar = f.read()
    leaf_size = int(tar[124:136].rstrip(b"\0 "), 8)
    offset = 512 + leaf_size - 512 - 100        # inside the leaf's last data sector
    flipped = bytearray(tar)
    flipped[offset] ^= 0x01
    with open(path, "wb") as f:
        f.write(bytes(flipped))
    assert_refused_unchanged(env, image_id, "md5")


def test_data_file_truncated_or_grown(env):
    image_id = uploaded(env)
    path = env.data_path(image_id)
    with open(path, "rb") as f:
        data = f.read()
    for changed in (data[:-1], data + b"\0"):
        with open(path, "wb") as f:
            f.write(changed)
        assert_refused_unchanged(env, image_id, "size")


def test_other_hash_algo_still_checks_md5(env):
    """A record with an os_hash_algo we do not compute still gets its md5 and size checked."""
    image_id = uploaded(env)
    env.edit_record(image_id, os_hash_algo="sha3_256", os_hash_value="00" * 32,
                    checksum="0" * 32)
    assert_refused_unchanged(env, image_id, "md5")


def test_os_hash_algo_of_the_record_is_computed_and_compared(env):
    """A Glance with os_hash_algo = sha256: the download hashes with sha256 too."""
    image_id = uploaded(env)
    with open(env.data_path(image_id), "rb") as f:
        right = hashlib.sha256(f.read()).hexdigest()
    wrong = hashlib.sha256(b"not the image").hexdigest()
    env.edit_record(image_id, os_hash_algo="sha256", os_hash_value=wrong)
    err = assert_refused_unchanged(env, image_id, "sha256 hash")
    assert wrong in str(err) and right in str(err)
    env.edit_record(image_id, os_hash_value=right)
    result = transfer.download(env.store, image_id, env.dst)
    assert result["root"]["uuid"] in SR(env.dst).vdis()


@pytest.mark.parametrize("which", ["missing", "directory"])
def test_import_of_unreadable_file_creates_nothing(env, tmp_path, which):
    from vhdport.errors import VhdportError
    path = str(tmp_path / "nope.tgz") if which == "missing" else str(tmp_path)
    with pytest.raises(VhdportError) as info:
        transfer.import_image(env.store, path, "nothing")
    assert path in str(info.value)
    # a store that was never made holds no image (reading it is an error since #10)
    assert not os.path.isdir(env.store.root) or list(env.store.list()) == []


def test_damaged_structure_in_transit_is_blamed_on_the_transfer(env):
    """Bytes that break a member's structure AND the record's hashes: the cause to report is
    the damaged transfer (retry), not a bad image, so the BundleError becomes an IntegrityError."""
    from vhdport.errors import BundleError
    image_id = uploaded(env, level=0)
    path = env.data_path(image_id)
    with open(path, "rb") as f:
        tar = bytearray(f.read())
    leaf_size = int(tar[124:136].rstrip(b"\0 "), 8)
    tar[512 + leaf_size - 512:512 + leaf_size] = bytes(512)   # the leaf's footer zeroed
    with open(path, "wb") as f:
        f.write(bytes(tar))
    error = assert_refused_unchanged(env, image_id, "md5")
    assert isinstance(error.__cause__, BundleError)


def test_bad_image_matching_its_record_stays_a_bundle_error(env):
    """The same damage recorded as the image's true contents: the image is bad, say so."""
    from vhdport.errors import BundleError
    image_id = uploaded(env, level=0)
    path = env.data_path(image_id)
    with open(path, "rb") as f:
        tar = bytearray(f.read())
    leaf_size = int(tar[124:136].rstrip(b"\0 "), 8)
    tar[512 + leaf_size - 512:512 + leaf_size] = bytes(512)
    with open(path, "wb") as f:
        f.write(bytes(tar))
    env.edit_record(image_id, checksum=hashlib.md5(bytes(tar)).hexdigest(),
                    os_hash_value=hashlib.sha512(bytes(tar)).hexdigest())
    before = sr_tree(env.dst)
    with pytest.raises(BundleError) as info:
        transfer.download(env.store, image_id, env.dst)
    assert "0.vhd" in str(info.value)
    assert sr_tree(env.dst) == before
