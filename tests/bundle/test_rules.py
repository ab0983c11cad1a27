"""One disk format per bundle: QCOW2 chains bundle as 0.qcow2 .. N.qcow2 like VHD chains do,
and a bundle mixing formats is refused on both sides, naming the member."""

import io
import os

import pytest

from tests.bundle.helpers import make_vhd, reg, tar_bytes
from tests.transfer import qcow2_chains
from tests.transfer.helpers import MiB, build_chain, chain_sha256
from vhdport.bundle import extract_bundle, rules, write_bundle
from vhdport.disk import check_chain
from vhdport.errors import BundleError


@pytest.fixture
def qcow2_chain(tmp_path):
    sr = str(tmp_path / "sr")
    os.makedirs(sr)
    uuids, model = build_chain(sr, 3, 8 * MiB, dense=True, seed=11, fmt="qcow2")
    return [os.path.join(sr, u + ".qcow2") for u in uuids], model


def test_qcow2_chain_round_trip(qcow2_chain, sandbox):
    paths, model = qcow2_chain
    _, staging = sandbox
    data = b"".join(write_bundle([("{}.qcow2".format(i), p) for i, p in enumerate(paths)]))
    staged = extract_bundle(io.BytesIO(data), staging)
    assert [os.path.basename(p) for p in staged] == ["0.qcow2", "1.qcow2", "2.qcow2"]
    # the members name each other, so the staged chain meets the rule and reads as the source
    assert len(check_chain(staged, structural=True)) == 3
    assert qcow2_chains.backing_names(staged[0]) == ["1.qcow2", "2.qcow2", None]
    assert chain_sha256(staged[0]) == model.sha256()
    assert [os.path.getsize(p) for p in staged] == [os.path.getsize(p) for p in paths]


def test_writer_refuses_mixed_formats(qcow2_chain, tmp_path):
    paths, _ = qcow2_chain
    vhd = make_vhd(str(tmp_path / "base.vhd"), 8, data=False)
    with pytest.raises(BundleError, match="mixes disk formats") as info:
        write_bundle([("0.qcow2", paths[0]), ("1.vhd", vhd)])
    assert info.value.fields.get("member") == "1.vhd"
    with pytest.raises(BundleError, match="is a VHD file"):
        write_bundle([("0.qcow2", vhd)])


@pytest.mark.parametrize("names", [("0.qcow2", "1.vhd"), ("0.vhd", "1.qcow2"),
                                   ("image.vhd", "1.qcow2")])
def test_reader_refuses_mixed_formats(qcow2_chain, tmp_path, sandbox, names):
    paths, _ = qcow2_chain
    vhd = make_vhd(str(tmp_path / "base.vhd"), 8, data=False)
    by_suffix = {".qcow2": open(paths[2], "rb").read(), ".vhd": open(vhd, "rb").read()}
    members = [reg(n, by_suffix[os.path.splitext(n)[1]]) for n in names]
    _, staging = sandbox
    with pytest.raises(BundleError) as info:
        extract_bundle(io.BytesIO(tar_bytes(members)), staging)
    assert names[1] in str(info.value)
    assert "mixes" in str(info.value)
    assert os.listdir(staging) == []


def test_advice_names_every_format():
    advice = rules.only_disks()
    assert "0.vhd .. N.vhd" in advice and "0.qcow2 .. N.qcow2" in advice



@pytest.mark.parametrize("name", ["snap.qcow2", "image.qcow2", "./base.qcow2"])
def test_legacy_names_are_for_vhd_only(name):
    with pytest.raises(BundleError, match="old plugin's names for VHD members only") as info:
        rules.classify(name)
    assert "0.qcow2 .. N.qcow2" in str(info.value)
