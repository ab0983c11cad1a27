"""The QCOW2 engine behind the disk face, checked against the real qemu-img / qemu-io."""

import io
import json
import os
import uuid as uuidlib

import pytest

from vhdport import disk
from vhdport.errors import ChainError, FormatError, Qcow2FormatError, Qcow2UnsupportedError
from tests.qcow2.qemu import check, compare_raw, info, pattern, qemu_img, qemu_io

Q = disk.by_name("qcow2")
MIB = 1024 * 1024
pytestmark = pytest.mark.usefixtures("qemu")


def _name(directory):
    return str(directory / Q.file_name(uuidlib.uuid4()))


def _chain(tmp_path, depth=2, size=16 * MIB):
    """[leaf .. base] made by qemu-img as SM does (relative backing names), data at each level."""
    paths = [_name(tmp_path)]
    qemu_img("create", "-f", "qcow2", paths[0], size)
    qemu_io(paths[0], "write -P 0x11 0 1M")
    for level in range(1, depth):
        child = _name(tmp_path)
        qemu_img("create", "-f", "qcow2", "-F", "qcow2", "-b", os.path.basename(paths[0]),
                 child)
        qemu_io(child, "write -P 0x{:02x} {}M 1M".format(0x11 + level, level))
        paths.insert(0, child)
    return paths


def test_face_attributes():
    assert (Q.name, Q.suffix, Q.magic) == ("qcow2", ".qcow2", (0, b"QFI\xfb"))
    assert Q.max_virtual_size == 17589500641280 and Q.max_depth == 30
    assert Q.file_name("abc") == "abc.qcow2"


def test_create_sparse_is_what_qemu_img_reads(tmp_path):
    path = _name(tmp_path)
    assert Q.create(path, 3 * MIB) == os.path.basename(path)[:-6]
    got = info(path)
    assert got["virtual-size"] == 3 * MIB and got["cluster-size"] == 64 * 1024
    assert "backing-filename" not in got and os.path.getsize(path) < MIB
    check(path)


def test_create_fixed_preallocates(tmp_path):
    path = _name(tmp_path)
    Q.create(path, 2 * MIB, fixed=True, block_size=128 * 1024)
    assert info(path)["cluster-size"] == 128 * 1024
    extents = json.loads(qemu_img("map", "--output=json", "-f", "qcow2", path).stdout)
    assert all(e["data"] for e in extents) and sum(e["length"] for e in extents) == 2 * MIB
    check(path)


def test_create_refuses_a_uuid_other_than_the_file_name(tmp_path):
    path = _name(tmp_path)
    with pytest.raises(Qcow2FormatError, match="its uuid is its file name"):
        Q.create(path, MIB, uuid=uuidlib.uuid4())
    assert not os.path.exists(path)
    assert Q.create(path, MIB, uuid=uuidlib.UUID(os.path.basename(path)[:-6]))


def test_snapshot_as_sm_writes_it(tmp_path):
    parent = _name(tmp_path)
    qemu_img("create", "-f", "qcow2", "-o", "cluster_size=131072", parent, 8 * MIB)
    child = _name(tmp_path)
    assert Q.snapshot(child, os.path.basename(parent)) == os.path.basename(child)[:-6]
    got = info(child)
    assert got["backing-filename"] == os.path.basename(parent)
    assert got["backing-filename-format"] == "qcow2"
    assert got["cluster-size"] == 131072 and got["virtual-size"] == 8 * MIB
    check(child, with_backing=True)


def test_snapshot_refuses_a_parent_in_another_directory(tmp_path):
    (tmp_path / "other").mkdir()
    parent = _name(tmp_path / "other")
    Q.create(parent, MIB)
    child = _name(tmp_path)
    with pytest.raises(Qcow2FormatError, match="not in the child's directory"):
        Q.snapshot(child, os.path.join("other", os.path.basename(parent)))
    assert not os.path.exists(child)


def test_facts_and_describe_of_a_qemu_chain(tmp_path):
    leaf, base = _chain(tmp_path)
    qemu_img("rebase", "-u", "-f", "qcow2", "-F", "qcow2", "-b",
             "/var/run/sr-mount/any-sr/" + os.path.basename(base), leaf)
    qemu_io(base, "write -P 0 0 512")   # keeps it valid; hidden flag comes next
    Q.set_hidden(base, True)
    stem_leaf, stem_base = (os.path.basename(p)[:-6] for p in (leaf, base))
    facts = Q.facts(leaf)
    assert (facts.uuid, facts.parent_uuid, facts.is_differencing, facts.hidden) == \
        (stem_leaf, stem_base, True, False)
    assert Q.facts(base).hidden and not Q.facts(base).is_differencing
    d = Q.describe(leaf)
    assert (d.uuid, d.parent_uuid, d.parent_path, d.block_size, d.virtual_size) == \
        (stem_leaf, stem_base, base, 64 * 1024, 16 * MIB)
    assert d.parent_names == ["/var/run/sr-mount/any-sr/" + os.path.basename(base)]
    assert Q.check_file(leaf) == [] and Q.check_chain(leaf) == []
    with Q.open_chain(leaf) as chain:
        assert chain.paths() == [leaf, base]


