"""Store QCOW2 images (vhdport.qcow2.untrusted): hostile headers refused from their first bytes,
SM's layout told apart from everything qemu-img can make, clusters counted, shared compressed
clusters refused.  Images come from the real qemu-img / qemu-io."""

import struct

import pytest

from tests.qcow2.qemu import qemu_img, qemu_io, require_qemu
from vhdport.errors import LimitError, Qcow2FormatError, Qcow2UnsupportedError
from vhdport.qcow2 import Qcow2File, set_hidden
from vhdport.qcow2.create import MAX_VIRTUAL_SIZE
from vhdport.qcow2.format import tables as t
from vhdport.qcow2.untrusted import (StoreImage, head_bytes_needed, refuse_hostile_head,
                                     sm_layout_problems)

MiB = 1 << 20


@pytest.fixture(autouse=True)
def _qemu():
    require_qemu()


def made(tmp_path, name, *options, size="64M", writes=()):
    path = str(tmp_path / name)
    args = ["create", "-f", "qcow2"]
    for opt in options:
        args += ["-o", opt]
    qemu_img(*(args + [path, size]))
    if writes:
        qemu_io(path, *writes)
    return path


def head_of(path):
    with open(path, "rb") as f:
        head = f.read(104)
        return head + f.read(head_bytes_needed(head) - len(head))


def test_head_bytes_needed_is_the_first_cluster(tmp_path):
    path = made(tmp_path, "a.qcow2", "cluster_size=2M")
    assert head_bytes_needed(head_of(path)[:104]) == 2 * MiB
    assert head_bytes_needed(b"not a qcow2") == 72


def test_backing_file_is_refused_from_the_head(tmp_path):
    base = made(tmp_path, "base.qcow2", writes=["write -P 7 0 1M"])
    child = str(tmp_path / "child.qcow2")
    qemu_img("create", "-f", "qcow2", "-F", "qcow2", "-b", base, child)
    with pytest.raises(Qcow2UnsupportedError) as e:
        refuse_hostile_head(head_of(child), "image X")
    assert e.value.fields["field"] == "backing_file_offset"
    assert "image X" in str(e.value) and "backing file" in str(e.value)
    with pytest.raises(Qcow2UnsupportedError):
        StoreImage(child, "image X")


def test_backing_file_to_etc_passwd_is_refused(tmp_path):
    child = str(tmp_path / "passwd.qcow2")
    qemu_img("create", "-f", "qcow2", "-F", "raw", "-b", "/etc/passwd", "-u", child, "1M")
    with pytest.raises(Qcow2UnsupportedError) as e:
        refuse_hostile_head(head_of(child), "image P")
    assert e.value.fields["field"] == "backing_file_offset"


def test_external_data_file_is_refused(tmp_path):
    data = str(tmp_path / "data.raw")
    path = made(tmp_path, "df.qcow2", "data_file=" + data)
    with pytest.raises(Qcow2UnsupportedError) as e:
        refuse_hostile_head(head_of(path), "image D")
    assert e.value.fields["field"] == "incompatible_features"


def test_data_file_extension_alone_is_refused(tmp_path):
    path = made(tmp_path, "dx.qcow2")
    head = bytearray(head_of(path))
    at = struct.unpack_from(">I", head, 100)[0]
    # an extension "DATA" naming /etc/shadow where the first extension was, feature bit clear
    head[at:at + 24] = struct.pack(">II", 0x44415441, 11) + b"/etc/shadow" + bytes(5)
    with pytest.raises(Qcow2UnsupportedError) as e:
        refuse_hostile_head(bytes(head), "image E")
    assert e.value.fields["field"] == "data_file_extension"


def test_luks_encryption_is_refused(tmp_path):
    path = str(tmp_path / "luks.qcow2")
    for _attempt in range(3):   # qemu times its key derivation: may fail on a busy host
        proc = qemu_img("create", "--object", "secret,id=sec0,data=s3cret", "-f", "qcow2", "-o",
                        "encrypt.format=luks,encrypt.key-secret=sec0,encrypt.iter-time=50",
                        path, "16M", check=False)
        if proc.returncode == 0:
            break
    assert proc.returncode == 0, proc.stderr
    with pytest.raises(Qcow2UnsupportedError) as e:
        refuse_hostile_head(head_of(path), "image L")
    assert e.value.fields["field"] == "crypt_method"


def test_crypto_extension_without_crypt_method_is_refused(tmp_path):
    path = made(tmp_path, "cx.qcow2")
    head = bytearray(head_of(path))
    at = struct.unpack_from(">I", head, 100)[0]
    head[at:at + 24] = struct.pack(">II", 0x0537BE77, 16) + bytes(16)
    with pytest.raises(Qcow2UnsupportedError) as e:
        refuse_hostile_head(bytes(head), "image C")
    assert e.value.fields["field"] == "crypto_extension"


def test_size_above_sm_limit_is_refused(tmp_path):
    path = made(tmp_path, "big.qcow2")
    head = bytearray(head_of(path))
    head[24:32] = struct.pack(">Q", MAX_VIRTUAL_SIZE + 512)
    with pytest.raises(LimitError):
        refuse_hostile_head(bytes(head), "image B")


