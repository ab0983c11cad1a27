"""`vhdport download` / `upload` argument checks: bad values are usage errors (exit 2) and a
local store may not share its directory tree with the SR; ``upload --as qcow2|raw`` end to end."""

import hashlib
import json
import subprocess

import os

import pytest

from tests.cli.helpers import assert_usage_error, run
from tests.peers.require import require_qemu_img
from tests.transfer.helpers import MiB, build_chain
from vhdport.cli.transfer_cmds import UPLOAD_AS
from vhdport.stores.local import LocalStore
from vhdport.transfer.flat import AS_FORMATS


@pytest.fixture
def sr(tmp_path):
    path = tmp_path / "sr"
    path.mkdir()
    return path


def test_download_uuid_that_is_not_a_uuid_is_a_usage_error(tmp_path, sr):
    """Was: exit 1, `vhdport: error: image ... not found` (the bad --uuid never checked)."""
    assert_usage_error(run("download", "some-image", "--store", tmp_path / "store", "--sr", sr,
                           "--uuid", "notauuid"),
                       "Invalid value for '--uuid'", "'notauuid' is not a uuid")


@pytest.mark.parametrize("args", [
    ("upload", "notauuid", "--sr", "{sr}", "--store", "{store}", "--name", "n"),
    ("sr", "snapshot", "{sr}", "NOTAUUID"),
])
def test_vdi_uuid_arguments_are_checked_as_usage_errors(tmp_path, sr, args):
    """Was: exit 1, `VDI notauuid not found in SR ...`."""
    argv = [a.format(sr=sr, store=tmp_path / "store") for a in args]
    assert_usage_error(run(*argv), "is not a uuid like 01234567-89ab-cdef-0123-456789abcdef")


@pytest.mark.parametrize("command", ["download", "upload"])
@pytest.mark.parametrize("layout", ["same", "store-in-sr", "sr-in-store"])
def test_store_and_sr_in_one_tree_is_refused(tmp_path, command, layout):
    """Was: `download --store D --sr D` succeeded and mixed the store's files into the SR."""
    base = tmp_path / "d"
    base.mkdir()
    store, sr = {"same": (base, base), "store-in-sr": (base / "images", base),
                 "sr-in-store": (base, base / "sr")}[layout]
    sr.mkdir(exist_ok=True)
    before = sorted(p.name for p in base.rglob("*"))
    if command == "download":
        argv = ("download", "image-1", "--store", store, "--sr", sr)
    else:
        argv = ("upload", "01234567-89ab-cdef-0123-456789abcdef", "--sr", sr, "--store", store,
                "--name", "n")
    why = {"same": "are the same directory", "store-in-sr": "the store is inside the SR",
           "sr-in-store": "the SR is inside the store"}[layout]
    assert_usage_error(run(*argv), why, "keep the image store and the SR in separate directories")
    assert sorted(p.name for p in base.rglob("*")) == before


def test_download_image_format_is_checked_as_a_usage_error(tmp_path, sr):
    assert_usage_error(run("download", "some-image", "--store", tmp_path / "store", "--sr", sr,
                           "--image-format", "vmdk"),
                       "Invalid value for '--image-format'", "'vmdk' is not one of")


@pytest.mark.parametrize("image_format, suffix", [(None, ".qcow2"), ("vhd", ".vhd")])
def test_download_qcow2_image_with_image_format(tmp_path, sr, image_format, suffix):
    from tests.qcow2.qemu import qemu_img, qemu_io, require_qemu
    from vhdport import transfer
    from vhdport.stores.local import LocalStore
    require_qemu()
    src = str(tmp_path / "src.qcow2")
    qemu_img("create", "-f", "qcow2", "-o", "compat=0.10", src, "8M")
    qemu_io(src, "write -P 0x42 1M 512k")
    store = tmp_path / "store"
    image_id = transfer.import_image(LocalStore(str(store)), src, "q", disk_format="qcow2",
                                     container_format="bare")
    args = ["download", image_id, "--store", store, "--sr", sr]
    if image_format:
        args += ["--image-format", image_format]
    result = run(*args)
    assert result.exit_code == 0, (result.stdout, result.stderr)
    leaf = result.stdout.strip()
    assert sorted(p.name for p in sr.iterdir() if not p.name.startswith(".")) == [leaf + suffix]
    raw = str(tmp_path / "src.raw")
    qemu_img("convert", "-O", "raw", src, raw)
    fmt = "qcow2" if suffix == ".qcow2" else "vpc"
    proc = qemu_img("compare", "-f", fmt, "-F", "raw", str(sr / (leaf + suffix)), raw,
                    check=False)
    assert proc.returncode == 0, proc.stdout


