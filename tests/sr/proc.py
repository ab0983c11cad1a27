"""Start and stop the helper processes of tests.sr.loops (repo root as cwd)."""

import os
import subprocess
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def start(*args, **kwargs):
    return subprocess.Popen([sys.executable, "-m", "tests.sr.loops"] + [str(a) for a in args],
                            cwd=ROOT, **kwargs)


def run(*args):
    return subprocess.run([sys.executable, "-m", "tests.sr.loops"] + [str(a) for a in args],
                          cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                          universal_newlines=True, timeout=120)
