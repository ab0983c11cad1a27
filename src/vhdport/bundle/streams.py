"""Byte sources over a store stream: plain, or gunzipped on the fly, in bounded pieces.

Decompression is capped per call (``max_length``) and the inflating thread holds at
most INFLATE_AHEAD chunks, so a gzip bomb never expands more than a few chunks ahead
of what the tar reader has asked for.
"""

import queue
import threading

from ..errors import BundleError
from . import codec

CHUNK = 1 << 20
GZIP_MAGIC = b"\x1f\x8b"
#: chunks the read-ahead thread may hold ahead of the consumer (bounded memory)
READ_AHEAD = 4
#: inflated chunks the inflating thread may hold ahead (it is the slow stage: 2 suffice)
INFLATE_AHEAD = 2


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

    def __init__(self, reader, name="bundle-read-ahead", depth=READ_AHEAD):
        self._reader = reader
        self._queue = queue.Queue(depth)
        self._stop = threading.Event()
        self._done = False
        self._thread = threading.Thread(target=self._work, name=name, daemon=True)
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
        while True:
            try:
                data, err = self._queue.get(timeout=0.1)
                break
            except queue.Empty:
                if self._stop.is_set():   # closed under a consumer in another thread
                    return b""
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

    def __init__(self, reader, prefix=b"", read_ahead=False, thread_name="bundle-read-ahead",
                 depth=READ_AHEAD):
        self._reader = _ReadAhead(reader, thread_name, depth) if read_ahead else reader
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


class _GzipProblem(Exception):
    """Bad gzip data; the message is finished by the consumer, who knows what it is reading
    (the inflating thread runs ahead of it)."""

    def __init__(self, template, *args):
        super(_GzipProblem, self).__init__(template)
        self.template, self.args_ = template, args

    def message(self, where):
        return self.template.format(*self.args_, where=where)


class _Inflater(object):
    """``read(n)``: up to ``n`` gunzipped bytes of ``compressed`` (a Source; concatenated
    members allowed), never expanding more than ``n`` at once; b"" at the end."""

    def __init__(self, compressed):
        self._src = compressed
        self._gz = _decompressor()
        self._input = b""
        self.compressed = 0

    def _feed(self):
        data = self._src.read_some(CHUNK)
        self.compressed += len(data)
        return data

    def read(self, n):
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
                    return out
                if self._gz.eof:
                    continue
                raise _GzipProblem("gzip stream truncated (after {} compressed bytes) while "
                                   "reading {where}", self.compressed)
            try:
                out = self._gz.decompress(data, n)
            except codec.errors() as err:
                raise _GzipProblem("corrupt gzip data while reading {where}: {}", err)
            if out:
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
        raise _GzipProblem("trailing garbage after the gzip stream (compressed offset about "
                           "{}): refused", self.compressed)


class GzipSource(Source):
    """Gunzips the stream; with ``read_ahead`` in a pipeline of two threads.

    One thread reads the store (and hashes what it reads, see transfer), another
    inflates up to INFLATE_AHEAD chunks ahead of the caller (a gzip bomb expands at
    most that far), and the caller parses and writes: hashlib, zlib and file
    writes release the GIL, so the stages use every core while memory stays flat.
    """

    def __init__(self, reader, prefix=b"", read_ahead=False):
        self._compressed = Source(reader, prefix, read_ahead)
        self._inflater = _Inflater(self._compressed)
        super(GzipSource, self).__init__(self._inflater, b"", read_ahead,
                                         thread_name="bundle-inflate", depth=INFLATE_AHEAD)

    @property
    def compressed(self):
        """Compressed bytes taken from the stream so far."""
        return self._inflater.compressed

    def _raw_read(self, n):
        try:
            return super(GzipSource, self)._raw_read(n)
        except _GzipProblem as problem:
            raise BundleError(problem.message(self.where), where=self.where)

    def close(self):
        # the compressed side first: its reads then end, so the inflating thread stops
        self._compressed.close()
        super(GzipSource, self).close()


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
