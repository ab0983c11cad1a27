"""The original glance plugin's own calls, replayed as XAPI runs the plugin (issue #18).

nova (2011) called ``glance.download_vhd`` with params {image_id, glance_host, glance_port,
uuid_stack, sr_path} and read the new VDI's uuid, a plain string, from the answer; it
reserved a queued image and called ``upload_vhd`` with {vdi_uuids: {"image": parent,
"snap": leaf}, image_id, glance_host, glance_port, sr_path, os_type} and got "".  The
same keys and values are sent here, JSON-encoded (vhdport never unpickles), against
Glance's v1 API (the test endpoint in tests/peers) -- and against the local store with
today's keys.  Every call also runs under Python 3.6, dom0's interpreter, when there is one.
"""

import os
import tarfile
import uuid

import pytest

from tests.allowed_skips import allowed_skip
from tests.peers.glance_v1_server import GlanceV1Server
from tests.plugin.chains import make_chain
from tests.plugin.xapi import call, params_args, python36
from tests.transfer.helpers import chain_shape, vdi_sha256
from vhdport import plugin as plugin_module
from vhdport import transfer
from vhdport.errors import PluginError
from vhdport.plugin_original import legacy_vdi_uuids, store_url
from vhdport.stores.glance import GlanceStore
from vhdport.stores.glance_v1 import GlanceV1Store
from vhdport.stores.local import LocalStore

HOST = "127.0.0.1"


@pytest.fixture(params=["python3", "python3.6"])
def python(request):
    """The interpreter the plugin runs under: the host's (as the other plugin tests), then 3.6."""
    if request.param == "python3":
        return None  # xapi.call's own choice
    found = python36()
    if found is None:
        allowed_skip("python3.6")
    return found


@pytest.fixture
def v1(tmp_path):
    """Glance v1 at http://127.0.0.1:<port>, no token (the original sent none)."""
    directory = tmp_path / "glance-v1"
    directory.mkdir()
    with GlanceV1Server(str(directory)) as server:
        yield server


def v1_store(server):
    return GlanceStore(server.url, api_version=1, retry_delay=0.01, timeout=10)


def write_legacy_pair(path, tmp_path):
    """snap.vhd (leaf, visible) + image.vhd (its hidden parent), as ``tar -zc -C dir .`` made.

    Returns the sha256 of the leaf's virtual disk through the chain."""
    sr = str(tmp_path / "pair-src")
    leaf, base = make_chain(sr)
    with tarfile.open(path, "w:gz") as tar:
        tar.add(sr, arcname=".", recursive=False)
        tar.add(os.path.join(sr, base + ".vhd"), arcname="./image.vhd")
        tar.add(os.path.join(sr, leaf + ".vhd"), arcname="./snap.vhd")
    return vdi_sha256(sr, leaf)


@pytest.fixture(params=["single", "pair"])
def legacy_image(request, vhd_fixtures, tmp_path):
    """(kind, tgz path, VHD count, sha256 of the virtual disk) of an image in the old naming."""
    if request.param == "single":
        single = vhd_fixtures / "bundle-legacy-single.tgz"  # ./image.vhd alone, visible
        return "single", str(single), 1, vdi_sha256(str(vhd_fixtures), "dynamic")
    path = str(tmp_path / "legacy-pair.tgz")
    return "pair", path, 2, write_legacy_pair(path, tmp_path)


def sr_dir(tmp_path, name):
    path = tmp_path / name
    path.mkdir()
    return str(path)


def original_download(plugin, server, image_id, sr_path, python):
    """download_vhd as nova called it; returns (leaf uuid, uuid_stack)."""
    stack = [str(uuid.uuid4()) for _ in range(2)]
    value = call(plugin, "download_vhd", params_args(
        image_id=image_id, glance_host=HOST, glance_port=server.port, uuid_stack=stack,
        sr_path=sr_path), python=python).value
    return value, stack


def member_names(tgz_path):
    with tarfile.open(tgz_path, "r:gz") as tar:
        return [m.name[2:] if m.name.startswith("./") else m.name for m in tar.getmembers()]


