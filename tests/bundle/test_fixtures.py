"""Bundles as the store holds them (vhd-util fixtures), legacy names, check_sequence."""

import os
import tarfile

import pytest

from vhdport.bundle import check_sequence, extract_bundle
from vhdport.errors import BundleError
from vhdport.vhd.format.footer import Footer
from tests.bundle.helpers import CountingReader, read, reg, tar_bytes


def _extract_file(path, staging):
    with open(path, "rb") as f:
        return extract_bundle(f, staging)


def test_sequenced_bundle(fixtures, sandbox):
    _, staging = sandbox
    paths = _extract_file(os.path.join(fixtures, "bundle-sequenced.tgz"), staging)
    assert paths == [os.path.join(staging, n) for n in ("0.vhd", "1.vhd", "2.vhd")]
    assert sorted(os.listdir(staging)) == ["0.vhd", "1.vhd", "2.vhd"]
    for path, name in zip(paths, ("leaf", "mid", "base")):
        assert read(path) == read(os.path.join(fixtures, "chain", name + ".vhd"))
    uuids = check_sequence(paths)
    assert [str(u) for u in uuids] == [
        str(Footer.parse(read(p)[-512:]).uuid) for p in paths]


def test_legacy_single_image_is_the_leaf(fixtures, sandbox):
    _, staging = sandbox
    paths = _extract_file(os.path.join(fixtures, "bundle-legacy-single.tgz"), staging)
    assert paths == [os.path.join(staging, "0.vhd")]
    assert os.listdir(staging) == ["0.vhd"]
    assert read(paths[0]) == read(os.path.join(fixtures, "dynamic.vhd"))
    check_sequence(paths)


def _chain_bytes(fixtures, names, order=("leaf", "mid", "base")):
    return [reg(arc, read(os.path.join(fixtures, "chain", src + ".vhd")))
            for arc, src in zip(names, order)]


@pytest.mark.parametrize("names,expected", [
    (["snap.vhd", "image.vhd", "base.vhd"], ["leaf", "mid", "base"]),
    (["./image.vhd", "./base.vhd"], ["leaf", "mid"]),
])
def test_legacy_names_are_renumbered(fixtures, sandbox, names, expected):
    _, staging = sandbox
    entries = _chain_bytes(fixtures, names)[::-1]  # tar order does not matter
    entries.append(reg("swap.vhd", b"swap data is skipped" * 100))
    paths = extract_bundle(CountingReader(tar_bytes(entries)), staging)
    assert sorted(os.listdir(staging)) == ["{}.vhd".format(i) for i in range(len(names))]
    for path, src in zip(paths, expected):
        assert read(path) == read(os.path.join(fixtures, "chain", src + ".vhd"))


def test_members_in_any_tar_order(fixtures, sandbox):
    _, staging = sandbox
    entries = _chain_bytes(fixtures, ["0.vhd", "1.vhd", "2.vhd"])
    data = tar_bytes([entries[2], entries[0], entries[1]], fmt=tarfile.PAX_FORMAT)
    paths = extract_bundle(CountingReader(data), staging)
    check_sequence(paths)


def test_plain_tar_and_dot_dir(fixtures, sandbox):
    _, staging = sandbox
    dot = tarfile.TarInfo("./")
    dot.type = tarfile.DIRTYPE
    entries = [(dot, None)] + _chain_bytes(fixtures, ["./0.vhd", "./1.vhd", "./2.vhd"])
    data = tar_bytes(entries, compress=False)
    assert extract_bundle(CountingReader(data), staging)[0].endswith("0.vhd")


# --- check_sequence refusals --------------------------------------------------

def _stage(fixtures, staging, order):
    paths = []
    for i, name in enumerate(order):
        dst = os.path.join(staging, "{}.vhd".format(i))
        with open(dst, "wb") as out:
            out.write(read(os.path.join(fixtures, name)))
        paths.append(dst)
    return paths


def test_wrong_parent_order(fixtures, sandbox):
    _, staging = sandbox
    paths = _stage(fixtures, staging, ["chain/base.vhd", "chain/mid.vhd", "chain/leaf.vhd"])
    with pytest.raises(BundleError, match="0.vhd") as err:
        check_sequence(paths)
    assert err.value.member == "0.vhd"


