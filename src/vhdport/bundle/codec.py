"""Which deflate library and how many threads: one place that decides, one that reports.

isal (python-isal, a pip wheel) deflates several times faster than zlib at
similar ratios; dom0 has only the standard library's zlib.  ``VHDPORT_CODEC=zlib``
forces the standard library even where isal is installed (benchmarks use it to
measure what dom0 gets); ``VHDPORT_CODEC=isal`` insists on isal.
"""

import os
import zlib

from ..errors import BundleError

try:  # optional speed-up; the output is ordinary gzip either way
    from isal import isal_zlib as _isal_zlib
except ImportError:  # pragma: no cover - depends on the machine
    _isal_zlib = None

ENV_CODEC = "VHDPORT_CODEC"
ENGINES = ("auto", "isal", "zlib")


def isal_installed():
    return _isal_zlib is not None


def _env_engine():
    value = (os.environ.get(ENV_CODEC) or "auto").strip().lower()
    if value not in ENGINES:
        raise BundleError("{}={!r} is not one of {}".format(ENV_CODEC, value, ", ".join(ENGINES)))
    return value


def engine_name(engine="auto"):
    """"isal" or "zlib": what ``engine`` ("auto", "isal", "zlib") resolves to here.

    "auto" follows ``VHDPORT_CODEC`` and then what is installed.
    """
    if engine == "auto":
        engine = _env_engine()
    if engine == "zlib":
        return "zlib"
    if engine not in ENGINES:
        raise BundleError("unknown compression engine {!r} (use {})".format(
            engine, ", ".join(ENGINES)))
    if _isal_zlib is None:
        if engine == "isal":
            raise BundleError("isal compression requested but the isal package is not "
                              "installed (pip install isal)")
        return "zlib"
    return "isal"


def module(engine="auto"):
    """The zlib-compatible module for ``engine`` (isal_zlib or zlib)."""
    return _isal_zlib if engine_name(engine) == "isal" else zlib


def errors():
    """Exception classes a decompressor of either library raises on corrupt data."""
    return (zlib.error,) if _isal_zlib is None else (zlib.error, _isal_zlib.error)


def usable_cores():
    """Cores this process may run on (its CPU affinity), at least 1."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except (AttributeError, OSError):
        return max(1, os.cpu_count() or 1)


def default_threads():
    """Compression threads when the caller does not say: one per usable core."""
    return usable_cores()


def check_threads(threads):
    """``threads`` as a positive int (None: the default); BundleError otherwise."""
    if threads is None:
        return default_threads()
    if isinstance(threads, bool) or not isinstance(threads, int) or threads < 1:
        raise BundleError("compression threads must be a positive integer, got {!r}".format(
            threads))
    return threads


def describe():
    """One line for ``vhdport --version`` / doctor: codec and threads in use."""
    name = engine_name()
    note = ""
    if name == "zlib" and _isal_zlib is not None:
        note = " (isal installed, disabled by {}=zlib)".format(ENV_CODEC)
    elif name == "zlib":
        note = " (standard library; pip install isal for a faster codec)"
    return "codec: {}{}; compression threads: {} of {} usable cores".format(
        name, note, default_threads(), usable_cores())
