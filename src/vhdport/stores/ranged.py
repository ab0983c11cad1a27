"""Parallel ranged download: N connections fetch consecutive byte ranges, read() hands them
back in order.

Why: one TCP stream from an object store rarely fills a host's link; a few ranged GETs
in flight do.  Memory stays bounded by the window (``connections`` ranges of
``block_size`` bytes, fetched or being fetched, ahead of the reader), a broken range
is fetched again alone, and the caller still sees one ordered stream whose bytes it
hashes end to end against the image record.
"""

import logging
import threading

from vhdport.errors import IntegrityError, StoreError, TransientStoreError

log = logging.getLogger("vhdport.stores.ranged")

DEFAULT_BLOCK = 8 << 20


class RangedReader(object):
    """A readable stream (``read(n)``, ``close()``, ``size``, ``offset``) over ranged GETs.

    ``fetch(start, end)`` returns exactly the bytes ``start .. end-1`` of the object or
    raises (a :class:`TransientStoreError` or a short read is retried up to ``retries``
    times, each range on its own); ``sleep`` and ``delay(attempt)`` pace the retries.
    """

    def __init__(self, fetch, size, subject, offset=0, connections=4, block_size=DEFAULT_BLOCK,
                 retries=5, delay=lambda attempt: min(0.5 * 2 ** attempt, 10.0), sleep=None):
        if not isinstance(offset, int) or offset < 0 or offset > size:
            raise StoreError("offset {} is outside {} (size {})".format(offset, subject, size))
        self._fetch, self.size, self.offset, self.subject = fetch, size, offset, subject
        self.connections = max(1, int(connections))
        self.block_size = max(1, int(block_size))
        self._retries, self._delay = max(0, int(retries)), delay
        self._stop = threading.Event()
        self._sleep = sleep or (lambda seconds: self._stop.wait(seconds))
        self._cond = threading.Condition()
        self._blocks = {}        # index -> bytes, fetched and not yet consumed
        self._next_claim = 0     # next range index a worker takes
        self._consumed = 0       # index of the block the reader is on
        self._error = None
        self._count = (size - offset + self.block_size - 1) // self.block_size
        self._current, self._pos_in = b"", 0
        self._threads = []
        for number in range(min(self.connections, self._count)):
            thread = threading.Thread(target=self._work, name="vhdport-range-{}".format(number),
                                      daemon=True)
            thread.start()
            self._threads.append(thread)

    # --- workers ------------------------------------------------------------

    def _claim(self):
        """The next range index to fetch, waiting while the window is full; None when done."""
        with self._cond:
            while True:
                if self._stop.is_set() or self._error is not None or \
                        self._next_claim >= self._count:
                    return None
                if self._next_claim < self._consumed + self.connections:
                    index = self._next_claim
                    self._next_claim += 1
                    return index
                self._cond.wait(1.0)

    def _work(self):
        while True:
            index = self._claim()
            if index is None:
                return
            start = self.offset + index * self.block_size
            end = min(start + self.block_size, self.size)
            try:
                data = self._fetch_range(start, end)
            except BaseException as exc:  # handed to the reader, who raises it
                with self._cond:
                    if self._error is None:
                        self._error = exc
                    self._cond.notify_all()
                return
            with self._cond:
                self._blocks[index] = data
                self._cond.notify_all()

    def _fetch_range(self, start, end):
        attempt = 0
        while True:
            if self._stop.is_set():
                raise StoreError("download of {} was closed".format(self.subject))
            try:
                data = self._fetch(start, end)
                if len(data) != end - start:
                    raise IntegrityError(what="range length", subject="bytes {}-{} of {}".format(
                        start, end - 1, self.subject), expected=end - start, actual=len(data))
                return data
            except (TransientStoreError, IntegrityError) as exc:
                if attempt >= self._retries:
                    raise TransientStoreError(
                        "download of {} failed at bytes {}-{}: {} (gave up after {} attempts)"
                        .format(self.subject, start, end - 1, exc, attempt + 1)) from exc
                pause = self._delay(attempt)
                log.warning("%s: bytes %d-%d: %s; fetching that range again in %.2gs",
                            self.subject, start, end - 1, exc, pause)
                self._sleep(pause)
                attempt += 1

    # --- the stream ------------------------------------------------------------

    def _next_block(self):
        with self._cond:
            while self._consumed not in self._blocks:
                if self._error is not None:
                    raise self._error
                if self._stop.is_set():
                    raise StoreError("download of {} was closed".format(self.subject))
                self._cond.wait(1.0)
            data = self._blocks.pop(self._consumed)
            self._consumed += 1
            self._cond.notify_all()
            return data

    def read(self, n=-1):
        if n is None or n < 0:
            return b"".join(iter(lambda: self.read(self.block_size), b""))
        while self._pos_in >= len(self._current):
            if self._consumed >= self._count:
                return b""
            self._current, self._pos_in = self._next_block(), 0
        if self._pos_in == 0 and n >= len(self._current):
            data, self._current = self._current, b""
            return data
        data = self._current[self._pos_in:self._pos_in + n]
        self._pos_in += len(data)
        return data

    def close(self):
        self._stop.set()
        with self._cond:
            self._blocks.clear()
            self._cond.notify_all()
        for thread in self._threads:
            thread.join(timeout=30)
        self._threads = []

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    def __repr__(self):
        return "RangedReader({}, size={}, connections={})".format(
            self.subject, self.size, self.connections)
