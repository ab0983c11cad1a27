"""The original glance plugin's calls, mapped onto vhdport's (issue #18).

nova's XenAPI ``glance`` plugin (2011) was called with ``params`` holding
``glance_host`` / ``glance_port`` (Glance's v1 API at http://host:port) and, on upload,
``vdi_uuids`` as ``{"snap": leaf, "image": its parent}``, bundled as ``snap.vhd`` /
``image.vhd``.  It answered download_vhd with the new VDI's uuid as a plain string and
upload_vhd with "".  A caller written for it keeps working: plugin.py asks
:func:`is_original_call` to pick the answer's shape, and uses the helpers here to find
the store and to name the bundle's members.  Only the encoding differs: params must be
JSON, never a pickle.
"""

import json
import re

from . import kernel
from .errors import PluginError

#: the original's way to name Glance; a call using any of them is an "original call"
ORIGINAL_ENDPOINT_KEYS = ("glance_host", "glance_port", "glance_use_ssl")
#: member names of the original's bundles, leaf first (as bundle.rules.LEGACY_ORDER)
LEGACY_MEMBERS = ("snap", "image", "base")
_HOST_NAME_RE = re.compile(r"^[A-Za-z0-9]([A-Za-z0-9.-]{0,251}[A-Za-z0-9])?$")
_HOST_IPV6_RE = re.compile(r"^\[?[0-9A-Fa-f:.]*:[0-9A-Fa-f:.]*\]?$")


def is_original_call(params):
    """True when ``params`` name Glance the original plugin's way (glance_host, glance_port).

    Such a caller was written for the original and reads its answers: the new VDI's
    uuid as a plain string from download_vhd, "" from upload_vhd.
    """
    return any(key in params for key in ORIGINAL_ENDPOINT_KEYS)


def store_url(params, fn):
    """http(s)://glance_host:glance_port, as the original built it (glance_use_ssl: https)."""
    if params.get("store") is not None or params.get("endpoint") is not None:
        raise PluginError("{}: params names Glance twice: glance_host/glance_port (the original "
                          "plugin's keys) and store/endpoint; give one or the other".format(fn))
    host = params.get("glance_host")
    if not isinstance(host, str) or not host:
        raise PluginError("{}: params needs 'glance_host' (a non-empty string) with "
                          "'glance_port'".format(fn))
    if not (_HOST_NAME_RE.match(host) or _HOST_IPV6_RE.match(host)):
        raise PluginError("{}: params 'glance_host' {!r} is not a host name or IP address"
                          .format(fn, host))
    if ":" in host and not host.startswith("["):
        host = "[{}]".format(host)
    port = params.get("glance_port")
    if isinstance(port, str) and port.isdigit():
        port = int(port)
    if isinstance(port, bool) or not isinstance(port, int) or not 0 < port < 65536:
        raise PluginError("{}: params 'glance_port' must be a TCP port number 1-65535 (the "
                          "original's glance_port), got {!r}".format(fn, port))
    use_ssl = params.get("glance_use_ssl", False)
    if not isinstance(use_ssl, bool):
        raise PluginError("{}: params 'glance_use_ssl' must be true or false, got {!r}".format(
            fn, use_ssl))
    return "{}://{}:{}".format("https" if use_ssl else "http", host, port)


def legacy_vdi_uuids(mapping, fn):
    """The original's ``vdi_uuids`` {"snap": leaf, "image": its parent} -> (leaf, namer).

    The namer checks the SR's chain (leaf first) against the mapping and gives the stems of
    its members' names as the original did: snap, image (and base below them).
    """
    unknown = sorted(set(mapping) - set(LEGACY_MEMBERS))
    if unknown:
        raise PluginError("{}: params 'vdi_uuids' as an object takes the keys 'snap' (the "
                          "snapshot VDI), 'image' (its parent) and 'base', not {}".format(
                              fn, ", ".join(repr(k) for k in unknown)))
    # the original skipped empty entries
    given = [(name, mapping[name]) for name in LEGACY_MEMBERS if mapping.get(name)]
    for name, value in given:
        kernel.check_uuid(value, "{}: params vdi_uuids[{!r}]".format(fn, name))
    if "image" not in dict(given):
        raise PluginError("{}: params 'vdi_uuids' needs 'image' (the base VDI), as the original "
                          "plugin did; got {}".format(fn, json.dumps(mapping, sort_keys=True)))
    first = LEGACY_MEMBERS.index(given[0][0])
    names = LEGACY_MEMBERS[first:]
    leaf = given[0][1]

    def member_names(chain):
        found = dict(zip(names, chain))
        for name, value in given:
            if found.get(name) != value:
                raise PluginError(
                    "{}: params vdi_uuids says {} is the {!r} VDI, but in the SR the chain of "
                    "{} is {} (leaf first); send the VDIs as they are now".format(
                        fn, value, name, leaf, " <- ".join(chain)))
        if len(chain) > len(names):
            raise PluginError(
                "{}: the chain of VDI {} is {} disks deep; the original's member names ({}) "
                "hold at most {}: send vdi_uuids as a list [leaf] to upload it as members "
                "0 .. {}".format(fn, leaf, len(chain), ", ".join(names), len(names),
                                 len(chain) - 1))
        return list(names[:len(chain)])

    return leaf, member_names
