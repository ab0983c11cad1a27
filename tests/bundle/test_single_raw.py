"""extract_single_vhd (a bare VHD stream), extract_raw (raw -> dynamic VHD), sniff."""

import gzip
import hashlib
import os

import pytest

from vhdport.bundle import extract_raw, extract_single_vhd, sniff, write_bundle
from vhdport.errors import BundleError, IntegrityError
from tests.bundle.helpers import (CountingReader, MIB, expect_refusal, pattern, read, reg,
                                  tar_bytes, tree)


@pytest.mark.parametrize("name", ["dynamic.vhd", "fixed.vhd", "fixed511.vhd",
                                  "chain/leaf.vhd"])
def test_single_vhd_fixtures(fixtures, sandbox, name):
    _, staging = sandbox
    data = read(os.path.join(fixtures, name))
    paths = extract_single_vhd(CountingReader(data), staging)
    assert paths == [os.path.join(staging, "0.vhd")]
    assert os.listdir(staging) == ["0.vhd"]
    assert read(paths[0]) == data


def test_single_vhd_gzipped_qemu(qemu_vhds, sandbox):
    _, staging = sandbox
    data = read(qemu_vhds["dynamic"])
    paths = extract_single_vhd(CountingReader(gzip.compress(data, 1)), staging)
    assert read(paths[0]) == data


@pytest.mark.parametrize("defect", ["footer-checksum", "backup-footer", "header-checksum",
                                    "bad-cookie", "truncated"])
def test_single_vhd_corrupt_fixtures(fixtures, sandbox, defect):
    root, staging = sandbox
    before = tree(root)
    data = read(os.path.join(fixtures, "corrupt", defect + ".vhd"))
    err = expect_refusal(extract_single_vhd, data, staging, "0.vhd")
    assert tree(root) == before
    wanted = {"footer-checksum": "checksum", "backup-footer": "offset 0",
              "header-checksum": "dynamic header", "bad-cookie": "cookie",
              "truncated": "sector"}[defect]
    assert wanted in str(err)


def test_single_vhd_longer_than_its_metadata_stops_early(qemu_vhds, sandbox):
    _, staging = sandbox
    vhd = read(qemu_vhds["empty"])          # 2560 bytes, metadata allows a few MiB
    data = vhd[:1536] + os.urandom(32 * MIB)
    reader = CountingReader(data)
    with pytest.raises(BundleError, match="more than its own VHD metadata"):
        extract_single_vhd(reader, staging)
    assert reader.bytes_read < 16 * MIB
    assert os.listdir(staging) == []


@pytest.mark.parametrize("data,text", [
    (b"", "empty stream"),
    (b"not a vhd at all" * 64, "not a valid VHD"),
    (b"\x1f\x8b\x08\x00", "truncated"),
])
def test_single_vhd_refusals(sandbox, data, text):
    _, staging = sandbox
    with pytest.raises(BundleError, match=text):
        extract_single_vhd(CountingReader(data), staging)
    assert os.listdir(staging) == []


def test_single_vhd_refuses_a_tarball(qemu_vhds, sandbox):
    _, staging = sandbox
    with pytest.raises(BundleError):
        extract_single_vhd(CountingReader(tar_bytes([reg("0.vhd", read(qemu_vhds["empty"]))],
                                                    compress=False)), staging)
    assert os.listdir(staging) == []


def test_sniff(fixtures, qemu_vhds, tmp_path):
    assert sniff(read(os.path.join(fixtures, "bundle-sequenced.tgz"))[:512]) == "gzip"
    plain = b"".join(write_bundle([("0.vhd", qemu_vhds["empty"])], level=0))
    assert sniff(plain[:512]) == "tar"
    assert sniff(read(os.path.join(fixtures, "dynamic.vhd"))[:512]) == "vhd"
    assert sniff(read(os.path.join(fixtures, "chain/leaf.vhd"))[:512]) == "vhd"
    assert sniff(read(os.path.join(fixtures, "fixed.vhd"))[:512]) == "raw"
    assert sniff(bytes(512)) == "raw"
    assert sniff(b"") == "raw"
    import tarfile
    import io
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.GNU_FORMAT) as tar:
        info = tarfile.TarInfo("0.vhd")
        tar.addfile(info, io.BytesIO(b""))
    assert sniff(buf.getvalue()) == "tar"  # GNU magic "ustar  " too


# --- raw images, through the vhd engine ----------------------------------------

@pytest.fixture
def vhd_engine():
    import vhdport.vhd
    return vhdport.vhd


def _raw_image(size):
    data = bytearray(size)
    data[:3 * MIB] = pattern(3 * MIB, 7)          # first blocks written
    data[size - MIB:] = pattern(MIB, 8)            # the last block written
    return bytes(data)


def test_extract_raw(sandbox, vhd_engine):
    _, staging = sandbox
    size = 12 * MIB
    raw = _raw_image(size)
    paths = extract_raw(CountingReader(raw), staging, size)
    assert paths == [os.path.join(staging, "0.vhd")]
    assert os.listdir(staging) == ["0.vhd"]
    with vhd_engine.VhdFile.open(paths[0]) as disk:
        assert disk.type_name == "dynamic"
        assert disk.virtual_size == size
        got = hashlib.sha256()
        for offset in range(0, size, MIB):
            got.update(disk.read(offset, MIB))
    assert got.hexdigest() == hashlib.sha256(raw).hexdigest()


def test_extract_raw_with_qemu_check(sandbox, tmp_path, vhd_engine):
    """qemu-img reads our converted image back to the same bytes."""
    import subprocess
    _, staging = sandbox
    size = 6 * MIB
    raw = _raw_image(size)
    path = extract_raw(CountingReader(raw), staging, size)[0]
    src = tmp_path / "src.raw"
    src.write_bytes(raw)
    subprocess.check_call(["qemu-img", "compare", "-q", "-f", "vpc", "-F", "raw", path,
                           str(src)])


@pytest.mark.parametrize("actual,declared", [(4 * MIB, 8 * MIB), (8 * MIB, 4 * MIB)])
def test_extract_raw_size_mismatch_leaves_nothing(sandbox, actual, declared, vhd_engine):
    root, staging = sandbox
    before = tree(root)
    with pytest.raises(IntegrityError, match=r"length mismatch for raw stream .* expected {} "
                       r"bytes, got".format(declared)):
        extract_raw(CountingReader(bytes(actual)), staging, declared)
    assert os.listdir(staging) == []
    assert tree(root) == before


def test_extract_raw_bad_size(sandbox):
    _, staging = sandbox
    with pytest.raises(BundleError, match="2040 GiB"):
        extract_raw(CountingReader(b""), staging, 3000 << 30)
    with pytest.raises(BundleError):
        extract_raw(CountingReader(b""), staging, 0)
