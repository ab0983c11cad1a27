"""`vhdport image ...`, `download`, `upload` on the local store, and the shared store options."""

import hashlib
import json
import uuid

import pytest

from tests.allowed_skips import allowed_skip

from tests.cli.helpers import assert_failed_cleanly, assert_usage_error, last_line, run


from vhdport.vhd import Chain, create_dynamic  # noqa: E402

MIB = 1 << 20


def ok(*args, **kwargs):
    result = run(*args, **kwargs)
    assert result.exit_code == 0, (result.exit_code, result.stdout, result.stderr)
    return result


def chain_hash(path):
    digest = hashlib.sha256()
    with Chain.open(str(path)) as chain:
        for _, data in chain.iter_blocks(4 * MIB):
            digest.update(data)
    return digest.hexdigest()


def make_vdi(sr, size=12 * MIB):
    sr.mkdir(exist_ok=True)
    vdi = str(uuid.uuid4())
    path = sr / (vdi + ".vhd")
    create_dynamic(str(path), size)
    with Chain.open(str(path), writable=True) as chain:
        chain.write(0, bytes(range(256)) * 8192)           # 2 MiB
        chain.write(7 * MIB + 3, b"tail data" * 1000)
    return vdi, path


def json_progress_lines(stderr):
    lines = [json.loads(line) for line in stderr.splitlines() if line.startswith("{")]
    assert lines, "no progress lines in " + repr(stderr)
    assert all(set(line) == {"done", "total"} for line in lines)
    dones = [line["done"] for line in lines]
    assert dones == sorted(dones) and dones[-1] > 0
    return lines


def test_image_import_ls_show_download_rm(tmp_path):
    store = tmp_path / "images"
    vdi, path = make_vdi(tmp_path / "sr-a")
    image = last_line(ok("image", "import", path, "--store", store, "--name", "bare disk",
                         "--container-format", "bare", "--property", "os_distro=demo",
                         "--progress", "none").stdout)
    listed = json.loads(ok("image", "ls", "--store", store, "--json").stdout)
    assert [r["id"] for r in listed] == [image]
    assert image in ok("image", "ls", "--store", store).stdout
    record = json.loads(ok("image", "show", image, "--store", "file://" + str(store),
                           "--json").stdout)
    assert record["status"] == "active" and record["name"] == "bare disk"
    assert record["properties"]["os_distro"] == "demo"
    assert record["size"] == path.stat().st_size
    assert "os_distro" in ok("image", "show", image, "--store", store).stdout

    sr_b = tmp_path / "sr-b"
    sr_b.mkdir()
    leaf = last_line(ok("download", image, "--store", store, "--sr", sr_b,
                        "--progress", "json").stdout)
    assert chain_hash(sr_b / (leaf + ".vhd")) == chain_hash(path)

    assert last_line(ok("image", "rm", image, "--store", store).stdout) == image
    assert_failed_cleanly(run("image", "show", image, "--store", store), image, "not found")


def test_upload_download_round_trip_with_progress(tmp_path):
    store = tmp_path / "images"
    sr_a, sr_b = tmp_path / "sr-a", tmp_path / "sr-b"
    vdi, path = make_vdi(sr_a)
    snap = last_line(ok("sr", "snapshot", sr_a, vdi).stdout)
    result = ok("upload", snap, "--sr", sr_a, "--store", store, "--name", "snap",
                "--property", "vdi=" + snap, "--property", "note=a=b",
                "--compression-level", "1", "--progress", "json")
    image = last_line(result.stdout)
    json_progress_lines(result.stderr)
    record = json.loads(ok("image", "show", image, "--store", store, "--json").stdout)
    assert (record["disk_format"], record["container_format"]) == ("vhd", "ovf")
    assert record["properties"]["vdi"] == snap and record["properties"]["note"] == "a=b"

    sr_b.mkdir()
    result = ok("download", image, "--store", store, "--sr", sr_b, "--json",
                "--progress", "json")
    doc = json.loads(result.stdout)
    lines = json_progress_lines(result.stderr)
    assert lines[-1]["done"] == record["size"]
    leaf = doc["root"]["uuid"]
    assert doc["chain"][0] == leaf and len(doc["chain"]) == 2
    assert chain_hash(sr_b / (leaf + ".vhd")) == chain_hash(sr_a / (snap + ".vhd"))
    ok("vhd", "check", sr_b / (leaf + ".vhd"), "--chain")

    # caller-chosen uuids (the plugin's uuid_stack), leaf first
    wanted = [str(uuid.uuid4()), str(uuid.uuid4())]
    doc = json.loads(ok("download", image, "--store", store, "--sr", sr_b, "--json",
                        "--uuid", wanted[0], "--uuid", wanted[1], "--progress", "none").stdout)
    assert doc["chain"] == wanted and doc["root"]["uuid"] == wanted[0]
    assert (sr_b / (wanted[0] + ".vhd")).exists() and (sr_b / (wanted[1] + ".vhd")).exists()

    # --json upload prints the stored record
    doc = json.loads(ok("upload", vdi, "--sr", sr_a, "--store", store, "--name", "vdi",
                        "--json", "--progress", "none").stdout)
    assert doc["status"] == "active" and doc["name"] == "vdi"


