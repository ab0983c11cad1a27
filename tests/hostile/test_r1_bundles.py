"""R1: hostile bundles through the whole download path (local store -> transfer.download -> SR).

Every case is stored as an active image in a local store and downloaded into a copy of an
SR that already holds a chain.  Each must be refused with a one-line VhdportError naming
the member (or, for whole-stream faults, the image); afterwards the SR tree is unchanged
(tree_digest: every path incl. hidden ones, file contents hashed, lock-file contents aside),
nothing appeared outside, and the staging root holds no staging dir.

The bundle-level corpus of tests/bundle/test_malicious.py is reused (imported); the
chain-level cases (order, uuids, hidden leaf, cycle, depth) are built here.
"""

import gzip
import json
import os
import tarfile

import pytest

from tests.bundle.helpers import MIB, make_vhd, read, reg, special, tar_bytes
from tests.bundle.test_malicious import ABS_TARGET, CASES as BUNDLE_CASES, Payloads, _raw_member
from tests.bundle.helpers import FIXTURES_TGZ
from tests.peers.require import require_qemu_img
from tests.hostile.conftest import (bundle_bytes, diff_digests, make_chain, put_image,
                                    tree_digest)
from vhdport.errors import VhdportError
from vhdport.sr.staging import ROOT_LOCK, STAGING_DIR
from vhdport.transfer import download
from vhdport.vhd import create_dynamic, create_snapshot, set_hidden, set_parent

ESCAPE_NAME = "vhdport-hostile-escape-{}".format(os.getpid())


@pytest.fixture(scope="module")
def payloads(tmp_path_factory):
    """The bundle corpus' payloads: qemu-img VHDs and the shared corrupt fixtures."""
    require_qemu_img()
    root = str(tmp_path_factory.mktemp("r1-payloads"))
    fixtures = os.path.join(root, "fixtures")
    os.mkdir(fixtures)
    with tarfile.open(FIXTURES_TGZ, "r:gz") as tar:
        for member in tar.getmembers():
            assert member.isfile() or member.isdir()
            assert not member.name.startswith("/") and ".." not in member.name.split("/")
        tar.extractall(fixtures)
    vhds = {
        "dynamic": make_vhd(os.path.join(root, "dynamic.vhd"), 9, "dynamic", seed=1),
        "fixed": make_vhd(os.path.join(root, "fixed.vhd"), 5, "fixed", seed=2),
        "empty": make_vhd(os.path.join(root, "empty.vhd"), 4, "dynamic", data=False),
    }
    return Payloads(fixtures, vhds)


@pytest.fixture(scope="module")
def chains(tmp_path_factory):
    """Chain material for the chain-level cases (small dynamic VHDs made by the engine)."""
    root = str(tmp_path_factory.mktemp("r1-chains"))
    made = {"c3": make_chain(os.path.join(root, "c3"), 3),
            "other": make_chain(os.path.join(root, "other"), 1),
            "d31": make_chain(os.path.join(root, "d31"), 31, size=MIB, block_size=1 << 16),
            "d30": make_chain(os.path.join(root, "d30"), 30, size=MIB, block_size=1 << 16)}
    hidden = make_chain(os.path.join(root, "hidden"), 2)
    set_hidden(hidden[0], True)
    made["hidden"] = hidden
    # a cycle: b's parent is a and a's parent is b
    cyc = os.path.join(root, "cycle")
    os.mkdir(cyc)
    create_dynamic(os.path.join(cyc, "x.vhd"), 4 * MIB)
    create_snapshot(os.path.join(cyc, "a.vhd"), "x.vhd")
    create_snapshot(os.path.join(cyc, "b.vhd"), "a.vhd")
    set_parent(os.path.join(cyc, "a.vhd"), "b.vhd")
    made["cycle"] = [os.path.join(cyc, "b.vhd"), os.path.join(cyc, "a.vhd")]
    # a child that is smaller than its parent
    small = os.path.join(root, "shrunk")
    os.mkdir(small)
    create_dynamic(os.path.join(small, "big.vhd"), 8 * MIB)
    create_dynamic(os.path.join(small, "tiny.vhd"), 4 * MIB)
    create_snapshot(os.path.join(small, "leaf.vhd"), "tiny.vhd")
    set_parent(os.path.join(small, "leaf.vhd"), "big.vhd")
    made["shrunk"] = [os.path.join(small, "leaf.vhd"), os.path.join(small, "big.vhd")]
    return made


