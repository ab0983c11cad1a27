"""download_vhd / upload_vhd through the installed plugin (python3 -I -S, standard library only)
with s3:// and swift:// stores on the REAL Swift peer; settings come in params["object_store"]."""

import os

import pytest

from tests.plugin.chains import make_chain, virtual_bytes
from tests.allowed_skips import allowed_skip
from tests.plugin.xapi import call, params_args, python36
from tests.stores.objpeer import fresh_name, swift_peer  # noqa: F401

pytestmark = pytest.mark.peer

MIB = 1 << 20


def s3_settings(server, **extra):
    settings = {"endpoint_url": server.url, "access_key": server.user,
                "secret_key": server.key, "region": server.region, "part_size": MIB,
                "connections": 2}
    settings.update(extra)
    return settings


PY36 = python36()


def interpreter(python):
    """None (the default python3) or dom0's Python 3.6 when this machine has one."""
    if python != "3.6":
        return None
    if PY36 is None:
        allowed_skip("python3.6")
    return PY36


@pytest.mark.parametrize("python", [None, pytest.param("3.6", id="python3.6")])
def test_s3_upload_then_download_through_the_plugin(plugin, swift_peer, tmp_path, python):  # noqa: F811
    """Also under dom0's Python 3.6 when this machine has one (SigV4, XML, threads)."""
    python = interpreter(python)
    sr, sr2 = str(tmp_path / "sr"), str(tmp_path / "sr2")
    leaf, _ = make_chain(sr)
    os.makedirs(sr2)
    store = "s3://{}/plugin".format(fresh_name())
    reply = call(plugin, "upload_vhd", params_args(
        store=store, object_store=s3_settings(swift_peer), sr_path=sr, vdi_uuid=leaf,
        name="plugin-s3"), python=python)
    image_id = reply.json()["image_id"]
    reply = call(plugin, "download_vhd", params_args(
        store=store, object_store=s3_settings(swift_peer), image_id=image_id, sr_path=sr2),
        python=python)
    result = reply.json()
    assert len(result["chain"]) == 2
    assert virtual_bytes(sr2, result["root"]["uuid"], 8 * MIB) == virtual_bytes(sr, leaf, 8 * MIB)


@pytest.mark.parametrize("python", [None, pytest.param("3.6", id="python3.6")])
def test_swift_download_of_an_s3_upload_through_the_plugin(plugin, swift_peer, tmp_path,  # noqa: F811
                                                           python):
    python = interpreter(python)
    sr, sr2 = str(tmp_path / "sr"), str(tmp_path / "sr2")
    leaf, _ = make_chain(sr)
    os.makedirs(sr2)
    bucket = fresh_name()
    image_id = call(plugin, "upload_vhd", params_args(
        store="s3://{}".format(bucket), object_store=s3_settings(swift_peer), sr_path=sr,
        vdi_uuid=leaf, name="x")).json()["image_id"]
    result = call(plugin, "download_vhd", params_args(
        store="swift://{}".format(bucket), image_id=image_id, sr_path=sr2,
        object_store={"auth_url": swift_peer.auth_url, "user": swift_peer.user,
                      "key": swift_peer.key}), python=python).json()
    assert virtual_bytes(sr2, result["root"]["uuid"], 8 * MIB) == virtual_bytes(sr, leaf, 8 * MIB)


def test_a_wrong_secret_is_auth_failed_and_never_shown(plugin, swift_peer, tmp_path):  # noqa: F811
    sr = str(tmp_path / "sr")
    os.makedirs(sr)
    secret = "plugin-wrong-secret-31337"
    reply = call(plugin, "download_vhd", params_args(
        store="s3://{}".format(fresh_name()), image_id="00000000-0000-4000-8000-000000000000",
        sr_path=sr, object_store=s3_settings(swift_peer, secret_key=secret)))
    assert reply.error[0] == "AUTH_FAILED"
    assert secret not in reply.stdout and secret not in reply.stderr


@pytest.mark.parametrize("object_store, store, fragment", [
    ({"bogus": "x"}, "s3://b", "unknown object_store key(s) bogus"),
    ({"connections": "4"}, "s3://b", "object_store 'connections' must be a non-empty integer"),
    ({"region": "x"}, "/srv/images", "applies to s3:// and swift:// stores only"),
])
def test_bad_object_store_params_are_plugin_args_errors(plugin, tmp_path, object_store, store,
                                                        fragment):
    reply = call(plugin, "download_vhd", params_args(
        store=store, object_store=object_store, image_id="x", sr_path=str(tmp_path)))
    assert reply.error[0] == "PLUGIN_ARGS" and fragment in reply.error[1]
