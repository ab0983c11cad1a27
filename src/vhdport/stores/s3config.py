"""Where an ``s3://`` store's endpoint, region and credentials come from, as the AWS SDKs do it.

Order, first found wins: explicit options; ``AWS_ACCESS_KEY_ID`` / ``AWS_SECRET_ACCESS_KEY``
/ ``AWS_SESSION_TOKEN``; the profile (``AWS_PROFILE`` or ``default``) in the shared
credentials file (``AWS_SHARED_CREDENTIALS_FILE``, ``~/.aws/credentials``) and then in the
config file (``AWS_CONFIG_FILE``, ``~/.aws/config``).  Region: option, ``AWS_REGION``,
``AWS_DEFAULT_REGION``, the profile's ``region``, ``us-east-1``.  Endpoint: option,
``AWS_ENDPOINT_URL_S3``, ``AWS_ENDPOINT_URL``, the profile's ``endpoint_url``, AWS itself.
"""

import configparser
import os
import urllib.parse

from vhdport.errors import StoreError
from vhdport.stores.sigv4 import Credentials

DEFAULT_REGION = "us-east-1"


class S3Settings(object):
    """Everything needed to talk to one bucket; ``credentials`` hides its secret in repr()."""

    def __init__(self, bucket, prefix, endpoint_url, region, credentials, addressing):
        self.bucket, self.prefix = bucket, prefix
        self.endpoint_url, self.region = endpoint_url, region
        self.credentials, self.addressing = credentials, addressing

    def __repr__(self):
        return "S3Settings(bucket={!r}, prefix={!r}, endpoint={!r}, region={!r}, {!r})".format(
            self.bucket, self.prefix, self.endpoint_url, self.region, self.credentials)


def parse_url(url, scheme):
    """(bucket or container, prefix ending in '/' or '') from ``<scheme>://name/prefix``."""
    parts = urllib.parse.urlsplit(url)
    if parts.scheme.lower() != scheme or not parts.netloc or "@" in parts.netloc \
            or parts.query or parts.fragment:
        raise StoreError("{!r} is not a {scheme}:// store URL; write {scheme}://NAME/PREFIX "
                         "(credentials never go into the URL)".format(
                             "{}://{}".format(parts.scheme, parts.netloc.rpartition("@")[2]),
                             scheme=scheme))
    name = parts.netloc
    prefix = urllib.parse.unquote(parts.path).strip("/")
    if any(segment in (".", "..") for segment in prefix.split("/")):
        raise StoreError("{}://{}/{}: '.' and '..' are not allowed in the prefix".format(
            scheme, name, prefix))
    return name, (prefix + "/" if prefix else "")


def _profile_sections(path, profile, config_style):
    parser = configparser.ConfigParser(interpolation=None)
    try:
        with open(path) as f:
            parser.read_file(f)
    except FileNotFoundError:
        return {}
    except (OSError, configparser.Error) as exc:
        raise StoreError("cannot read AWS settings from {}: {}".format(path, exc))
    names = [profile]
    if config_style and profile != "default":
        names = ["profile " + profile, profile]
    for name in names:
        if parser.has_section(name):
            return dict(parser.items(name))
    return {}


def resolve(url, endpoint_url=None, region=None, access_key=None, secret_key=None,
            session_token=None, profile=None, addressing="auto", environ=None, home=None):
    """The :class:`S3Settings` for ``s3://bucket/prefix`` (see the module docstring)."""
    env = os.environ if environ is None else environ
    home = home or env.get("HOME") or os.path.expanduser("~")
    bucket, prefix = parse_url(url, "s3")
    profile_name = profile or env.get("AWS_PROFILE") or env.get("AWS_DEFAULT_PROFILE") \
        or "default"
    creds_file = env.get("AWS_SHARED_CREDENTIALS_FILE") or os.path.join(home, ".aws",
                                                                         "credentials")
    config_file = env.get("AWS_CONFIG_FILE") or os.path.join(home, ".aws", "config")
    from_creds = _profile_sections(creds_file, profile_name, False)
    from_config = _profile_sections(config_file, profile_name, True)
    if profile and not (from_creds or from_config):
        raise StoreError("AWS profile {!r} not found in {} or {}".format(
            profile, creds_file, config_file))

    def setting(name):
        return from_creds.get(name) or from_config.get(name)

    if access_key or secret_key:
        key_id, secret, token = access_key, secret_key, session_token
    elif env.get("AWS_ACCESS_KEY_ID") and env.get("AWS_SECRET_ACCESS_KEY"):
        key_id, secret = env["AWS_ACCESS_KEY_ID"], env["AWS_SECRET_ACCESS_KEY"]
        token = session_token or env.get("AWS_SESSION_TOKEN") or env.get("AWS_SECURITY_TOKEN")
    else:
        key_id, secret = setting("aws_access_key_id"), setting("aws_secret_access_key")
        token = session_token or setting("aws_session_token")
    if not key_id or not secret:
        raise StoreError("no S3 credentials for s3://{}: set AWS_ACCESS_KEY_ID and "
                         "AWS_SECRET_ACCESS_KEY, or AWS_PROFILE with a profile in {}".format(
                             bucket, creds_file))
    region = region or env.get("AWS_REGION") or env.get("AWS_DEFAULT_REGION") \
        or setting("region") or DEFAULT_REGION
    endpoint = endpoint_url or env.get("AWS_ENDPOINT_URL_S3") or env.get("AWS_ENDPOINT_URL") \
        or setting("endpoint_url")
    if addressing not in ("auto", "path", "virtual"):
        raise StoreError("S3 addressing style {!r}: use auto, path or virtual".format(addressing))
    if not endpoint:
        endpoint = "https://s3.{}.amazonaws.com".format(region)
        if addressing == "auto":
            # AWS wants virtual hosts; a dotted bucket would not match the TLS wildcard
            addressing = "path" if "." in bucket else "virtual"
    elif addressing == "auto":
        addressing = "path"  # Ceph RGW, Swift's s3api, MinIO: path style works everywhere
    parts = urllib.parse.urlsplit(endpoint)
    if parts.scheme not in ("http", "https") or not parts.hostname or "@" in parts.netloc:
        raise StoreError("S3 endpoint {!r} is not an http(s)://host[:port] URL".format(
            "{}://{}".format(parts.scheme, parts.netloc.rpartition("@")[2])))
    return S3Settings(bucket, prefix, endpoint.rstrip("/"), region,
                      Credentials(key_id, secret, token), addressing)
