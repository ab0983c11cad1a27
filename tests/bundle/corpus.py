"""The hostile-bundle corpus: each case builds bundle bytes and names what the refusal says.

Shared by tests/bundle/test_malicious.py (extract_bundle) and the R1 download tests.
"""

import gzip
import os
import tarfile

from tests.bundle.helpers import MIB, read, reg, special, tar_bytes

ABS_TARGET = "/tmp/vhdport-bundle-abs-{}/0.vhd".format(os.getpid())


class Payloads(object):
    def __init__(self, fixtures, qemu_vhds):
        self.fixtures = fixtures
        self.vhd = read(qemu_vhds["empty"])        # small valid dynamic VHD
        self.big = read(qemu_vhds["dynamic"])      # 9 MiB dynamic VHD with data
        self.fixed = read(qemu_vhds["fixed"])

    def corrupt(self, name):
        return read(os.path.join(self.fixtures, "corrupt", name + ".vhd"))


def _raw_member(name, declared, data, fmt=tarfile.GNU_FORMAT):
    """A tar header declaring ``declared`` bytes followed by whatever ``data`` is."""
    info = tarfile.TarInfo(name)
    info.size = declared
    info.mode = 0o644
    return info.tobuf(format=fmt) + data


def _pax(name, headers, data):
    info = tarfile.TarInfo(name)
    info.pax_headers = headers
    return reg(name, data, pax_headers=headers)


