"""Image stores, one class per URL scheme; :func:`open_store` picks the class for a --store URL."""

from urllib.parse import unquote, urlsplit, urlunsplit

from vhdport import errors

SUPPORTED = ("a directory path, file:///path, http(s)://host:port (Glance), s3://bucket/prefix "
             "or swift://container/prefix")


def safe_url(url):
    """``url`` without user:password@ or query string, fit for messages and logs."""
    try:
        parts = urlsplit(url)
        host = parts.netloc.rpartition("@")[2]
        return urlunsplit((parts.scheme, host, parts.path, "", ""))
    except ValueError:
        return "<unparsable URL>"


def open_store(url, **options):
    """The store behind ``url``: a path or file:// URL is a LocalStore, http(s):// a GlanceStore.

    ``options`` (token, TLS and timeout settings, ...) go to remote stores; a local store has
    none and ignores them, so callers can pass the same options whatever the URL.
    """
    if not isinstance(url, str) or not url.strip():
        raise errors.StoreError("no image store given; use " + SUPPORTED)
    scheme, sep, _ = url.partition("://")
    scheme = scheme.lower()
    if not sep:
        from vhdport.stores.local import LocalStore
        return LocalStore(url)
    if scheme == "file":
        from vhdport.stores.local import LocalStore
        parts = urlsplit(url)
        if parts.netloc not in ("", "localhost") or not parts.path:
            raise errors.StoreError("{}: a file URL must name a local absolute path, like "
                                    "file:///srv/images".format(safe_url(url)))
        return LocalStore(unquote(parts.path), display=url)
    if scheme in ("http", "https"):
        from vhdport.stores.glance import GlanceStore
        return GlanceStore(url, **options)
    # --- object stores (issue #15) ---
    if scheme == "s3":
        from vhdport.stores.s3 import S3Store
        return S3Store(url, **options)
    if scheme == "swift":
        from vhdport.stores.swift import SwiftStore
        return SwiftStore(url, **options)
    # --- end object stores ---
    raise errors.StoreError("{}: unsupported image store scheme {!r}; use {}".format(
        safe_url(url), scheme, SUPPORTED))
