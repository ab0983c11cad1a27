"""The installed plugin under Python 3.6 (dom0's interpreter, vendored in tests/runtimes/)."""

import os
import subprocess
import uuid
import zipfile

import pytest

from tests.peers.require import require_peer
from vhdport.vhd import Chain, create_dynamic
from tests.plugin.chains import virtual_bytes
from tests.plugin.xapi import call, params_args, python36, python36_problem

PY36 = python36()


@pytest.fixture(autouse=True)
def _python36_present():
    require_peer("Python 3.6 (tests/runtimes/, vendored)", PY36 is not None, python36_problem())


def test_every_core_module_imports_under_36(installed):
    names = sorted(n[:-3].replace("/", ".").replace(".__init__", "")
                   for n in zipfile.ZipFile(installed[1]).namelist()
                   if n.startswith("vhdport/") and n.endswith(".py"))
    code = ("import sys, importlib\nsys.path.insert(0, sys.argv[1])\n"
            "for name in sys.argv[2:]:\n    importlib.import_module(name)\nprint('ok')\n")
    proc = subprocess.run([PY36, "-I", "-S", "-c", code, installed[1]] + names,
                          stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                          universal_newlines=True, timeout=120)
    assert proc.stdout.strip() == "ok", proc.stderr


def test_kernel_copy_and_remove_under_36(plugin, sr_chain, kernel_env):
    sr_path, leaf, _ = sr_chain
    kdir, env = kernel_env
    path = call(plugin, "copy_kernel_vdi",
                {"vdi-uuid": leaf, "image-size": "1500000", "sr-path": sr_path}, env,
                python=PY36).value
    with open(path, "rb") as f:
        assert f.read() == virtual_bytes(sr_path, leaf, 1500000)
    assert call(plugin, "remove_kernel_ramdisk", {"kernel-file": path, "ramdisk-file": ""},
                env, python=PY36).value == "ok"
    assert os.listdir(kdir) == []


def test_upload_and_download_under_36(plugin, tmp_path):
    sr = str(tmp_path / "sr")
    os.makedirs(sr)
    vdi = str(uuid.uuid4())
    path = os.path.join(sr, vdi + ".vhd")
    create_dynamic(path, 4 * 1024 * 1024, uuid=uuid.UUID(vdi))
    with Chain.open(path, writable=True) as chain:
        chain.write(4096, b"dom0" * 5000)
        chain.flush()
    store = str(tmp_path / "store")
    image_id = call(plugin, "upload_vhd", params_args(store=store, sr_path=sr, vdi_uuid=vdi,
                                                      name="py36"), python=PY36).json()["image_id"]
    sr2 = str(tmp_path / "sr2")
    os.makedirs(sr2)
    leaf = call(plugin, "download_vhd", params_args(image_id=image_id, store=store, sr_path=sr2),
                python=PY36).json()["root"]["uuid"]
    assert virtual_bytes(sr2, leaf, 4 * 1024 * 1024) == virtual_bytes(sr, vdi, 4 * 1024 * 1024)


def test_failures_under_36(plugin):
    assert call(plugin, "nope", {}, python=PY36).error == ["UNKNOWN_XENAPI_PLUGIN_FUNCTION", "nope"]
    code, message = call(plugin, "download_vhd", {"params": "(dp0\nS'a'\np1\ns."},
                         python=PY36).error
    assert code == "PLUGIN_ARGS" and "pickle" in message


def test_qcow2_chain_round_trip_under_36(plugin, tmp_path):
    from tests.plugin.test_plugin_transfer import qcow2_round_trip
    qcow2_round_trip(plugin, tmp_path, python=PY36)


def test_copy_kernel_of_a_qcow2_vdi_under_36(plugin, tmp_path, kernel_env):
    from tests.plugin.test_plugin_kernel import qcow2_kernel_copy
    qcow2_kernel_copy(plugin, tmp_path, kernel_env[1], python=PY36)


@pytest.mark.parametrize("disk_format, image_format, suffix", [
    ("qcow2", None, ".qcow2"), ("qcow2", "vhd", ".vhd"), ("raw", "qcow2", ".qcow2")])
def test_cloud_image_download_under_36(plugin, tmp_path, disk_format, image_format, suffix):
    from tests.plugin.test_plugin_transfer import landed_file, qcow2_image
    from tests.qcow2.qemu import qemu_img
    store, image_id, raw = qcow2_image(tmp_path, disk_format)
    sr = str(tmp_path / "sr")
    os.makedirs(sr)
    params = dict(image_id=image_id, store=store, sr_path=sr)
    if image_format:
        params["image_format"] = image_format
    path = landed_file(sr, call(plugin, "download_vhd", params_args(**params), python=PY36))
    assert path.endswith(suffix)
    proc = qemu_img("compare", "-f", "qcow2" if suffix == ".qcow2" else "vpc", "-F", "raw",
                    path, raw, check=False)
    assert proc.returncode == 0, proc.stdout
