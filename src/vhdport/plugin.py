"""The XAPI host plugin: ``xe host-call-plugin plugin=vhdport fn=<function> args:...``.

XAPI runs ``/etc/xapi.d/plugins/vhdport`` with one argument, an XML-RPC methodCall whose
params are ``(session_id, args)`` (args: a dict of strings), and reads one XML-RPC
methodResponse from stdout.  On a real dom0 the host's ``XenAPIPlugin.dispatch`` does
that; elsewhere (tests, ``python3 -I -S``) :func:`dispatch` speaks the same protocol on
the standard library.

Failures (``ErrorDescription``):

- a VhdportError: ``[err.code, message]``, e.g. ``["IMAGE_NOT_FOUND", "image ... not found in ..."]``
  (``PLUGIN_ARGS`` for bad or missing arguments);
- anything else: ``["XENAPI_PLUGIN_FAILURE", function, exception class name, message]``,
  exactly as XenAPIPlugin reports it;
- an unknown function: ``["UNKNOWN_XENAPI_PLUGIN_FUNCTION", name]``.

Auth tokens never reach logs or error descriptions: they are registered as secrets and
replaced by ``***`` wherever they would appear.
"""

import io
import json
import logging
import logging.handlers
import os
import re
import sys
import xmlrpc.client

from . import kernel
from .errors import PluginError, VhdportError
from .plugin_original import is_original_call, legacy_vdi_uuids
# the call's arguments and secrets; re-exported: callers and tests use them from here
from .plugin_params import (DOWNLOAD_KEYS, OBJECT_STORE_KEYS, OBJECT_STORE_SECRETS,  # noqa: F401
                            REDACTED, SECRET_HEADER_WORDS, UPLOAD_KEYS, _arg, _open_store,
                            _param, _string_list, add_secret, describe, parse_params, redact)

log = logging.getLogger("vhdport.plugin")

UNKNOWN_FUNCTION = "UNKNOWN_XENAPI_PLUGIN_FUNCTION"
PLUGIN_FAILURE = "XENAPI_PLUGIN_FAILURE"


# XML 1.0 allows only tab, LF, CR and U+0020.. (not surrogates, U+FFFE/U+FFFF), even escaped
_NOT_XML = re.compile("[\x00-\x08\x0b\x0c\x0e-\x1f\ud800-\udfff\ufffe\uffff]")


def _escape_char(match):
    code = ord(match.group(0))
    return "\\x{:02x}".format(code) if code < 0x100 else "\\u{:04x}".format(code)


def xml_safe(value):
    """``value`` (str, or lists/dicts of them) with what XML 1.0 forbids spelled as \\xNN text.

    Why: sr_path, a params key or a Glance error body may carry control characters or lone
    surrogates; quoted verbatim they make the reply not XML, or crash the final write.
    """
    if isinstance(value, str):
        return _NOT_XML.sub(_escape_char, value)
    if isinstance(value, (list, tuple)):
        return [xml_safe(item) for item in value]
    if isinstance(value, dict):
        return dict((xml_safe(k), xml_safe(v)) for k, v in value.items())
    return value


class _RedactingFilter(logging.Filter):
    """Replace every registered secret in a record's final message."""

    def filter(self, record):
        message = record.getMessage()
        cleaned = redact(message)
        if cleaned != message:
            record.msg, record.args = cleaned, None
        if record.exc_info and not record.exc_text:
            # a traceback's exception messages may hold a token too
            record.exc_text = redact(logging.Formatter().formatException(record.exc_info))
        return True


