"""Mutated bundles: every outcome is a clean extraction or a BundleError, never another
exception, and a refusal leaves the staging dir empty."""

import gzip
import os
import shutil
import tempfile

import pytest
from hypothesis import HealthCheck, given, settings, strategies as st

from vhdport.bundle import extract_bundle
from vhdport.errors import BundleError
from tests.bundle.helpers import CountingReader, reg, tar_bytes


@pytest.fixture(scope="module")
def seed_tar(qemu_vhds):
    with open(qemu_vhds["empty"], "rb") as f:
        vhd = f.read()
    return tar_bytes([reg("0.vhd", vhd), reg("1.vhd", vhd)], compress=False)


def _outcome(data):
    staging = tempfile.mkdtemp()
    try:
        try:
            paths = extract_bundle(CountingReader(data, piece=777), staging)
        except BundleError:
            assert os.listdir(staging) == []
            return "refused"
        assert sorted(os.listdir(staging)) == sorted(os.path.basename(p) for p in paths)
        return "ok"
    finally:
        shutil.rmtree(staging)


mutation = st.tuples(st.integers(min_value=0), st.integers(min_value=0, max_value=255))


@settings(max_examples=300, deadline=None, suppress_health_check=list(HealthCheck))
@given(flips=st.lists(mutation, min_size=1, max_size=4), cut=st.integers(min_value=0),
       truncate=st.booleans(), compress=st.booleans())
def test_mutated_bundles(seed_tar, flips, cut, truncate, compress):
    data = bytearray(seed_tar)
    for pos, value in flips:
        data[pos % len(data)] = value
    if truncate:
        data = data[:cut % len(data)]
    data = bytes(data)
    if compress:
        data = gzip.compress(data, 1)
    assert _outcome(data) in ("ok", "refused")


@settings(max_examples=200, deadline=None, suppress_health_check=list(HealthCheck))
@given(flips=st.lists(mutation, min_size=1, max_size=3))
def test_mutated_gzip(seed_tar, flips):
    data = bytearray(gzip.compress(seed_tar, 6))
    for pos, value in flips:
        data[pos % len(data)] = value
    assert _outcome(bytes(data)) in ("ok", "refused")
