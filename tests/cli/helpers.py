"""Helpers for CLI tests: run the click app in-process, or the installed console script."""

import os
import subprocess
import sys

from click.testing import CliRunner

from vhdport.cli.main import cli

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
SCRIPT = os.path.join(os.path.dirname(sys.executable), "vhdport")


def run(*args, input=None):
    """Invoke ``vhdport ARGS`` in-process; stdout and stderr are kept apart."""
    return CliRunner().invoke(cli, [str(a) for a in args], input=input,
                              catch_exceptions=True)


def run_script(*args, cwd=None):
    """Run the real ``vhdport`` console script (as users do) -> CompletedProcess."""
    return subprocess.run([SCRIPT] + [str(a) for a in args], cwd=cwd, stdout=subprocess.PIPE,
                          stderr=subprocess.PIPE, timeout=120)


def last_line(text):
    lines = [line for line in text.splitlines() if line.strip()]
    assert lines, "no output"
    return lines[-1].strip()


def assert_usage_error(result, *fragments):
    """Exit 2 in click's one style: ``Usage: ...``, a hint, ``Error: <what>``; no traceback."""
    assert result.exit_code == 2, (result.exit_code, result.stdout, result.stderr)
    err = result.stderr
    assert err.startswith("Usage: ") and "Traceback" not in err, err
    last = err.strip().splitlines()[-1]
    assert last.startswith("Error: "), err
    for fragment in fragments:
        assert fragment in last, (fragment, last)
    return last


def assert_failed_cleanly(result, *fragments):
    """Exit 1, one ``vhdport: error:`` line on stderr, no traceback, ``fragments`` in it."""
    assert result.exit_code == 1, (result.exit_code, result.stdout, result.stderr)
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("vhdport: error: "), result.stderr
    assert "Traceback" not in result.stderr
    for fragment in fragments:
        assert fragment in lines[0], (fragment, lines[0])
    return lines[0]
