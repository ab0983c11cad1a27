"""The store commands against a real Glance (tests/peers/glance_server.py), token from the env."""

import json

import pytest

from tests.cli.helpers import assert_failed_cleanly, last_line, run
from tests.cli.test_store_cmds import chain_hash, make_vdi
from tests.peers.glance_server import TEST_TOKEN, glance_auth  # noqa: F401

pytestmark = pytest.mark.peer


def ok(*args, **kwargs):
    result = run(*args, **kwargs)
    assert result.exit_code == 0, (result.exit_code, result.stdout, result.stderr)
    assert TEST_TOKEN not in result.stdout + result.stderr
    return result


@pytest.fixture
def glance(glance_auth, monkeypatch):  # noqa: F811
    monkeypatch.setenv("OS_AUTH_TOKEN", TEST_TOKEN)
    return glance_auth.url


def test_import_show_download_rm(glance, tmp_path):
    _, path = make_vdi(tmp_path / "sr-a")
    image = last_line(ok("image", "import", path, "--store", glance, "--name", "cli bare",
                         "--container-format", "bare", "--property", "cli_test=yes").stdout)
    record = json.loads(ok("image", "show", image, "--store", glance, "--json").stdout)
    assert record["status"] == "active" and record["properties"]["cli_test"] == "yes"
    assert image in [r["id"] for r in json.loads(
        ok("image", "ls", "--store", glance, "--json").stdout)]
    sr_b = tmp_path / "sr-b"
    sr_b.mkdir()
    leaf = last_line(ok("download", image, "--store", glance, "--sr", sr_b).stdout)
    assert chain_hash(sr_b / (leaf + ".vhd")) == chain_hash(path)
    ok("image", "rm", image, "--store", glance)
    assert_failed_cleanly(run("image", "show", image, "--store", glance), image)


def test_upload_chain_then_download(glance, tmp_path):
    sr_a, sr_b = tmp_path / "sr-a", tmp_path / "sr-b"
    vdi, _ = make_vdi(sr_a)
    snap = last_line(ok("sr", "snapshot", sr_a, vdi).stdout)
    image = last_line(ok("upload", snap, "--sr", sr_a, "--store", glance, "--name", "cli snap",
                         "--property", "source=" + snap).stdout)
    record = json.loads(ok("image", "show", image, "--store", glance, "--json").stdout)
    assert (record["disk_format"], record["container_format"]) == ("vhd", "ovf")
    sr_b.mkdir()
    doc = json.loads(ok("download", image, "--store", glance, "--sr", sr_b, "--json").stdout)
    assert len(doc["chain"]) == 2
    assert chain_hash(sr_b / (doc["root"]["uuid"] + ".vhd")) == chain_hash(sr_a / (snap + ".vhd"))
    ok("image", "rm", image, "--store", glance)


def test_wrong_token_fails_fast_and_unechoed(glance, tmp_path, monkeypatch):
    monkeypatch.setenv("OS_AUTH_TOKEN", "wrong-token-7d1e")
    result = run("image", "ls", "--store", glance)
    assert_failed_cleanly(result, "401")
    assert "wrong-token-7d1e" not in result.stdout + result.stderr
