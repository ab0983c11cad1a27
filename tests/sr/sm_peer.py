"""A stand-in for XenServer's SM in another process: takes the SR lock the way SM does.

Facts from SM (drivers/lock.py, flock.py): ``os.makedirs(<dir>/<sr_uuid>)``, ``open(path, "w+")``,
then ``fcntl(fd, F_SETLK or F_SETLKW, struct flock{F_WRLCK, SEEK_SET, 0, 0})``, packed "hhqql".

Usage: ``python sm_peer.py LOCK_PATH``; reads commands on stdin, one per line, answers one line:
``lock`` (wait for it) -> ``locked``; ``try`` (F_SETLK, and release at once if taken) -> ``free``
or ``busy``; ``unlock`` -> ``unlocked``; ``quit`` (or EOF) ends.  Prints ``ready`` first.
"""

import errno
import fcntl
import os
import struct
import sys

FORMAT = "hhqql"


def flock(fd, cmd, l_type):
    fcntl.fcntl(fd, cmd, struct.pack(FORMAT, l_type, 0, 0, 0, 0))


def main(path):
    try:
        os.makedirs(os.path.dirname(path))
    except OSError as e:
        if e.errno != errno.EEXIST:
            raise
    lockfile = open(path, "w+")
    fd = lockfile.fileno()
    answer("ready")
    for line in sys.stdin:
        command = line.strip()
        if command == "lock":
            flock(fd, fcntl.F_SETLKW, fcntl.F_WRLCK)
            answer("locked")
        elif command == "try":
            try:
                flock(fd, fcntl.F_SETLK, fcntl.F_WRLCK)
            except OSError as e:
                if e.errno not in (errno.EACCES, errno.EAGAIN):
                    raise
                answer("busy")
                continue
            flock(fd, fcntl.F_SETLK, fcntl.F_UNLCK)
            answer("free")
        elif command == "unlock":
            flock(fd, fcntl.F_SETLK, fcntl.F_UNLCK)
            answer("unlocked")
        elif command == "quit":
            break
        else:
            answer("unknown command " + command)


def answer(text):
    sys.stdout.write(text + "\n")
    sys.stdout.flush()


if __name__ == "__main__":
    main(sys.argv[1])
