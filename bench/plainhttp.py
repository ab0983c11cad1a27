"""A plain HTTP server (nginx) seen as a vhdport image store, for the benchmark only.

vhdport's stores speak Glance; the benchmark also wants a server that is never the
bottleneck.  This adapter reuses vhdport's own HTTP pieces -- ``Endpoint`` (chunked
PUT whose last chunk goes out only on success) and ``HttpDownload`` (ranged,
resuming GET) -- so what is timed is vhdport's pipeline, not a stand-in.
Image ids are paths under the server root; a ``<path>.json`` sidecar next to a
bundle holds the record Glance would keep (size, md5, sha512).
"""

import json
import os

from vhdport.stores.base import ACTIVE, QUEUED, Store, new_record
from vhdport.stores.http import Endpoint
from vhdport.stores.http_download import HttpDownload


def write_sidecar(root, image_id, size, md5, sha512, disk_format="vhd"):
    with open(os.path.join(root, image_id + ".json"), "w") as f:
        json.dump({"size": size, "checksum": md5, "os_hash_algo": "sha512",
                   "os_hash_value": sha512, "disk_format": disk_format}, f)


class PlainHttpStore(Store):
    """``url`` serves ``root``; PUT is allowed under ``up/``."""

    def __init__(self, url, root, chunk_size=1 << 20):
        self._http = Endpoint(url, retries=2, timeout=120)
        self.root = root
        self.display = url
        self.chunk_size = chunk_size
        self._formats = {}     # image id -> disk_format given at create, for the sidecar

    def get(self, image_id):
        path = os.path.join(self.root, image_id)
        record = new_record(id=image_id, name=image_id, disk_format="vhd",
                            container_format="ovf")
        if not os.path.exists(path):
            record["status"] = QUEUED
            return record
        record.update(status=ACTIVE, size=os.stat(path).st_size)
        try:
            with open(path + ".json") as f:
                record.update(json.load(f))
        except FileNotFoundError:
            pass
        return record

    def open(self, image_id, offset=0):
        return HttpDownload(self._http, "/" + image_id, image_id, offset=offset,
                            block_size=self.chunk_size)

    def create(self, name, disk_format="vhd", container_format="ovf", properties=None,
               visibility=None):
        self._formats["up/" + name] = disk_format
        return new_record(id="up/" + name, name=name, status=QUEUED,
                          disk_format=disk_format, container_format=container_format)

    def put(self, image_id, chunks, size=None):
        _, sent = self._http.upload("PUT", "/" + image_id, chunks,
                                    headers={"Content-Type": "application/octet-stream"},
                                    expect=(201, 204), image_id=image_id, size=size)
        # what Glance would record; the read-back check still compares the stored size
        write_sidecar(self.root, image_id, sent.size, sent.md5, sent.sha512,
                      self._formats.get(image_id, "vhd"))
        return sent

    def update(self, image_id, name=None, properties=None, remove=()):
        """Properties go into the sidecar, where Glance would keep them beside the hashes
        (uploads record the content digest this way)."""
        sidecar = os.path.join(self.root, image_id + ".json")
        with open(sidecar) as f:
            record = json.load(f)
        if name is not None:
            record["name"] = name
        record.update(properties or {})
        for key in remove:
            record.pop(key, None)
        with open(sidecar, "w") as f:
            json.dump(record, f)
        return self.get(image_id)

    def delete(self, image_id):
        self._http.request("DELETE", "/" + image_id, expect=(204, 404), image_id=image_id)
