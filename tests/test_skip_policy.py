"""The skip policy (tests/skip_policy.py, tests/allowed_skips.py, tests/peers/require.py):
under CI=true an unlisted skip or a missing peer fails the run; elsewhere they skip."""

import os
import subprocess
import sys

import pytest

from tests.allowed_skips import ALLOWED_SKIPS, is_allowed

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

PROBE = '''
import pytest
from tests.allowed_skips import allowed_skip
from tests.peers.require import require_peer

def test_plain_skip():
    pytest.skip("some file is missing")

def test_missing_peer():
    require_peer("frobnicator", False, "not installed")

def test_allowed():
    allowed_skip("tmpfs", "probe")
'''


def _run_probe(tmp_path, ci):
    (tmp_path / "test_probe.py").write_text(PROBE)
    env = dict(os.environ, PYTHONPATH=REPO)
    env.pop("CI", None)
    if ci:
        env["CI"] = "true"
    proc = subprocess.run([sys.executable, "-m", "pytest", "-q", "-rs", "-p", "no:cacheprovider",
                           "-p", "tests.skip_policy", "--rootdir", str(tmp_path),
                           str(tmp_path / "test_probe.py")],
                          cwd=REPO, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                          universal_newlines=True, timeout=120)
    return proc


def test_under_ci_unlisted_skips_and_missing_peers_fail(tmp_path):
    proc = _run_probe(tmp_path, ci=True)
    assert proc.returncode == 1, proc.stdout
    assert "2 failed, 1 skipped" in proc.stdout, proc.stdout
    assert "not listed in tests/allowed_skips.py: Skipped: some file is missing" in proc.stdout
    assert "peer frobnicator unavailable: not installed (CI=true" in proc.stdout
    assert "allowed skip [tmpfs]: probe" in proc.stdout          # the -rs summary names it


def test_outside_ci_they_skip_with_a_summary(tmp_path):
    proc = _run_probe(tmp_path, ci=False)
    assert proc.returncode == 0, proc.stdout
    assert "3 skipped" in proc.stdout and "peer frobnicator unavailable" in proc.stdout
    assert "3 skipped; allowed reasons: " in proc.stdout


@pytest.mark.parametrize("reason,allowed", [
    ("Skipped: allowed skip [tmpfs]: not root", True),
    ("Skipped: allowed skip [nope]: x", False),
    ("Skipped: shared fixtures not found", False),
])
def test_is_allowed(reason, allowed):
    assert is_allowed(reason) is allowed


def test_every_allowed_skip_says_why():
    assert all(len(why) > 40 for why in ALLOWED_SKIPS.values())


def test_make_test_prints_the_skip_summary():
    with open(os.path.join(REPO, "Makefile")) as f:
        rule = f.read().split("\ntest:", 1)[1].split("\n\n", 1)[0]
    assert "pytest" in rule and " -rs" in rule, rule
