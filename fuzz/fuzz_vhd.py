"""Coverage-guided fuzzing of the VHD engine with atheris (libFuzzer for Python).

Each input is a whole VHD file.  It is written next to a valid parent (so differencing
inputs can resolve their parent) and run through open / info / check_file / check_chain /
read (through the chain, bounded) / export_raw.  Anything but a VhdportError is a finding
(atheris prints the traceback and saves the input as crash-*); so is a change to the
parent file, which the harness only ever reads.

Run:  make fuzz                      (installs atheris into .venv, FUZZ_SECONDS=300)
      .venv/bin/python fuzz/fuzz_vhd.py -max_total_time=600 -timeout=10 fuzz/corpus
The seed corpus (valid dynamic, differencing, small-block and fixed VHDs) is written to the
corpus directory given (created if missing) before fuzzing starts.
"""

import atexit
import hashlib
import os
import shutil
import sys
import tempfile

import atheris

with atheris.instrument_imports():
    from vhdport.errors import VhdportError
    from vhdport.vhd import (Chain, VhdFile, check_chain, check_file, create_dynamic,
                             create_fixed, create_snapshot, export_raw, info)

MIB = 1 << 20
READ_LIMIT = 8 * MIB
WORK = tempfile.mkdtemp(prefix="vhdport-fuzz-", dir="/dev/shm" if os.path.isdir("/dev/shm")
                        else None)
PARENT = os.path.join(WORK, "parent.vhd")
TARGET = os.path.join(WORK, "input.vhd")
EXPORT = os.path.join(WORK, "export.raw")
atexit.register(shutil.rmtree, WORK, True)


def _write(path, writes):
    with Chain.open(path, writable=True) as chain:
        for offset, data in writes:
            chain.write(offset, data)


def make_seeds(corpus):
    """Valid VHDs of every kind into ``corpus`` (and the shared parent into WORK)."""
    create_dynamic(PARENT, 4 * MIB, block_size=64 * 1024)
    _write(PARENT, [(0, b"\x11" * 70000), (3 * MIB, b"\x22" * 512)])
    os.makedirs(corpus, exist_ok=True)
    seeds = {}
    with open(PARENT, "rb") as f:
        seeds["dynamic.vhd"] = f.read()
    create_snapshot(TARGET, "parent.vhd", block_size=64 * 1024)
    _write(TARGET, [(512, b"\x33" * 4096), (2 * MIB, b"\x44" * 65536)])
    with open(TARGET, "rb") as f:
        seeds["differencing.vhd"] = f.read()
    os.unlink(TARGET)
    create_dynamic(TARGET, 32 * 1024, block_size=4096)
    _write(TARGET, [(0, b"\x55" * 4096)])
    with open(TARGET, "rb") as f:
        seeds["small-blocks.vhd"] = f.read()
    os.unlink(TARGET)
    create_fixed(TARGET, 64 * 1024)
    with open(TARGET, "rb") as f:
        seeds["fixed.vhd"] = f.read()
    os.unlink(TARGET)
    for name, data in seeds.items():
        with open(os.path.join(corpus, name), "wb") as f:
            f.write(data)


def _parent_hash():
    with open(PARENT, "rb") as f:
        return hashlib.sha256(f.read()).hexdigest()


PARENT_HASH = None


def _read_bounded(chain):
    budget = READ_LIMIT
    for offset, length in chain.allocated_ranges():
        length = min(length, budget, chain.virtual_size - offset)
        if length <= 0:
            break
        chain.read(offset, length)
        budget -= length
    if chain.virtual_size:
        chain.read(chain.virtual_size - 1, 1)


def _run(op, *args):
    try:
        op(*args)
    except VhdportError:
        pass


def _open(path):
    VhdFile.open(path).close()


def _read(path):
    with Chain.open(path) as chain:
        _read_bounded(chain)


def _export(path):
    try:
        export_raw(path, EXPORT)
    finally:
        if os.path.exists(EXPORT):
            os.unlink(EXPORT)


def _checks(path):
    for defect in check_file(path) + check_chain(path):
        text = str(defect)
        if "\n" in text:
            raise AssertionError("multi-line defect: {!r}".format(text))


def TestOneInput(data):
    with open(TARGET, "wb") as f:
        f.write(data)
    for op in (_open, info, _checks, _read, _export):
        _run(op, TARGET)
    if _parent_hash() != PARENT_HASH:
        raise AssertionError("the parent changed while the harness only read it")


def main():
    global PARENT_HASH
    corpus = next((a for a in sys.argv[1:] if not a.startswith("-")), None)
    if corpus is not None and os.path.isfile(corpus):
        corpus = None           # replaying one input (a saved crash): seeds go to WORK
    make_seeds(corpus or os.path.join(WORK, "corpus"))
    PARENT_HASH = _parent_hash()
    atheris.Setup(sys.argv, TestOneInput)
    atheris.Fuzz()


if __name__ == "__main__":
    main()