def test_original_calls_round_trip(plugin, v1, legacy_image, python, tmp_path):
    kind, tgz, depth, contents = legacy_image
    store = v1_store(v1)
    image_id = transfer.import_image(store, tgz, "original-" + kind)

    # download: the answer is the leaf VDI's uuid, a plain string (not JSON), from uuid_stack
    sr1 = sr_dir(tmp_path, "sr1")
    leaf, stack = original_download(plugin, v1, image_id, sr1, python)
    assert leaf in stack
    shape = chain_shape(sr1, leaf)
    assert len(shape) == depth
    assert [hidden for _, hidden, _, _, _ in shape] == [False] + [True] * (depth - 1)
    assert sorted(u for u, _, _, _, _ in shape) == sorted(stack[-depth:])
    assert vdi_sha256(sr1, leaf) == contents
    assert ("GET", "/v1/images/" + image_id) in [(m, p) for m, p, _ in v1.requests]

    # upload: nova reserved a queued image first, then named the VDIs image/snap
    new_id = store.create("snapshot-" + kind, "vhd", "ovf")["id"]
    chain = [u for u, _, _, _, _ in shape]
    vdi_uuids = {"image": chain[-1]} if depth == 1 else {"image": chain[1], "snap": chain[0]}
    del v1.requests[:]
    value = call(plugin, "upload_vhd", params_args(
        vdi_uuids=vdi_uuids, image_id=new_id, glance_host=HOST, glance_port=v1.port,
        sr_path=sr1, os_type="linux"), python=python).value
    assert value == ""
    puts = [(p, h) for m, p, h in v1.requests if m == "PUT"]
    # the properties, then the data, then the content digest (a property set once active)
    assert set(p for p, _ in puts) == {"/v1/images/" + new_id}
    digest_put = dict((k.lower(), v) for k, v in puts[-1][1].items())
    assert digest_put["x-image-meta-property-vhdport_content_digest"].startswith(
        "blake2b-256/4MiB:")
    sent = dict((k.lower(), v) for k, v in puts[-2][1].items())
    assert sent.get("transfer-encoding", "").lower() == "chunked"
    assert (sent["x-image-meta-disk-format"], sent["x-image-meta-container-format"]) == \
        ("vhd", "ovf")
    record = store.get(new_id)
    assert record["status"] == "active" and record["properties"]["os_type"] == "linux"
    expected_members = ["image.vhd"] if depth == 1 else ["snap.vhd", "image.vhd"]
    assert member_names(v1.data_path(new_id)) == expected_members

    # download again: the same disk
    sr2 = sr_dir(tmp_path, "sr2")
    leaf2, stack2 = original_download(plugin, v1, new_id, sr2, python)
    assert leaf2 in stack2
    assert len(chain_shape(sr2, leaf2)) == depth
    assert vdi_sha256(sr2, leaf2) == contents


def test_todays_keys_answer_json_on_the_local_store(plugin, python, tmp_path):
    """The same images with today's keys: JSON answers; the mapping still names members the
    original's way, a list keeps 0.vhd .. N.vhd."""
    store_dir = str(tmp_path / "store")
    tgz = str(tmp_path / "legacy-pair.tgz")
    contents = write_legacy_pair(tgz, tmp_path)
    image_id = transfer.import_image(LocalStore(store_dir), tgz, "legacy-pair")
    sr1 = sr_dir(tmp_path, "sr1")
    result = call(plugin, "download_vhd", params_args(
        image_id=image_id, store=store_dir, sr_path=sr1), python=python).json()
    leaf, base = result["chain"]
    assert result["root"] == {"uuid": leaf}
    assert vdi_sha256(sr1, leaf) == contents

    mapped = call(plugin, "upload_vhd", params_args(
        store=store_dir, sr_path=sr1, vdi_uuids={"snap": leaf, "image": base},
        name="mapped"), python=python).json()["image_id"]
    listed = call(plugin, "upload_vhd", params_args(
        store=store_dir, sr_path=sr1, vdi_uuids=[leaf], name="listed"),
        python=python).json()["image_id"]
    data = os.path.join(store_dir, "images", "{}.data")
    assert member_names(data.format(mapped)) == ["snap.vhd", "image.vhd"]
    assert member_names(data.format(listed)) == ["0.vhd", "1.vhd"]

    for new_id in (mapped, listed):
        sr = sr_dir(tmp_path, "sr-" + new_id)
        again = call(plugin, "download_vhd", params_args(
            image_id=new_id, store=store_dir, sr_path=sr), python=python).json()
        assert len(again["chain"]) == 2
        assert vdi_sha256(sr, again["root"]["uuid"]) == contents


def test_pickled_original_params_stay_refused(plugin, v1, tmp_path):
    # protocol-0 pickle of {'glance_host': '127.0.0.1'}: what the original was sent
    pickled = "(dp0\nS'glance_host'\np1\nS'127.0.0.1'\np2\ns."
    code, message = call(plugin, "download_vhd", {"params": pickled}).error
    assert code == "PLUGIN_ARGS" and "pickle" in message and "JSON" in message
    assert v1.requests == []


