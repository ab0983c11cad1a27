"""A hostile corpus: every bundle here must be refused with a BundleError naming the
member, leaving the staging dir empty and nothing written anywhere else."""

import gzip
import os
import tarfile

import pytest

from vhdport.bundle import extract_bundle
from vhdport.errors import BundleError
from tests.bundle.corpus import ABS_TARGET, CASES, Payloads, _raw_member
from tests.bundle.helpers import CountingReader, MIB, expect_refusal, read, reg, tar_bytes, tree


@pytest.fixture(scope="module")
def payloads(fixtures, qemu_vhds):
    return Payloads(fixtures, qemu_vhds)


@pytest.mark.parametrize("case", sorted(CASES))
def test_refused(case, payloads, sandbox):
    root, staging = sandbox
    before = tree(root)
    built = CASES[case](payloads)
    data, member = built[0], built[1]
    kwargs = built[2] if len(built) > 2 else {}
    err = expect_refusal(extract_bundle, data, staging, member, **kwargs)
    assert isinstance(err, BundleError)
    assert tree(root) == before, "something was written outside staging"
    assert not os.path.exists(os.path.dirname(ABS_TARGET))


def test_refusal_carries_member_field(payloads, sandbox):
    _, staging = sandbox
    err = expect_refusal(extract_bundle, tar_bytes([reg("../evil", payloads.vhd)]),
                         staging, "../evil")
    assert err.member == "../evil"
    assert err.code == "BUNDLE_ERROR"


def test_earlier_good_members_are_removed(payloads, sandbox):
    """A failure late in the stream removes the members already landed."""
    root, staging = sandbox
    before = tree(root)
    data = tar_bytes([reg("0.vhd", payloads.vhd), reg("1.vhd", payloads.big),
                      reg("2.vhd", b"junk" * 1000)])
    expect_refusal(extract_bundle, data, staging, "2.vhd")
    assert tree(root) == before


def test_gzip_bomb_fails_fast(payloads, sandbox):
    """A header declaring 100 GiB is refused after the member's first 1536 bytes."""
    _, staging = sandbox
    filler = os.urandom(16 * MIB)  # incompressible: the stream itself is large
    data = gzip.compress(_raw_member("0.vhd", 100 << 30, payloads.vhd[:1536] + filler),
                         compresslevel=1)
    reader = CountingReader(data)
    with pytest.raises(BundleError, match="0.vhd"):
        extract_bundle(reader, staging)
    assert reader.bytes_read < 3 * MIB, reader.bytes_read
    assert os.listdir(staging) == []


def test_zero_bomb_decompresses_lazily(payloads, sandbox):
    """1 GiB of zeros behind a small header: expansion stops at the refusal."""
    _, staging = sandbox
    import zlib
    comp = zlib.compressobj(9, zlib.DEFLATED, 31)
    parts = [comp.compress(_raw_member("0.vhd", 1 << 30, payloads.vhd[:1536]))]
    zeros = bytes(MIB)
    for _ in range(1024):
        parts.append(comp.compress(zeros))
    parts.append(comp.flush())
    data = b"".join(parts)
    reader = CountingReader(data, piece=4096)
    with pytest.raises(BundleError, match="0.vhd"):
        extract_bundle(reader, staging)
    assert reader.bytes_read < 64 * 1024, reader.bytes_read


def test_staging_must_exist(payloads, tmp_path):
    with pytest.raises(BundleError, match="does not exist"):
        extract_bundle(CountingReader(tar_bytes([reg("0.vhd", payloads.vhd)])),
                       str(tmp_path / "nope"))


def test_existing_file_in_staging_is_not_replaced(payloads, sandbox):
    _, staging = sandbox
    with open(os.path.join(staging, "0.vhd"), "wb") as out:
        out.write(b"precious")
    with pytest.raises(BundleError, match="already holds 0.vhd"):
        extract_bundle(CountingReader(tar_bytes([reg("0.vhd", payloads.vhd)])), staging)
    assert os.listdir(staging) == ["0.vhd"]
    assert read(os.path.join(staging, "0.vhd")) == b"precious"


def test_negative_pax_size(payloads, sandbox):
    _, staging = sandbox
    data = tar_bytes([reg("swap.vhd", payloads.vhd, pax_headers={"size": "-1024"}),
                      reg("0.vhd", payloads.vhd)], fmt=tarfile.PAX_FORMAT)
    with pytest.raises(BundleError, match="bad size"):
        extract_bundle(CountingReader(data), staging)
    assert os.listdir(staging) == []


def test_member_larger_than_free_space_fails_before_writing(payloads, sandbox, monkeypatch):
    from vhdport.bundle import reader as bundle_reader
    from vhdport.errors import NoSpaceError
    _, staging = sandbox
    monkeypatch.setattr(bundle_reader, "free_bytes", lambda directory: len(payloads.big) - 1)
    data = tar_bytes([reg("0.vhd", payloads.vhd), reg("1.vhd", payloads.big)])
    reader = CountingReader(data)
    with pytest.raises(NoSpaceError, match="1.vhd"):
        extract_bundle(reader, staging)
    assert os.listdir(staging) == []


def test_member_longer_than_its_bat_explains(payloads, sandbox):
    """Within the header's bound, but past the last allocated block: refused once the
    BAT has streamed by, before the padding is read."""
    _, staging = sandbox
    vhd = payloads.big
    padded = vhd[:-512] + os.urandom(3 * MIB) + vhd[-512:]
    data = tar_bytes([reg("0.vhd", padded)], compress=False)
    reader = CountingReader(data)
    with pytest.raises(BundleError, match="0.vhd.*VHD metadata allows"):
        extract_bundle(reader, staging)
    assert reader.bytes_read < 2 * MIB
    assert os.listdir(staging) == []


def _with_header(vhd, **changes):
    from vhdport.vhd.format.header import DynamicHeader
    header = DynamicHeader.parse(vhd[512:1536])
    for key, value in changes.items():
        setattr(header, key, value)
    return vhd[:512] + header.pack() + vhd[1536:]


def test_far_away_bat_refused(payloads, sandbox):
    _, staging = sandbox
    vhd = _with_header(payloads.vhd, table_offset=1 << 40)
    data = gzip.compress(_raw_member("0.vhd", 1 << 39, vhd[:1536]))
    with pytest.raises(BundleError, match="0.vhd.*BAT at offset"):
        extract_bundle(CountingReader(data), staging)


def test_far_away_locator_refused(fixtures, sandbox):
    from vhdport.vhd.format.header import DynamicHeader
    _, staging = sandbox
    leaf = read(os.path.join(fixtures, "chain", "leaf.vhd"))
    header = DynamicHeader.parse(leaf[512:1536])
    used = [loc for loc in header.locators if loc.in_use]
    assert used
    used[0].data_offset = 1 << 40
    vhd = leaf[:512] + header.pack() + leaf[1536:]
    data = gzip.compress(_raw_member("0.vhd", 1 << 39, vhd[:1536]))
    with pytest.raises(BundleError, match="0.vhd.*locator"):
        extract_bundle(CountingReader(data), staging)
