"""A stand-in for XenServer's SM in another process: takes the SR lock the way SM does.

Facts from SM (drivers/lock.py, flock.py): ``os.makedirs(<dir>/<sr_uuid>)``, ``open(path, "w+")``,
then ``fcntl(fd, F_SETLK or F_SETLKW, struct flock{F_WRLCK, SEEK_SET, 0, 0})``, packed "hhqql".

Tests use :class:`SMPeer`, which runs ``python sm_peer.py LOCK_PATH``.  That process reads
commands on stdin, one per line, and answers one line each: ``lock`` (wait for it) -> ``locked``;
``try`` (F_SETLK, released at once if taken) -> ``free`` or ``busy``; ``unlock`` -> ``unlocked``;
``quit`` (or EOF) ends.  It prints ``ready`` first.
"""

import errno
import fcntl
import os
import struct
import subprocess
import sys

FORMAT = "hhqql"


class SMPeer(object):
    """tests/sr/sm_peer.py in its own process: SM's lock calls, one command at a time."""

    def __init__(self, lock_path):
        self.proc = subprocess.Popen([sys.executable, os.path.abspath(__file__), lock_path],
                                     stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                     universal_newlines=True)
        assert self._read() == "ready"

    def _read(self):
        return self.proc.stdout.readline().strip()

    def ask(self, command):
        self.proc.stdin.write(command + "\n")
        self.proc.stdin.flush()
        return self._read()

    def close(self):
        if self.proc.poll() is None:
            self.proc.stdin.close()
            self.proc.wait(timeout=30)
        self.proc.stdout.close()


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
