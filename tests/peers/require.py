"""One rule for every test that needs a real peer (qemu-img, libvhdi, Glance, and later Swift,
Keystone, a Python 3.6 runtime): a missing peer skips on a developer's machine, but under CI
(``CI=true``) it fails, because a green CI run that did not test the peers proves nothing."""

import os

import pytest


def under_ci():
    """True when the environment says this is a CI run (CI=true, as most CI systems set it)."""
    return os.environ.get("CI", "").strip().lower() in ("1", "true", "yes")


def require_peer(name, available, reason=""):
    """Go on when *available* is true; otherwise fail under CI, skip elsewhere.

    name: the peer as a user would install it (e.g. "qemu-img (qemu-utils)"); reason: what was
    found missing, so the message says what to install.
    """
    if available:
        return
    message = "peer {} unavailable{}".format(name, ": " + reason if reason else "")
    if under_ci():
        pytest.fail("{} (CI=true: a missing peer is a failure; scripts/sysdeps.sh installs it)"
                    .format(message), pytrace=False)
    pytest.skip(message, allow_module_level=True)


def import_peer(module, name):
    """Import a peer's Python binding (e.g. pyvhdi for libvhdi) through require_peer."""
    try:
        return __import__(module)
    except ImportError as e:
        require_peer(name, False, "cannot import {}: {}".format(module, e))


QEMU_IMG = "/usr/bin/qemu-img"


def require_qemu_img():
    """qemu-img (Debian: qemu-utils), the reference VHD ('vpc') writer and reader."""
    require_peer("qemu-img (qemu-utils)", os.path.exists(QEMU_IMG), "{} not found".format(QEMU_IMG))
    return QEMU_IMG
