"""What Glance API v2 (glance.py) and v1 (glance_v1.py) share: names, paths, properties.

Kept apart so that neither flavour imports the other's private helpers.
"""

import urllib.parse

from vhdport.errors import StoreError

#: attributes Glance v2 owns; every other top-level key of an image is a custom property
CORE_ATTRIBUTES = frozenset((
    "id", "name", "status", "visibility", "protected", "checksum", "owner", "size",
    "virtual_size", "min_ram", "min_disk", "disk_format", "container_format",
    "created_at", "updated_at", "tags", "self", "file", "schema", "os_hash_algo",
    "os_hash_value", "os_hidden", "direct_url", "locations", "stores",
))


def api_version_of(value):
    """1 or 2 from 1, "2", "v2", 2.0 ...; anything else is refused."""
    try:
        version = int(float(str(value).lstrip("vV")))
    except ValueError:
        version = None
    if version not in (1, 2):
        raise StoreError("unsupported Glance API version {!r}; use 2 (default) or 1".format(value))
    return version


def image_path(image_id, version=2):
    """The API path of an image; ids that could climb the URL path are refused."""
    if not isinstance(image_id, str) or not image_id or image_id in (".", ".."):
        raise StoreError("bad image id {!r}".format(image_id))
    return "/v{}/images/{}".format(version, urllib.parse.quote(image_id, safe=""))


def custom_properties(properties):
    """Custom properties as str -> str; Glance's own attributes are refused."""
    out = {}
    for key, value in (properties or {}).items():
        if not isinstance(key, str) or not key:
            raise StoreError("bad property name {!r}".format(key))
        if key in CORE_ATTRIBUTES:
            raise StoreError("{!r} is a Glance image attribute, not a custom property; "
                             "pick another name".format(key))
        out[key] = value if isinstance(value, str) else str(value)
    return out
