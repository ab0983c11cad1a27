"""Image stores, one class per URL scheme; :func:`open_store` picks the class for a --store URL.

``SCHEMES`` is the registry: URL scheme -> factory(url, **options).  A new store is a
module in this package plus one entry here; nothing above ``stores`` names a store.
The contract every store meets is documented in :mod:`vhdport.stores.base`.
"""

from urllib.parse import unquote, urlsplit, urlunsplit

from vhdport import errors
from vhdport.stores.base import ACTIVE, QUEUED, Store, StreamDigest, UploadResult
from vhdport.stores.http_bounds import redact_text
from vhdport.stores.keystone_auth import SessionTokens

__all__ = ["open_store", "safe_url", "redact_text", "register", "SCHEMES", "SessionTokens", "Store",
           "StreamDigest", "UploadResult", "ACTIVE", "QUEUED"]


def safe_url(url):
    """``url`` without user:password@ or query string, fit for messages and logs."""
    try:
        parts = urlsplit(url)
        host = parts.netloc.rpartition("@")[2]
        return urlunsplit((parts.scheme, host, parts.path, "", ""))
    except ValueError:
        return "<unparsable URL>"


def _local_path(url, **_options):
    """A plain directory path: a local store; it takes no options."""
    from vhdport.stores.local import LocalStore
    return LocalStore(url)


def _local_file_url(url, **_options):
    from vhdport.stores.local import LocalStore
    parts = urlsplit(url)
    if parts.netloc not in ("", "localhost") or not parts.path:
        raise errors.StoreError("{}: a file URL must name a local absolute path, like "
                                "file:///srv/images".format(safe_url(url)))
    return LocalStore(unquote(parts.path), display=url)


def _glance(url, **options):
    """Glance over http(s): API v2 unless ``api_version`` says 1."""
    version = options.get("api_version")
    if version is not None:
        from vhdport.stores.glance_common import api_version_of
        if api_version_of(version) == 1:
            from vhdport.stores.glance_v1 import GlanceV1Store
            return GlanceV1Store(url, **options)
    from vhdport.stores.glance import GlanceStore
    return GlanceStore(url, **options)


def _s3(url, **options):
    from vhdport.stores.s3 import S3Store
    return S3Store(url, **options)


def _swift(url, **options):
    from vhdport.stores.swift import SwiftStore
    return SwiftStore(url, **options)


#: URL scheme ("" for a bare path) -> factory(url, **options); see register()
SCHEMES = {"": _local_path, "file": _local_file_url, "http": _glance, "https": _glance,
           "s3": _s3, "swift": _swift}
#: what --store accepts, for messages
SUPPORTED = ("a directory path, file:///path, http(s)://host:port (Glance), s3://bucket/prefix "
             "or swift://container/prefix")


def register(scheme, factory):
    """Make ``open_store`` build ``factory(url, **options)`` for URLs of ``scheme``."""
    SCHEMES[scheme.lower()] = factory


def open_store(url, **options):
    """The store behind ``url``, built by the factory its scheme is registered with.

    ``options`` (token, TLS and timeout settings, ...) go to the store; a local store has
    none and ignores them, so callers can pass the same options whatever the URL.
    """
    if not isinstance(url, str) or not url.strip():
        raise errors.StoreError("no image store given; use " + SUPPORTED)
    scheme, sep, _ = url.partition("://")
    factory = SCHEMES.get(scheme.lower() if sep else "")
    if factory is None:
        raise errors.StoreError("{}: unsupported image store scheme {!r}; use {}".format(
            safe_url(url), scheme.lower(), SUPPORTED))
    return factory(url, **options)


# GlanceStore(url, api_version=1) finds its v1 subclass among the loaded ones
from vhdport.stores import glance_v1  # noqa: E402,F401  pylint: disable=wrong-import-position
