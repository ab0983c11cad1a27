"""Open s3:// and swift:// stores on the real Swift peer, and look at what they leave behind.

Each test takes a fresh bucket (= container) so that what it finds there is its own.
Leftovers are listed through the APIs themselves: S3 ListMultipartUploads, and the Swift
listing of the container and of ``<container>+segments`` (where s3api keeps parts).
"""

import uuid

from tests.peers.swift_server import swift_peer  # noqa: F401  (re-exported fixture)
from vhdport.stores.s3 import S3Store
from vhdport.stores.swift import SwiftApi, SwiftStore

MiB = 1 << 20
KINDS = ("s3", "swift")


def fresh_name(tag="t"):
    return "{}{}".format(tag, uuid.uuid4().hex[:12])


def open_store(kind, server, bucket, prefix="imgs", via=None, **options):
    """A store of ``kind`` on the peer (or through ``via``, a proxy URL in front of it)."""
    base = via or server.url
    options.setdefault("retry_delay", 0.01)
    options.setdefault("timeout", 20)
    options.setdefault("part_size", MiB)
    url = "{}://{}/{}".format(kind, bucket, prefix).rstrip("/")
    if kind == "s3":
        options.setdefault("environ", {})
        return S3Store(url, endpoint_url=base, access_key=server.user, secret_key=server.key,
                       region=server.region, **options)
    return SwiftStore(url, auth_url=base + "/auth/v1.0", user=server.user, key=server.key,
                      environ={}, **options)


def swift_view(server, container):
    return SwiftApi(container, "", auth_url=server.auth_url, user=server.user, key=server.key,
                    retry_delay=0.01)


def all_objects(server, container):
    """Every object name in ``container`` and ``container+segments`` (Swift API)."""
    names = []
    for name in (container, container + "+segments"):
        names += ["{}:{}".format(name, item["key"]) for item in swift_view(server, name).list("")]
    return names


def leftovers(server, bucket, keep=()):
    """Unfinished S3 multipart uploads and Swift segments (of our layout) in ``bucket``,
    except the segments of the active images whose ids are in ``keep``."""
    s3 = open_store("s3", server, bucket, prefix="")
    found = ["upload:" + token["upload_id"] for token, _ in s3.api.part_uploads()]
    for item in swift_view(server, bucket).list(""):
        if "/segments/" in "/" + item["key"] and not any(k in item["key"] for k in keep):
            found.append("segment:" + item["key"])
    return found


def data_objects(server, bucket):
    return [item["key"] for item in swift_view(server, bucket).list("")
            if item["key"].endswith(".data")]


def chunked(data, size=100000):
    return [data[i:i + size] for i in range(0, len(data), size)]
