"""Adversary processes for the transfer tests: ``python -m tests.transfer.loops CMD SR STOP OUT``.

gc      run SR(SR).gc() until the file STOP exists; write {"deleted", "passes", "errors"} to OUT
scan    scan the SR without any lock until STOP exists; write every hidden VHD seen without a
        child (with the names listed at that moment) to OUT as {"violations", "scans"}

Each loop touches OUT + ".ready" after its first pass so the test knows it is running.
"""

import json
import os
import sys
import time

from vhdport.sr import SR


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


def main(argv):
    cmd, sr_path, stop, out = argv
    {"gc": gc_loop, "scan": scan_loop}[cmd](sr_path, stop, out)


if __name__ == "__main__":
    main(sys.argv[1:])