def test_swapped_middle(fixtures, sandbox):
    _, staging = sandbox
    paths = _stage(fixtures, staging, ["chain/mid.vhd", "chain/leaf.vhd", "chain/base.vhd"])
    with pytest.raises(BundleError, match="0.vhd") as err:
        check_sequence(paths)
    assert "order" in str(err.value)


def test_wrong_parent_fixture(fixtures, sandbox):
    _, staging = sandbox
    paths = _stage(fixtures, staging, ["corrupt/wrong-parent/leaf.vhd",
                                       "corrupt/wrong-parent/other.vhd"])
    with pytest.raises(BundleError, match="0.vhd names parent"):
        check_sequence(paths)


def test_hidden_leaf_refused(fixtures, sandbox):
    _, staging = sandbox
    paths = _stage(fixtures, staging, ["chain/mid.vhd", "chain/base.vhd"])
    with pytest.raises(BundleError, match="hidden leaf 0.vhd") as err:
        check_sequence(paths)
    assert "GC would delete it" in str(err.value)


def test_base_with_parent_outside(fixtures, sandbox):
    _, staging = sandbox
    paths = _stage(fixtures, staging, ["chain/leaf.vhd", "chain/mid.vhd"])
    with pytest.raises(BundleError, match="base 1.vhd has a parent"):
        check_sequence(paths)


def _set_size(path, size):
    """Rewrite both footer copies with another virtual size (valid checksums)."""
    with open(path, "r+b") as f:
        end = os.fstat(f.fileno()).st_size - 512
        for offset in (0, end):
            f.seek(offset)
            footer = Footer.parse(f.read(512))
            footer.current_size = size
            f.seek(offset)
            f.write(footer.pack())


def test_virtual_size_mismatch(fixtures, sandbox):
    _, staging = sandbox
    paths = _stage(fixtures, staging, ["chain/leaf.vhd", "chain/mid.vhd", "chain/base.vhd"])
    size = Footer.parse(read(paths[0])[-512:]).current_size
    _set_size(paths[0], size + 2 * 1024 * 1024)
    with pytest.raises(BundleError, match="0.vhd has virtual size"):
        check_sequence(paths)
    check_sequence(paths, allow_growth=True)  # a resized leaf over older snapshots
    _set_size(paths[1], size + 4 * 1024 * 1024)
    with pytest.raises(BundleError, match="0.vhd has virtual size"):
        check_sequence(paths, allow_growth=True)  # a child smaller than its parent


def test_dynamic_member_before_a_parent(fixtures, qemu_vhds, sandbox):
    _, staging = sandbox
    paths = _stage(fixtures, staging, ["dynamic.vhd"])
    paths.append(os.path.join(staging, "1.vhd"))
    with open(paths[1], "wb") as out:
        out.write(read(qemu_vhds["dynamic"]))
    with pytest.raises(BundleError, match="0.vhd is a dynamic disk"):
        check_sequence(paths)


def test_corrupt_member_named(fixtures, sandbox):
    _, staging = sandbox
    paths = _stage(fixtures, staging, ["corrupt/footer-checksum.vhd"])
    with pytest.raises(BundleError, match="0.vhd.*checksum"):
        check_sequence(paths)


@pytest.mark.parametrize("fmt", ["gnu", "posix", "ustar", "v7"])
def test_gnu_tar_made_bundles(fixtures, qemu_vhds, tmp_path, sandbox, fmt):
    """Whatever GNU tar writes for `tar -czf - -C dir .` extracts (pax mtimes etc.)."""
    import subprocess
    _, staging = sandbox
    src = tmp_path / "src"
    src.mkdir()
    for i, name in enumerate(["leaf", "mid", "base"]):
        os.link(os.path.join(fixtures, "chain", name + ".vhd"), str(src / "{}.vhd".format(i)))
    out = str(tmp_path / "b.tgz")
    subprocess.check_call(["tar", "--format=" + fmt, "-czf", out, "-C", str(src), "."])
    with open(out, "rb") as f:
        paths = extract_bundle(f, staging)
    assert len(paths) == 3
    check_sequence(paths)
