"""Adversary processes for the transfer tests: ``python -m tests.transfer.loops CMD SR STOP OUT``.

gc      run SR(SR).gc() until the file STOP exists; write {"deleted", "passes", "errors"} to OUT
scan    scan the SR without any lock until STOP exists; write every hidden VHD seen without a
        child (with the names listed at that moment) to OUT as {"violations", "scans"}
smgc    XenServer SM's GC: each pass holds only SM's SR lock ($VHDPORT_SM_LOCK_DIR/<sr uuid>/sr,
        taken as SM takes it), deletes what the GC rule says, and checks that nobody else
        changed the SR's VHDs while it held the lock; write {"deleted", "passes", "errors",
        "changed_under_lock"} to OUT

Each loop touches OUT + ".ready" after its first pass so the test knows it is running.
"""

import fcntl
import json
import os
import sys
import time

from vhdport.sr import SR, garbage_order

from tests.sr import sm_peer


def _ready(out):
    with open(out + ".ready", "w") as f:
        f.write("1")


def gc_loop(sr_path, stop, out):
    sr = SR(sr_path)
    deleted, passes, errors = [], 0, []
    while not os.path.exists(stop):
        try:
            deleted.extend(sr.gc())
        except Exception as e:   # recorded: the test decides whether an abort is acceptable
            errors.append("{}: {}".format(type(e).__name__, e))
        passes += 1
        if passes == 1:
            _ready(out)
        time.sleep(0.002)
    with open(out, "w") as f:
        json.dump({"deleted": deleted, "passes": passes, "errors": errors[:50]}, f)


def scan_loop(sr_path, stop, out):
    sr = SR(sr_path)
    violations, scans = [], 0
    while not os.path.exists(stop):
        vdis = sr.vdis()
        for u, info in sorted(vdis.items()):
            if info.hidden and not info.children:
                violations.append({"uuid": u, "listed": sorted(vdis)})
        scans += 1
        if scans == 1:
            _ready(out)
    with open(out, "w") as f:
        json.dump({"violations": violations[:200], "scans": scans}, f)


def _vhd_names(sr_path):
    """The SR's disk files, VHD and QCOW2 (SM scans both)."""
    return set(n for n in os.listdir(sr_path) if n.endswith((".vhd", ".qcow2")))


def sm_gc_loop(sr_path, stop, out):
    sr = SR(sr_path)
    lock_path = os.path.join(os.environ["VHDPORT_SM_LOCK_DIR"], os.path.basename(sr_path), "sr")
    os.makedirs(os.path.dirname(lock_path), exist_ok=True)
    lock_file = open(lock_path, "w+")
    deleted, passes, errors, changed = [], 0, [], []
    while not os.path.exists(stop):
        sm_peer.flock(lock_file.fileno(), fcntl.F_SETLKW, fcntl.F_WRLCK)
        try:
            before = _vhd_names(sr_path)
            removed = set()
            try:
                vdis = sr.vdis()
                for u in garbage_order(vdis):
                    os.unlink(vdis[u].path)
                    removed.add(os.path.basename(vdis[u].path))
                    deleted.append(u)
            except Exception as e:   # recorded: the test decides
                errors.append("{}: {}".format(type(e).__name__, e))
            time.sleep(0.005)        # hold it a little, as SM does for its work
            after = _vhd_names(sr_path)
            if after != before - removed:
                changed.append({"appeared": sorted(after - before),
                                "vanished": sorted((before - removed) - after)})
        finally:
            sm_peer.flock(lock_file.fileno(), fcntl.F_SETLK, fcntl.F_UNLCK)
        passes += 1
        if passes == 1:
            _ready(out)
        time.sleep(0.002)
    with open(out, "w") as f:
        json.dump({"deleted": deleted, "passes": passes, "errors": errors[:50],
                   "changed_under_lock": changed[:50]}, f)


def main(argv):
    cmd, sr_path, stop, out = argv
    {"gc": gc_loop, "scan": scan_loop, "smgc": sm_gc_loop}[cmd](sr_path, stop, out)


if __name__ == "__main__":
    main(sys.argv[1:])
