"""The shared vhd-util fixtures as images: imported into a local store, downloaded into an SR,
and read back with the contents hashes libvhd gave in the fixtures' manifest."""

import json
import os
import subprocess
import sys

import pytest

from tests.transfer.helpers import chain_shape, make_sr, staging_leftovers, vdi_sha256
from vhdport import transfer
from vhdport.sr import SR
from vhdport.stores.local import LocalStore
from vhdport.vhd import VhdFile
from vhdport.vhd.check import check_chain

SCRIPT = os.path.join(os.path.dirname(sys.executable), "vhdport")


@pytest.fixture(scope="module")
def manifest(vhd_fixtures):
    with open(str(vhd_fixtures / "manifest.json")) as f:
        return json.load(f)


def internal_uuid(path):
    with VhdFile.open(path) as disk:
        return str(disk.uuid)


def assert_sequenced_chain(fixtures, manifest, sr_path, result):
    """leaf <- mid <- base of the fixture, each level with libvhd's hash, shape as vhd-util made."""
    chain = result["chain"]
    assert len(chain) == 3 and chain[0] == result["root"]["uuid"]
    names = ["chain/leaf.vhd", "chain/mid.vhd", "chain/base.vhd"]
    for u, name in zip(chain, names):
        assert vdi_sha256(sr_path, u) == manifest[name]["contents_sha256"], name
        assert internal_uuid(os.path.join(sr_path, u + ".vhd")) == \
            internal_uuid(str(fixtures / name))
    shape = chain_shape(sr_path, chain[0])
    assert [hidden for _, hidden, _, _, _ in shape] == [False, True, True]
    assert check_chain(os.path.join(sr_path, chain[0] + ".vhd")) == []
    assert sorted(SR(sr_path).vdis()) == sorted(chain)
    assert staging_leftovers(sr_path) == []


def test_sequenced_bundle(vhd_fixtures, manifest, tmp_path):
    store = LocalStore(str(tmp_path / "store"))
    sr_path = make_sr(tmp_path / "sr")
    image_id = transfer.import_image(store, str(vhd_fixtures / "bundle-sequenced.tgz"),
                                     "sequenced")
    record = store.get(image_id)
    assert (record["disk_format"], record["container_format"]) == ("vhd", "ovf")
    result = transfer.download(store, image_id, sr_path)
    assert_sequenced_chain(vhd_fixtures, manifest, sr_path, result)


def test_legacy_single_bundle(vhd_fixtures, manifest, tmp_path):
    store = LocalStore(str(tmp_path / "store"))
    sr_path = make_sr(tmp_path / "sr")
    image_id = transfer.import_image(store, str(vhd_fixtures / "bundle-legacy-single.tgz"),
                                     "legacy")
    result = transfer.download(store, image_id, sr_path)
    assert len(result["chain"]) == 1
    leaf = result["root"]["uuid"]
    assert vdi_sha256(sr_path, leaf) == manifest["dynamic.vhd"]["contents_sha256"]
    assert internal_uuid(os.path.join(sr_path, leaf + ".vhd")) == \
        internal_uuid(str(vhd_fixtures / "dynamic.vhd"))
    assert chain_shape(sr_path, leaf)[0][1] is False
    assert check_chain(os.path.join(sr_path, leaf + ".vhd")) == []


@pytest.mark.parametrize("name,container", [("dynamic.vhd", "bare"), ("fixed.vhd", "bare")])
def test_bare_vhd_images(vhd_fixtures, manifest, tmp_path, name, container):
    """Beyond the original: a lone VHD stored as vhd/bare lands as a one-file chain."""
    store = LocalStore(str(tmp_path / "store"))
    sr_path = make_sr(tmp_path / "sr")
    image_id = transfer.import_image(store, str(vhd_fixtures / name), "bare",
                                     container_format=container)
    result = transfer.download(store, image_id, sr_path)
    assert vdi_sha256(sr_path, result["root"]["uuid"]) == manifest[name]["contents_sha256"]


