import os

import pytest

from vhdport.plugin_install import install
from tests.plugin.chains import make_chain


@pytest.fixture(scope="session")
def installed(tmp_path_factory):
    """(plugin path, zipapp path) installed under a temp root once per session."""
    root = tmp_path_factory.mktemp("root")
    plugin, pyz = install(str(root))
    return plugin, pyz


@pytest.fixture
def plugin(installed):
    return installed[0]


@pytest.fixture
def kernel_env(tmp_path):
    """Environment pointing the plugin's kernel dir into the test's temp dir."""
    kdir = str(tmp_path / "boot" / "guest")
    return kdir, {"VHDPORT_KERNEL_DIR": kdir}


@pytest.fixture
def sr_chain(tmp_path):
    """An SR directory holding a two-file chain: (sr_path, leaf uuid, base uuid)."""
    sr_path = str(tmp_path / "sr")
    leaf, base = make_chain(sr_path)
    return sr_path, leaf, base


@pytest.fixture
def victim(tmp_path):
    path = str(tmp_path / "victim")
    with open(path, "wb") as f:
        f.write(b"must survive")
    yield path
    assert os.path.exists(path), "a file outside the kernel dir was removed"
