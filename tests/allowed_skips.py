"""The only skips a test run may contain, each with the reason it is acceptable.

A test that cannot run calls ``allowed_skip(KEY, detail)``; any other skip under CI=true is
turned into a failure by tests/conftest.py, so a skip can never hide a missing file or peer.
Missing peers go through tests/peers/require.py instead (a failure under CI, never listed here).
"""

import pytest

ALLOWED_SKIPS = {
    "tmpfs": "mounting a tmpfs needs root and a kernel/container that permits it; the disk-full "
             "tests need a small real filesystem and cannot fake one (CI runs as root)",
    "isal": "isal is an optional speedup that `pip install '.[cli]'` (and so `make venv`) brings "
            "where a wheel exists; without it the zlib engine is the one in use and is tested",
}

PREFIX = "allowed skip"


def allowed_skip(key, detail=""):
    """Skip with a reason that names its entry of ALLOWED_SKIPS (KeyError for unknown keys)."""
    ALLOWED_SKIPS[key]  # noqa: B018 - an unlisted key is a bug in the test
    pytest.skip("{} [{}]{}".format(PREFIX, key, ": " + detail if detail else ""))


def is_allowed(reason):
    """True when a skip reason came from allowed_skip with a listed key."""
    text = reason or ""
    for key in ALLOWED_SKIPS:
        if "{} [{}]".format(PREFIX, key) in text:
            return True
    return False
