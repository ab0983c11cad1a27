"""Images we create are qemu's byte for byte (header, tables) and pass qemu-img check."""

import os

import pytest

from tests.qcow2.qemu import check, info, qemu_img, require_qemu
from vhdport.errors import LimitError, Qcow2FormatError
from vhdport.qcow2 import Qcow2Chain, local_backing
from vhdport.qcow2.create import MAX_VIRTUAL_SIZE, create, create_snapshot

MiB = 1024 * 1024


@pytest.fixture(autouse=True)
def _qemu():
    require_qemu()


def read(path):
    with open(path, "rb") as f:
        return f.read()


@pytest.mark.parametrize("size", [0, 513, 64 * 1024, 1 << 30, MAX_VIRTUAL_SIZE])
def test_sparse_create_is_byte_identical_to_qemu(tmp_path, size):
    ours, theirs = str(tmp_path / "o.qcow2"), str(tmp_path / "q.qcow2")
    create(ours, size)
    qemu_img("create", "-q", "-f", "qcow2", theirs, str(size))
    assert read(ours) == read(theirs)
    check(ours)


@pytest.mark.parametrize("opts", [dict(cluster_size=512), dict(cluster_size=2 * MiB),
                                  dict(refcount_bits=1), dict(refcount_bits=64),
                                  dict(extended_l2=True), dict(version=2)])
def test_variants_match_qemu(tmp_path, opts):
    ours, theirs = str(tmp_path / "o.qcow2"), str(tmp_path / "q.qcow2")
    create(ours, 100 * MiB, **opts)
    qopts = ["cluster_size={}".format(opts.get("cluster_size", 65536)),
             "refcount_bits={}".format(opts.get("refcount_bits", 16)),
             "extended_l2={}".format("on" if opts.get("extended_l2") else "off"),
             "compat={}".format("0.10" if opts.get("version") == 2 else "1.1")]
    qemu_img("create", "-q", "-f", "qcow2", "-o", ",".join(qopts), theirs, str(100 * MiB))
    assert read(ours) == read(theirs)


def test_snapshot_child_matches_qemu(tmp_path):
    create(str(tmp_path / "base.qcow2"), 10 * MiB, cluster_size=4096)
    create_snapshot(str(tmp_path / "child.qcow2"), "base.qcow2")
    os.chdir(str(tmp_path))
    qemu_img("create", "-q", "-f", "qcow2", "-F", "qcow2", "-b", "base.qcow2", "-o",
             "cluster_size=4096", "theirs.qcow2")
    assert read("child.qcow2") == read("theirs.qcow2")
    assert info("child.qcow2")["backing-filename"] == "base.qcow2"
    assert info("child.qcow2")["backing-filename-format"] == "qcow2"


@pytest.mark.parametrize("cluster_size", [4096, 65536])
def test_preallocated_full(tmp_path, cluster_size):
    path = str(tmp_path / "p.qcow2")
    create(path, 20 * MiB + 4096, cluster_size=cluster_size, preallocate=True)
    result = check(path)
    assert result["allocated-clusters"] == (20 * MiB + 4096 + cluster_size - 1) // cluster_size
    with Qcow2Chain.open(path, backing=local_backing) as chain:
        assert bytes(chain.read(0, chain.virtual_size)) == bytes(chain.virtual_size)
        assert list(chain.allocated_ranges()) == [(0, chain.virtual_size)]


def test_refuses_bad_parameters(tmp_path):
    with pytest.raises(LimitError, match="SM's QCOW2 limit"):
        create(str(tmp_path / "big.qcow2"), MAX_VIRTUAL_SIZE + 1)
    with pytest.raises(Qcow2FormatError, match="c.qcow2: cluster size 3000 is not a power of two"):
        create(str(tmp_path / "c.qcow2"), MiB, cluster_size=3000)
    with pytest.raises(Qcow2FormatError, match="r.qcow2: refcount width"):
        create(str(tmp_path / "r.qcow2"), MiB, refcount_bits=3)
    assert not os.path.exists(str(tmp_path / "c.qcow2"))
    create(str(tmp_path / "x.qcow2"), MiB)
    with pytest.raises(Qcow2FormatError, match="cannot create"):
        create(str(tmp_path / "x.qcow2"), MiB)
