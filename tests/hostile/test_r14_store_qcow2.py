"""R14: hostile QCOW2 images through ``transfer.download`` (disk_format=qcow2, container bare).

Each class of issue #14 has several generated cases: a backing file (another VDI of the SR,
absolute or relative, /etc/passwd, a json: or protocol filename, a v2 header), an external data
file (qemu's own, raw data file, the extension or the feature bit alone), encryption (LUKS,
legacy AES, the crypto extension alone), and bombs (virtual size over SM's limit or over the
VHD limit when a VHD is asked for, shared compressed clusters, shared data clusters, an L1 or
refcount table beyond any sane size, a stream longer than its record).  Expected every time: a
typed error naming the image and the field, within CASE_SECONDS, and the whole tree (SR with a
VDI already in it, store, an outside canary) byte-identical before and after.
"""

import os
import shutil
import struct
import time

import pytest

from tests.hostile.conftest import diff_digests, tree_digest
from tests.peers.glance_server import glance_auth  # noqa: F401
from tests.qcow2.qemu import qemu_img, qemu_io, require_qemu
from vhdport import transfer
from vhdport.errors import (IntegrityError, LimitError, Qcow2CorruptError, Qcow2UnsupportedError,
                            VhdportError)
from vhdport.qcow2 import Qcow2File
from vhdport.qcow2.format import tables as t

MiB = 1 << 20
CASE_SECONDS = 10.0


@pytest.fixture(autouse=True)
def _qemu():
    require_qemu()


def header_edit(path, *edits):
    with open(path, "r+b") as f:
        for offset, data in edits:
            f.seek(offset)
            f.write(data)


def first_extension(path):
    with open(path, "rb") as f:
        head = f.read(112)
    return struct.unpack_from(">I", head, 100)[0]


def plain(work, name="p.qcow2", options=(), size="16M"):
    path = os.path.join(work, name)
    args = ["create", "-f", "qcow2"]
    for opt in options:
        args += ["-o", opt]
    qemu_img(*(args + [path, size]))
    qemu_io(path, "write -P 0x61 0 256k")
    return path


# --- the cases: builder(work, sr) -> (path, expected error, field) ------------------------


def _backing(target, fmt="qcow2", options=()):
    def build(work, sr):
        name = target(sr) if callable(target) else target
        path = os.path.join(work, "b.qcow2")
        args = ["create", "-f", "qcow2", "-u", "-F", fmt, "-b", name]
        for opt in options:
            args += ["-o", opt]
        qemu_img(*(args + [path, "16M"]))
        return path, Qcow2UnsupportedError, "backing_file_offset"
    return build


def _sr_vdi(sr):
    return os.path.join(sr, sorted(n for n in os.listdir(sr) if not n.startswith("."))[0])


def _sr_vdi_relative(sr):
    return os.path.basename(_sr_vdi(sr))


def _backing_name_only(work, sr):
    """backing_file_size set, offset 0: still a backing file (refused on either field)."""
    path = plain(work)
    header_edit(path, (16, struct.pack(">I", 11)))
    return path, Qcow2UnsupportedError, "backing_file_offset"


def _data_file(options):
    def build(work, sr):
        path = os.path.join(work, "d.qcow2")
        data = os.path.join(work, "d.raw")
        qemu_img(*(["create", "-f", "qcow2", "-o", "data_file=" + data] +
                   sum((["-o", o] for o in options), []) + [path, "16M"]))
        # point the name at a VDI of the SR afterwards (qemu-img would have created it)
        name = _sr_vdi(sr).encode()
        at = first_extension(path)
        header_edit(path, (at, struct.pack(">II", 0x44415441, len(name)) + name +
                           bytes((8 - len(name) % 8) % 8) + struct.pack(">II", 0, 0)))
        return path, Qcow2UnsupportedError, "incompatible_features"
    return build


def _data_file_bit_only(work, sr):
    path = plain(work)
    header_edit(path, (72, struct.pack(">Q", 1 << 2)))
    return path, Qcow2UnsupportedError, "incompatible_features"


def _data_file_extension_only(work, sr):
    path = plain(work)
    name = b"/etc/passwd"
    at = first_extension(path)
    header_edit(path, (at, struct.pack(">II", 0x44415441, len(name)) + name + bytes(5)))
    return path, Qcow2UnsupportedError, "data_file_extension"


@pytest.fixture(scope="module")
def luks_image(tmp_path_factory):
    """One LUKS image per module: qemu times its key derivation, seconds on a busy host."""
    require_qemu()
    path = str(tmp_path_factory.mktemp("luks") / "luks.qcow2")
    for _attempt in range(3):   # "Unable to get accurate CPU usage" when the timing is too short
        proc = qemu_img("create", "--object", "secret,id=s0,data=pw", "-f", "qcow2", "-o",
                        "encrypt.format=luks,encrypt.key-secret=s0,encrypt.iter-time=50",
                        path, "16M", check=False)
        if proc.returncode == 0:
            return path
    pytest.fail("qemu-img could not make a LUKS image: " + proc.stderr)