def setup_logging():
    """Log to syslog like other dom0 plugins (to stderr without /dev/log or with VHDPORT_LOG=stderr).

    stdout is reserved for the methodResponse, so nothing else may ever print there.
    """
    root = logging.getLogger("vhdport")
    if getattr(root, "_vhdport_plugin_handler", False):
        return
    handler = None
    if os.environ.get("VHDPORT_LOG") != "stderr" and os.path.exists("/dev/log"):
        try:
            handler = logging.handlers.SysLogHandler(
                address="/dev/log", facility=logging.handlers.SysLogHandler.LOG_DAEMON)
            handler.ident = "vhdport-plugin[{}]: ".format(os.getpid())
            handler.setFormatter(logging.Formatter("%(levelname)s %(name)s: %(message)s"))
        except OSError:
            handler = None
    if handler is None:
        handler = logging.StreamHandler(sys.stderr)
        handler.setFormatter(logging.Formatter(
            "%(asctime)s vhdport-plugin %(levelname)s %(name)s: %(message)s"))
    handler.addFilter(_RedactingFilter())
    root.addHandler(handler)
    root.setLevel(logging.INFO)
    root._vhdport_plugin_handler = True


# --- functions --------------------------------------------------------------------------------


def download_vhd(session, args, fn="download_vhd"):
    """Stream an image into the SR; Value: JSON {"root": {"uuid": leaf}, "chain": [...]}.

    A vhd/ovf bundle lands as a VHD chain, a qcow2/ovf bundle as a QCOW2 chain."""
    params = parse_params(args, fn, DOWNLOAD_KEYS)
    original = is_original_call(params)
    image_id = _param(params, "image_id", fn)
    sr_path = _param(params, "sr_path", fn)
    uuids = _string_list(params, "uuid_stack", fn)
    image_format = _param(params, "image_format", fn, required=False)
    verify_contents = _param(params, "verify_contents", fn, kind=bool, required=False,
                             default=True)
    if uuids:
        # the original popped uuid_stack from its end, leaf first: keep that mapping
        uuids = list(reversed(uuids))
    log.info("%s %s", fn, describe(params))
    from . import transfer
    with _open_store(params, fn) as store:
        result = transfer.download(store, image_id, sr_path, uuids=uuids,
                                   verify_contents=verify_contents,
                                   image_format=image_format)
    log.info("%s %s: leaf %s, chain %s", fn, image_id, result["root"]["uuid"],
             ",".join(result["chain"]))
    if original:
        return result["root"]["uuid"]  # the original's answer: the VDI's uuid, plain
    return json.dumps(result)


def download_vhd2(session, args):
    return download_vhd(session, args, fn="download_vhd2")


def upload_vhd(session, args, fn="upload_vhd"):
    """Upload a VDI's chain as a vhd/ovf or qcow2/ovf bundle (the chain's format); Value:
    JSON {"image_id": id} ("" to an original call, as the original answered).

    ``image_format`` "qcow2" or "raw" uploads one flat image (container bare) for KVM
    hosts instead; absent or "bundle": the bundle.

    ``vdi_uuids`` (leaf first, as nova sent it) or ``vdi_uuid`` names the leaf; the chain
    itself is read from the SR as it is now, since a coalesce may have shortened it.
    ``vdi_uuids`` as the original's {"snap": leaf, "image": parent} uploads the chain as
    snap.vhd / image.vhd, after checking the SR's chain still matches it.
    """
    params = parse_params(args, fn, UPLOAD_KEYS)
    original = is_original_call(params)
    sr_path = _param(params, "sr_path", fn)
    member_names = None
    if isinstance(params.get("vdi_uuids"), dict):
        leaf, member_names = legacy_vdi_uuids(params["vdi_uuids"], fn)
    elif _string_list(params, "vdi_uuids", fn):
        leaf = params["vdi_uuids"][0]
    elif params.get("vdi_uuid") is not None:
        leaf = kernel.check_uuid(_param(params, "vdi_uuid", fn), "vdi_uuid")
    else:
        raise PluginError("{}: params needs 'vdi_uuids' (leaf first) or 'vdi_uuid'".format(fn))
    image_id = _param(params, "image_id", fn, required=False)
    name = _param(params, "name", fn, required=False)
    properties = _param(params, "properties", fn, kind=dict, required=False)
    os_type = _param(params, "os_type", fn, required=False)
    if os_type is not None:
        # the original sent it as the image property os_type
        properties = dict(properties or {})
        properties.setdefault("os_type", os_type)
    level = params.get("compression_level", 6)
    if isinstance(level, bool) or not isinstance(level, int) or not 0 <= level <= 9:
        raise PluginError("{}: params 'compression_level' must be an integer 0-9, got {!r}"
                          .format(fn, level))
    threads = params.get("threads")
    if threads is not None and (isinstance(threads, bool) or not isinstance(threads, int)
                                or threads < 1):
        raise PluginError("{}: params 'threads' must be a positive integer (compression "
                          "threads; default: the usable cores), got {!r}".format(fn, threads))
    as_format = _param(params, "image_format", fn, required=False)
    log.info("%s %s", fn, describe(params))
    from . import transfer
    with _open_store(params, fn) as store:
        new_id = transfer.upload(sr_path, leaf, store, image_id=image_id, name=name,
                                 properties=properties, compression_level=level,
                                 member_names=member_names, threads=threads,
                                 as_format=as_format)
    log.info("%s VDI %s -> image %s", fn, leaf, new_id)
    if original:
        return ""  # the original's answer to an upload
    return json.dumps({"image_id": new_id})


