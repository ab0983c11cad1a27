"""Disk face fixtures: every QCOW2 test here runs against the real qemu-img."""

import pytest

from tests.qcow2.qemu import require_qemu


@pytest.fixture
def qemu():
    require_qemu()