def test_a_backing_file_outside_the_directory_is_never_followed(tmp_path):
    (tmp_path / "elsewhere").mkdir()
    outside = _name(tmp_path / "elsewhere")
    qemu_img("create", "-f", "qcow2", outside, MIB)
    qemu_io(outside, "write -P 0x5a 0 64k")
    child = _name(tmp_path)
    qemu_img("create", "-f", "qcow2", "-F", "qcow2", "-b",
             "elsewhere/" + os.path.basename(outside), child)
    for call in (Q.facts, Q.describe, Q.open_chain, Q.info, Q.coalesce):
        with pytest.raises(Qcow2UnsupportedError, match="another directory"):
            call(child)
    defects = Q.check_file(child, check_parent=False)
    assert [d.field for d in defects] == ["backing_file_name"]
    assert Q.check_chain(child)          # reported, not raised
    with pytest.raises(FormatError):
        Q.export_raw(child, str(tmp_path / "out.raw"))
    assert not os.path.exists(str(tmp_path / "out.raw"))
    with pytest.raises(Qcow2UnsupportedError):
        Q.relink(child, "../elsewhere/" + os.path.basename(outside))


def test_check_file_reports_a_missing_parent_only_when_asked(tmp_path):
    leaf, base = _chain(tmp_path)
    os.unlink(base)
    assert Q.check_file(leaf, check_parent=False) == []
    assert [d.field for d in Q.check_file(leaf)] == ["backing_file_name"]
    with pytest.raises(ChainError, match="not found"):
        Q.open_chain(leaf)


def test_hidden_flag_with_a_backing_name_stays_qemu_clean(tmp_path):
    leaf, base = _chain(tmp_path)
    assert Q.repair_hidden(leaf) is True
    assert Q.repair_hidden(leaf) is False
    assert Q.facts(leaf).hidden and Q.describe(leaf).hidden
    got = info(leaf)
    assert got["backing-filename"] == os.path.basename(base)
    check(leaf, with_backing=True)
    Q.set_hidden(leaf, False)
    assert not Q.facts(leaf).hidden


@pytest.mark.parametrize("form", ["relative", "beside", "sr-mount"])
def test_relink_keeps_sm_names(tmp_path, form):
    leaf, base = _chain(tmp_path)
    other = _name(tmp_path)
    qemu_img("convert", "-f", "qcow2", "-O", "qcow2", base, other)
    given = {"relative": os.path.basename(other), "beside": other,
             "sr-mount": "/var/run/sr-mount/x/" + os.path.basename(other)}[form]
    Q.relink(leaf, given)
    stored = info(leaf)["backing-filename"]
    assert stored == (given if form == "sr-mount" else os.path.basename(other))
    assert Q.describe(leaf).parent_path == other
    if form != "sr-mount":
        check(leaf, with_backing=True)


def test_relink_refuses_a_parent_elsewhere(tmp_path):
    leaf, base = _chain(tmp_path)
    with pytest.raises(Qcow2UnsupportedError):
        Q.relink(leaf, "/etc/passwd")
    assert info(leaf)["backing-filename"] == os.path.basename(base)


def test_chain_reads_and_writes_as_qemu_does(tmp_path):
    leaf = _chain(tmp_path, depth=3)[0]
    data = pattern(7, 100000)
    with Q.open_chain(leaf, writable=True) as chain:
        assert chain.read(0, 4) == b"\x11" * 4 and chain.read(2 * MIB, 4) == b"\x13" * 4
        chain.write(5000, data)
        chain.flush()
    qemu_io(leaf, "read -P 0x13 {} 1M".format(2 * MIB))
    raw = tmp_path / "mine.raw"
    Q.export_raw(leaf, str(raw))
    compare_raw(leaf, str(raw))
    with open(str(raw), "rb") as f:
        f.seek(5000)
        assert f.read(len(data)) == data
    check(leaf, with_backing=True)


def test_check_chain_reports_a_cluster_size_mismatch(tmp_path):
    base = _name(tmp_path)
    qemu_img("create", "-f", "qcow2", "-o", "cluster_size=4096", base, MIB)
    leaf = _name(tmp_path)
    qemu_img("create", "-f", "qcow2", "-F", "qcow2", "-b", os.path.basename(base), leaf)
    assert [d.field for d in Q.check_chain(leaf)] == ["cluster_bits"]


def test_coalesce_commits_into_the_parent(tmp_path):
    leaf, base = _chain(tmp_path)
    before = tmp_path / "before.raw"
    qemu_img("convert", "-f", "qcow2", "-O", "raw", leaf, str(before))
    assert Q.coalesce(leaf) == base
    compare_raw(base, str(before))
    check(base)
    with pytest.raises(ChainError, match="no backing file"):
        Q.coalesce(base)


