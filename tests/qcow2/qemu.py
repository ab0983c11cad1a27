"""The real qemu-img / qemu-io for the QCOW2 tests: run them, make images, read them as raw.

Under CI=true a missing qemu-utils fails the test (the peer is part of ``make test``);
elsewhere it skips.
"""

import json
import os
import random
import subprocess

import pytest

QEMU_IMG = "/usr/bin/qemu-img"
QEMU_IO = "/usr/bin/qemu-io"


def require_qemu():
    if os.path.exists(QEMU_IMG) and os.path.exists(QEMU_IO):
        return
    if os.environ.get("CI") == "true":
        pytest.fail("qemu-img / qemu-io missing (install qemu-utils: scripts/sysdeps.sh)")
    pytest.skip("qemu-utils not installed")


def run(tool, *args, check=True):
    proc = subprocess.run([tool] + [str(a) for a in args], stdout=subprocess.PIPE,
                          stderr=subprocess.PIPE, universal_newlines=True)
    if check:
        assert proc.returncode == 0, "{} {} failed ({}): {}{}".format(
            tool, " ".join(str(a) for a in args), proc.returncode, proc.stdout, proc.stderr)
    return proc


def qemu_img(*args, **kw):
    return run(QEMU_IMG, *args, **kw)


def qemu_io(path, *commands, fmt="qcow2"):
    args = ["-f", fmt]
    for c in commands:
        args += ["-c", c]
    return run(QEMU_IO, *(args + [path]))


def info(path):
    return json.loads(qemu_img("info", "--output=json", "-f", "qcow2", path).stdout)


def alone(path):
    """A qemu filename that opens ``path`` without its backing file."""
    return json.dumps({"driver": "qcow2", "backing": None,
                       "file": {"driver": "file", "filename": str(path)}})


def check(path, with_backing=False):
    """qemu-img check's JSON; asserts it ran and found no corruption and no leak."""
    target = ["-f", "qcow2", path] if with_backing else ["json:" + alone(path)]
    proc = qemu_img(*(["check", "--output=json"] + target), check=False)
    assert proc.returncode == 0, "qemu-img check {}: rc {}\n{}{}".format(
        path, proc.returncode, proc.stdout, proc.stderr)
    return json.loads(proc.stdout)


def to_raw(path, out):
    qemu_img("convert", "-f", "qcow2", "-O", "raw", path, out)
    with open(out, "rb") as f:
        return f.read()


def compare_raw(path, raw_path):
    proc = qemu_img("compare", "-f", "qcow2", "-F", "raw", path, raw_path, check=False)
    assert proc.returncode == 0, "qemu-img compare: {}{}".format(proc.stdout, proc.stderr)


def pattern(seed, length):
    return random.Random(seed).getrandbits(8 * length).to_bytes(length, "little")
