"""Write a big file front to back, fast and durably: direct I/O, holes for zeros, a writer thread.

Why: landing a multi-GiB VHD through the page cache costs a copy per byte, dirty-page
throttling (dom0 has little memory) and a long fsync at the end.  With O_DIRECT the
data goes from our aligned buffer to the device while the caller produces the next
buffer (the write runs in a thread; os.pwrite releases the GIL).  All-zero 64 KiB
pieces are not written at all: the file gets a hole there and reads the same.
Where O_DIRECT is refused (tmpfs, other systems) the same code writes buffered.
"""

import errno
import fcntl
import mmap
import os
import queue
import threading

#: alignment O_DIRECT needs for buffer address, file offset and length (covers 512e/4Kn)
ALIGN = 4096
#: zero pieces of this size become holes
HOLE_GRAIN = 64 * 1024
BUFFER_SIZE = 4 << 20
_O_DIRECT = getattr(os, "O_DIRECT", 0)
_ZEROS = bytes(HOLE_GRAIN)


def _set_direct(fd, on):
    """Switch O_DIRECT on or off for ``fd``; False where the system or filesystem refuses."""
    if not _O_DIRECT:
        return False
    try:
        flags = fcntl.fcntl(fd, fcntl.F_GETFL)
        fcntl.fcntl(fd, fcntl.F_SETFL, (flags | _O_DIRECT) if on else (flags & ~_O_DIRECT))
    except OSError:
        return False
    return True


def pwrite_all(fd, view, offset):
    while len(view):
        done = os.pwrite(fd, view, offset)
        view, offset = view[done:], offset + done


class DirectWriter(object):
    """Writes page-aligned buffers at given offsets from a worker thread.

    ``take()`` a buffer, fill it, ``submit(buf, offset, length)`` (offset a multiple
    of ALIGN; only the last write of a file may have an unaligned length).
    ``finish(size)`` waits for the writes, sets the size (trailing holes), fsyncs;
    ``close()`` stops the thread and closes ``fd`` (always call it).  Errors of the
    worker (OSError such as ENOSPC) are raised by the next take, submit or finish.
    """

    def __init__(self, fd, buffer_size=BUFFER_SIZE, buffers=3, direct=True, holes=True):
        self.fd = fd
        self.holes = holes
        self.buffer_size = buffer_size
        self._direct = direct and _set_direct(fd, True)
        self._free = queue.Queue()
        for _ in range(buffers):
            self._free.put(mmap.mmap(-1, buffer_size))
        self._todo = queue.Queue()
        self._error = None
        self._thread = threading.Thread(target=self._work, name="vhd-writer", daemon=True)
        self._thread.start()

    def take(self):
        self._check()
        return self._free.get()

    def submit(self, buf, offset, length):
        self._check()
        self._todo.put((buf, offset, length))

    def _check(self):
        if self._error is not None:
            raise self._error

    def finish(self, size=None):
        """Wait for every write, give the file ``size`` bytes (if given), fsync."""
        self._stop()
        self._check()
        if size is not None:
            os.ftruncate(self.fd, size)
        os.fsync(self.fd)

    def _stop(self):
        if self._thread is not None:
            self._todo.put(None)
            self._thread.join()
            self._thread = None

    def close(self):
        """Stop the worker (dropping what it was not given) and close the descriptor."""
        if self._thread is not None:
            self._error = self._error or OSError(errno.ECANCELED, "writer closed")
            self._stop()
        if self.fd is not None:
            os.close(self.fd)
            self.fd = None

    # ---------------------------------------------------------------- worker

    def _work(self):
        while True:
            item = self._todo.get()
            if item is None:
                return
            buf, offset, length = item
            try:
                if self._error is None:
                    self._write_out(buf, offset, length)
            except BaseException as err:  # raised in the caller by the next call
                self._error = err
            finally:
                self._free.put(buf)

    def _write_out(self, buf, offset, length):
        view = memoryview(buf)
        try:
            aligned = length - length % ALIGN if self._direct else length
            self._write_runs(buf, view, offset, aligned)
            if aligned < length:   # the unaligned tail of the file: buffered
                self._direct = False
                _set_direct(self.fd, False)
                pwrite_all(self.fd, view[aligned:length], offset + aligned)
        finally:
            view.release()

    def _write_runs(self, buf, view, offset, length):
        """Write [0, length) of ``buf`` at ``offset``, leaving zero pieces as holes."""
        start = 0 if not self.holes else None
        if self.holes:
            for pos in range(0, length, HOLE_GRAIN):
                end = min(pos + HOLE_GRAIN, length)
                if buf[pos:end] != _ZEROS[:end - pos]:
                    if start is None:
                        start = pos
                elif start is not None:
                    self._pwrite(view[start:pos], offset + start)
                    start = None
        if start is not None:
            self._pwrite(view[start:length], offset + start)

    def _pwrite(self, part, offset):
        try:
            pwrite_all(self.fd, part, offset)
        except OSError as err:
            if err.errno != errno.EINVAL or not self._direct:
                raise
            # the filesystem took the flag but not the I/O: fall back to buffered
            self._direct = False
            _set_direct(self.fd, False)
            pwrite_all(self.fd, part, offset)


class SequentialWriter(DirectWriter):
    """Append-only: ``write(data)`` in any pieces, then ``finish()``; ``fd`` starts empty."""

    def __init__(self, fd, buffer_size=BUFFER_SIZE, buffers=3, direct=True, holes=True):
        super(SequentialWriter, self).__init__(fd, buffer_size, buffers, direct, holes)
        self.size = 0
        self._cur = self.take()
        self._fill = 0
        self._offset = 0

    def write(self, data):
        view = memoryview(data)
        while len(view):
            n = min(len(view), self.buffer_size - self._fill)
            self._cur[self._fill:self._fill + n] = view[:n]
            self._fill += n
            view = view[n:]
            if self._fill == self.buffer_size:
                self._push()
        self.size += len(data)

    def _push(self):
        self.submit(self._cur, self._offset, self._fill)
        self._offset += self._fill
        self._cur, self._fill = self.take(), 0

    def finish(self, size=None):
        """Write what is buffered, give the file its full size, fsync."""
        if self._fill:
            self.submit(self._cur, self._offset, self._fill)
            self._fill = 0
        super(SequentialWriter, self).finish(self.size if size is None else size)


class BackgroundSync(object):
    """fdatasync ``fd`` in a thread every ``every`` bytes written, so the final fsync finds
    little left to do: the device works while the caller keeps producing data."""

    def __init__(self, fd, every=64 << 20):
        self.fd, self.every = fd, every
        self._pending = 0
        self._thread = None
        self._error = None

    def wrote(self, n):
        self._pending += n
        if self._pending < self.every or (self._thread is not None and self._thread.is_alive()):
            return
        self._pending = 0
        self._thread = threading.Thread(target=self._sync, name="vhd-sync", daemon=True)
        self._thread.start()

    def _sync(self):
        try:
            os.fdatasync(self.fd)
        except OSError as err:  # reported by wait()
            self._error = err

    def wait(self):
        """Wait for a sync in flight; raise its error.  The caller still fsyncs at the end."""
        if self._thread is not None:
            self._thread.join()
            self._thread = None
        if self._error is not None:
            raise self._error
