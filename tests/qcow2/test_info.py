"""info(): the facts `vhdport ... info --json` reports for a QCOW2 file."""

import os

from vhdport.qcow2 import create, create_snapshot, set_hidden
from vhdport.qcow2.info import info

MiB = 1024 * 1024


def test_info_of_a_chain(tmp_path):
    os.chdir(str(tmp_path))
    create("base.qcow2", 10 * MiB, cluster_size=4096, refcount_bits=8)
    create_snapshot("mid.qcow2", "base.qcow2")
    create_snapshot("top.qcow2", "mid.qcow2")
    set_hidden("mid.qcow2", True)
    facts = info("top.qcow2")
    assert facts["format"] == "qcow2" and facts["depth"] == 3
    assert facts["backing_file"] == "mid.qcow2" and facts["backing_format"] == "qcow2"
    assert facts["parent"] == str(tmp_path / "mid.qcow2")
    assert (facts["cluster_size"], facts["refcount_bits"]) == (4096, 16)   # qemu defaults
    assert info("base.qcow2")["refcount_bits"] == 8
    assert info("mid.qcow2")["hidden"] is True and facts["hidden"] is False
    assert info("base.qcow2")["type"] == "dynamic"


def test_info_without_following(tmp_path):
    os.chdir(str(tmp_path))
    create("base.qcow2", MiB)
    create_snapshot("top.qcow2", "base.qcow2")
    os.unlink("base.qcow2")
    facts = info("top.qcow2", backing=None)
    assert facts["depth"] == 1 and facts["backing_file"] == "base.qcow2"
