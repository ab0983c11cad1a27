"""--os-cloud / OS_* / clouds.yaml against a real Keystone and the Glance in its catalog."""

import json

import pytest

from tests.cli.helpers import assert_failed_cleanly, last_line, run
from tests.cli.helpers import chain_hash, make_vdi
from tests.peers.keystone_server import (REGION, USER_PASSWORD, keystone,  # noqa: F401
                                         keystone_glance)

pytestmark = pytest.mark.peer
pytest.importorskip("openstack.config")


def ok(*args):
    result = run(*args)
    assert result.exit_code == 0, (result.exit_code, result.stdout, result.stderr)
    assert USER_PASSWORD not in result.stdout + result.stderr
    return result


@pytest.fixture
def clouds(keystone, keystone_glance, tmp_path, monkeypatch):  # noqa: F811
    """A clouds.yaml (JSON is YAML) with vhdport, admin and an application credential."""
    for name in ("OS_AUTH_TOKEN", "OS_CLOUD", "OS_AUTH_URL", "OS_REGION_NAME", "OS_INTERFACE",
                 "OS_USERNAME", "OS_PASSWORD", "OS_PROJECT_NAME"):
        monkeypatch.delenv(name, raising=False)
    cred_id, secret = keystone.application_credential("vhdport-test-" + tmp_path.name[-12:])
    doc = keystone.clouds(appcred={
        "auth_type": "v3applicationcredential", "region_name": REGION,
        "auth": {"auth_url": keystone.url, "application_credential_id": cred_id,
                 "application_credential_secret": secret}})
    path = tmp_path / "clouds.yaml"
    path.write_text(json.dumps(doc))
    monkeypatch.setenv("OS_CLIENT_CONFIG_FILE", str(path))
    monkeypatch.setenv("HOME", str(tmp_path))   # no user clouds.yaml of this machine
    return doc


def test_os_cloud_upload_and_download_round_trip(clouds, keystone_glance, tmp_path):  # noqa: F811
    sr_a, sr_b = tmp_path / "sr-a", tmp_path / "sr-b"
    vdi, _ = make_vdi(sr_a)
    image = last_line(ok("upload", vdi, "--sr", sr_a, "--os-cloud", "vhdport",
                         "--name", "os-cloud round trip").stdout)
    record = json.loads(ok("image", "show", image, "--os-cloud", "vhdport", "--json").stdout)
    assert record["status"] == "active"
    sr_b.mkdir()
    leaf = last_line(ok("download", image, "--os-cloud", "vhdport", "--sr", sr_b).stdout)
    assert chain_hash(sr_b / (leaf + ".vhd")) == chain_hash(sr_a / (vdi + ".vhd"))
    ok("image", "rm", image, "--os-cloud", "vhdport")


def test_application_credential(clouds, keystone_glance, tmp_path):  # noqa: F811
    _, path = make_vdi(tmp_path / "sr")
    image = last_line(ok("image", "import", path, "--os-cloud", "appcred", "--name", "appcred",
                         "--container-format", "bare").stdout)
    assert image in [r["id"] for r in json.loads(
        ok("image", "ls", "--os-cloud", "appcred", "--json").stdout)]
    ok("image", "rm", image, "--os-cloud", "appcred")


def test_os_variables_without_os_cloud(clouds, keystone, monkeypatch):  # noqa: F811
    for key, value in (("OS_AUTH_URL", keystone.url), ("OS_USERNAME", "vhdport"),
                       ("OS_PASSWORD", USER_PASSWORD), ("OS_PROJECT_NAME", "vhdport"),
                       ("OS_USER_DOMAIN_NAME", "Default"),
                       ("OS_PROJECT_DOMAIN_NAME", "Default"), ("OS_REGION_NAME", REGION)):
        monkeypatch.setenv(key, value)
    assert isinstance(json.loads(ok("image", "ls", "--json").stdout), list)


def test_interface_and_region_pick_the_endpoint(clouds):
    ok("image", "ls", "--os-cloud", "vhdport", "--os-interface", "internal")
    result = run("image", "ls", "--os-cloud", "vhdport", "--os-interface", "admin")
    assert_failed_cleanly(result, "no image (Glance) endpoint", "interface admin")
    result = run("image", "ls", "--os-cloud", "vhdport", "--os-region-name", "Elsewhere")
    assert_failed_cleanly(result, "bad OpenStack client configuration",
                          "Elsewhere is not a valid region name")


def test_wrong_password_is_one_line_and_unechoed(clouds, tmp_path, monkeypatch):
    clouds["clouds"]["vhdport"]["auth"]["password"] = "wrong-pw-5e1d"
    path = tmp_path / "bad.yaml"
    path.write_text(json.dumps(clouds))
    monkeypatch.setenv("OS_CLIENT_CONFIG_FILE", str(path))
    result = run("image", "ls", "--os-cloud", "vhdport")
    assert_failed_cleanly(result, "cloud 'vhdport': keystone authentication failed",
                          "Unauthorized")
    assert "wrong-pw-5e1d" not in result.stdout + result.stderr


def test_unknown_cloud(clouds):
    assert_failed_cleanly(run("image", "ls", "--os-cloud", "nosuchcloud"),
                          "cloud 'nosuchcloud': bad OpenStack client configuration")


def test_token_revoked_mid_upload_through_the_cli(clouds, keystone, tmp_path,  # noqa: F811
                                                  monkeypatch):
    """The token dies while the bundle streams: the next request authenticates again."""
    from vhdport import bundle
    from vhdport.stores.keystone_auth import SessionTokens

    handed_out = []
    real_token, real_write = SessionTokens.token, bundle.write_bundle

    def spying_token(self):
        token = real_token(self)
        handed_out.append(token)
        return token

    def revoking_bundle(*args, **kwargs):
        for number, chunk in enumerate(real_write(*args, **kwargs)):
            yield chunk
            if number == 0:
                keystone.revoke(handed_out[-1])

    monkeypatch.setattr(SessionTokens, "token", spying_token)
    monkeypatch.setattr(bundle, "write_bundle", revoking_bundle)
    sr_a, sr_b = tmp_path / "sr-a", tmp_path / "sr-b"
    vdi, _ = make_vdi(sr_a)
    image = last_line(ok("upload", vdi, "--sr", sr_a, "--os-cloud", "vhdport",
                         "--name", "revoked mid-upload", "--progress", "none").stdout)
    assert len(set(handed_out)) == 2, "one renewal after the revocation"
    monkeypatch.setattr(bundle, "write_bundle", real_write)
    sr_b.mkdir()
    leaf = last_line(ok("download", image, "--os-cloud", "vhdport", "--sr", sr_b).stdout)
    assert chain_hash(sr_b / (leaf + ".vhd")) == chain_hash(sr_a / (vdi + ".vhd"))
    ok("image", "rm", image, "--os-cloud", "vhdport")
