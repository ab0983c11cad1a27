"""Cutting a stream into parts and sending them N at a time with bounded memory."""

import hashlib
import threading
import time

import pytest

from vhdport.stores.base import StreamDigest
from vhdport.stores.multipart import PartSender, cut_parts, send_stream


def test_cut_parts_cuts_exact_sizes_and_hashes_everything():
    digest = StreamDigest()
    chunks = [b"a" * 7, b"", b"b" * 20, b"c" * 3]
    parts = list(cut_parts(chunks, 8, digest))
    assert [len(p) for p in parts] == [8, 8, 8, 6]
    assert b"".join(parts) == b"".join(chunks)
    assert digest.md5 == hashlib.md5(b"".join(chunks)).hexdigest()


def test_one_part_goes_as_a_single_object():
    calls = []
    digest, parts = send_stream([b"x" * 5], 8, lambda data: calls.append(("whole", data)),
                                lambda: calls.append("begin"), None)
    assert parts is None and calls == [("whole", b"x" * 5)] and digest.size == 5


def test_an_empty_stream_is_an_empty_object():
    calls = []
    send_stream([], 8, calls.append, None, None)
    assert calls == [b""]


def test_parts_in_flight_are_bounded_and_come_back_in_order():
    state = {"now": 0, "peak": 0}
    lock = threading.Lock()
    produced = []

    def send(part, data):
        with lock:
            state["now"] += 1
            state["peak"] = max(state["peak"], state["now"])
        time.sleep(0.02)
        with lock:
            state["now"] -= 1
        return hashlib.md5(data).hexdigest()

    def chunks():
        for i in range(20):
            produced.append(i)
            yield bytes([i]) * 10

    began = []
    digest, parts = send_stream(chunks(), 10, None, lambda: began.append(1), send, connections=3)
    assert began == [1]
    assert [p.number for p in parts] == list(range(1, 21))
    assert all(p.etag == p.md5 for p in parts)
    assert state["peak"] <= 3


def test_the_first_failure_stops_new_parts_and_propagates():
    sent = []

    def send(part, data):
        sent.append(part.number)
        if part.number == 2:
            raise RuntimeError("part 2 refused")
        time.sleep(0.01)
        return part.md5

    def chunks():
        for i in range(100):
            yield b"z" * 10

    with pytest.raises(RuntimeError, match="part 2 refused"):
        send_stream(chunks(), 10, None, lambda: None, send, connections=2)
    assert len(sent) < 20


def test_the_producer_blocks_while_the_window_is_full():
    release = threading.Event()

    def send(part, data):
        release.wait(5)
        return part.md5

    sender = PartSender(send, connections=2)
    sender.submit(1, b"a")
    sender.submit(2, b"b")
    started = time.monotonic()
    threading.Timer(0.2, release.set).start()
    sender.submit(3, b"c")  # waits for a free slot
    assert time.monotonic() - started >= 0.15
    assert [p.number for p in sender.finish()] == [1, 2, 3]
    sender.close()
