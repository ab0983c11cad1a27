"""Backing names are followed only to a file beside the child; anything else is refused."""

import os

import pytest

from vhdport.disk.qcow2_backing import backing_file_name, in_directory, stem
from vhdport.errors import FormatError, Qcow2UnsupportedError

CHILD = "/srv/sr/22222222-2222-2222-2222-222222222222.qcow2"
PARENT = "11111111-1111-1111-1111-111111111111.qcow2"


@pytest.mark.parametrize("name", [PARENT, "/var/run/sr-mount/some-sr/" + PARENT])
def test_sm_names_resolve_beside_the_child(name):
    assert backing_file_name(CHILD, name) == PARENT
    assert in_directory(CHILD, name, "qcow2") == "/srv/sr/" + PARENT
    assert stem(name) == PARENT[:-6]


@pytest.mark.parametrize("name", [
    "../other/" + PARENT, "sub/" + PARENT, "/etc/passwd", "/srv/sr/" + PARENT,
    "/var/run/sr-mount/a/b/" + PARENT, "/var/run/sr-mount/" + PARENT,
    "11111111-1111-1111-1111-111111111111.vhd", ".qcow2", "..qcow2", ".hidden.qcow2",
    "a\\b.qcow2", ""])
def test_other_names_are_typed_refusals(name):
    with pytest.raises(Qcow2UnsupportedError) as err:
        in_directory(CHILD, name, "qcow2")
    assert isinstance(err.value, FormatError)
    assert err.value.fields["field"] == "backing_file_name"
    assert "refused" in str(err.value) and CHILD in str(err.value)


def test_a_child_in_an_sr_mount_may_not_name_another_sr():
    child = "/var/run/sr-mount/sr-a/" + PARENT.replace("1", "2")
    assert in_directory(child, "/var/run/sr-mount/sr-a/" + PARENT) == \
        "/var/run/sr-mount/sr-a/" + PARENT
    with pytest.raises(Qcow2UnsupportedError, match="another SR"):
        in_directory(child, "/var/run/sr-mount/sr-b/" + PARENT)


def test_a_mixed_backing_format_is_refused():
    with pytest.raises(Qcow2UnsupportedError, match="mixed"):
        in_directory(CHILD, PARENT, "vpc")


def test_a_symlink_beside_the_child_is_not_followed(tmp_path):
    target = tmp_path / "elsewhere.img"
    target.write_bytes(b"secret")
    os.symlink(str(target), str(tmp_path / PARENT))
    with pytest.raises(Qcow2UnsupportedError, match="symbolic link"):
        in_directory(str(tmp_path / "child.qcow2"), PARENT)