def test_raw_image(vhd_fixtures, manifest, tmp_path):
    """A raw disk (here: the fixed VHD's data part) arrives as a dynamic VHD with those contents."""
    raw = str(tmp_path / "disk.raw")
    with open(str(vhd_fixtures / "fixed.vhd"), "rb") as f, open(raw, "wb") as out:
        data = f.read()
        out.write(data[:-512])
    store = LocalStore(str(tmp_path / "store"))
    sr_path = make_sr(tmp_path / "sr")
    image_id = transfer.import_image(store, raw, "raw", disk_format="raw",
                                     container_format="bare")
    result = transfer.download(store, image_id, sr_path)
    leaf = os.path.join(sr_path, result["root"]["uuid"] + ".vhd")
    assert vdi_sha256(sr_path, result["root"]["uuid"]) == manifest["fixed.vhd"]["contents_sha256"]
    with VhdFile.open(leaf) as disk:
        assert disk.type_name == "dynamic"


def run_cli(*args):
    proc = subprocess.run([SCRIPT] + [str(a) for a in args], stdout=subprocess.PIPE,
                          stderr=subprocess.PIPE, universal_newlines=True, timeout=120)
    assert proc.returncode == 0, (args, proc.stdout, proc.stderr)
    return [line for line in proc.stdout.splitlines() if line.strip()]


def test_sequenced_bundle_through_the_cli(vhd_fixtures, manifest, tmp_path):
    """`vhdport image import` then `vhdport download --json`, as a user would."""
    assert os.access(SCRIPT, os.X_OK), "the vhdport console script is installed by pip install -e ."
    store_dir = str(tmp_path / "store")
    sr_path = make_sr(tmp_path / "sr")
    image_id = run_cli("image", "import", vhd_fixtures / "bundle-sequenced.tgz",
                       "--store", store_dir, "--name", "via-cli")[-1]
    assert LocalStore(store_dir).get(image_id)["status"] == "active"
    out = run_cli("download", image_id, "--store", store_dir, "--sr", sr_path, "--json")
    result = json.loads("\n".join(out))   # the whole stdout is the JSON document
    assert_sequenced_chain(vhd_fixtures, manifest, sr_path, result)
    # without --json the last line is the leaf uuid
    sr2 = make_sr(tmp_path / "sr2")
    leaf = run_cli("download", image_id, "--store", store_dir, "--sr", sr2)[-1]
    assert vdi_sha256(sr2, leaf) == manifest["chain/leaf.vhd"]["contents_sha256"]


def test_bundle_with_visible_parents_lands_with_parents_hidden(tmp_path):
    """A bundle made by another tool may leave parents visible; in the SR each would be an
    attachable VDI whose writes corrupt its children, so they land hidden."""
    import tarfile
    from tests.transfer.helpers import MiB, build_chain
    scratch = make_sr(tmp_path / "scratch")
    uuids, model = build_chain(scratch, 3, 8 * MiB, seed=31, hide_parents=False)
    bundle_path = str(tmp_path / "visible.tgz")
    with tarfile.open(bundle_path, "w:gz") as tar:
        for i, u in enumerate(uuids):
            tar.add(os.path.join(scratch, u + ".vhd"), arcname="{}.vhd".format(i))
    store = LocalStore(str(tmp_path / "store"))
    sr_path = make_sr(tmp_path / "sr")
    result = transfer.download(store, transfer.import_image(store, bundle_path, "visible"),
                               sr_path)
    shape = chain_shape(sr_path, result["root"]["uuid"])
    assert [hidden for _, hidden, _, _, _ in shape] == [False, True, True]
    assert vdi_sha256(sr_path, result["root"]["uuid"]) == model.sha256()
    assert check_chain(os.path.join(sr_path, result["root"]["uuid"] + ".vhd")) == []
    assert SR(sr_path).leaves() == [result["root"]["uuid"]]
