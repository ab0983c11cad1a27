"""RangedReader: ordered reassembly, a bounded window, a broken range retried alone."""

import os
import threading
import time

import pytest

from vhdport.errors import IntegrityError, StoreError, TransientStoreError
from vhdport.stores.ranged import RangedReader

DATA = os.urandom(100003)


class Source(object):
    """fetch(start, end) over DATA, recording calls and in-flight peaks; faults by start."""

    def __init__(self, faults=None, delay=0.0):
        self.calls = []
        self.faults = dict(faults or {})   # start -> list of exceptions / "short" to hand out
        self.delay = delay
        self.inflight = self.peak = 0
        self.lock = threading.Lock()

    def __call__(self, start, end):
        with self.lock:
            self.calls.append(start)
            self.inflight += 1
            self.peak = max(self.peak, self.inflight)
        try:
            time.sleep(self.delay)
            pending = self.faults.get(start)
            if pending:
                fault = pending.pop(0)
                if fault == "short":
                    return DATA[start:end - 1]
                raise fault
            return DATA[start:end]
        finally:
            with self.lock:
                self.inflight -= 1


def reader(source, **kwargs):
    kwargs.setdefault("delay", lambda attempt: 0.0)
    return RangedReader(source, len(DATA), "test object", **kwargs)


@pytest.mark.parametrize("connections", [1, 2, 4, 7])
@pytest.mark.parametrize("read_size", [1, 999, 4096, 1 << 20])
def test_bytes_come_back_in_order(connections, read_size):
    with reader(Source(), connections=connections, block_size=4096) as r:
        out = []
        while True:
            data = r.read(read_size)
            if not data:
                break
            assert len(data) <= read_size
            out.append(data)
    assert b"".join(out) == DATA


def test_offset_and_read_all():
    with reader(Source(), offset=12345, block_size=1000) as r:
        assert r.read() == DATA[12345:]
    with reader(Source(), offset=len(DATA)) as r:
        assert r.read(10) == b""
    with pytest.raises(StoreError, match="offset 100004 is outside test object"):
        reader(Source(), offset=len(DATA) + 1)


def test_the_window_bounds_ranges_in_flight_and_buffered():
    source = Source(delay=0.01)
    with reader(source, connections=3, block_size=1000) as r:
        r.read(1)
        time.sleep(0.3)  # the reader stalls: workers must not run ahead
        assert len(source.calls) <= 3 + 1
        assert len(r._blocks) <= 3
        assert r.read() == DATA[1:]
    assert source.peak <= 3


def test_a_broken_range_is_fetched_again_alone():
    broken = 5 * 1000
    source = Source(faults={broken: [TransientStoreError("reset"), "short"]})
    with reader(source, connections=4, block_size=1000) as r:
        assert r.read() == DATA
    assert source.calls.count(broken) == 3
    assert all(source.calls.count(start) == 1 for start in set(source.calls) - {broken})


def test_a_range_that_keeps_failing_fails_the_stream_naming_it():
    source = Source(faults={2000: [TransientStoreError("reset")] * 10})
    with reader(source, connections=2, block_size=1000, retries=2) as r:
        with pytest.raises(TransientStoreError, match=r"bytes 2000-2999: reset .*gave up after 3"):
            r.read()


def test_a_permanent_error_is_not_retried():
    source = Source(faults={0: [StoreError("403 denied")]})
    with reader(source, block_size=1000) as r:
        with pytest.raises(StoreError, match="403 denied"):
            r.read()
    assert source.calls.count(0) == 1


def test_short_range_is_an_integrity_error_after_retries():
    source = Source(faults={0: ["short"] * 5})
    with reader(source, block_size=1000, retries=1) as r:
        with pytest.raises(TransientStoreError) as info:
            r.read()
    assert isinstance(info.value.__cause__, IntegrityError)


def test_close_stops_the_workers():
    source = Source(delay=0.01)
    r = reader(source, connections=4, block_size=100)
    r.read(10)
    r.close()
    assert all(not t.is_alive() for t in threading.enumerate() if t.name.startswith(
        "vhdport-range-"))