def test_upload_as_a_bad_format_is_a_usage_error(tmp_path, sr):
    assert_usage_error(run("upload", "01234567-89ab-cdef-0123-456789abcdef", "--sr", sr,
                           "--store", tmp_path / "store", "--name", "n", "--as", "vmdk"),
                       "Invalid value for '--as'", "'vmdk' is not one of 'bundle', 'qcow2', 'raw'")


def test_upload_as_choices_are_the_transfers():
    assert UPLOAD_AS == AS_FORMATS


@pytest.mark.parametrize("as_format", ["qcow2", "raw"])
def test_upload_as_a_flat_image(tmp_path, sr, as_format):
    qemu_img = require_qemu_img()
    uuids, model = build_chain(str(sr), 2, 8 * MiB, seed=9)
    result = run("upload", uuids[0], "--sr", sr, "--store", tmp_path / "store", "--name", "kvm",
                 "--as", as_format, "--json")
    assert result.exit_code == 0, result.stderr
    record = json.loads(result.stdout)
    assert (record["disk_format"], record["container_format"], record["status"]) == (
        as_format, "bare", "active")
    stored = tmp_path / "stored"
    with LocalStore(str(tmp_path / "store")).open(record["id"]) as stream:
        stored.write_bytes(stream.read())
    raw = tmp_path / "raw"
    subprocess.run([qemu_img, "convert", "-f", as_format, "-O", "raw", str(stored), str(raw)],
                   check=True)
    assert hashlib.sha256(raw.read_bytes()).hexdigest() == model.sha256()


def test_download_no_verify_contents(tmp_path):
    """A disk whose contents are not the recorded ones is refused; --no-verify-contents lands it."""
    from tests.transfer.helpers import sr_tree
    from tests.transfer.test_contents import leaf_path, make_env, tampered
    from vhdport import disk

    env = make_env(tmp_path)
    image_id, expected, actual = tampered(env)
    before = sr_tree(env.dst)
    refused = run("download", image_id, "--sr", env.dst, "--store", env.store.root)
    assert refused.exit_code == 1 and expected in refused.stderr and actual in refused.stderr
    assert sr_tree(env.dst) == before
    landed = run("download", image_id, "--sr", env.dst, "--store", env.store.root,
                 "--no-verify-contents")
    assert landed.exit_code == 0, landed.stderr
    leaf = landed.stdout.strip().splitlines()[-1]
    assert str(disk.content_digest(leaf_path(env.dst, leaf))) == actual


def test_upload_no_record_contents(tmp_path):
    """The digest is recorded by default; --no-record-contents leaves the property out."""
    from tests.transfer.helpers import make_sr

    src, store = make_sr(tmp_path / "src"), str(tmp_path / "store")
    uuids, _ = build_chain(src, 2, 8 * MiB, dense=True, seed=3)
    records = []
    for extra in ((), ("--no-record-contents",)):
        up = run("upload", uuids[0], "--sr", src, "--store", store, "--name", "n", *extra)
        assert up.exit_code == 0, up.stderr
        records.append(LocalStore(store).get(up.stdout.strip().splitlines()[-1]))
    recorded, skipped = records
    assert recorded["properties"]["vhdport_content_digest"].startswith("blake2b-256/4MiB:")
    assert "vhdport_content_digest" not in skipped["properties"]


def test_qcow2_chain_up_and_down(tmp_path):
    """`vhdport upload` / `download` carry a QCOW2 VDI's chain like a VHD chain."""
    from tests.transfer import qcow2_chains
    from tests.transfer.helpers import MiB, build_chain, make_sr
    from vhdport.stores.local import LocalStore

    src, dst = make_sr(tmp_path / "src"), make_sr(tmp_path / "dst")
    store = str(tmp_path / "store")
    uuids, _ = build_chain(src, 2, 8 * MiB, dense=True, seed=14, fmt="qcow2")
    up = run("upload", uuids[0], "--sr", src, "--store", store, "--name", "qcow2 chain")
    assert up.exit_code == 0, up.stderr
    image_id = up.stdout.strip().splitlines()[-1]
    assert LocalStore(store).get(image_id)["disk_format"] == "qcow2"
    down = run("download", image_id, "--sr", dst, "--store", store)
    assert down.exit_code == 0, down.stderr
    leaf = down.stdout.strip().splitlines()[-1]
    assert qcow2_chains.qemu_compare(os.path.join(src, uuids[0] + ".qcow2"),
                                     os.path.join(dst, leaf + ".qcow2"))
