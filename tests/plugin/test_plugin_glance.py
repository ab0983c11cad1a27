"""download_vhd / upload_vhd through the installed plugin against a real Glance (peer)."""

import os
import uuid

import pytest

from tests.peers.glance_server import TEST_TOKEN, glance_auth  # noqa: F401
from tests.peers.proxies import TlsProxy, make_self_signed_cert
from tests.plugin.chains import make_chain, virtual_bytes
from tests.plugin.xapi import call, params_args

pytestmark = pytest.mark.peer

MIB = 1024 * 1024


def whole(sr, leaf):
    return virtual_bytes(sr, leaf, 8 * MIB)


def test_chain_roundtrip_with_token(plugin, glance_auth, tmp_path):  # noqa: F811
    sr = str(tmp_path / "sr")
    leaf, _ = make_chain(sr)
    new_id = call(plugin, "upload_vhd2", params_args(
        store=glance_auth.url, api_version=2, auth_token=TEST_TOKEN, sr_path=sr,
        vdi_uuids=[leaf], name="plugin-glance", properties={"os_type": "linux"})
    ).json()["image_id"]
    sr2 = str(tmp_path / "sr2")
    os.makedirs(sr2)
    # nova's spelling: endpoint + the token in extra_headers
    reply = call(plugin, "download_vhd2", params_args(
        endpoint=glance_auth.url, extra_headers={"X-Auth-Token": TEST_TOKEN}, image_id=new_id,
        sr_path=sr2))
    result = reply.json()
    assert len(result["chain"]) == 2
    assert whole(sr2, result["root"]["uuid"]) == whole(sr, leaf)
    assert TEST_TOKEN not in reply.stderr


def test_bad_token_and_missing_image(plugin, glance_auth, tmp_path):  # noqa: F811
    sr = str(tmp_path / "sr")
    os.makedirs(sr)
    bad = "wrong-token-" + "x" * 20
    reply = call(plugin, "download_vhd", params_args(
        store=glance_auth.url, auth_token=bad, image_id=str(uuid.uuid4()), sr_path=sr))
    assert reply.error[0] == "AUTH_FAILED"
    assert bad not in reply.stdout and bad not in reply.stderr
    missing = str(uuid.uuid4())
    code, message = call(plugin, "download_vhd", params_args(
        store=glance_auth.url, auth_token=TEST_TOKEN, image_id=missing, sr_path=sr)).error
    assert code == "IMAGE_NOT_FOUND" and missing in message


@pytest.fixture(scope="module")
def tls_glance(glance_auth, tmp_path_factory):  # noqa: F811
    """The real Glance behind TLS with a self-signed certificate: (https url, CA file)."""
    cert, key = make_self_signed_cert(str(tmp_path_factory.mktemp("tls")))
    with TlsProxy(glance_auth.port, cert, key) as proxy:
        yield proxy.url, cert


def test_chain_roundtrip_over_https_with_a_ca_file(plugin, tls_glance, tmp_path):
    url, cacert = tls_glance
    sr = str(tmp_path / "sr")
    leaf, _ = make_chain(sr)
    new_id = call(plugin, "upload_vhd2", params_args(
        store=url, auth_token=TEST_TOKEN, cacert=cacert, sr_path=sr, vdi_uuids=[leaf],
        name="plugin-glance-tls")).json()["image_id"]
    sr2 = str(tmp_path / "sr2")
    os.makedirs(sr2)
    result = call(plugin, "download_vhd2", params_args(
        store=url, auth_token=TEST_TOKEN, cacert=cacert, image_id=new_id, sr_path=sr2)).json()
    assert len(result["chain"]) == 2
    assert whole(sr2, result["root"]["uuid"]) == whole(sr, leaf)


def test_https_without_the_ca_file_is_refused(plugin, tls_glance, tmp_path):
    url, _ = tls_glance
    sr = str(tmp_path / "sr")
    os.makedirs(sr)
    code, message = call(plugin, "download_vhd", params_args(
        store=url, auth_token=TEST_TOKEN, image_id=str(uuid.uuid4()), sr_path=sr)).error
    assert code == "STORE_ERROR" and "certificate" in message and "cacert" in message
    assert [n for n in os.listdir(sr) if n.endswith(".vhd")] == []
