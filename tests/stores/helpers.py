"""Helpers of the Glance store tests (v2, v1, faults): payloads, chunking, a store factory."""

import random

from vhdport.stores.glance import GlanceStore


def payload(size, seed=1):
    return random.Random(seed).randbytes(size)


def chunks_of(data, size=256 * 1024):
    for i in range(0, len(data), size):
        yield data[i:i + size]


def read_all(stream, block=1 << 20):
    parts = []
    while True:
        data = stream.read(block)
        if not data:
            return b"".join(parts)
        parts.append(data)


def make_store(server, **options):
    options.setdefault("retry_delay", 0.01)
    options.setdefault("timeout", 20)
    if server.token:
        options.setdefault("auth_token", server.token)
    url = options.pop("url", server.url)
    return GlanceStore(url, **options)
