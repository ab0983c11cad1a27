"""SM's metadata edits: hidden flag (byte-identical insertion), set parent, resize, commit."""

import os
import shutil
import struct

import pytest

from tests.qcow2.qemu import check, compare_raw, info, pattern, qemu_img, qemu_io, \
    require_qemu, to_raw
from vhdport.errors import ChainError, Qcow2UnsupportedError
from vhdport.qcow2 import Qcow2Chain, Qcow2File, check_image, local_backing
from vhdport.qcow2.create import create, create_snapshot
from vhdport.qcow2.ops import commit, get_hidden, resize, set_hidden, set_parent

KiB, MiB = 1024, 1024 * 1024


@pytest.fixture(autouse=True)
def _qemu():
    require_qemu()


def read(path):
    with open(path, "rb") as f:
        return f.read()


def sm_insert_reference(raw, flag):
    """SM's insertion, from its description: walk the extensions to the end marker; move a
    backing name 16 bytes later (fixing backing_file_offset); put type 0x76617465, length 8,
    the flag byte and 7 zeros where the marker was, then a new end marker."""
    buf = bytearray(raw)
    at = struct.unpack(">I", buf[100:104])[0] if buf[4:8] == b"\0\0\0\3" else 72
    while struct.unpack(">I", buf[at:at + 4])[0] != 0:
        at += 8 + (struct.unpack(">I", buf[at + 4:at + 8])[0] + 7) // 8 * 8
    bfo, bfs = struct.unpack(">QI", buf[8:20])
    if bfo:
        name = bytes(buf[bfo:bfo + bfs])
        buf[bfo + 16:bfo + 16 + bfs] = name
        buf[8:16] = struct.pack(">Q", bfo + 16)
    buf[at:at + 24] = b"vate" + b"\0\0\0\x08" + bytes([flag]) + bytes(7) + bytes(8)
    return bytes(buf)


@pytest.mark.parametrize("backing", [None, "base.qcow2", "/var/run/sr-mount/sr/x.qcow2"])
@pytest.mark.parametrize("compat", ["1.1", "0.10"])
def test_hidden_insertion_is_byte_identical_to_sm(tmp_path, backing, compat):
    os.chdir(str(tmp_path))
    qemu_img("create", "-q", "-f", "qcow2", "-o", "compat=" + compat, "base.qcow2", "4M")
    args = ["create", "-q", "-f", "qcow2", "-o", "compat=" + compat]
    if backing:
        args += ["-u", "-F", "qcow2", "-b", backing]
    qemu_img(*(args + ["disk.qcow2", "4M"]))
    qemu_io("base.qcow2", "write -P 5 0 70k")
    before = read("disk.qcow2")
    assert set_hidden("disk.qcow2", True) is True
    after = read("disk.qcow2")
    mtime = os.stat("disk.qcow2").st_mtime_ns
    assert set_hidden("disk.qcow2", True) is False          # already hidden: nothing written
    assert os.stat("disk.qcow2").st_mtime_ns == mtime
    assert after == sm_insert_reference(before, 1)
    assert get_hidden("disk.qcow2") is True
    set_hidden("disk.qcow2", False)
    assert read("disk.qcow2") == sm_insert_reference(before, 0)
    assert get_hidden("disk.qcow2") is False
    assert info("disk.qcow2").get("backing-filename") == backing
    check("disk.qcow2")


def test_reading_hidden_never_writes(tmp_path):
    path = str(tmp_path / "d.qcow2")
    create(path, MiB)
    before = read(path), os.stat(path).st_mtime_ns
    assert get_hidden(path) is False
    os.chmod(path, 0o444)
    with Qcow2File.open(path) as image:
        assert image.hidden is False
    assert (read(path), os.stat(path).st_mtime_ns) == before


def test_qemu_keeps_the_hidden_extension(tmp_path):
    path = str(tmp_path / "d.qcow2")
    create(path, 4 * MiB)
    set_hidden(path, True)
    qemu_img("resize", "-f", "qcow2", path, "8M")   # qemu rewrites the header
    qemu_img("amend", "-f", "qcow2", "-o", "lazy_refcounts=on", path)
    assert get_hidden(path) is True