def _luks(work, sr):
    return os.path.join(work, "luks.qcow2"), Qcow2UnsupportedError, "crypt_method"


def _aes(version_options):
    def build(work, sr):
        path = plain(work, options=version_options)
        header_edit(path, (32, struct.pack(">I", 1)))
        return path, Qcow2UnsupportedError, "crypt_method"
    return build


def _crypto_extension_only(work, sr):
    path = plain(work)
    at = first_extension(path)
    header_edit(path, (at, struct.pack(">II", 0x0537BE77, 16) + bytes(16)))
    return path, Qcow2UnsupportedError, "crypto_extension"


def _size(size):
    def build(work, sr):
        path = plain(work)
        header_edit(path, (24, struct.pack(">Q", size)))
        return path, LimitError, None
    return build


def _compressed(work):
    raw = os.path.join(work, "c.raw")
    with open(raw, "wb") as f:
        f.write(bytes(range(256)) * 4096)               # 16 clusters, compressible
    path = os.path.join(work, "c.qcow2")
    qemu_img("convert", "-c", "-f", "raw", "-O", "qcow2", raw, path)
    with Qcow2File.open(path) as image:
        entry, _bm, l2 = image.cluster_entry(0)
    return path, entry, l2


def _shared_compressed(count):
    def build(work, sr):
        path, entry, l2 = _compressed(work)
        header_edit(path, *[(l2 + 8 * i, struct.pack(">Q", entry)) for i in range(1, count)])
        return path, Qcow2UnsupportedError, "compressed_cluster"
    return build


def _shared_data(work, sr):
    path = plain(work)
    with Qcow2File.open(path) as image:
        entry, _bm, l2 = image.cluster_entry(0)
    header_edit(path, *[(l2 + 8 * i, struct.pack(">Q", entry)) for i in range(1, 64)])
    return path, Qcow2CorruptError, "l2_entry"


def _huge_l1(work, sr):
    path = plain(work)
    header_edit(path, (36, struct.pack(">I", 0x0FFFFFFF)))
    return path, Qcow2CorruptError, "l1_table"


def _huge_reftable(work, sr):
    path = plain(work)
    header_edit(path, (56, struct.pack(">I", 0x00FFFFFF)))
    return path, Qcow2CorruptError, "refcount_table"


def _compressed_span(work, sr):
    path, entry, l2 = _compressed(work)
    off = entry & ((1 << 54) - 1)       # 64 KiB clusters: offset in bits 0..53, sectors above
    header_edit(path, (l2, struct.pack(">Q", t.COMPRESSED | (0xFF << 54) | off)))
    return path, Qcow2CorruptError, "l2_entry"


CASES = [
    ("backing: absolute path of an SR VDI", _backing(_sr_vdi, "vpc")),
    ("backing: relative name of an SR VDI", _backing(_sr_vdi_relative, "vpc")),
    ("backing: SM's relative <uuid>.qcow2 form",
     _backing("0f1e2d3c-4b5a-6978-8796-a5b4c3d2e1f0.qcow2", "qcow2")),
    ("backing: SM's /var/run/sr-mount/<sr>/<uuid>.qcow2 form",
     _backing("/var/run/sr-mount/0f1e2d3c-0000-4000-8000-a5b4c3d2e1f0/"
              "0f1e2d3c-4b5a-6978-8796-a5b4c3d2e1f0.qcow2", "qcow2")),
    ("backing: /etc/passwd as raw", _backing("/etc/passwd", "raw")),
    ("backing: ../../../etc/passwd", _backing("../../../etc/passwd", "raw")),
    ("backing: json: filename", _backing('json:{"file.filename":"/etc/passwd"}', "raw")),
    ("backing: nbd URL", _backing("nbd://127.0.0.1:1/x", "raw")),
    ("backing: v2 header", _backing("/etc/passwd", "raw", ["compat=0.10"])),
    ("backing: size field only", _backing_name_only),
    ("data file: qemu's, renamed to an SR VDI", _data_file([])),
    ("data file: raw data file", _data_file(["data_file_raw=on"])),
    ("data file: feature bit only", _data_file_bit_only),
    ("data file: extension only (/etc/passwd)", _data_file_extension_only),
    ("encryption: LUKS", _luks),
    ("encryption: legacy AES v3", _aes([])),
    ("encryption: legacy AES v2", _aes(["compat=0.10"])),
    ("encryption: crypto extension only", _crypto_extension_only),
    ("bomb: virtual size 16 TiB + 512", _size(17589500641280 + 512)),
    ("bomb: virtual size 2^63", _size(1 << 63)),
    ("bomb: 4 compressed clusters sharing bytes", _shared_compressed(4)),
    ("bomb: 16 compressed clusters sharing bytes", _shared_compressed(16)),
    ("bomb: 64 guest clusters sharing one data cluster", _shared_data),
    ("bomb: L1 table of 2^28 entries", _huge_l1),
    ("bomb: refcount table of 2^24 clusters", _huge_reftable),
    ("bomb: compressed span past a cluster", _compressed_span),
]


