"""Send a stream of chunks as numbered parts, several at a time, while it is produced.

Why: an upload of a 50 GiB chain must start before the bundle is finished and must not
buffer it.  Parts of ``part_size`` bytes are cut from the stream as it comes; at most
``connections`` of them are in flight (plus the one being filled), so memory is bounded
by ``(connections + 1) * part_size``.  The first failure stops everything: no further
part starts, the ones in flight are waited for, and the error propagates so the caller
aborts the upload (no half-finished object is ever completed).
"""

import hashlib
import threading
from concurrent.futures import FIRST_COMPLETED, ThreadPoolExecutor, wait

from vhdport.stores.base import StreamDigest


class Part(object):
    """One uploaded part: its number (from 1), size, md5 (hex) and what the server said."""

    __slots__ = ("number", "size", "md5", "etag")

    def __init__(self, number, size, md5, etag=None):
        self.number, self.size, self.md5, self.etag = number, size, md5, etag

    def __repr__(self):
        return "Part({}, size={}, md5={})".format(self.number, self.size, self.md5)


def cut_parts(chunks, part_size, digest):
    """Yield ``bytes`` of exactly ``part_size`` (the last one shorter) from ``chunks``,
    feeding every byte to ``digest`` (a StreamDigest) on the way."""
    buf = bytearray()
    for chunk in chunks:
        if not chunk:
            continue
        digest.update(chunk)
        buf += chunk
        while len(buf) >= part_size:
            yield bytes(buf[:part_size])
            del buf[:part_size]
    if buf:
        yield bytes(buf)


class PartSender(object):
    """Run ``send(part, data)`` for each part on up to ``connections`` threads.

    ``send`` returns the server's ETag (or None); parts come back in order from
    :meth:`finish`.  ``on_part`` is called (in the caller's thread) after each submit,
    e.g. to refresh a heartbeat.
    """

    def __init__(self, send, connections=4, on_part=None):
        self._send = send
        self.connections = max(1, int(connections))
        self._pool = ThreadPoolExecutor(max_workers=self.connections)
        self._pending = set()
        self._parts = []
        self._on_part = on_part
        self._failed = threading.Event()
        self._error = None
        self._lock = threading.Lock()

    def _run(self, part, data):
        if self._failed.is_set():
            raise _Cancelled()
        try:
            part.etag = self._send(part, data)
        except BaseException as exc:
            with self._lock:
                if self._error is None:
                    self._error = exc
            self._failed.set()
            raise
        return part

    def submit(self, number, data):
        """Queue part ``number``; blocks while ``connections`` parts are in flight."""
        self._reap(block=len(self._pending) >= self.connections)
        part = Part(number, len(data), hashlib.md5(data).hexdigest())
        self._pending.add(self._pool.submit(self._run, part, data))
        self._parts.append(part)
        if self._on_part is not None:
            self._on_part(part)
        return part

    def _reap(self, block):
        """Collect finished parts; raise the first failure."""
        if not self._pending:
            return
        done, self._pending = wait(self._pending, timeout=None if block else 0,
                                   return_when=FIRST_COMPLETED)
        if self._error is not None:
            raise self._error  # the first failure, not a part cancelled because of it
        for future in done:
            future.result()

    def finish(self):
        """Wait for every part; return them in order (raises the first failure)."""
        while self._pending:
            self._reap(block=True)
        return list(self._parts)

    def close(self):
        """Stop: no new part starts; wait for those in flight (their errors are dropped)."""
        self._failed.set()
        if self._pending:
            wait(self._pending)
        self._pool.shutdown(wait=True)


class _Cancelled(Exception):
    """A part skipped because another one already failed."""


def send_stream(chunks, part_size, first_part_alone, begin, send, connections=4, on_part=None):
    """Upload ``chunks``: as one object if it fits in one part, else as parts.

    ``first_part_alone(data)`` stores a stream of at most one part and returns None;
    ``begin()`` starts a multipart upload; ``send(part, data)`` uploads one part and
    returns its ETag.  Returns (digest, parts or None).  On failure the caller aborts.
    """
    digest = StreamDigest()
    pieces = cut_parts(chunks, part_size, digest)
    first = next(pieces, None)
    if first is None:
        first = b""
    second = next(pieces, None)
    if second is None:
        first_part_alone(first)
        return digest, None
    begin()
    sender = PartSender(send, connections, on_part)
    try:
        sender.submit(1, first)
        first = None
        sender.submit(2, second)
        second = None
        number = 3
        for data in pieces:
            sender.submit(number, data)
            number += 1
        parts = sender.finish()
    finally:
        sender.close()
    return digest, parts
