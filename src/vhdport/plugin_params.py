"""The XAPI call's arguments: ``args["params"]`` parsed, checked and turned into a store.

Why apart from :mod:`vhdport.plugin`: what a caller may send (the accepted keys, their
types, the object-store settings) and which of it is secret is one concern; the verbs and
the XML-RPC protocol are another.  Secrets are registered here, as they are parsed, so
:func:`redact` hides them wherever they would later appear.
"""

import json

from . import kernel
from .errors import PluginError
from .plugin_original import ORIGINAL_ENDPOINT_KEYS, is_original_call, store_url

REDACTED = "***"
SECRET_HEADER_WORDS = ("token", "auth", "secret", "password", "key", "cookie")

#: keys ``params`` may hold, per direction ("endpoint" is nova's name for ``store``)
_COMMON_KEYS = ("image_id", "store", "endpoint", "api_version", "auth_token", "extra_headers",
                "sr_path", "cacert", "insecure", "object_store")
DOWNLOAD_KEYS = frozenset(_COMMON_KEYS + ORIGINAL_ENDPOINT_KEYS + ("uuid_stack",
                                                                   "verify_contents",
                                                                   "image_format"))
UPLOAD_KEYS = frozenset(_COMMON_KEYS + ORIGINAL_ENDPOINT_KEYS + (
    "vdi_uuids", "vdi_uuid", "name", "properties", "compression_level", "os_type", "threads",
    "image_format"))


# --- secrets ----------------------------------------------------------------------------------

_secrets = set()


def add_secret(value):
    """Remember ``value`` so :func:`redact` hides it (short values would hide too much)."""
    if isinstance(value, str) and len(value) >= 4:
        _secrets.add(value)


def redact(text):
    """``text`` with every registered secret hidden, in every form (repr, %-encoded, ...)."""
    from .stores import redact_text
    return redact_text(str(text), sorted(_secrets, key=len, reverse=True), REDACTED)


# --- arguments --------------------------------------------------------------------------------


def _arg(args, name, fn, allow_empty=False):
    if not isinstance(args, dict) or name not in args:
        given = ", ".join(sorted(args)) if isinstance(args, dict) else type(args).__name__
        raise PluginError("{} needs argument {!r} (got: {}); pass it as args:{}=...".format(
            fn, name, given or "no arguments", name))
    value = args[name]
    if not isinstance(value, str) or (not value and not allow_empty):
        raise PluginError("{}: argument {!r} must be a non-empty string".format(fn, name))
    return value


def _looks_pickled(text):
    return text.startswith(("(dp", "(lp", "(S'", "\x80", "ccopy_reg", "}q", "]q"))


def parse_params(args, fn, allowed):
    """The JSON object in args["params"]; pickles (the old protocol) are refused, never loaded."""
    text = _arg(args, "params", fn)
    try:
        params = json.loads(text)
    except ValueError as exc:
        if _looks_pickled(text):
            raise PluginError("{}: params is a Python pickle (the old nova plugin protocol); "
                              "vhdport never unpickles -- send params as a JSON object string"
                              .format(fn))
        raise PluginError("{}: params is not valid JSON ({}); send a JSON object string like "
                          "'{{\"image_id\": ..., \"store\": ..., \"sr_path\": ...}}'"
                          .format(fn, exc))
    if not isinstance(params, dict):
        raise PluginError("{}: params must be a JSON object, got a JSON {}".format(
            fn, type(params).__name__))
    add_secret(params.get("auth_token"))
    headers = params.get("extra_headers")
    if isinstance(headers, dict):
        for key, value in headers.items():
            if any(word in str(key).lower() for word in SECRET_HEADER_WORDS):
                add_secret(value)
    unknown = sorted(set(params) - allowed)
    if unknown:
        raise PluginError("{}: unknown params key(s) {}; accepted: {}".format(
            fn, ", ".join(unknown), ", ".join(sorted(allowed))))
    return params


def _param(params, name, fn, kind=str, required=True, default=None):
    value = params.get(name)
    if value is None:
        if required:
            raise PluginError("{}: params needs {!r}".format(fn, name))
        return default
    if not isinstance(value, kind) or (kind is str and not value):
        raise PluginError("{}: params {!r} must be a non-empty {}".format(
            fn, name, getattr(kind, "__name__", "value")))
    return value


