"""dom0's interpreter for the tests: the vendored CPython 3.6.15, unpacked once into <repo>/.py36.

No third-party imports and 3.6 syntax: the host's python3 runs it before any virtualenv exists,
and the 3.6 test run imports it.

``python3 tests/runtimes/py36.py`` unpacks it (if needed) and prints the interpreter's path;
``make test-py36`` builds its 3.6 virtualenv from that.  The tarball is checked against its
.sha256 file before a byte of it is unpacked.
"""

import hashlib
import os
import shutil
import subprocess
import sys
import tarfile
import tempfile

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(os.path.dirname(HERE))
TARBALL = os.path.join(HERE, "python3.6.15-debian12-x86_64.tar.xz")
TARGET = os.path.join(REPO, ".py36")
INTERPRETER = os.path.join(TARGET, "python3.6", "bin", "python3.6")
#: the sha256 of the tarball TARGET was unpacked from (a new tarball is unpacked afresh)
UNPACKED_FROM = os.path.join(TARGET, "sha256")
#: another Python 3.6 to use instead (a host where the vendored Debian 12 build does not run)
OVERRIDE_ENV = "VHDPORT_TEST_PY36"


class RuntimeUnavailable(Exception):
    """The vendored 3.6 cannot be unpacked or does not run here; the message says why."""


def expected_sha256():
    with open(TARBALL + ".sha256") as f:
        return f.read().split()[0]


def sha256_of(path):
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def unpack():
    """Verify and unpack the tarball into TARGET (atomically: a temp dir, then a rename)."""
    if not os.path.isfile(TARBALL):
        raise RuntimeUnavailable("{} is missing (git lfs? a partial clone?)".format(TARBALL))
    got, want = sha256_of(TARBALL), expected_sha256()
    if got != want:
        raise RuntimeUnavailable("{} has sha256 {}, expected {}".format(TARBALL, got, want))
    temp = tempfile.mkdtemp(prefix=".py36-", dir=REPO)
    try:
        with tarfile.open(TARBALL, "r:xz") as tar:
            tar.extractall(temp)
        with open(os.path.join(temp, "sha256"), "w") as f:
            f.write(want + "\n")
        shutil.rmtree(TARGET, ignore_errors=True)
        try:
            os.rename(temp, TARGET)
        except OSError:
            if not os.path.isdir(TARGET):   # else another run unpacked it meanwhile
                raise
    finally:
        shutil.rmtree(temp, ignore_errors=True)


def version_of(python):
    try:
        proc = subprocess.run([python, "-I", "-S", "-c", "import sys; print(sys.version_info[:2])"],
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                              universal_newlines=True, timeout=60)
    except (OSError, subprocess.SubprocessError) as e:
        return "cannot run: {}".format(e)
    return proc.stdout.strip() if proc.returncode == 0 else proc.stderr.strip()


def unpacked_sha256():
    try:
        with open(UNPACKED_FROM) as f:
            return f.read().strip()
    except OSError:
        return None


def interpreter():
    """The path of a working Python 3.6: $VHDPORT_TEST_PY36 if set, else the vendored one
    (unpacked first if needed)."""
    python = os.environ.get(OVERRIDE_ENV)
    if not python:
        python = INTERPRETER
        if not os.path.exists(INTERPRETER) or unpacked_sha256() != expected_sha256():
            unpack()
    version = version_of(python)
    if version != "(3, 6)":
        raise RuntimeUnavailable("{} does not run as Python 3.6: {}".format(python, version))
    return python


if __name__ == "__main__":
    try:
        print(interpreter())
    except RuntimeUnavailable as e:
        sys.exit("py36: {}".format(e))
