import os
import shutil
import subprocess

import pytest

from tests.bundle.helpers import FIXTURES_TGZ, make_vhd
from tests.peers.require import require_qemu_img


@pytest.fixture(scope="session")
def fixtures(tmp_path_factory):
    """The vendored vhd-util fixtures (tests/data), unpacked once."""
    root = str(tmp_path_factory.mktemp("fixtures"))
    subprocess.check_call(["tar", "-xzf", FIXTURES_TGZ, "-C", root])
    return root


@pytest.fixture(scope="session")
def qemu_vhds(tmp_path_factory):
    """A few VHDs made by qemu-img: dynamic and fixed, with data."""
    require_qemu_img()
    root = str(tmp_path_factory.mktemp("qemu"))
    return {
        "dynamic": make_vhd(os.path.join(root, "dynamic.vhd"), 9, "dynamic", seed=1),
        "fixed": make_vhd(os.path.join(root, "fixed.vhd"), 5, "fixed", seed=2),
        "empty": make_vhd(os.path.join(root, "empty.vhd"), 4, "dynamic", data=False),
    }


@pytest.fixture
def sandbox(tmp_path):
    """(sandbox root, staging dir inside it): staging plays the SR's staging dir."""
    sr = tmp_path / "sr"
    staging = sr / "staging"
    staging.mkdir(parents=True)
    (sr / "existing.vhd").write_bytes(b"not ours")
    return str(tmp_path), str(staging)