def _string_list(params, name, fn):
    value = params.get(name)
    if value is None:
        return None
    if not isinstance(value, list) or not all(isinstance(v, str) and v for v in value):
        raise PluginError("{}: params {!r} must be a list of uuid strings".format(fn, name))
    for item in value:
        kernel.check_uuid(item, "{} entry".format(name))
    return value


def _open_store(params, fn):
    from .stores import open_store
    original = is_original_call(params)
    if original:
        url = store_url(params, fn)
    else:
        url = params.get("store") or params.get("endpoint")
    if not isinstance(url, str) or not url:
        raise PluginError("{}: params needs 'store' (a local store path or a Glance endpoint "
                          "URL)".format(fn))
    # the original spoke Glance's v1 API; api_version still overrides it
    options = {"api_version": params.get("api_version", 1 if original else 2)}
    if params.get("auth_token") is not None:
        options["auth_token"] = _param(params, "auth_token", fn)
    headers = params.get("extra_headers")
    if headers is not None:
        if not isinstance(headers, dict) or not all(
                isinstance(k, str) and isinstance(v, str) for k, v in headers.items()):
            raise PluginError("{}: params 'extra_headers' must be an object of string "
                              "headers".format(fn))
        options["extra_headers"] = headers
    if params.get("cacert") is not None:
        options["cacert"] = _param(params, "cacert", fn)
    if params.get("insecure") is not None:
        options["insecure"] = _param(params, "insecure", fn, kind=bool)
    if params.get("object_store") is not None:
        options.update(_object_store_options(params, url, fn))
    return open_store(url, **options)


# --- s3:// and swift:// stores (issue #15) ---
#: keys of params["object_store"]; the secret ones are redacted like auth_token
OBJECT_STORE_KEYS = {"endpoint_url": str, "region": str, "access_key": str, "secret_key": str,
                     "session_token": str, "addressing": str, "auth_url": str, "user": str,
                     "key": str, "storage_url": str, "connections": int, "part_size": int}
OBJECT_STORE_SECRETS = ("secret_key", "session_token", "key")


def _object_store_options(params, url, fn):
    """params["object_store"]: S3 / Swift settings (dom0 has no AWS_* or ST_* environment)."""
    given = params["object_store"]
    if not isinstance(given, dict):
        raise PluginError("{}: params 'object_store' must be an object".format(fn))
    for secret in OBJECT_STORE_SECRETS:
        add_secret(given.get(secret))
    if not url.lower().startswith(("s3://", "swift://")):
        raise PluginError("{}: params 'object_store' applies to s3:// and swift:// stores "
                          "only".format(fn))
    unknown = sorted(set(given) - set(OBJECT_STORE_KEYS))
    if unknown:
        raise PluginError("{}: unknown object_store key(s) {}; accepted: {}".format(
            fn, ", ".join(unknown), ", ".join(sorted(OBJECT_STORE_KEYS))))
    for name, value in given.items():
        kind = OBJECT_STORE_KEYS[name]
        if isinstance(value, bool) or not isinstance(value, kind) or (kind is str and not value):
            raise PluginError("{}: object_store {!r} must be a non-empty {}".format(
                fn, name, "string" if kind is str else "integer"))
    return dict(given)
# --- end s3:// and swift:// ---


def describe(params):
    """``params`` fit for a log line: tokens and secret headers masked."""
    from .stores import safe_url
    shown = dict(params)
    for key in ("store", "endpoint"):
        if isinstance(shown.get(key), str):
            shown[key] = safe_url(shown[key])
    if shown.get("auth_token") is not None:
        shown["auth_token"] = REDACTED
    if isinstance(shown.get("object_store"), dict):
        shown["object_store"] = dict((k, REDACTED if k in OBJECT_STORE_SECRETS else v)
                                     for k, v in shown["object_store"].items())
    headers = shown.get("extra_headers")
    if isinstance(headers, dict):
        shown["extra_headers"] = dict(
            (k, REDACTED if any(w in str(k).lower() for w in SECRET_HEADER_WORDS) else v)
            for k, v in headers.items())
    return redact(json.dumps(shown, sort_keys=True))