def test_a_mapping_that_does_not_match_the_sr_uploads_nothing(plugin, v1, tmp_path):
    sr = str(tmp_path / "sr")
    leaf, base = make_chain(sr)
    store = v1_store(v1)
    new_id = store.create("mismatch", "vhd", "ovf")["id"]
    other = str(uuid.uuid4())
    code, message = call(plugin, "upload_vhd", params_args(
        vdi_uuids={"image": other, "snap": leaf}, image_id=new_id, glance_host=HOST,
        glance_port=v1.port, sr_path=sr, os_type="linux")).error
    assert code == "PLUGIN_ARGS"
    assert other in message and "{} <- {}".format(leaf, base) in message
    assert store.get(new_id)["status"] == "queued"
    assert [m for m, _, _ in v1.requests if m == "PUT"] == []


def test_glance_named_twice_is_refused(plugin, v1, tmp_path):
    code, message = call(plugin, "download_vhd", params_args(
        image_id=str(uuid.uuid4()), glance_host=HOST, glance_port=v1.port,
        store=str(tmp_path), sr_path=str(tmp_path))).error
    assert code == "PLUGIN_ARGS" and "names Glance twice" in message


# --- the mapping itself, in-process ------------------------------------------------------


@pytest.mark.parametrize("params,url", [
    ({"glance_host": "glance.example", "glance_port": 9292}, "http://glance.example:9292"),
    ({"glance_host": "10.0.0.5", "glance_port": "9292", "glance_use_ssl": True},
     "https://10.0.0.5:9292"),
    ({"glance_host": "fd00::5", "glance_port": 443, "glance_use_ssl": True},
     "https://[fd00::5]:443"),
])
def test_store_url_is_the_originals(params, url):
    assert store_url(params, "download_vhd") == url


@pytest.mark.parametrize("params,words", [
    ({"glance_host": "evil.example/x?", "glance_port": 9292}, "not a host name"),
    ({"glance_host": "a@b", "glance_port": 9292}, "not a host name"),
    ({"glance_host": HOST, "glance_port": 0}, "glance_port"),
    ({"glance_host": HOST, "glance_port": True}, "glance_port"),
    ({"glance_host": HOST}, "glance_port"),
    ({"glance_port": 9292}, "needs 'glance_host'"),
    ({"glance_host": HOST, "glance_port": 9292, "glance_use_ssl": "yes"}, "glance_use_ssl"),
    ({"glance_host": HOST, "glance_port": 9292, "endpoint": "http://x"}, "twice"),
])
def test_store_url_refuses(params, words):
    with pytest.raises(PluginError, match=words.replace("?", "\\?")):
        store_url(params, "download_vhd")


def test_v1_unless_api_version_says_otherwise():
    params = {"glance_host": HOST, "glance_port": 9292}
    with plugin_module._open_store(params, "download_vhd") as store:
        assert isinstance(store, GlanceV1Store)
    with plugin_module._open_store(dict(params, api_version=2), "download_vhd") as store:
        assert not isinstance(store, GlanceV1Store) and store.api_version == 2


def test_legacy_vdi_uuids_names_and_checks_the_chain():
    snap, image, base = (str(uuid.uuid4()) for _ in range(3))
    leaf, names = legacy_vdi_uuids({"snap": snap, "image": image}, "upload_vhd")
    assert leaf == snap and names([snap, image]) == ["snap", "image"]
    assert names([snap, image, base]) == ["snap", "image", "base"]
    with pytest.raises(PluginError, match="is the 'image' VDI"):
        names([snap])  # coalesced since the caller looked
    leaf, names = legacy_vdi_uuids({"image": image, "snap": None}, "upload_vhd")
    assert leaf == image and names([image]) == ["image"]
    with pytest.raises(PluginError, match="at most 2"):
        names([image, base, str(uuid.uuid4())])
    with pytest.raises(PluginError, match="needs 'image'"):
        legacy_vdi_uuids({"snap": snap}, "upload_vhd")
    with pytest.raises(PluginError, match="'leaf'"):
        legacy_vdi_uuids({"image": image, "leaf": snap}, "upload_vhd")
    with pytest.raises(PluginError, match="canonical uuid"):
        legacy_vdi_uuids({"image": "../../etc/passwd"}, "upload_vhd")
