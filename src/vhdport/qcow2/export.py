"""QCOW2 chain -> raw file, at the speed of the kernel's copying.

Why: exporting is bound by page-cache copies and the closing fsync, not by Python.
So the caller's thread maps the chain (the Python part) while worker threads copy with
positional reads and writes, which release the GIL (both cores copy); each window of
guest-contiguous data is read in one call however many host runs it has.  Each written
window is handed to writeback at once (``posix_fadvise(DONTNEED)`` starts it on
Linux), so the device works during the copy and the fsync at the end finds little
left.  All-zero granules are never written: the output stays as sparse as
``qemu-img convert`` makes it.  Memory: one window per worker plus a short queue of
run lists, whatever the image size.
"""

import mmap
import os
import queue
import threading

from .format import tables as t

WINDOW = 2 * 1024 * 1024        # >= the largest cluster (2 MiB): a compressed run fits
GRANULE = 64 * 1024
# one pwrite of a whole 2 MiB window cost 2-4x the system time of 256 KiB pieces here
# (two writers and the writeback started by fadvise contend for the file)
WRITE_PIECE = 256 * 1024
WORKERS = 2
QUEUE_DEPTH = 8
_ZEROS = bytes(GRANULE)
# 3.7+ / Linux; looked up with getattr so the core stays 3.6 (vermin) and portable
_preadv = getattr(os, "preadv", None)
_fadvise = getattr(os, "posix_fadvise", None)
_DONTNEED = getattr(os, "POSIX_FADV_DONTNEED", None)


def nonzero_spans(data, granule=GRANULE):
    """(start, end) spans of ``data`` holding non-zero bytes, at ``granule`` resolution.

    A granule whose first byte is non-zero is data without looking further (one index);
    otherwise its slice is compared with a zero constant (a copy and a memcmp, C speed).
    """
    size = len(data)
    zeros = _ZEROS if granule == GRANULE else bytes(granule)
    spans = []
    start = None
    for pos in range(0, size, granule):
        if data[pos]:
            zero = False
        else:
            piece = data[pos:pos + granule]
            zero = piece == (zeros if len(piece) == granule else zeros[:len(piece)])
        if zero:
            if start is not None:
                spans.append((start, pos))
                start = None
        elif start is None:
            start = pos
    if start is not None:
        spans.append((start, size))
    return spans


def windows(runs, window=WINDOW):
    """Group (guest, n, kind, level, host) runs into (start, size, runs) windows.

    A window is guest-contiguous, holds only data and compressed runs (zeros and holes
    end it: they are never read) and is at most ``window`` bytes; data runs are split
    to fit, a compressed run (at most one cluster) moves whole to the next window.
    """
    batch, start, size = [], 0, 0
    for guest, n, kind, level, host in runs:
        if kind != t.DATA and kind != t.COMPRESSED_KIND:
            if batch:
                yield start, size, batch
                batch, size = [], 0
            continue
        while n:
            room = window - size
            if batch and (guest != start + size or room <= 0 or
                          (kind == t.COMPRESSED_KIND and n > room)):
                yield start, size, batch
                batch, size = [], 0
                continue
            if not batch:
                start = guest
            take = n if kind == t.COMPRESSED_KIND else min(n, window - size)
            batch.append((guest, take, kind, level, host))
            size += take
            if kind == t.DATA:
                host += take
            guest += take
            n -= take
    if batch:
        yield start, size, batch


def pread_into(fd, view, offset, file_size):
    """Fill ``view`` from ``fd`` at ``offset``; what lies past ``file_size`` reads as zeros
    (a cluster cut by EOF, as in qemu)."""
    want = max(0, min(len(view), file_size - offset))
    got = 0
    while got < want:
        if _preadv is not None:
            n = _preadv(fd, [view[got:want]], offset + got)
        else:                       # Python 3.6: one extra copy
            data = os.pread(fd, want - got, offset + got)
            n = len(data)
            view[got:got + n] = data
        if not n:
            break
        got += n
    if got < len(view):
        view[got:] = bytes(len(view) - got)


def pwrite_all(fd, view, offset, piece=WRITE_PIECE):
    while len(view):
        done = os.pwrite(fd, view[:piece], offset)
        view, offset = view[done:], offset + done


class _Copier(object):
    """Worker threads that read windows of a chain and write their non-zero granules."""

    def __init__(self, chain, out_fd, window, workers):
        self.chain, self.out_fd, self.window = chain, out_fd, window
        self.fds = [image._f.fileno() for image in chain.images]
        self.todo = queue.Queue(QUEUE_DEPTH)
        self.error = None
        self.failed = threading.Event()
        self.threads = [threading.Thread(target=self._work, name="qcow2-export", daemon=True)
                        for _ in range(workers)]
        for thread in self.threads:
            thread.start()

    def put(self, item):
        """Queue a window; False once a worker has failed (stop producing)."""
        while not self.failed.is_set():
            try:
                self.todo.put(item, timeout=0.1)
                return True
            except queue.Full:
                continue
        return False

    def finish(self):
        """Wait for the workers; raise the first error one of them met."""
        for _ in self.threads:
            self.todo.put(None)     # workers keep draining until they see it: no deadlock
        for thread in self.threads:
            thread.join()
        if self.error is not None:
            raise self.error

    def _work(self):
        view = None
        while True:
            item = self.todo.get()
            if item is None:
                return
            if self.failed.is_set():
                continue            # drop the rest; the producer stops soon
            try:
                if view is None:    # in the try: a worker that cannot start must not hang
                    # page-aligned, and faster here than a bytearray
                    view = memoryview(mmap.mmap(-1, self.window))
                self._copy(view, *item)
            except BaseException as e:      # raised by finish() in the caller's thread
                if self.error is None:
                    self.error = e
                self.failed.set()

    def _copy(self, view, start, size, runs):
        images = self.chain.images
        win = view[:size]
        for guest, n, kind, level, host in runs:
            part = win[guest - start:guest - start + n]
            image = images[level]
            if kind == t.DATA:
                pread_into(self.fds[level], part, host, image.file_size)
            else:
                off, span = host
                raw = os.pread(self.fds[level], max(0, min(span, image.file_size - off)), off)
                cluster = image.inflate(raw, host, guest)
                skip = guest % image.cluster_size
                part[:] = cluster[skip:skip + n]
        for lo, hi in nonzero_spans(win):
            pwrite_all(self.out_fd, win[lo:hi], start + lo)
        if _fadvise is not None and _DONTNEED is not None:
            try:
                _fadvise(self.out_fd, start, size, _DONTNEED)     # start writeback now
            except OSError:
                pass                # only advice: the closing fsync writes it all anyway


def copy_to_raw(chain, out_fd, window=WINDOW, workers=WORKERS):
    """Write every non-zero granule of ``chain`` into ``out_fd`` (already sized, sparse).

    The caller fsyncs.  ``chain`` must not be used by anyone else meanwhile.
    """
    window = max(window, max(image.cluster_size for image in chain.images))
    copier = _Copier(chain, out_fd, window, workers)
    try:
        for item in windows(chain.resolve(0, chain.virtual_size), window):
            if not copier.put(item):
                break
    finally:
        copier.finish()
