"""Byte sources over a store stream: plain, or gunzipped on the fly, in bounded pieces.

Decompression is capped per call (``max_length``) so a gzip bomb never expands
more than one chunk ahead of what the tar reader has asked for.
"""

import queue
import threading

from ..errors import BundleError
from . import codec

CHUNK = 1 << 20
GZIP_MAGIC = b"\x1f\x8b"
#: chunks the read-ahead thread may hold ahead of the consumer (bounded memory)
READ_AHEAD = 4


def _decompressor():
    """isal inflates about twice as fast as zlib (same results); see :mod:`.codec`."""
    return codec.module().decompressobj(31)


class _ReadAhead(object):
    """Calls ``reader.read(CHUNK)`` in a worker thread, up to READ_AHEAD chunks ahead.

    The network read and whatever the reader does on the way (the transfer layer
    hashes every byte) then overlap with inflating and writing in the caller;
    hashlib, zlib/isal and file writes all release the GIL.  Errors of the reader
    are re-raised in the caller, in order.
    """

    def __init__(self, reader):
        self._reader = reader
        self._queue = queue.Queue(READ_AHEAD)
        self._stop = threading.Event()
        self._done = False
        self._thread = threading.Thread(target=self._work, name="bundle-read-ahead",
                                        daemon=True)
        self._thread.start()

    def _put(self, item):
        while not self._stop.is_set():
            try:
                self._queue.put(item, timeout=0.1)
                return True
            except queue.Full:
                continue
        return False

    def _work(self):
        try:
            while not self._stop.is_set():
                data = self._reader.read(CHUNK)
                if not self._put((data, None)) or not data:
                    return
        except BaseException as err:  # handed to the consumer
            self._put((b"", err))

    def read(self, n):
        """The next chunk the reader produced (any size; ``n`` is only a hint)."""
        if self._done:
            return b""
        data, err = self._queue.get()
        if err is not None:
            self._done = True
            raise err
        if not data:
            self._done = True
            self._thread.join()
        return data

    def close(self):
        """Stop reading ahead (the reader is left to its owner to close)."""
        self._done = True
        self._stop.set()
        self._thread.join(1.0)  # a read blocked on the network ends when its owner closes it


class Source(object):
    """Reads from ``reader.read(n)``; ``where`` names what is being read, for messages."""

    def __init__(self, reader, prefix=b"", read_ahead=False):
        self._reader = _ReadAhead(reader) if read_ahead else reader
        self._prefix = prefix
        self.where = "the start of the stream"
        self.consumed = 0  # bytes handed to the caller

    def close(self):
        """Stop the read-ahead thread, if any; call when done (or failed)."""
        if isinstance(self._reader, _ReadAhead):
            self._reader.close()

    def _raw_read(self, n):
        if self._prefix:
            data, self._prefix = self._prefix[:n], self._prefix[n:]
            return data
        data = self._reader.read(n)
        if len(data) > n:  # a reader that returns more than asked: keep the excess
            data, self._prefix = data[:n], data[n:]
        return bytes(data)

    def read_some(self, n):
        """Up to ``n`` bytes; b"" only at the end of the stream."""
        data = self._raw_read(n)
        self.consumed += len(data)
        return data

    def truncated(self, needed, got):
        return BundleError("stream truncated: ended {} bytes short while reading {}".format(
            needed - got, self.where), where=self.where)

    def read_exact(self, n):
        parts = []
        got = 0
        while got < n:
            data = self.read_some(min(n - got, CHUNK))
            if not data:
                raise self.truncated(n, got)
            parts.append(data)
            got += len(data)
        return b"".join(parts)

    def read_upto(self, n):
        """Up to ``n`` bytes, fewer only when the stream ends."""
        parts = []
        got = 0
        while got < n:
            data = self.read_some(min(n - got, CHUNK))
            if not data:
                break
            parts.append(data)
            got += len(data)
        return b"".join(parts)

    def skip(self, n):
        while n > 0:
            data = self.read_some(min(n, CHUNK))
            if not data:
                raise self.truncated(n, 0)
            n -= len(data)

    def expect_only_zeros(self, limit, what):
        """Drain the rest: zero padding up to ``limit`` bytes is fine, anything else is not."""
        seen = 0
        while True:
            data = self.read_some(CHUNK)
            if not data:
                return
            if data.count(0) != len(data):
                raise BundleError("trailing garbage after {} (at offset {}): the stream holds "
                                  "more than one archive or is corrupt".format(
                                      what, self.consumed - len(data)))
            seen += len(data)
            if seen > limit:
                raise BundleError("more than {} bytes of padding after {}: refused".format(
                    limit, what))


class GzipSource(Source):
    """Gunzips (concatenated members allowed) without ever expanding more than CHUNK at once."""

    def __init__(self, reader, prefix=b"", read_ahead=False):
        super(GzipSource, self).__init__(reader, prefix, read_ahead)
        self._gz = _decompressor()
        self._input = b""
        self.compressed = 0

    def _feed(self):
        data = self._raw_read(CHUNK)
        self.compressed += len(data)
        return data

    def read_some(self, n):
        n = max(1, min(n, CHUNK))
        while True:
            if self._gz.eof:
                if not self._next_member():
                    return b""
            data = self._input or self._gz.unconsumed_tail or self._feed()
            self._input = b""
            if not data:
                out = self._gz.decompress(b"", n)  # output zlib may still hold
                if out:
                    self.consumed += len(out)
                    return out
                if self._gz.eof:
                    continue
                raise BundleError("gzip stream truncated (after {} compressed bytes) while "
                                  "reading {}".format(self.compressed, self.where),
                                  where=self.where)
            try:
                out = self._gz.decompress(data, n)
            except codec.errors() as err:
                raise BundleError("corrupt gzip data while reading {}: {}".format(
                    self.where, err), where=self.where)
            if out:
                self.consumed += len(out)
                return out

    def _next_member(self):
        """After one gzip member: start the next, or accept only zero padding."""
        rest = self._gz.unused_data
        while len(rest) < 2:
            more = self._feed()
            if not more:
                break
            rest += more
        if not rest:
            return False
        if rest[:2] == GZIP_MAGIC:
            self._gz = _decompressor()
            self._input = rest
            return True
        if rest.count(0) == len(rest):
            extra = 0
            while True:
                more = self._feed()
                if not more:
                    return False
                extra += len(more)
                if more.count(0) != len(more) or extra > CHUNK:
                    break
        raise BundleError("trailing garbage after the gzip stream (compressed offset about "
                          "{}): refused".format(self.compressed))


def open_source(reader, allow_gzip=True, read_ahead=True):
    """A Source for ``reader``, gunzipping when the stream starts with the gzip magic.

    With ``read_ahead`` the reader is read in a worker thread (see _ReadAhead);
    close the source when done.
    """
    head = b""
    while len(head) < 2:
        data = reader.read(2 - len(head))
        if not data:
            break
        head += data
    if allow_gzip and head[:2] == GZIP_MAGIC:
        return GzipSource(reader, head, read_ahead)
    return Source(reader, head, read_ahead)
