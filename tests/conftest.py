"""Fixtures shared by every test directory, and the skip policy of the whole suite."""

import pathlib
import tarfile

import pytest

# the skip policy's hooks, found here by name (tests/skip_policy.py says why)
from tests.skip_policy import (pytest_collectreport, pytest_runtest_makereport,  # noqa: F401
                               pytest_sessionfinish, pytest_terminal_summary)

REPO = pathlib.Path(__file__).resolve().parent.parent
# vendored: a clone tests everything with no file from outside the repository (tests/data/README.md)
FIXTURES_TGZ = REPO / "tests" / "data" / "vhd-util-fixtures.tgz"


@pytest.fixture(scope="session")
def vhd_fixtures(tmp_path_factory):
    """The vhd-util reference fixtures unpacked once per session (a Path).

    Shared by all tests: copy a file elsewhere before doing anything that could write it.
    """
    root = tmp_path_factory.mktemp("vhd-util-fixtures")
    with tarfile.open(str(FIXTURES_TGZ), "r:gz") as tar:
        for member in tar.getmembers():
            if not (member.isfile() or member.isdir()) or member.name.startswith("/") \
                    or ".." in pathlib.PurePosixPath(member.name).parts:
                raise RuntimeError("unexpected member {!r} in {}".format(member.name, FIXTURES_TGZ))
        tar.extractall(str(root))
    return root
