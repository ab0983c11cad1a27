"""Helper processes for the sr tests: run as ``python -m tests.sr.loops CMD ARGS``.

gc-loop SR STOPFILE OUT      run sr.gc() until STOPFILE exists; write deleted uuids to OUT
scan-loop SR STOPFILE OUT    scan without locks; write every hidden childless uuid seen to OUT
hold-staging SR              open a staging dir, write a file, print its path, sleep forever
crash-snapshot SR UUID K     snapshot UUID, dying (os._exit) right after the K-th directory fsync
"""

import json
import os
import sys
import time

from vhdport.sr import SR


def gc_loop(sr_path, stopfile, out):
    sr = SR(sr_path)
    deleted, passes, aborted = [], 0, 0
    while not os.path.exists(stopfile):
        try:
            deleted.extend(sr.gc())
        except Exception as e:   # report, keep looping: the test reads the counts
            aborted += 1
            sys.stderr.write("gc: {}\n".format(e))
        passes += 1
        time.sleep(0.005)   # a real GC pauses between passes; a spinning one starves lockers
    with open(out, "w") as f:
        json.dump({"deleted": deleted, "passes": passes, "aborted": aborted}, f)


def scan_loop(sr_path, stopfile, out):
    sr = SR(sr_path)
    seen, scans = set(), 0
    while not os.path.exists(stopfile):
        for u, info in sr.vdis().items():
            if info.hidden and not info.children:
                seen.add(u)
        scans += 1
    with open(out, "w") as f:
        json.dump({"hidden_childless": sorted(seen), "scans": scans}, f)


def hold_staging(sr_path):
    with SR(sr_path).staging() as st:
        with open(os.path.join(st.path, "0.vhd"), "wb") as f:
            f.write(b"partial download")
        sys.stdout.write(st.path + "\n")
        sys.stdout.flush()
        while True:
            time.sleep(1)


def crash_snapshot(sr_path, uuid, k):
    import vhdport.sr.repo as repo
    real = repo.fsync_dir
    count = [0]

    def fsync_then_maybe_die(path):
        real(path)
        count[0] += 1
        if count[0] == k:
            os._exit(9)
    repo.fsync_dir = fsync_then_maybe_die
    print(json.dumps(SR(sr_path).snapshot(uuid)))


def main(argv):
    cmd = argv[0]
    if cmd == "gc-loop":
        gc_loop(*argv[1:4])
    elif cmd == "scan-loop":
        scan_loop(*argv[1:4])
    elif cmd == "hold-staging":
        hold_staging(argv[1])
    elif cmd == "crash-snapshot":
        crash_snapshot(argv[1], argv[2], int(argv[3]))
    else:
        raise SystemExit("unknown command " + cmd)


if __name__ == "__main__":
    main(sys.argv[1:])