def _members(paths, names=None):
    names = names or ["{}.vhd".format(i) for i in range(len(paths))]
    return tar_bytes([reg(n, read(p)) for n, p in zip(names, paths)])


def _flip(data, offset):
    out = bytearray(data)
    out[offset] ^= 0xFF
    return bytes(out)


# --- the cases ---------------------------------------------------------------------------
# each: (payloads, chains) -> dict(data=bytes, expect=text in the error, optional
#        disk_format / container_format / tamper=callable(record_doc))

#: bundle-corpus cases whose download-path error differs from extract_bundle's wording
DOWNLOAD_EXPECT = {
    "bare-vhd": "look like vhd",          # the record says a bundle, the bytes say a bare VHD
    "not-a-tar": "not a tar archive",
    "empty-stream": "look like raw",     # zero bytes sniff as raw: refused before any extraction
}
#: corpus cases that only make sense with extract_bundle's own arguments
SKIP_CORPUS = {"too-many"}  # needs max_members=2; the real limit is covered by depth-32


def _corpus_case(name):
    def build(p, _c):
        built = BUNDLE_CASES[name](p)
        return {"data": built[0], "expect": DOWNLOAD_EXPECT.get(name, built[1])}
    return build


CHAIN_CASES = {
    "hardlink-outside-absolute": lambda p, c: {
        "data": tar_bytes([special("0.vhd", tarfile.LNKTYPE, "/etc/passwd")]), "expect": "0.vhd"},
    "symlink-outside-relative": lambda p, c: {
        "data": tar_bytes([special("0.vhd", tarfile.SYMTYPE, "../../../" + ESCAPE_NAME),
                           reg("1.vhd", p.vhd)]), "expect": "0.vhd"},
    "symlink-dir-then-file-through-it": lambda p, c: {
        "data": tar_bytes([special("d", tarfile.SYMTYPE, "/tmp"),
                           reg("d/" + ESCAPE_NAME, p.vhd)]), "expect": "'d'"},
    "traversal-deep-escape": lambda p, c: {
        "data": tar_bytes([reg("../" * 12 + "tmp/" + ESCAPE_NAME, p.vhd)]), "expect": ESCAPE_NAME},
    "dot-slash-dot-dot-vhd": lambda p, c: {
        "data": tar_bytes([reg("./../0.vhd", p.vhd)]), "expect": "./../0.vhd"},
    "absolute-into-sr": lambda p, c: {
        "data": tar_bytes([reg("/0.vhd", p.vhd)]), "expect": "/0.vhd"},
    "wrong-order-base-first": lambda p, c: {
        "data": _members(list(reversed(c["c3"]))), "expect": "0.vhd"},
    "wrong-order-middle-swapped": lambda p, c: {
        "data": _members([c["c3"][0], c["c3"][2], c["c3"][1]]), "expect": "0.vhd"},
    "members-out-of-tar-order": lambda p, c: {
        # 1.vhd stored before 0.vhd in the tar is fine only if the chain holds; here 1 is foreign
        "data": _members([c["other"][0], c["c3"][0]], ["1.vhd", "0.vhd"]), "expect": "0.vhd"},
    "parent-uuid-mismatch": lambda p, c: {
        "data": _members([c["c3"][0], c["c3"][1], c["other"][0]]), "expect": "1.vhd"},
    "leaf-with-foreign-base": lambda p, c: {
        "data": _members([c["c3"][1], c["other"][0]]), "expect": "0.vhd"},
    "base-missing": lambda p, c: {
        "data": _members(c["c3"][:2]), "expect": "1.vhd"},
    "duplicate-uuid": lambda p, c: {
        "data": _members([c["c3"][2], c["c3"][2]]), "expect": "1.vhd"},
    "cycle": lambda p, c: {
        "data": _members(c["cycle"]), "expect": "1.vhd"},
    "cycle-repeated": lambda p, c: {
        "data": _members(c["cycle"] + c["cycle"]), "expect": ".vhd"},
    "hidden-leaf": lambda p, c: {
        "data": _members(c["hidden"]), "expect": "0.vhd"},
    "child-smaller-than-parent": lambda p, c: {
        "data": _members(c["shrunk"]), "expect": "0.vhd"},
    "depth-31": lambda p, c: {
        "data": _members(c["d31"]), "expect": "30.vhd"},
    "depth-32": lambda p, c: {
        "data": _members(c["d31"] + [p.fixtures + "/dynamic.vhd"]), "expect": "31.vhd"},
    "extra-member-after-chain": lambda p, c: {
        "data": tar_bytes([reg("0.vhd", read(c["other"][0])), reg("README", b"hello")]),
        "expect": "README"},
    "extra-vhd-beyond-chain": lambda p, c: {
        "data": _members(c["c3"] + c["other"]), "expect": "2.vhd"},
    "member-padded-past-its-bat": lambda p, c: {
        "data": tar_bytes([reg("0.vhd", p.big[:-512] + os.urandom(3 * MIB) + p.big[-512:])],
                          compress=False), "expect": "0.vhd"},
    "declared-size-beyond-metadata": lambda p, c: {
        "data": gzip.compress(_raw_member("0.vhd", len(p.vhd) + 512 * MIB, p.vhd)),
        "expect": "0.vhd"},
    "gzip-bomb-zeros": lambda p, c: {"data": _zero_bomb(p), "expect": "0.vhd"},
    "truncated-gzip-mid-member": lambda p, c: {
        "data": _members(c["c3"])[:-700], "expect": ".vhd"},
    "truncated-tar-mid-header": lambda p, c: {
        "data": tar_bytes([reg("0.vhd", p.vhd), reg("1.vhd", p.vhd)], compress=False)[
            :512 + len(p.vhd) + 100], "expect": "0.vhd"},
    "non-vhd-elf": lambda p, c: {
        "data": tar_bytes([reg("0.vhd", b"\x7fELF" + bytes(8188))]), "expect": "0.vhd"},
    "non-vhd-base-under-good-leaf": lambda p, c: {
        "data": tar_bytes([reg("0.vhd", read(c["c3"][1])), reg("1.vhd", b"\x00" * 65536)]),
        "expect": "1.vhd"},
    "footer-flipped-in-base": lambda p, c: {
        "data": tar_bytes([reg("0.vhd", read(c["c3"][1])),
                           reg("1.vhd", _flip(read(c["c3"][2]), -500))]), "expect": "1.vhd"},
    "bat-beyond-eof": lambda p, c: {
        "data": tar_bytes([reg("0.vhd", p.corrupt("bat-beyond-eof"))]), "expect": "0.vhd"},
    "pax-path-with-newline": lambda p, c: {
        "data": tar_bytes([reg("0.vhd", p.vhd, pax_headers={"path": "0.vhd\n1.vhd"})],
                          fmt=tarfile.PAX_FORMAT), "expect": "0.vhd\\n1.vhd"},
    "pax-path-dot-slash-traversal": lambda p, c: {
        "data": tar_bytes([reg("0.vhd", p.vhd, pax_headers={"path": "./../../0.vhd"})],
                          fmt=tarfile.PAX_FORMAT), "expect": "./../../0.vhd"},
    "pax-path-empty": lambda p, c: {
        "data": tar_bytes([reg("0.vhd", p.vhd, pax_headers={"path": ""})],
                          fmt=tarfile.PAX_FORMAT), "expect": "''"},
    "nul-in-gnu-longname": lambda p, c: {
        "data": tar_bytes([reg("0.vhd\x00" + "z" * 120, p.vhd)]), "expect": "0.vhd"},
    "very-long-traversal-name": lambda p, c: {
        "data": tar_bytes([reg("../" * 2000 + "0.vhd", p.vhd)], fmt=tarfile.PAX_FORMAT),
        "expect": "characters"},
    "record-md5-mismatch": lambda p, c: {
        "data": _members(c["c3"]), "expect": "md5", "tamper": _tamper("checksum", "0" * 32)},
    "record-sha512-mismatch": lambda p, c: {
        "data": _members(c["c3"]), "expect": "sha512",
        "tamper": _tamper("os_hash_value", "0" * 128)},
    "record-size-mismatch": lambda p, c: {
        "data": _members(c["c3"]), "expect": "size", "tamper": _tamper_size},
    "raw-bytes-as-bundle": lambda p, c: {
        "data": os.urandom(64 * 1024), "expect": "look like raw"},
    "bundle-as-raw-image": lambda p, c: {
        "data": _members(c["c3"]), "expect": "look like gzip", "disk_format": "raw",
        "container_format": "bare"},
    "bundle-as-bare-vhd": lambda p, c: {
        "data": _members(c["c3"]), "expect": "0.vhd", "container_format": "bare"},
    "bare-vhd-stream-past-its-bat": lambda p, c: {
        "data": p.big[:-512] + os.urandom(3 * MIB) + p.big[-512:], "expect": "0.vhd",
        "container_format": "bare"},
    "bare-differencing-vhd": lambda p, c: {
        "data": read(c["c3"][0]), "expect": "0.vhd", "container_format": "bare"},
    "unsupported-formats": lambda p, c: {
        "data": _members(c["c3"]), "expect": "qcow2", "disk_format": "qcow2",
        "container_format": "bare"},
}


