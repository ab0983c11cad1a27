"""The CLI on s3:// and swift:// stores of the REAL Swift peer: upload through one API,
list / show / download through the other, rm and gc; the object-store options."""

import json

import pytest

from tests.cli.helpers import assert_failed_cleanly, last_line, run
from tests.cli.test_store_cmds import chain_hash, make_vdi
from tests.stores.objpeer import fresh_name, leftovers, swift_peer  # noqa: F401

pytestmark = pytest.mark.peer


@pytest.fixture
def peer_env(swift_peer, monkeypatch):  # noqa: F811
    for name in ("AWS_PROFILE", "AWS_SESSION_TOKEN", "AWS_ENDPOINT_URL_S3", "OS_AUTH_TOKEN",
                 "OS_CLOUD"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", swift_peer.user)
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", swift_peer.key)
    monkeypatch.setenv("AWS_DEFAULT_REGION", swift_peer.region)
    monkeypatch.setenv("ST_AUTH", swift_peer.auth_url)
    monkeypatch.setenv("ST_USER", swift_peer.user)
    monkeypatch.setenv("ST_KEY", swift_peer.key)
    return swift_peer


def ok(*args):
    result = run(*args)
    assert result.exit_code == 0, (result.exit_code, result.stdout, result.stderr)
    return result


def test_upload_via_s3_then_ls_show_download_via_swift_rm_and_gc(peer_env, tmp_path):
    bucket = fresh_name()
    s3_url, swift_url = "s3://{}/images".format(bucket), "swift://{}/images".format(bucket)
    src, dst = tmp_path / "src", tmp_path / "dst"
    vdi, _ = make_vdi(src)
    image_id = last_line(ok("upload", vdi, "--sr", src, "--store", s3_url, "--name", "cli-s3",
                            "--endpoint-url", peer_env.url, "--connections", "2",
                            "--part-size", "1M", "--property", "k=v").stdout)
    listed = json.loads(ok("image", "ls", "--store", swift_url, "--json").stdout)
    assert [(r["id"], r["status"], r["name"]) for r in listed] == [
        (image_id, "active", "cli-s3")]
    shown = json.loads(ok("image", "show", image_id, "--store", s3_url, "--endpoint-url",
                          peer_env.url, "--json").stdout)
    assert shown["properties"].pop("vhdport_content_digest").startswith("blake2b-256/4MiB:")
    assert shown["properties"] == {"k": "v"} and shown["size"] == listed[0]["size"]
    dst.mkdir()
    leaf = last_line(ok("download", image_id, "--sr", dst, "--store", swift_url,
                        "--connections", "3").stdout)
    assert chain_hash(dst / (leaf + ".vhd")) == chain_hash(src / (vdi + ".vhd"))
    assert last_line(ok("image", "rm", image_id, "--store", swift_url).stdout) == image_id
    assert json.loads(ok("image", "ls", "--store", swift_url, "--json").stdout) == []
    assert json.loads(ok("image", "gc", "--store", swift_url, "--min-age", "0",
                         "--json").stdout) == []
    assert leftovers(peer_env, bucket) == []


def test_upload_and_download_through_swift(peer_env, tmp_path):
    url = "swift://{}".format(fresh_name())
    src, dst = tmp_path / "src", tmp_path / "dst"
    vdi, _ = make_vdi(src)
    dst.mkdir()
    image_id = last_line(ok("upload", vdi, "--sr", src, "--store", url, "--name", "cli-sw",
                            "--part-size", "1M").stdout)
    leaf = last_line(ok("download", image_id, "--sr", dst, "--store", url).stdout)
    assert chain_hash(dst / (leaf + ".vhd")) == chain_hash(src / (vdi + ".vhd"))


def test_missing_s3_credentials_fail_in_one_line(peer_env, monkeypatch, tmp_path):
    monkeypatch.delenv("AWS_ACCESS_KEY_ID")
    monkeypatch.setenv("HOME", str(tmp_path))
    result = run("image", "ls", "--store", "s3://b", "--endpoint-url", peer_env.url)
    assert_failed_cleanly(result, "no S3 credentials for s3://b")


def test_a_wrong_secret_fails_in_one_line_without_it(peer_env, monkeypatch):
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "cli-wrong-secret-5150")
    result = run("image", "ls", "--store", "s3://{}".format(fresh_name()), "--endpoint-url",
                 peer_env.url)
    assert_failed_cleanly(result, "SignatureDoesNotMatch")
    assert "cli-wrong-secret-5150" not in result.stderr + result.stdout


def test_object_options_are_refused_for_other_stores(tmp_path):
    result = run("image", "ls", "--store", str(tmp_path), "--part-size", "5M")
    assert result.exit_code == 2 and "--part-size only apply to s3:// and swift://" in \
        result.stderr
    result = run("image", "gc", "--store", str(tmp_path))
    assert result.exit_code == 2 and "image gc is for s3:// and swift:// stores" in result.stderr
    result = run("image", "ls", "--store", "s3://b", "--connections", "0")
    assert result.exit_code == 2 and "must be at least 1" in result.stderr


def test_os_cloud_gives_swift_its_token_and_object_store_endpoint(peer_env, monkeypatch):
    """keystone (stood in for: openstacksdk's connect) hands the token and the catalog's
    object-store endpoint; the real Swift accepts them."""
    import sys
    import types
    storage_url, token = peer_env.v1_auth()
    for name in ("ST_AUTH", "ST_USER", "ST_KEY"):
        monkeypatch.delenv(name)
    asked = []

    def connect(cloud=None):
        return types.SimpleNamespace(
            auth_token=token, session=types.SimpleNamespace(verify=True),
            endpoint_for=lambda service: asked.append(service) or (
                storage_url if service == "object-store" else None))

    monkeypatch.setitem(sys.modules, "openstack", types.SimpleNamespace(connect=connect))
    result = ok("image", "ls", "--store", "swift://{}".format(fresh_name()), "--os-cloud", "prod",
                "--json")
    assert json.loads(result.stdout) == [] and asked == ["object-store"]
    assert token not in result.stdout + result.stderr