def run_download(env, path, error, field, name, store=None, made=None, **kwargs):
    """Put ``path`` into the store (``made`` collects the id), download it: refused, tree intact."""
    root, sr, local, outside = env
    store = store or local
    image_id = transfer.import_image(store, path, name, disk_format="qcow2",
                                     container_format="bare")
    if made is not None:
        made.append(image_id)
    before = tree_digest(root)
    start = time.monotonic()
    with pytest.raises(VhdportError) as info:
        transfer.download(store, image_id, sr, **kwargs)
    elapsed = time.monotonic() - start
    err = info.value
    assert isinstance(err, error), "got {!r}".format(err)
    if field is not None:
        assert err.fields.get("field") == field, err
    assert "image {}".format(image_id) in str(err), err
    assert elapsed < CASE_SECONDS, elapsed
    after = tree_digest(root)
    assert before == after, diff_digests(before, after)
    return err, elapsed


GLANCE_CASES = [c for c in CASES if c[0] in (
    "backing: absolute path of an SR VDI", "backing: /etc/passwd as raw",
    "data file: qemu's, renamed to an SR VDI", "encryption: LUKS",
    "bomb: 16 compressed clusters sharing bytes", "bomb: virtual size 16 TiB + 512")]


@pytest.mark.peer
@pytest.mark.parametrize("name, build", GLANCE_CASES, ids=[c[0] for c in GLANCE_CASES])
def test_hostile_qcow2_from_real_glance_refused(name, build, hostile_env, tmp_path, glance_auth,  # noqa: F811
                                                reliability_case, request):
    """The packaged Glance stores these images as given (no format inspection on upload)."""
    from vhdport.stores.glance import GlanceStore
    case = reliability_case("R14", "real Glance: " + name, "typed error naming the image and "
                            "the field; SR and outside byte-identical")
    store = GlanceStore(glance_auth.url, auth_token=glance_auth.token, retry_delay=0.01,
                        timeout=20)
    work = str(tmp_path / "work")
    os.mkdir(work)
    if build is _luks:
        shutil.copy(request.getfixturevalue("luks_image"), os.path.join(work, "luks.qcow2"))
    path, error, field = build(work, hostile_env[1])
    made = []
    try:
        err, elapsed = run_download(hostile_env, path, error, field, name, store=store, made=made)
    finally:
        for image_id in made:
            store.delete(image_id)
    case.detail = "{} ({:.2f} s)".format(err, elapsed)


@pytest.mark.parametrize("name, build", CASES, ids=[c[0] for c in CASES])
def test_hostile_qcow2_download_refused(name, build, hostile_env, tmp_path, reliability_case,
                                        request):
    field_hint = "the field"
    case = reliability_case("R14", name, "typed error naming the image and {}; SR, store and "
                            "outside byte-identical; <{:.0f} s".format(field_hint, CASE_SECONDS))
    work = str(tmp_path / "work")
    os.mkdir(work)
    if build is _luks:
        shutil.copy(request.getfixturevalue("luks_image"), os.path.join(work, "luks.qcow2"))
    path, error, field = build(work, hostile_env[1])
    err, elapsed = run_download(hostile_env, path, error, field, name)
    case.detail = "{} ({:.2f} s)".format(err, elapsed)


@pytest.mark.parametrize("size", ["2041G", "3T"])
def test_too_large_for_vhd_refused(size, hostile_env, tmp_path, reliability_case):
    case = reliability_case("R14", "bomb: {} image asked as VHD".format(size),
                            "LimitError before spooling; tree byte-identical")
    path = os.path.join(str(tmp_path), "big.qcow2")
    qemu_img("create", "-f", "qcow2", path, size)
    err, elapsed = run_download(hostile_env, path, LimitError, None, "big", image_format="vhd")
    case.detail = "{} ({:.2f} s)".format(err, elapsed)


@pytest.mark.parametrize("extra", [MiB, 64 * MiB])
def test_stream_longer_than_record_refused(extra, hostile_env, tmp_path, reliability_case):
    case = reliability_case("R14", "bomb: stream {} MiB past its record".format(extra // MiB),
                            "IntegrityError on size, spool stopped; tree byte-identical")
    root, sr, store, outside = hostile_env
    path = plain(str(tmp_path))
    image_id = transfer.import_image(store, path, "long", disk_format="qcow2",
                                     container_format="bare")
    with open(os.path.join(store.images_dir, image_id + ".data"), "ab") as f:
        f.truncate(os.path.getsize(path) + extra)
    before = tree_digest(root)
    with pytest.raises(IntegrityError) as info:
        transfer.download(store, image_id, sr)
    after = tree_digest(root)
    assert before == after, diff_digests(before, after)
    assert info.value.fields["what"] == "size"
    case.detail = str(info.value)