def test_not_a_qcow2(tmp_path):
    with pytest.raises(Qcow2FormatError) as e:
        refuse_hostile_head(b"\0" * 512, "image R")
    assert e.value.fields["field"] == "magic"


def test_qemu_img_create_is_sm_layout(tmp_path):
    path = made(tmp_path, "sm.qcow2", writes=["write -P 1 0 3M", "write -z 8M 1M"])
    with StoreImage(path, "sm") as image:
        assert sm_layout_problems(image) == []
        counts = image.census()
    assert counts[t.DATA] == 48 and counts[t.COMPRESSED_KIND] == 0


@pytest.mark.parametrize("options, problem", [
    (["compat=0.10"], "version 2"),
    (["cluster_size=4096"], "4096-byte clusters"),
    (["refcount_bits=1"], "1-bit refcounts"),
    (["lazy_refcounts=on"], "feature bits"),
    (["cluster_size=16384", "extended_l2=on"], "feature bits"),
])
def test_other_layouts_are_not_adopted(tmp_path, options, problem):
    path = made(tmp_path, "o.qcow2", *options, writes=["write -P 3 0 256k"])
    with StoreImage(path, "o") as image:
        problems = sm_layout_problems(image)
    assert any(problem in p for p in problems), problems


def test_compressed_clusters_are_not_adopted(tmp_path):
    raw = tmp_path / "src.raw"
    raw.write_bytes(b"compressible " * 100000)
    path = str(tmp_path / "c.qcow2")
    qemu_img("convert", "-c", "-f", "raw", "-O", "qcow2", str(raw), path)
    with StoreImage(path, "c") as image:
        assert image.census()[t.COMPRESSED_KIND] > 0
        assert sm_layout_problems(image) == ["compressed clusters"]


def test_internal_snapshot_is_not_adopted(tmp_path):
    path = made(tmp_path, "s.qcow2", writes=["write -P 5 0 64k"])
    qemu_img("snapshot", "-c", "snap1", path)
    with StoreImage(path, "s") as image:
        assert "1 internal snapshots" in sm_layout_problems(image)


def test_leak_is_not_adopted(tmp_path):
    path = made(tmp_path, "leak.qcow2", writes=["write -P 5 0 64k"])
    with open(path, "r+b") as f:
        end = f.seek(0, 2)
        f.write(b"\x55" * 65536)       # a cluster nobody references...
        f.seek(65536)                   # ...counted in the first refcount block: a leak
        block = struct.unpack(">Q", f.read(8))[0]
        f.seek(block + end // 65536 * 2)
        f.write(struct.pack(">H", 1))
    with StoreImage(path, "leak") as image:
        assert [d.field for d in image.defects()] == ["leak"]
        assert sm_layout_problems(image) == ["qemu-img check defects"]


def test_hidden_flag_does_not_stop_adoption(tmp_path):
    path = made(tmp_path, "h.qcow2", writes=["write -P 5 0 64k"])
    set_hidden(path, True)
    with StoreImage(path, "h") as image:
        assert sm_layout_problems(image) == []


def test_shared_compressed_clusters_are_refused(tmp_path):
    raw = tmp_path / "src.raw"
    raw.write_bytes(bytes(range(256)) * 1024)       # 4 clusters of 64 KiB, compressible
    path = str(tmp_path / "bomb.qcow2")
    qemu_img("convert", "-c", "-f", "raw", "-O", "qcow2", str(raw), path)
    with Qcow2File.open(path) as image:
        entry, _bm, l2 = image.cluster_entry(0)
    assert entry & t.COMPRESSED
    with open(path, "r+b") as f:        # guest clusters 1..3 now inflate the same bytes
        for i in range(1, 4):
            f.seek(l2 + 8 * i)
            f.write(struct.pack(">Q", entry))
    with StoreImage(path, "bomb") as image:
        with pytest.raises(Qcow2UnsupportedError) as e:
            image.census()
    assert e.value.fields["field"] == "compressed_cluster"


def test_sparse_3tib_census_is_fast(tmp_path):
    import time
    path = made(tmp_path, "huge.qcow2", size="3T", writes=["write -P 9 0 1M",
                                                           "write -P 8 2T 1M"])
    start = time.monotonic()
    with StoreImage(path, "huge") as image:
        assert sm_layout_problems(image) == []
        assert image.census()[t.DATA] == 32
        assert list(image.allocated_ranges()) == [(0, MiB), (2 << 40, MiB)]
    assert time.monotonic() - start < 3


def test_allocated_ranges_are_walked_lazily(tmp_path):
    """The landing's copy and digest walk the ranges as they read: the first range comes
    before the last L2 table is loaded (512 B clusters: one table per 32 KiB of guest)."""
    path = made(tmp_path, "frag.qcow2", "cluster_size=512", size="1M",
                writes=["write -P 1 0 512", "write -P 2 512k 512", "write -P 3 900k 512"])
    with StoreImage(path, "frag") as image:
        ranges = iter(image.allocated_ranges())
        assert next(ranges) == (0, 512)
        assert bin(int.from_bytes(bytes(image.image._scanned_l2), "little")).count("1") <= 2
        assert list(ranges) == [(512 * 1024, 512), (900 * 1024, 512)]
