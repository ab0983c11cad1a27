"""upload/import --import, --stores, --all-stores, `image copy`, and the import-only fallback,
through the CLI with --os-cloud against the real Keystone + Glance (stores fast, cheap)."""

import json
import urllib.request

import pytest

from tests.cli.helpers import assert_failed_cleanly, assert_usage_error, last_line, run
from tests.cli.test_cloud import clouds  # noqa: F401
from tests.cli.helpers import chain_hash, make_vdi
from tests.peers.keystone_server import keystone, keystone_glance  # noqa: F401
from tests.stores.test_glance_import import broken_store, import_only

pytestmark = pytest.mark.peer


def ok(*args):
    result = run(*args)
    assert result.exit_code == 0, (result.exit_code, result.stdout, result.stderr)
    return result


def download_hash(image, sr, cloud="vhdport"):
    sr.mkdir()
    leaf = last_line(ok("download", image, "--os-cloud", cloud, "--sr", sr).stdout)
    return chain_hash(sr / (leaf + ".vhd"))


def stores_of(image, cloud="vhdport"):
    return json.loads(ok("image", "show", image, "--os-cloud", cloud, "--json").stdout)["stores"]


def test_upload_import_round_trip(clouds, tmp_path):  # noqa: F811
    vdi, path = make_vdi(tmp_path / "sr-a")
    result = ok("upload", vdi, "--sr", tmp_path / "sr-a", "--os-cloud", "vhdport", "--import",
                "--name", "cli import", "--progress", "none")
    image = last_line(result.stdout)
    assert "Glance is importing" in result.stderr
    assert stores_of(image) == ["fast"]
    assert download_hash(image, tmp_path / "sr-b") == chain_hash(path)
    ok("image", "rm", image, "--os-cloud", "vhdport")


def test_import_only_policy_is_handled_and_said(clouds, keystone_glance, tmp_path):  # noqa: F811
    vdi, path = make_vdi(tmp_path / "sr-a")
    with import_only(keystone_glance):
        result = ok("upload", vdi, "--sr", tmp_path / "sr-a", "--os-cloud", "vhdport",
                    "--name", "cli import-only", "--progress", "none")
    image = last_line(result.stdout)
    assert "refuses direct uploads (HTTP 403 on PUT /file); using the interoperable import" \
        in result.stderr
    assert download_hash(image, tmp_path / "sr-b") == chain_hash(path)
    ok("image", "rm", image, "--os-cloud", "vhdport")


def test_one_store_then_copy_to_the_other(clouds, keystone, keystone_glance, tmp_path):  # noqa: F811,E501
    vdi, path = make_vdi(tmp_path / "sr-a")
    image = last_line(ok("upload", vdi, "--sr", tmp_path / "sr-a", "--os-cloud", "vhdport",
                         "--stores", "cheap", "--name", "cli copy", "--progress", "none").stdout)
    assert stores_of(image) == ["cheap"]
    assert_failed_cleanly(run("image", "copy", image, "--stores", "fast", "--os-cloud",
                              "vhdport"), "403", "copy-image is admin-only")
    result = ok("image", "copy", image, "--stores", "fast", "--os-cloud", "admin")
    assert last_line(result.stdout) == image and "is in stores" in result.stderr
    assert sorted(stores_of(image)) == ["cheap", "fast"]
    shown = ok("image", "show", image, "--os-cloud", "vhdport").stdout
    assert "cheap, fast" in shown or "fast, cheap" in shown
    first = download_hash(image, tmp_path / "sr-b")
    # drop the cheap copy (admin): the next download can only come from fast
    req = urllib.request.Request("{}/v2/stores/cheap/{}".format(keystone_glance.url, image),
                                 method="DELETE", headers={"X-Auth-Token": keystone.admin_token()})
    with urllib.request.urlopen(req, timeout=60) as reply:
        assert reply.status == 204
    assert stores_of(image) == ["fast"]
    assert download_hash(image, tmp_path / "sr-c") == first == chain_hash(path)
    ok("image", "rm", image, "--os-cloud", "vhdport")


def test_failed_import_is_one_clear_line_and_leaves_no_image(clouds, keystone_glance,  # noqa: F811
                                                            tmp_path):
    _, path = make_vdi(tmp_path / "sr")
    name = "cli failed import " + tmp_path.name
    with broken_store(keystone_glance, "cheap"):
        result = run("image", "import", path, "--os-cloud", "vhdport", "--import", "--stores",
                     "cheap", "--name", name, "--container-format", "bare", "--progress", "none")
    assert result.exit_code == 1 and "Traceback" not in result.stderr, result.stderr
    last = result.stderr.strip().splitlines()[-1]
    assert last.startswith("vhdport: error: Glance could not import image "), last
    assert "failed stores: cheap" in last and "Task failed" in last, last
    names = [r["name"] for r in json.loads(ok("image", "ls", "--os-cloud", "vhdport",
                                               "--json").stdout)]
    assert name not in names


def test_options_need_a_glance_v2(tmp_path):
    _, path = make_vdi(tmp_path / "sr")
    assert_usage_error(run("image", "import", path, "--store", tmp_path / "images", "--import",
                           "--name", "x"), "need a Glance store (API v2)")
    assert_usage_error(run("image", "copy", "some-id", "--store", tmp_path / "images",
                           "--stores", "a"), "needs a Glance store (API v2)")
    assert_usage_error(run("image", "copy", "some-id", "--store", tmp_path / "images"),
                       "give --stores ID,ID or --all-stores")


def test_stores_and_all_stores_exclude_each_other(clouds, tmp_path):  # noqa: F811
    _, path = make_vdi(tmp_path / "sr")
    assert_usage_error(run("image", "import", path, "--os-cloud", "vhdport", "--stores", "fast",
                           "--all-stores", "--name", "x"), "not both")


def test_all_stores(clouds, tmp_path):  # noqa: F811
    _, path = make_vdi(tmp_path / "sr")
    result = ok("image", "import", path, "--os-cloud", "vhdport", "--all-stores",
                "--name", "cli all stores", "--container-format", "bare", "--progress", "none")
    image = last_line(result.stdout)
    assert "into fast, cheap" in result.stderr
    assert sorted(stores_of(image)) == ["cheap", "fast"]
    ok("image", "rm", image, "--os-cloud", "vhdport")
