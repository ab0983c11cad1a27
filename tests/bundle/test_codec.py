"""Codec choice: VHDPORT_CODEC forces the standard library, threads follow the usable cores."""

import os

import pytest

from vhdport.bundle import codec
from vhdport.errors import BundleError


def test_env_forces_zlib_even_with_isal(monkeypatch):
    monkeypatch.setenv(codec.ENV_CODEC, "zlib")
    assert codec.engine_name() == "zlib"
    assert codec.module().__name__ == "zlib"
    assert "codec: zlib" in codec.describe()


def test_auto_prefers_isal_when_installed(monkeypatch):
    monkeypatch.delenv(codec.ENV_CODEC, raising=False)
    assert codec.engine_name() == ("isal" if codec.isal_installed() else "zlib")


def test_isal_demanded_without_isal_is_a_clear_error(monkeypatch):
    monkeypatch.setattr(codec, "_isal_zlib", None)
    monkeypatch.setenv(codec.ENV_CODEC, "isal")
    with pytest.raises(BundleError, match="pip install isal"):
        codec.engine_name()


def test_bad_env_value_is_named(monkeypatch):
    monkeypatch.setenv(codec.ENV_CODEC, "lz4")
    with pytest.raises(BundleError, match="VHDPORT_CODEC='lz4' is not one of"):
        codec.engine_name()


def test_threads_default_to_the_affinity_mask():
    assert codec.default_threads() == len(os.sched_getaffinity(0))
    assert codec.check_threads(None) == codec.default_threads()
    assert codec.check_threads(3) == 3
    for bad in (0, -1, 1.5, "2", True):
        with pytest.raises(BundleError, match="positive integer"):
            codec.check_threads(bad)


def test_describe_names_codec_and_threads(monkeypatch):
    monkeypatch.delenv(codec.ENV_CODEC, raising=False)
    line = codec.describe()
    assert "codec: {}".format(codec.engine_name()) in line
    assert "compression threads: {} of {}".format(codec.default_threads(),
                                                   codec.usable_cores()) in line
