"""A QCOW2 streamed into staging is bounded by its header before its data lands."""

import io
import os
import struct

import pytest

from vhdport import disk
from vhdport.bundle import extract_single
from vhdport.bundle.rules import refuse
from vhdport.disk.qcow2_member import check_tail, file_bound
from vhdport.errors import BundleError
from vhdport.qcow2.format.header import Header
from tests.qcow2.qemu import qemu_img, qemu_io

Q = disk.by_name("qcow2")
MIB = 1024 * 1024
pytestmark = pytest.mark.usefixtures("qemu")


def _image(tmp_path, *options, size=64 * MIB, name="img.qcow2"):
    path = str(tmp_path / name)
    qemu_img("create", "-f", "qcow2", *(list(options) + [path, size]))
    return path


def _head(path):
    with open(path, "rb") as f:
        return f.read(Q.head_size)


def _plan(data, declared=None):
    return Q.plan_member("0.qcow2", data[:Q.head_size], refuse, declared)


def test_a_qemu_image_is_planned_landed_and_checked(tmp_path):
    path = _image(tmp_path)
    qemu_io(path, "write -P 0x42 0 3M", "write -P 0x43 60M 1M")
    data = open(path, "rb").read()
    plan = _plan(data, len(data))
    assert plan.min_size <= len(data) <= plan.bound
    assert plan.bound < 64 * MIB + 128 * MIB        # the header's count, not anything
    assert check_tail("0.qcow2", plan, data[-Q.tail_size:], len(data), refuse) is plan
    staging = tmp_path / "staging"
    staging.mkdir()
    landed = extract_single(io.BytesIO(data), str(staging), Q)
    assert landed == [str(staging / "0.qcow2")]
    assert open(landed[0], "rb").read() == data


def test_preallocated_fits_its_bound(tmp_path):
    path = _image(tmp_path, "-o", "preallocation=full", size=8 * MIB)
    data = open(path, "rb").read()
    assert _plan(data, len(data)).bound >= len(data)


def test_a_member_larger_than_its_header_explains_is_refused(tmp_path):
    data = open(_image(tmp_path, size=MIB), "rb").read()
    bound = file_bound(Header.parse(data[:65536]))
    with pytest.raises(BundleError, match="larger than its own QCOW2 header allows"):
        _plan(data, bound + 1)
    staging = tmp_path / "staging"
    staging.mkdir()

    class Endless(object):
        """A bomb: a valid head then more bytes than the bound, never all in memory."""

        def __init__(self):
            self.sent = 0

        def read(self, n=-1):
            n = 1 << 20 if n is None or n < 0 else min(n, 1 << 20)
            out = data[self.sent:self.sent + n] if self.sent < len(data) else b"\x01" * n
            self.sent += len(out)
            return out

    with pytest.raises(BundleError, match="more than"):
        extract_single(Endless(), str(staging), Q)
    assert os.listdir(str(staging)) == []


def test_a_truncated_member_is_refused_after_landing(tmp_path):
    data = open(_image(tmp_path), "rb").read()
    plan = _plan(data)
    with pytest.raises(BundleError, match="truncated"):
        check_tail("0.qcow2", plan, b"", plan.min_size - 1, refuse)
    with pytest.raises(BundleError, match="cannot hold"):
        _plan(data, plan.min_size - 1)


def test_refused_headers(tmp_path):
    good = bytearray(open(_image(tmp_path), "rb").read()[:Q.head_size])
    with pytest.raises(BundleError, match="not a valid QCOW2"):
        _plan(b"\0" * 4096)
    huge = bytearray(good)
    huge[24:32] = struct.pack(">Q", Q.max_virtual_size + 65536)
    with pytest.raises(BundleError, match="exceeds SM's QCOW2 limit"):
        _plan(bytes(huge))
    small_l1 = bytearray(good)
    small_l1[36:40] = struct.pack(">I", 0)
    with pytest.raises(BundleError, match="L1 table"):
        _plan(bytes(small_l1))
    data_file = _image(tmp_path, "-o", "data_file=" + str(tmp_path / "d.raw"), name="df.qcow2")
    with pytest.raises(BundleError, match="external data file"):
        _plan(open(data_file, "rb").read())


@pytest.mark.parametrize("backing", ["/etc/passwd", "../x.qcow2", "base.vhd"])
def test_a_hostile_backing_name_is_refused_before_landing(tmp_path, backing):
    path = _image(tmp_path, "-u", "-F", "qcow2", "-b", backing, name="h.qcow2")
    with pytest.raises(BundleError, match="refused, nothing opened"):
        _plan(open(path, "rb").read())


def test_an_sm_backing_name_is_planned(tmp_path):
    base = _image(tmp_path, name="11111111-1111-1111-1111-111111111111.qcow2")
    child = str(tmp_path / "c.qcow2")
    qemu_img("create", "-f", "qcow2", "-F", "qcow2", "-b", os.path.basename(base), child)
    plan = _plan(open(child, "rb").read())
    assert plan.backing_name == os.path.basename(base)
