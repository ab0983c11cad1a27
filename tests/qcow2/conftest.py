"""QCOW2 test fixtures."""

import os

import pytest


@pytest.fixture(autouse=True)
def _restore_cwd():
    """Tests that work in tmp_path (relative backing names) chdir there; undo it after each,
    so later tests (and the subprocesses they start) see the directory the run began in."""
    cwd = os.getcwd()
    yield
    os.chdir(cwd)