def test_raw_import_export_round_trip(tmp_path):
    raw = tmp_path / "in.raw"
    with open(str(raw), "wb") as f:
        f.truncate(4 * MIB)
        f.seek(MIB + 3)
        f.write(pattern(3, 70000))
    out = _name(tmp_path)
    assert Q.import_raw(str(raw), out) == os.path.basename(out)[:-6]
    compare_raw(out, str(raw))
    check(out)
    back = tmp_path / "back.raw"
    Q.export_raw(out, str(back))
    assert back.read_bytes() == raw.read_bytes()
    streamed = _name(tmp_path)
    Q.import_raw_stream(io.BytesIO(raw.read_bytes()), streamed, 4 * MIB)
    compare_raw(streamed, str(raw))
    check(streamed)


def test_info_names_uuid_parent_and_depth(tmp_path):
    leaf = _chain(tmp_path, depth=3)[0]
    got = Q.info(leaf)
    assert got["uuid"] == os.path.basename(leaf)[:-6]
    assert got["depth"] == 3 and got["type"] == "differencing"
    assert got["parent_uuid"] and got["block_size"] == 64 * 1024


# --- LOCAL_FILES: a tool user's own files, followed as qemu-img follows them ---------------


def _outside_chain(tmp_path):
    """A child in ``tmp_path/vm`` backed by ``../images/base.qcow2`` (qemu-img's relative form)."""
    (tmp_path / "vm").mkdir()
    (tmp_path / "images").mkdir()
    base = str(tmp_path / "images" / "base.qcow2")
    qemu_img("create", "-f", "qcow2", base, 4 * MIB)
    qemu_io(base, "write -P 0x5a 0 64k")
    child = str(tmp_path / "vm" / "top.qcow2")
    qemu_img("create", "-f", "qcow2", "-F", "qcow2", "-b", "../images/base.qcow2", child)
    qemu_io(child, "write -P 0x33 1M 64k")
    return child, base


def test_local_files_follows_what_sr_directory_refuses(tmp_path):
    child, base = _outside_chain(tmp_path)
    with pytest.raises(Qcow2UnsupportedError, match="another directory"):
        Q.open_chain(child)                              # the default: SR safety
    with Q.open_chain(child, backing=disk.LOCAL_FILES) as chain:
        assert [os.path.normpath(p) for p in chain.paths()] == [child, base]
        assert bytes(chain.read(0, 4)) == b"\x5a" * 4 and bytes(chain.read(MIB, 2)) == b"33"
    got = Q.info(child, backing=disk.LOCAL_FILES)
    assert (got["depth"], got["backing_file"], got["parent"]) == (2, "../images/base.qcow2",
                                                                  os.path.normpath(base))
    assert (got["uuid"], got["parent_uuid"]) == ("top", "base")
    assert Q.check_file(child, backing=disk.LOCAL_FILES) == []
    assert Q.check_chain(child, backing=disk.LOCAL_FILES) == []
    out = str(tmp_path / "out.raw")
    Q.export_raw(child, out, backing=disk.LOCAL_FILES)
    compare_raw(child, out)


def test_local_files_check_file_reports_a_missing_parent(tmp_path):
    child, base = _outside_chain(tmp_path)
    os.unlink(base)
    defects = Q.check_file(child, backing=disk.LOCAL_FILES)
    assert [d.field for d in defects] == ["backing_file_name"] and "not found" in str(defects[0])


def test_local_files_snapshot_relink_and_coalesce(tmp_path):
    child, base = _outside_chain(tmp_path)
    snap = str(tmp_path / "vm" / "snap.qcow2")
    with pytest.raises(Qcow2FormatError, match="not in the child's directory"):
        Q.snapshot(snap, "../images/base.qcow2")
    assert Q.snapshot(snap, "../images/base.qcow2", backing=disk.LOCAL_FILES) == "snap"
    assert info(snap)["backing-filename"] == "../images/base.qcow2"
    check(snap, with_backing=True)
    other = str(tmp_path / "vm" / "other.qcow2")
    qemu_img("convert", "-f", "qcow2", "-O", "qcow2", base, other)
    Q.relink(snap, other, backing=disk.LOCAL_FILES)      # absolute, beside: kept as given
    assert info(snap)["backing-filename"] == other
    Q.relink(snap, "../images/base.qcow2", backing=disk.LOCAL_FILES)
    assert info(snap)["backing-filename"] == "../images/base.qcow2"
    before = str(tmp_path / "before.raw")
    qemu_img("convert", "-f", "qcow2", "-O", "raw", child, before)
    parent = Q.coalesce(child, backing=disk.LOCAL_FILES)
    assert os.path.normpath(parent) == os.path.normpath(base)
    compare_raw(base, before)


def test_an_unknown_backing_policy_is_refused(tmp_path):
    leaf, _base = _chain(tmp_path)
    for call in (Q.open_chain, Q.info, Q.check_chain, Q.check_file, Q.coalesce):
        with pytest.raises(ValueError, match="unknown backing policy"):
            call(leaf, backing="anywhere")
