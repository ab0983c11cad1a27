"""Informative rows for the object stores: upload and download of the bench chain through
Swift's S3 API (s3://) and its own API (swift://), 1 vs 4 connections.

A real all-in-one Swift from tests/peers runs on this machine (loopback, storage in
/dev/shm), so the numbers show the client's and Swift's CPU cost, not a network's.
"""

import os
import shutil
import sys
import tempfile
import time

from bench import gen, report

MIB = 1 << 20
PART_SIZE = 16 * MIB
REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _start_swift():
    if REPO not in sys.path:
        sys.path.insert(0, REPO)
    from tests.peers.swift_server import SwiftServer, _storage_parent
    workdir = tempfile.mkdtemp(prefix="vhdport-bench-swift-", dir=_storage_parent())
    try:
        return SwiftServer(workdir).start()
    except BaseException:
        shutil.rmtree(workdir, ignore_errors=True)
        raise


def _store(kind, server, bucket, connections):
    from vhdport.stores.s3 import S3Store
    from vhdport.stores.swift import SwiftStore
    url = "{}://{}/bench".format(kind, bucket)
    if kind == "s3":
        return S3Store(url, endpoint_url=server.url, access_key=server.user,
                       secret_key=server.key, region=server.region, environ={},
                       connections=connections, part_size=PART_SIZE)
    return SwiftStore(url, auth_url=server.auth_url, user=server.user, key=server.key,
                      environ={}, connections=connections, part_size=PART_SIZE)


def run(bench, info):
    """Add the O1 (upload) and O2 (download) rows to ``bench`` for the chain ``info``."""
    from vhdport import transfer
    try:
        server = _start_swift()
    except Exception as e:  # Swift not installed / will not start: say so, go on
        bench.skip("Object store rows (O1/O2) skipped: {}".format(e))
        return
    try:
        for kind, api in (("s3", "S3 API (s3api)"), ("swift", "Swift API")):
            for connections in (1, 4):
                store = _store(kind, server, "bench{}{}".format(kind, connections), connections)
                start = time.perf_counter()
                image = transfer.upload(info["sr"], info["leaf"], store, name="bench")
                t_up = time.perf_counter() - start
                size = store.get(image)["size"]
                sr = bench.fresh("objstore-sr")
                start = time.perf_counter()
                result = transfer.download(store, image, sr)
                t_down = time.perf_counter() - start
                leaf = os.path.join(sr, result["root"]["uuid"] + ".vhd")
                bench.check("O2 {} {} conn download reads as the reference".format(
                    kind, connections), gen.chain_digest(leaf) == info["digest"])
                shutil.rmtree(sr)
                store.delete(image)
                for op, oid, seconds in (("upload to", "O1", t_up),
                                         ("download from", "O2", t_down)):
                    bench.row(id=oid, what="{} Swift through the {}, {} connection{}, {} MiB "
                              "parts, {:.0f} MiB bundle".format(
                                  op, api, connections, "s" if connections > 1 else "",
                                  PART_SIZE // MIB, size / MIB),
                              vhdport="{:.2f} s, {:.0f} MiB/s of bundle, {:.0f} MiB/s virtual"
                              .format(seconds, report.rate(size, seconds),
                                      report.rate(info["virtual"], seconds)),
                              baseline="-", target="(informative)", met=None)
    finally:
        server.stop()
        shutil.rmtree(server.workdir, ignore_errors=True)
