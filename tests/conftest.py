"""Fixtures shared by every test directory."""

import os
import pathlib
import tarfile

import pytest

REPO = pathlib.Path(__file__).resolve().parent.parent
FIXTURES_TGZ = pathlib.Path(os.environ.get("VHDPORT_FIXTURES_TGZ") or
                            REPO.parent / "shared" / "fixtures" / "vhd-util-fixtures.tgz")


@pytest.fixture(scope="session")
def vhd_fixtures(tmp_path_factory):
    """The vhd-util reference fixtures unpacked once per session (a Path); skip if absent.

    Shared by all tests: copy a file elsewhere before doing anything that could write it.
    """
    if not FIXTURES_TGZ.is_file():
        pytest.skip("shared fixtures not found at {}".format(FIXTURES_TGZ))
    root = tmp_path_factory.mktemp("vhd-util-fixtures")
    with tarfile.open(str(FIXTURES_TGZ), "r:gz") as tar:
        for member in tar.getmembers():
            if not (member.isfile() or member.isdir()) or member.name.startswith("/") \
                    or ".." in pathlib.PurePosixPath(member.name).parts:
                raise RuntimeError("unexpected member {!r} in {}".format(member.name, FIXTURES_TGZ))
        tar.extractall(str(root))
    return root
