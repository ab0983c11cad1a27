"""The read-ahead thread of the bundle reader: errors reach the caller, threads never linger."""

import gzip
import io
import os
import tarfile
import threading

import pytest

from vhdport.bundle import extract_bundle
from vhdport.bundle.streams import CHUNK, open_source
from vhdport.errors import BundleError

from tests.bundle.helpers import make_vhd


def _alive():
    return [t for t in threading.enumerate()
            if t.name in ("bundle-read-ahead", "bundle-inflate", "vhd-writer") and t.is_alive()]


def _bundle(tmp_path):
    vhd = str(tmp_path / "disk.vhd")
    make_vhd(vhd, 8)
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w:gz") as tar:
        tar.add(vhd, arcname="0.vhd")
    return buf.getvalue(), vhd


class Breaking(object):
    """Serves ``data`` and raises OSError after ``limit`` bytes."""

    def __init__(self, data, limit):
        self.stream, self.limit = io.BytesIO(data), limit

    def read(self, n):
        if self.stream.tell() >= self.limit:
            raise OSError("connection reset (test)")
        return self.stream.read(min(n, self.limit - self.stream.tell()))


def test_reader_error_reaches_the_caller_and_nothing_stays(tmp_path):
    data, _ = _bundle(tmp_path)
    staging = tmp_path / "staging"
    staging.mkdir()
    with pytest.raises(OSError, match="connection reset"):
        extract_bundle(Breaking(data, len(data) // 2), str(staging))
    assert os.listdir(str(staging)) == []
    assert _alive() == []


def test_extracts_the_same_bytes(tmp_path):
    data, vhd = _bundle(tmp_path)
    staging = tmp_path / "staging"
    staging.mkdir()
    paths = extract_bundle(io.BytesIO(data), str(staging))
    with open(paths[0], "rb") as a, open(vhd, "rb") as b:
        assert a.read() == b.read()
    assert _alive() == []


def test_closing_early_stops_the_thread():
    data = gzip.compress(os.urandom(8 * CHUNK))
    source = open_source(io.BytesIO(data))
    assert len(source.read_some(100)) > 0
    source.close()
    assert _alive() == []


def test_corrupt_gzip_is_a_bundle_error(tmp_path):
    data, _ = _bundle(tmp_path)
    bad = bytearray(data)
    bad[len(bad) // 2] ^= 0xFF
    staging = tmp_path / "staging"
    staging.mkdir()
    with pytest.raises(BundleError):
        extract_bundle(io.BytesIO(bytes(bad)), str(staging))
    assert _alive() == []