def test_upload_argument_errors(tmp_path):
    sr = tmp_path / "sr"
    vdi, _ = make_vdi(sr)
    store = tmp_path / "images"
    both = run("upload", vdi, "--sr", sr, "--store", store, "--name", "x", "--image", "y")
    assert both.exit_code == 2 and "exactly one" in both.stderr
    assert run("upload", vdi, "--sr", sr, "--store", store).exit_code == 2
    bad = run("upload", vdi, "--sr", sr, "--store", store, "--name", "x", "--property", "nokv")
    assert bad.exit_code == 2 and "KEY=VALUE" in bad.stderr
    assert run("upload", vdi, "--sr", sr, "--store", store, "--name", "x",
               "--compression-level", "12").exit_code == 2
    assert run("image", "ls").exit_code == 2, "no --store and no --os-cloud"


def test_download_of_missing_image_fails_cleanly(tmp_path):
    store = tmp_path / "images"
    store.mkdir()   # an existing (empty) store: a missing store is its own error
    sr = tmp_path / "sr"
    sr.mkdir()
    missing = str(uuid.uuid4())
    assert_failed_cleanly(run("download", missing, "--store", store, "--sr", sr,
                              "--progress", "none"), missing)
    assert list(sr.iterdir()) == [] or all(p.name.startswith(".") for p in sr.iterdir())


def test_os_cloud_without_openstack_says_what_to_install(tmp_path, monkeypatch):
    try:
        import openstack  # noqa: F401
        allowed_skip("openstacksdk-installed")
    except ImportError:
        pass
    monkeypatch.setenv("OS_CLOUD", "mycloud")
    assert_failed_cleanly(run("image", "ls", "--store", tmp_path / "images"),
                          "pip install 'vhdport[openstack]'")


def test_rejected_token_is_sent_but_never_echoed(glance_401, monkeypatch):
    secret = "tok-" + uuid.uuid4().hex
    result = run("image", "ls", "--store", glance_401.url, "--os-auth-token", secret)
    line = assert_failed_cleanly(result, "401")
    assert secret not in result.stdout + result.stderr
    assert glance_401.tokens == [secret], "sent once: a 401 is not retried"
    assert "token" in line.lower()
    # from the environment too
    monkeypatch.setenv("OS_AUTH_TOKEN", secret)
    result = run("image", "show", str(uuid.uuid4()), "--store", glance_401.url)
    assert result.exit_code == 1 and secret not in result.stdout + result.stderr
    assert glance_401.tokens[-1] == secret


def test_image_import_reports_the_files_size_as_total(tmp_path):
    """Was: `{"total": null}` (a `1.0/? GiB` bar) although the file's size is known."""
    data = tmp_path / "disk.bin"
    data.write_bytes(b"\x05" * (3 * MIB + 17))
    result = ok("image", "import", data, "--store", tmp_path / "images", "--name", "n",
                "--container-format", "bare", "--disk-format", "raw", "--progress", "json")
    lines = json_progress_lines(result.stderr)
    assert {line["total"] for line in lines} == {3 * MIB + 17}
    assert lines[-1]["done"] == 3 * MIB + 17