def _tamper(field, value):
    def change(record):
        record[field] = value
    return change


def _tamper_size(record):
    record["size"] += 512


def _zero_bomb(p):
    import zlib
    comp = zlib.compressobj(9, zlib.DEFLATED, 31)
    parts = [comp.compress(_raw_member("0.vhd", 8 << 30, p.vhd[:1536]))]
    zeros = bytes(MIB)
    for _ in range(64):
        parts.append(comp.compress(zeros))
    parts.append(comp.flush())
    return b"".join(parts)


ALL_CASES = dict(("corpus:" + n, _corpus_case(n)) for n in BUNDLE_CASES if n not in SKIP_CORPUS)
ALL_CASES.update(("chain:" + n, f) for n, f in CHAIN_CASES.items())


def _store_case(store, case):
    image = put_image(store, case["data"], case.get("disk_format", "vhd"),
                      case.get("container_format", "ovf"))
    tamper = case.get("tamper")
    if tamper is not None:
        path = os.path.join(store.images_dir, image + ".json")
        with open(path) as f:
            doc = json.load(f)
        tamper(doc["record"])
        with open(path, "w") as f:
            json.dump(doc, f)
    return image


def _escapes():
    """Paths a hostile member might have reached outside the environment."""
    return [p for p in (os.path.dirname(ABS_TARGET), "/tmp/" + ESCAPE_NAME, "/" + ESCAPE_NAME,
                        "/0.vhd", "/etc/x.vhd")
            if os.path.lexists(p)]