def upload_vhd2(session, args):
    return upload_vhd(session, args, fn="upload_vhd2")


def copy_kernel_vdi(session, args):
    """Copy the first image-size bytes of a VDI to the kernel dir; Value: the file's path."""
    fn = "copy_kernel_vdi"
    vdi_uuid = _arg(args, "vdi-uuid", fn)
    image_size = _arg(args, "image-size", fn)
    sr_path = _arg(args, "sr-path", fn)
    path = kernel.copy_kernel(sr_path, vdi_uuid, image_size)
    log.info("%s: copied %s bytes of VDI %s to %s", fn, image_size, vdi_uuid, path)
    return path


def remove_kernel_ramdisk(session, args):
    """Remove a kernel and/or ramdisk from the kernel dir (either may be empty); Value: 'ok'."""
    fn = "remove_kernel_ramdisk"
    paths = [_arg(args, "kernel-file", fn, allow_empty=True),
             _arg(args, "ramdisk-file", fn, allow_empty=True)]
    removed = kernel.remove_kernel_files(paths)
    log.info("%s: removed %s", fn, ", ".join(removed) or "nothing (already gone)")
    return "ok"


FUNCTIONS = {
    "download_vhd": download_vhd,
    "download_vhd2": download_vhd2,
    "upload_vhd": upload_vhd,
    "upload_vhd2": upload_vhd2,
    "copy_kernel_vdi": copy_kernel_vdi,
    "remove_kernel_ramdisk": remove_kernel_ramdisk,
}


# --- protocol ---------------------------------------------------------------------------------


class Failure(Exception):
    """A failure to report as ``ErrorDescription = [code] + params`` (XenAPIPlugin's shape)."""

    def __init__(self, code, params):
        Exception.__init__(self)
        self.params = [code] + list(params)

    def __str__(self):
        return str(self.params)


def success_message(value):
    return xmlrpc.client.dumps(({"Status": "Success", "Value": xml_safe(value)},), "", True)


def failure_message(description):
    return xmlrpc.client.dumps(({"Status": "Failure",
                                 "ErrorDescription": xml_safe([redact(d) for d in description])},),
                               "", True)


def _read_call(text):
    """(methodname, session_id, args) of the one methodCall argument; Failure if it is not one."""
    try:
        params, methodname = xmlrpc.client.loads(text)
    except Exception as exc:  # expat, ValueError, TypeError...: any malformed input
        raise Failure(PLUGIN_FAILURE, ["dispatch", exc.__class__.__name__,
                                       "the argument is not an XML-RPC methodCall: {}".format(
                                           str(exc)[:200])])
    if not isinstance(methodname, str) or len(params) != 2:
        raise Failure(PLUGIN_FAILURE, ["dispatch", "ValueError",
                                       "expected a methodCall with params (session_id, args), "
                                       "got {} param(s)".format(len(params))])
    return methodname, params[0], params[1]


