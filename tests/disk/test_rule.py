"""The chain rule, format-neutral: one format per chain, each format's depth limit, links."""

import os
import uuid as uuidlib

import pytest

from vhdport import disk
from vhdport.errors import BundleError
from tests.qcow2.qemu import qemu_img

Q, V = disk.by_name("qcow2"), disk.by_name("vhd")
MIB = 1024 * 1024


def _chain(directory, fmt, depth):
    """[leaf .. base] of ``fmt`` made through the face, parents hidden."""
    paths = [str(directory / fmt.file_name(uuidlib.uuid4()))]
    fmt.create(paths[0], MIB, uuid=uuidlib.UUID(os.path.basename(paths[0]).split(".")[0]))
    for _ in range(depth - 1):
        fmt.set_hidden(paths[0], True)
        child = str(directory / fmt.file_name(uuidlib.uuid4()))
        fmt.snapshot(child, os.path.basename(paths[0]))
        paths.insert(0, child)
    return paths


def test_a_qcow2_chain_passes_by_file_stems(tmp_path):
    paths = _chain(tmp_path, Q, 3)
    uuids = disk.check_chain(paths, structural=True)
    assert uuids == [os.path.basename(p)[:-6] for p in paths]


@pytest.mark.parametrize("upper,lower", [(Q, V), (V, Q)])
def test_a_mixed_chain_is_refused(tmp_path, upper, lower):
    top = _chain(tmp_path, upper, 1)[0]
    bottom = _chain(tmp_path, lower, 1)[0]
    with pytest.raises(BundleError, match="mixing disk formats") as err:
        disk.check_chain([top, bottom])
    assert err.value.fields["member"] == os.path.basename(bottom)


def test_a_qcow2_child_naming_a_vhd_parent_is_refused(tmp_path):
    base = _chain(tmp_path, V, 1)[0]
    child = str(tmp_path / Q.file_name(uuidlib.uuid4()))
    qemu_img("create", "-f", "qcow2", "-u", "-F", "vpc", "-b", os.path.basename(base), child,
             MIB)
    with pytest.raises(BundleError, match="refused, nothing opened"):
        disk.check_chain([child])


def test_qcow2_depth_limit_is_30(tmp_path):
    paths = _chain(tmp_path, Q, 31)
    disk.check_chain(paths[1:], refuse_hidden_leaf=False)
    with pytest.raises(BundleError, match="31 deep, more than XenServer's limit of 30"):
        disk.check_chain(paths)


def test_qcow2_order_and_links(tmp_path):
    leaf, mid, base = _chain(tmp_path, Q, 3)
    with pytest.raises(BundleError, match="chain order broken"):
        disk.check_chain([leaf, base])
    with pytest.raises(BundleError, match="outside the chain given"):
        disk.check_chain([leaf, mid])
    with pytest.raises(BundleError, match="is a dynamic disk but"):
        disk.check_chain([base, mid], refuse_hidden_leaf=False)
    Q.set_hidden(leaf, True)
    with pytest.raises(BundleError, match="hidden leaf refused"):
        disk.check_chain([leaf, mid, base])
