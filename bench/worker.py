"""One vhdport operation in its own process, so its peak RSS is its own.

    python -m bench.worker download nginx|glance URL ROOT IMAGE SR
    python -m bench.worker upload   nginx|glance URL ROOT SR LEAF NAME
    python -m bench.worker sparse   WORKDIR NGINX_URL NGINX_ROOT     (P6 steps)
    python -m bench.worker sparse-qcow2 WORKDIR NGINX_URL NGINX_ROOT (P6 steps, a QCOW2 VDI)

Prints one JSON line: {"seconds": .., "cpu_s": .., "maxrss_mib": .., "result": ..}
(cpu_s: user + system CPU seconds of the timed operation, all threads).
With BENCH_PROFILE=<file> the operation runs under cProfile (written to <file>).
"""

import json
import os
import resource
import sys
import time


def _store(kind, url, root):
    if kind == "nginx":
        from bench.plainhttp import PlainHttpStore
        return PlainHttpStore(url, root)
    from vhdport.stores.glance import GlanceStore
    return GlanceStore(url)


def _maxrss_mib():
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0


def _cpu():
    use = resource.getrusage(resource.RUSAGE_SELF)
    return use.ru_utime + use.ru_stime


_CPU = []


def _timed(func, *args):
    profile = os.environ.get("BENCH_PROFILE")
    cpu0 = _cpu()
    start = time.perf_counter()
    if profile:
        import cProfile
        prof = cProfile.Profile()
        result = prof.runcall(func, *args)
        prof.dump_stats(profile)
    else:
        result = func(*args)
    took = time.perf_counter() - start
    _CPU.append(_cpu() - cpu0)
    return took, result


def download(kind, url, root, image_id, sr):
    from vhdport import transfer
    store = _store(kind, url, root)
    return _timed(transfer.download, store, image_id, sr)


def upload(kind, url, root, sr, leaf, name):
    from vhdport import transfer
    store = _store(kind, url, root)
    return _timed(lambda: transfer.upload(sr, leaf, store, name=name))


def sparse(work, url, root):
    """P6: 2040 GiB virtual, 10 MiB allocated: create, upload, download, export."""
    from bench.plainhttp import PlainHttpStore
    from vhdport import transfer
    from vhdport.vhd import VhdFile, create_dynamic, export_raw
    from vhdport.vhd.disk import MAX_VIRTUAL_SIZE
    size = MAX_VIRTUAL_SIZE
    sr, sr2 = os.path.join(work, "sr"), os.path.join(work, "sr2")
    os.makedirs(sr)
    os.makedirs(sr2)
    leaf = "0badc0de-0000-4000-8000-000000000006"
    pieces = [(i * (size // 5) // (2 << 20) * (2 << 20), os.urandom(2 << 20)) for i in range(5)]
    steps = {}

    def create():
        path = os.path.join(sr, leaf + ".vhd")
        create_dynamic(path, size, uuid=leaf)
        with VhdFile.open(path, writable=True) as disk:
            for offset, data in pieces:
                disk.write_sectors(offset // 512, data)
            disk.flush()
    steps["create"] = _timed(create)[0]
    store = PlainHttpStore(url, root)
    steps["upload"] = _timed(lambda: transfer.upload(sr, leaf, store, name="sparse.tgz"))[0]
    image = "up/sparse.tgz"
    steps["download"], res = _timed(transfer.download, store, image, sr2)
    got = os.path.join(sr2, res["root"]["uuid"] + ".vhd")
    raw = os.path.join(work, "sparse.raw")
    steps["export"] = _timed(export_raw, got, raw)[0]
    ok = os.stat(raw).st_size == size
    with open(raw, "rb") as f:
        for offset, data in pieces:
            f.seek(offset)
            ok = ok and f.read(len(data)) == data
        f.seek(size // 2 + 12345)
        ok = ok and f.read(1 << 20) == bytes(1 << 20)
    allocated = os.stat(raw).st_blocks * 512
    return sum(steps.values()), {"steps": steps, "ok": ok, "raw_allocated": allocated,
                                 "bundle_size": os.stat(os.path.join(root, image)).st_size}


def sparse_qcow2(work, url, root):
    """P6 for QCOW2: 2 TiB virtual, 10 MiB allocated: create, upload, download, export."""
    from bench.plainhttp import PlainHttpStore
    from vhdport import disk, transfer
    fmt = disk.by_name("qcow2")
    size = 2 << 40
    sr, sr2 = os.path.join(work, "sr"), os.path.join(work, "sr2")
    os.makedirs(sr)
    os.makedirs(sr2)
    leaf = "0badc0de-0000-4000-8000-0000000000c6"
    pieces = [(i * (size // 5) // (2 << 20) * (2 << 20), os.urandom(2 << 20)) for i in range(5)]
    steps = {}

    def create():
        path = os.path.join(sr, fmt.file_name(leaf))
        fmt.create(path, size)
        with fmt.open_chain(path, writable=True) as chain:
            for offset, data in pieces:
                chain.write(offset, data)
            chain.flush()
    steps["create"] = _timed(create)[0]
    store = PlainHttpStore(url, root)
    steps["upload"] = _timed(lambda: transfer.upload(sr, leaf, store, name="sparse-qcow2.tgz"))[0]
    image = "up/sparse-qcow2.tgz"
    steps["download"], res = _timed(transfer.download, store, image, sr2)
    got = os.path.join(sr2, fmt.file_name(res["root"]["uuid"]))
    raw = os.path.join(work, "sparse-qcow2.raw")
    steps["export"] = _timed(fmt.export_raw, got, raw)[0]
    ok = os.stat(raw).st_size == size and store.get(image)["disk_format"] == "qcow2"
    with open(raw, "rb") as f:
        for offset, data in pieces:
            f.seek(offset)
            ok = ok and f.read(len(data)) == data
        f.seek(size // 2 + 12345)
        ok = ok and f.read(1 << 20) == bytes(1 << 20)
    allocated = os.stat(raw).st_blocks * 512
    return sum(steps.values()), {"steps": steps, "ok": ok, "raw_allocated": allocated,
                                 "bundle_size": os.stat(os.path.join(root, image)).st_size}


def main(argv):
    op = argv[0]
    if op == "download":
        seconds, result = download(*argv[1:])
    elif op == "upload":
        seconds, result = upload(*argv[1:])
    elif op == "sparse":
        seconds, result = sparse(*argv[1:])
    elif op == "sparse-qcow2":
        seconds, result = sparse_qcow2(*argv[1:])
    else:
        raise SystemExit("unknown operation {!r}".format(op))
    print(json.dumps({"seconds": seconds, "cpu_s": sum(_CPU), "maxrss_mib": _maxrss_mib(),
                      "result": result}))


if __name__ == "__main__":
    main(sys.argv[1:])