def dispatch(fn_table, argv=None, out=None):
    """XenAPIPlugin.dispatch on the standard library: same input, same output."""
    argv = sys.argv if argv is None else argv
    out = sys.stdout if out is None else out
    if len(argv) != 2:
        raise SystemExit("usage: {} <XML-RPC methodCall>  (XAPI runs this plugin; see "
                         "xe host-call-plugin)".format(argv[0] if argv else "vhdport"))
    try:
        methodname, session_id, args = _read_call(argv[1])
    except Failure as exc:
        _write_reply(out, failure_message(exc.params))
        return
    if methodname not in fn_table:
        _write_reply(out, failure_message([UNKNOWN_FUNCTION, methodname]))
        return
    try:
        result = fn_table[methodname](session_id, args)
        text = success_message(result)
    except SystemExit:
        raise
    except Failure as exc:
        text = failure_message(exc.params)
    except Exception as exc:
        text = failure_message([PLUGIN_FAILURE, methodname, exc.__class__.__name__, str(exc)])
    _write_reply(out, text)


def _write_reply(out, text):
    """Write the methodResponse; if the stream cannot encode it, a plain-ASCII copy instead."""
    try:
        out.write(text + "\n")
    except UnicodeError:
        out.write(text.encode("ascii", "xmlcharrefreplace").decode("ascii") + "\n")
    out.flush()


def wrap(name, fn, failure_cls):
    """``fn`` reporting errors as ``failure_cls`` (ours or XenAPIPlugin's), secrets removed."""

    def call(session, args):
        try:
            return xml_safe(fn(session, args))
        except VhdportError as exc:
            log.error("%s failed: %s: %s", name, exc.code, xml_safe(redact(exc)))
            raise failure_cls(exc.code, [xml_safe(redact(exc))])
        except (SystemExit, KeyboardInterrupt):
            raise
        except Exception as exc:
            log.exception("%s failed unexpectedly", name)
            raise failure_cls(PLUGIN_FAILURE, [name, exc.__class__.__name__,
                                               xml_safe(redact(exc))])

    call.__name__ = name
    return call


def _host_plugin_module():
    """XAPI's XenAPIPlugin on a real dom0, else None."""
    try:
        import XenAPIPlugin
    except Exception:  # absent, or a host copy this Python cannot load (e.g. Python 2 only)
        return None
    if not hasattr(XenAPIPlugin, "dispatch") or not hasattr(XenAPIPlugin, "Failure"):
        return None
    return XenAPIPlugin


def utf8_argv(argv):
    """argv as XAPI sent it: UTF-8 XML, whatever the locale.

    Python 3.6 started without a UTF-8 locale (LANG unset, as for a plugin) decodes argv as
    ASCII with surrogate escapes, which expat refuses; 3.7+ would coerce the locale to UTF-8.
    """
    return [os.fsencode(arg).decode("utf-8", "surrogateescape") for arg in argv]


def utf8_stdout():
    """The methodResponse is UTF-8: an ASCII stdout (3.6, C locale) must not fail to print it."""
    encoding = (getattr(sys.stdout, "encoding", None) or "").lower().replace("-", "")
    if encoding != "utf8" and hasattr(sys.stdout, "buffer"):
        sys.stdout.flush()
        sys.stdout = io.TextIOWrapper(sys.stdout.buffer, encoding="utf-8", line_buffering=True)


def main(argv=None):
    """Entry point of /etc/xapi.d/plugins/vhdport."""
    setup_logging()
    utf8_stdout()
    argv = utf8_argv(sys.argv if argv is None else argv)
    host = _host_plugin_module()
    failure_cls = host.Failure if host is not None else Failure
    table = dict((name, wrap(name, fn, failure_cls)) for name, fn in FUNCTIONS.items())
    if host is not None:
        sys.argv = argv
        host.dispatch(table)
    else:
        dispatch(table, argv)


if __name__ == "__main__":
    main()