# each case: payloads -> (bundle bytes, text the error must contain[, extract kwargs])
CASES = {
    "traversal": lambda p: (tar_bytes([reg("../x", p.vhd)]), "../x"),
    "traversal-vhd": lambda p: (tar_bytes([reg("../0.vhd", p.vhd)]), "../0.vhd"),
    "absolute": lambda p: (tar_bytes([reg(ABS_TARGET, p.vhd)]), ABS_TARGET),
    "dot-dot-after-dot": lambda p: (tar_bytes([reg("./../x", p.vhd)]), "./../x"),
    "deep-traversal": lambda p: (tar_bytes([reg("a/../../0.vhd", p.vhd)]), "a/../../0.vhd"),
    "subdirectory": lambda p: (tar_bytes([reg("sub/0.vhd", p.vhd)]), "sub/0.vhd"),
    "symlink": lambda p: (tar_bytes([special("0.vhd", tarfile.SYMTYPE, "/etc/passwd")]),
                          "0.vhd"),
    "symlink-then-file": lambda p: (tar_bytes([
        special("0.vhd", tarfile.SYMTYPE, "../../outside.vhd"), reg("0.vhd", p.vhd)]),
        "0.vhd"),
    "hardlink": lambda p: (tar_bytes([special("0.vhd", tarfile.LNKTYPE, "etc/passwd")]),
                           "0.vhd"),
    "hardlink-after-file": lambda p: (tar_bytes([
        reg("0.vhd", p.vhd), special("1.vhd", tarfile.LNKTYPE, "0.vhd")]), "1.vhd"),
    "char-device": lambda p: (tar_bytes([special("0.vhd", tarfile.CHRTYPE)]), "0.vhd"),
    "block-device": lambda p: (tar_bytes([special("0.vhd", tarfile.BLKTYPE)]), "0.vhd"),
    "fifo": lambda p: (tar_bytes([special("0.vhd", tarfile.FIFOTYPE)]), "0.vhd"),
    "contiguous": lambda p: (tar_bytes([special("0.vhd", tarfile.CONTTYPE)]), "0.vhd"),
    "directory": lambda p: (tar_bytes([special("sub", tarfile.DIRTYPE)]), "sub"),
    "directory-named-vhd": lambda p: (tar_bytes([special("0.vhd", tarfile.DIRTYPE)]), "0.vhd"),
    "duplicate": lambda p: (tar_bytes([reg("0.vhd", p.vhd), reg("./0.vhd", p.vhd)]),
                            "./0.vhd"),
    "duplicate-legacy": lambda p: (tar_bytes([reg("image.vhd", p.vhd),
                                              reg("image.vhd", p.vhd)]), "image.vhd"),
    "gap": lambda p: (tar_bytes([reg("0.vhd", p.vhd), reg("2.vhd", p.vhd)]), "1.vhd"),
    "no-leaf": lambda p: (tar_bytes([reg("1.vhd", p.vhd)]), "0.vhd"),
    "extra-member": lambda p: (tar_bytes([reg("0.vhd", p.vhd), reg("foo.txt", b"hi")]),
                               "foo.txt"),
    "leading-zero": lambda p: (tar_bytes([reg("00.vhd", p.vhd)]), "00.vhd"),
    "upper-case": lambda p: (tar_bytes([reg("0.VHD", p.vhd)]), "0.VHD"),
    "too-many": lambda p: (tar_bytes([reg("{}.vhd".format(i), p.vhd) for i in range(3)]),
                           "2.vhd", {"max_members": 2}),
    "beyond-chain-limit": lambda p: (tar_bytes([reg("31.vhd", p.vhd)]), "31.vhd"),
    "mixed-naming": lambda p: (tar_bytes([reg("0.vhd", p.vhd), reg("image.vhd", p.vhd)]),
                               "image.vhd"),
    "oversize-vs-metadata": lambda p: (gzip.compress(
        _raw_member("0.vhd", len(p.vhd) + 64 * MIB, p.vhd + bytes(512))), "0.vhd"),
    "oversize-fixed": lambda p: (gzip.compress(
        _raw_member("0.vhd", 2041 << 30, bytes(4096))), "0.vhd"),
    "truncated-gzip": lambda p: (tar_bytes([reg("0.vhd", p.big)])[:-3000], "0.vhd"),
    "truncated-gzip-header": lambda p: (tar_bytes([reg("0.vhd", p.vhd)])[:5], "truncated"),
    "truncated-tar": lambda p: (tar_bytes([reg("0.vhd", p.big)], compress=False)[:4 * MIB],
                                "0.vhd"),
    "tar-without-end": lambda p: (tar_bytes([reg("0.vhd", p.vhd)], compress=False)[
        :512 + len(p.vhd)], "0.vhd"),
    "not-a-vhd": lambda p: (tar_bytes([reg("0.vhd", b"hello world\n" * 1000)]), "0.vhd"),
    "not-a-vhd-sector-sized": lambda p: (tar_bytes([reg("0.vhd", b"x" * 8192)]), "0.vhd"),
    "empty-member": lambda p: (tar_bytes([reg("0.vhd", b"")]), "0.vhd"),
    "footer-checksum": lambda p: (tar_bytes([reg("0.vhd", p.corrupt("footer-checksum"))]),
                                  "0.vhd"),
    "backup-footer": lambda p: (tar_bytes([reg("0.vhd", p.corrupt("backup-footer"))]),
                                "0.vhd"),
    "header-checksum": lambda p: (tar_bytes([reg("0.vhd", p.corrupt("header-checksum"))]),
                                  "0.vhd"),
    "bad-cookie": lambda p: (tar_bytes([reg("0.vhd", p.corrupt("bad-cookie"))]), "0.vhd"),
    "truncated-vhd": lambda p: (tar_bytes([reg("0.vhd", p.corrupt("truncated"))]), "0.vhd"),
    "fixed-with-dynamic-footer": lambda p: (tar_bytes([reg("0.vhd", bytes(4096) + p.vhd[-512:])]),
                                            "0.vhd"),
    "nul-in-name": lambda p: (tar_bytes([reg("0.vhd\x00evil", p.vhd)]), "0.vhd"),
    "nul-in-pax-path": lambda p: (tar_bytes([reg("0.vhd", p.vhd, pax_headers={
        "path": "0.vhd\x00../x"})], fmt=tarfile.PAX_FORMAT), "0.vhd"),
    "long-name-gnu": lambda p: (tar_bytes([reg("a" * 200 + ".vhd", p.vhd)]), "aaaaaaaaaa"),
    "long-name-pax": lambda p: (tar_bytes([reg("b" * 300 + ".vhd", p.vhd)],
                                          fmt=tarfile.PAX_FORMAT), "bbbbbbbbbb"),
    "long-name-ustar-prefix": lambda p: (tar_bytes([reg("d" * 120 + "/0.vhd", p.vhd)],
                                                   fmt=tarfile.USTAR_FORMAT), "dddddddd"),
    "pax-path-traversal": lambda p: (tar_bytes([reg("0.vhd", p.vhd, pax_headers={
        "path": "../../etc/cron.d/x"})], fmt=tarfile.PAX_FORMAT), "../../etc/cron.d/x"),
    "pax-path-absolute": lambda p: (tar_bytes([reg("0.vhd", p.vhd, pax_headers={
        "path": "/etc/x.vhd"})], fmt=tarfile.PAX_FORMAT), "/etc/x.vhd"),
    "pax-sparse": lambda p: (tar_bytes([reg("0.vhd", p.vhd, pax_headers={
        "GNU.sparse.major": "1", "GNU.sparse.minor": "0"})], fmt=tarfile.PAX_FORMAT), "sparse"),
    "pax-linkpath": lambda p: (tar_bytes([special("0.vhd", tarfile.SYMTYPE, "x" * 150)],
                                         fmt=tarfile.PAX_FORMAT), "0.vhd"),
    "empty-archive": lambda p: (tar_bytes([]), "no disk member"),
    "empty-stream": lambda p: (b"", "no member"),
    "only-dot-dir": lambda p: (tar_bytes([special("./", tarfile.DIRTYPE)]), "no disk member"),
    "only-swap": lambda p: (tar_bytes([reg("swap.vhd", p.vhd)]), "no disk member"),
    "trailing-garbage-tar": lambda p: (tar_bytes([reg("0.vhd", p.vhd)], compress=False)
                                       + b"\x00" * 512 + b"MORE DATA" + bytes(503),
                                       "trailing garbage"),
    "trailing-garbage-gzip": lambda p: (tar_bytes([reg("0.vhd", p.vhd)]) + b"garbage",
                                        "trailing garbage"),
    "trailing-member-in-second-gzip": lambda p: (
        tar_bytes([reg("0.vhd", p.vhd)]) + tar_bytes([reg("1.vhd", p.vhd)]),
        "trailing garbage"),
    "not-a-tar": lambda p: (gzip.compress(os.urandom(4096)), "not a tar archive"),
    "bare-vhd": lambda p: (p.vhd, "bare VHD"),
    "corrupt-gzip": lambda p: (b"\x1f\x8b\x08\x00" + os.urandom(2000), "gzip"),
}


def _global_pax_path(p):
    info = tarfile.TarInfo("0.vhd")
    data = tar_bytes([reg("0.vhd", p.vhd)], fmt=tarfile.PAX_FORMAT, compress=False)
    hdr = tarfile.TarInfo("pax_global_header")
    hdr.type = tarfile.XGLTYPE
    record = b"28 path=../../../etc/passwd\n"
    assert len(record) == 28
    hdr.size = len(record)
    del info
    return gzip.compress(hdr.tobuf(format=tarfile.USTAR_FORMAT) + record
                         + bytes(512 - len(record)) + data), "path"


CASES["pax-global-path"] = _global_pax_path