def test_set_parent_like_rebase_unsafe(tmp_path):
    os.chdir(str(tmp_path))
    create("a.qcow2", 4 * MiB)
    create("b.qcow2", 4 * MiB)
    qemu_io("b.qcow2", "write -P 3 0 64k")
    create_snapshot("c.qcow2", "a.qcow2")
    set_hidden("c.qcow2", True)
    set_parent("c.qcow2", str(tmp_path / "b.qcow2"))
    theirs = "t.qcow2"
    create_snapshot(theirs, "a.qcow2")
    set_hidden(theirs, True)
    qemu_img("rebase", "-u", "-f", "qcow2", "-F", "qcow2", "-b", str(tmp_path / "b.qcow2"),
             theirs)
    assert read("c.qcow2") == read(theirs)
    assert get_hidden("c.qcow2") is True
    with Qcow2Chain.open("c.qcow2", backing=local_backing) as chain:
        assert bytes(chain.read(0, 64 * KiB)) == b"\x03" * 64 * KiB
    with pytest.raises(Exception, match="no such QCOW2 file"):
        set_parent("c.qcow2", "missing.qcow2")


def test_resize_up(tmp_path):
    path = str(tmp_path / "r.qcow2")
    create(path, MiB, cluster_size=512)
    qemu_io(path, "write -P 7 1000 5000")
    resize(path, 300 * MiB)     # L1 outgrows its cluster and moves
    check(path)
    assert info(path)["virtual-size"] == 300 * MiB
    with Qcow2Chain.open(path, writable=True) as chain:
        chain.write(299 * MiB, b"end")
    check(path)
    with pytest.raises(Qcow2UnsupportedError, match="multiple of 512"):
        resize(path, 300 * MiB + 1)
    raw = to_raw(path, str(tmp_path / "r.raw"))
    assert raw[1000:6000] == b"\x07" * 5000 and raw[299 * MiB:299 * MiB + 3] == b"end"


@pytest.mark.parametrize("opts", [dict(), dict(cluster_size=4096, refcount_bits=1),
                                  dict(extended_l2=True)])
def test_commit(tmp_path, opts):
    os.chdir(str(tmp_path))
    create("base.qcow2", 4 * MiB, **opts)
    qemu_io("base.qcow2", "write -P 1 0 2M")
    create_snapshot("mid.qcow2", "base.qcow2")
    qemu_io("mid.qcow2", "write -P 2 100k 300k")
    create_snapshot("top.qcow2", "mid.qcow2")
    qemu_io("top.qcow2", "write -P 3 130k 5k", "write -z 1M 64k", "write -P 4 3M 1")
    expected = to_raw("top.qcow2", "expected.raw")
    shutil.copy("mid.qcow2", "mid-before.qcow2")
    commit("top.qcow2")
    check("mid.qcow2")
    qemu_img("rebase", "-u", "-F", "qcow2", "-b", "mid.qcow2", "top.qcow2")
    with Qcow2Chain.open("mid.qcow2", backing=local_backing) as chain:
        assert bytes(chain.read(0, chain.virtual_size)) == expected
    compare_raw("mid.qcow2", "expected.raw")


def test_commit_needs_a_parent(tmp_path):
    path = str(tmp_path / "alone.qcow2")
    create(path, MiB)
    with pytest.raises(ChainError, match="no backing file"):
        commit(path)


def test_commit_grows_a_smaller_parent(tmp_path):
    os.chdir(str(tmp_path))
    create("base.qcow2", MiB)
    qemu_io("base.qcow2", "write -P 1 0 1M")
    create_snapshot("top.qcow2", "base.qcow2")
    resize("top.qcow2", 3 * MiB)
    data = pattern(1, 100 * KiB)
    with Qcow2Chain.open("top.qcow2", writable=True, backing=local_backing) as chain:
        chain.write(2 * MiB + 5, data)
    expected = to_raw("top.qcow2", "e.raw")
    commit("top.qcow2")
    check("base.qcow2")
    compare_raw("base.qcow2", "e.raw")
    assert len(expected) == 3 * MiB


class _Crash(Exception):
    pass