def test_case_count():
    assert len(ALL_CASES) >= 40, len(ALL_CASES)


@pytest.mark.parametrize("name", sorted(ALL_CASES))
def test_hostile_download_refused(name, payloads, chains, hostile_env, reliability_case):
    case_record = reliability_case(
        "R1", name, "one-line VhdportError naming the member; SR tree identical; "
                    "nothing outside; staging removed")
    root, sr, store, _outside = hostile_env
    case = ALL_CASES[name](payloads, chains)
    image = _store_case(store, case)
    before = tree_digest(root)
    with pytest.raises(VhdportError) as info:
        download(store, image, sr)
    text = str(info.value)
    assert "\n" not in text, "error is not one line: {!r}".format(text)
    assert case["expect"] in text, "error {!r} does not name {!r}".format(text, case["expect"])
    after = tree_digest(root)
    assert before == after, "tree changed: {}".format(diff_digests(before, after)[:5])
    staging_root = os.path.join(sr, STAGING_DIR)
    assert sorted(os.listdir(staging_root)) == [ROOT_LOCK], os.listdir(staging_root)
    assert _escapes() == []
    case_record.detail = "{}: {}".format(type(info.value).__name__, text)


@pytest.mark.parametrize("depth", [1, 3, 30])
def test_control_valid_bundle_downloads(depth, chains, hostile_env, tmp_path, reliability_case):
    """The same harness accepts valid bundles (so the refusals above are not the harness)."""
    case_record = reliability_case("R1", "control: valid chain of depth {}".format(depth),
                                   "downloaded; reads the same as the source")
    root, sr, store, _outside = hostile_env
    paths = {1: chains["other"], 3: chains["c3"], 30: chains["d30"]}[depth]
    image = put_image(store, bundle_bytes(paths))
    before = set(os.listdir(sr))
    result = download(store, image, sr)
    assert len(result["chain"]) == depth
    added = set(os.listdir(sr)) - before
    assert added == set(u + ".vhd" for u in result["chain"])
    from vhdport.vhd import Chain
    with Chain.open(paths[0]) as src, Chain.open(os.path.join(sr, result["root"]["uuid"]
                                                                  + ".vhd")) as got:
        assert src.read(0, src.virtual_size) == got.read(0, got.virtual_size)
    case_record.detail = "leaf {}".format(result["root"]["uuid"])
