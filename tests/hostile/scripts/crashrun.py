"""Run one vhdport operation in this process and, if asked, SIGKILL ourselves part-way.

Why a subprocess with hooks instead of a hook in src/: every mutating filesystem call
(link, rename, unlink, fsync, write, VHD pwrite, ...) is counted by wrapping the os
functions and ``VhdFile.pwrite`` here, so the tests can kill at *every* such step, and
by store bytes, without vhdport knowing it is being tested.

    crashrun.py SPEC OP ARGS...
    SPEC  none | count:OUT.json | step:N (die just before the N-th step) | bytes:N
          (die once N store bytes went by: read by a download, sent by an upload)
    OP    download STORE_DIR IMAGE_ID SR
          upload   SR LEAF_UUID STORE_DIR NAME
          coalesce CHILD_PATH BATCH_BYTES
          snapshot SR UUID
          gc-loop  SR STOPFILE OUT.json   (no SPEC effect; runs SR.gc until STOPFILE exists)
          snapshot-loop SR UUID COUNT OUT.json  (no SPEC effect; COUNT snapshots of UUID)

On success the result is printed as one JSON line.  ``count`` writes
{"steps": [description, ...], "bytes": n} to OUT.json.  CRASHRUN_BASE (env) is
stripped from paths in step descriptions.
"""

import json
import os
import signal
import sys
import time

from vhdport import transfer
from vhdport.sr import SR
from vhdport.stores.local import LocalStore
from vhdport.vhd import VhdFile
from vhdport.vhd.coalesce import coalesce

_MUTATORS = ("link", "rename", "replace", "unlink", "rmdir", "mkdir", "fsync", "write",
             "pwrite", "ftruncate", "truncate")


class Plan(object):
    def __init__(self, spec):
        kind, _, value = spec.partition(":")
        self.kind = kind
        self.out = value if kind == "count" else None
        self.limit = int(value) if kind in ("step", "bytes") else None
        self.steps = []
        self.bytes = 0
        self.base = os.environ.get("CRASHRUN_BASE", "")

    def die(self):
        sys.stdout.flush()
        os.kill(os.getpid(), signal.SIGKILL)

    def _short(self, arg):
        if isinstance(arg, str):
            return arg.replace(self.base + "/", "") if self.base else arg
        if isinstance(arg, int):
            return "fd" if arg > 2 else str(arg)
        return type(arg).__name__

    def step(self, name, args):
        if self.kind not in ("count", "step"):
            return
        self.steps.append("{}({})".format(name, ", ".join(self._short(a) for a in args[:2])))
        if self.kind == "step" and len(self.steps) == self.limit:
            self.die()

    def passed(self, n):
        self.bytes += n
        if self.kind == "bytes" and self.bytes >= self.limit:
            self.die()

    def finish(self):
        if self.out:
            with open(self.out, "w") as f:
                json.dump({"steps": self.steps, "bytes": self.bytes}, f)


def install(plan):
    """Wrap the os mutators and VhdFile.pwrite so each call is one countable step."""
    for name in _MUTATORS:
        real = getattr(os, name, None)
        if real is None:
            continue

        def wrapper(*args, _real=real, _name=name, **kwargs):
            plan.step(_name, args)
            return _real(*args, **kwargs)
        setattr(os, name, wrapper)
    real_pwrite = VhdFile.pwrite

    def vhd_pwrite(self, offset, data):
        plan.step("vhd.pwrite", (self.path, offset))
        return real_pwrite(self, offset, data)
    VhdFile.pwrite = vhd_pwrite


class _CountingStream(object):
    def __init__(self, stream, plan):
        self._stream, self._plan = stream, plan
        self.size = getattr(stream, "size", None)

    def read(self, n=-1):
        data = self._stream.read(n)
        self._plan.passed(len(data))
        return data

    def close(self):
        self._stream.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()


def _counting_store(root, plan):
    store = LocalStore(root)
    real_open, real_put = store.open, store.put

    def open_(image_id, offset=0):
        return _CountingStream(real_open(image_id, offset), plan)

    def put(image_id, chunks, size=None):
        def counted():
            for chunk in chunks:
                plan.passed(len(chunk))
                yield chunk
        return real_put(image_id, counted(), size)
    store.open, store.put = open_, put
    return store


def gc_loop(sr_path, stopfile, out):
    sr = SR(sr_path)
    deleted, passes, errors = [], 0, []
    while not os.path.exists(stopfile):
        try:
            deleted.extend(sr.gc())
        except Exception as e:  # recorded for the test to judge
            errors.append(str(e))
        passes += 1
        time.sleep(0.005)
    with open(out, "w") as f:
        json.dump({"deleted": deleted, "passes": passes, "errors": errors}, f)


def snapshot_loop(sr_path, uuid, count, out):
    """Snapshot VDI ``uuid`` ``count`` times (a pause between), recording the results."""
    sr = SR(sr_path)
    made, errors = [], []
    for _ in range(int(count)):
        try:
            made.append(list(sr.snapshot(uuid)))
        except Exception as e:  # recorded for the test to judge
            errors.append(str(e))
        time.sleep(0.02)
    with open(out, "w") as f:
        json.dump({"made": made, "errors": errors}, f)


def main(argv):
    spec, op, args = argv[0], argv[1], argv[2:]
    if op == "gc-loop":
        gc_loop(*args)
        return
    if op == "snapshot-loop":
        snapshot_loop(*args)
        return
    plan = Plan(spec)
    if op == "download":
        store = _counting_store(args[0], plan)
        install(plan)
        result = transfer.download(store, args[1], args[2])
    elif op == "upload":
        store = _counting_store(args[2], plan)
        install(plan)
        result = transfer.upload(args[0], args[1], store, name=args[3])
    elif op == "coalesce":
        install(plan)
        result = coalesce(args[0], batch_bytes=int(args[1]))
    elif op == "snapshot":
        sr = SR(args[0])
        install(plan)
        result = sr.snapshot(args[1])
    else:
        raise SystemExit("unknown operation " + op)
    plan.finish()
    sys.stdout.write(json.dumps(result) + "\n")


if __name__ == "__main__":
    main(sys.argv[1:])