@pytest.mark.parametrize("fraction", [0.01, 0.1, 0.2, 0.35, 0.5, 0.65, 0.8, 0.95])
def test_commit_interrupted_leaves_old_or_new_clusters(tmp_path, monkeypatch, fraction):
    """Writes stop after N pwrite calls, the last one torn (what a crash leaves): each parent
    cluster then reads as before or after the commit; the parent has leaks at worst.
    (With in-place overwrites instead of fresh clusters every case here fails.)"""
    os.chdir(str(tmp_path))
    cs = 4096
    create("base.qcow2", 256 * KiB, cluster_size=cs)
    with Qcow2Chain.open("base.qcow2", writable=True) as chain:
        chain.write(0, pattern(1, 256 * KiB))
    create_snapshot("top.qcow2", "base.qcow2")
    with Qcow2Chain.open("top.qcow2", writable=True, backing=local_backing) as chain:
        chain.write(3000, pattern(2, 100 * KiB))
        chain.write_zeroes(200 * KiB, 3 * cs)
        after = bytes(chain.read(0, chain.virtual_size))
    with Qcow2Chain.open("base.qcow2") as chain:
        before = bytes(chain.read(0, chain.virtual_size))
    real_pwrite = Qcow2File.pwrite
    calls = []
    shutil.copy("base.qcow2", "base.orig")
    monkeypatch.setattr(Qcow2File, "pwrite", lambda self, o, d: calls.append(o) or
                        real_pwrite(self, o, d))
    commit("top.qcow2")                     # a full run counts the writes
    monkeypatch.undo()
    shutil.copy("base.orig", "base.qcow2")
    stop_after = max(1, int(len(calls) * fraction))
    calls = []

    def failing(self, offset, data):
        calls.append(offset)
        if len(calls) > stop_after:
            if len(data) > 512:      # a torn write: only the first sectors reach the disk
                real_pwrite(self, offset, bytes(data)[:len(data) // 2 // 512 * 512])
            raise _Crash()
        return real_pwrite(self, offset, data)

    monkeypatch.setattr(Qcow2File, "pwrite", failing)
    monkeypatch.setattr(Qcow2File, "flush", lambda self: None)
    with pytest.raises(_Crash):
        commit("top.qcow2")
    monkeypatch.undo()
    with Qcow2Chain.open("base.qcow2") as chain:
        now = bytes(chain.read(0, chain.virtual_size))
    for c in range(0, len(now), cs):
        assert now[c:c + cs] in (before[c:c + cs], after[c:c + cs]), "cluster {}".format(c // cs)
    defects = check_image("base.qcow2")
    assert all(d.field == "leak" for d in defects), defects


def test_empty_hidden_extension_is_not_overwritten(tmp_path):
    path = str(tmp_path / "e.qcow2")
    create(path, MiB)
    with Qcow2File.open(path, writable=True) as image:
        h = image.header
        from vhdport.qcow2.format.header import Extension
        h.extensions.insert(0, Extension(0x76617465, b""))
        image.write_header()
    before = read(path)
    with pytest.raises(Exception, match="no data byte") as info:
        set_hidden(path, True)
    assert info.value.fields["field"] == "extensions"
    assert read(path) == before


def test_commit_into_a_parent_with_internal_snapshots_is_refused(tmp_path):
    os.chdir(str(tmp_path))
    create("base.qcow2", MiB)
    qemu_img("snapshot", "-c", "s1", "base.qcow2")
    create_snapshot("top.qcow2", "base.qcow2")
    qemu_io("top.qcow2", "write -P 1 0 4k")
    before = read("base.qcow2")
    with pytest.raises(Qcow2UnsupportedError, match="internal snapshots"):
        commit("top.qcow2")
    assert read("base.qcow2") == before


def test_sm_file_sr_flow(tmp_path):
    """FileSR's QCOW2 life cycle: create, write, snapshot by hard link + '.new' rename, hide
    the base, relink with an absolute name (GC), coalesce; qemu agrees at every step."""
    sr = str(tmp_path)
    os.chdir(sr)
    leaf, base = "aaaa.qcow2", "bbbb.qcow2"
    create(leaf, 16 * MiB)
    qemu_io(leaf, "write -P 1 0 3M")
    os.link(leaf, base)                       # the leaf's data becomes the base
    create_snapshot(leaf + ".new", base)
    os.rename(leaf + ".new", leaf)
    set_hidden(base, True)
    with Qcow2Chain.open(leaf, writable=True, backing=local_backing) as chain:
        chain.write(MiB + 3, b"after snapshot")
    check(leaf)
    check(base)
    assert info(leaf)["backing-filename"] == base
    expected = to_raw(leaf, "expected.raw")
    set_parent(leaf, os.path.join(sr, base))  # SM's GC relinks with absolute paths
    assert info(leaf)["backing-filename"] == os.path.join(sr, base)
    commit(leaf)
    check(base, with_backing=True)
    with Qcow2Chain.open(base) as chain:
        assert bytes(chain.read(0, chain.virtual_size)) == expected
        assert chain.hidden is True
