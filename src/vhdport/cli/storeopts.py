"""The store options every store-using command shares, in one decorator.

``@store_options`` adds --store, --api-version, --os-auth-token, --cacert, --insecure,
--os-cloud, --os-region-name, --os-interface, --timeout, --retries and, for s3:// and
swift:// stores, --endpoint-url, --region, --connections and --part-size, opens the store
(``vhdport.stores.open_store``) before the command runs, passes it as ``store`` and
closes it afterwards.  Tokens are never printed.
"""

import functools

import click

from vhdport.cli.common import OperationFailed, describe_exception

OPENSTACK_HINT = "pip install 'vhdport[openstack]'"


class CloudAuth(object):
    """Token, endpoint and TLS setting found through openstacksdk for a named cloud (Swift;
    Glance goes through cli/cloud.py, whose tokens renew themselves)."""

    def __init__(self, token, endpoint, verify):
        self.token, self.endpoint, self.verify = token, endpoint, verify


def cloud_auth(cloud, service="image"):
    """Authenticate to keystone for ``cloud`` (clouds.yaml / OS_* variables) via openstacksdk;
    the endpoint is that of ``service`` ("image" for Glance, "object-store" for Swift)."""
    try:
        import openstack
    except ImportError:
        raise OperationFailed("--os-cloud needs the OpenStack client libraries, which are not "
                              "installed; run: {}".format(OPENSTACK_HINT)) from None
    try:
        conn = openstack.connect(cloud=cloud)
        token = conn.auth_token
        endpoint = conn.endpoint_for(service)
        verify = getattr(conn.session, "verify", True)
    except Exception as exc:  # openstacksdk raises many kinds; report them in one line
        raise OperationFailed("cloud {!r}: keystone authentication failed ({}: {})".format(
            cloud, type(exc).__name__, exc)) from None
    if not endpoint:
        raise OperationFailed("cloud {!r}: no {} ({}) endpoint in the service catalog; give one "
                              "with --store".format(cloud, service, {"image": "Glance"}.get(
                                  service, "Swift")))
    return CloudAuth(token, endpoint, verify)


#: URL schemes of the object stores, which take the --endpoint-url ... --part-size options
OBJECT_SCHEMES = ("s3", "swift")


def _object_store_options(url, options, object_options, token, os_cloud):
    """Add the object-store options for an s3:// or swift:// URL (Glance takes none of them)."""
    scheme = url.partition("://")[0].lower() if "://" in url else ""
    given = {k: v for k, v in (object_options or {}).items() if v is not None}
    if scheme not in OBJECT_SCHEMES:
        extra = sorted(given)
        if extra:
            raise click.UsageError("--{} only apply to s3:// and swift:// stores".format(
                ", --".join(k.replace("_", "-") for k in extra)))
        return options
    options.pop("api_version", None)
    options.update(given)
    if scheme == "swift" and os_cloud:
        auth = cloud_auth(os_cloud, "object-store")
        options["auth_token"], options["storage_url"] = auth.token, auth.endpoint
    elif scheme == "swift" and token:
        options["auth_token"] = token
    else:
        options.pop("auth_token", None)
    return options


def open_store_from_options(store, api_version=2, os_auth_token=None, cacert=None,
                            insecure=False, os_cloud=None, timeout=None, retries=None,
                            object_options=None, os_region_name=None, os_interface=None):
    """Open the store the options describe (local, Glance, S3 or Swift).

    For Glance, Keystone is used with --os-cloud, or when OS_AUTH_URL is set and neither
    --store nor a token is given; the store then gets a token source that renews its token.
    """
    from vhdport.cli.cloud import env_cloud_configured, keystone_auth
    from vhdport.stores import open_store

    token = os_auth_token
    url = store
    tokens = None
    if os_cloud and url and url.lower().startswith("swift://"):
        options = {"insecure": insecure}
        if cacert:
            options["cacert"] = cacert
        for name, value in (("timeout", timeout), ("retries", retries)):
            if value is not None:
                options[name] = value
        return open_store(url, **_object_store_options(url, options, object_options, token,
                                                        os_cloud))
    if os_cloud or (not store and not token and env_cloud_configured()):
        auth = keystone_auth(os_cloud, region=os_region_name, interface=os_interface)
        if not token:
            tokens = auth.tokens
        url = url or auth.endpoint
        if cacert is None and isinstance(auth.verify, str):
            cacert = auth.verify
        if auth.verify is False:
            insecure = True
    if not url:
        raise click.UsageError("no image store: give --store (a directory, file:// or "
                               "http(s):// URL) or --os-cloud")
    options = {"api_version": api_version, "insecure": insecure}
    if token:
        options["auth_token"] = token
    elif tokens is not None and url.lower().startswith(("http://", "https://")):
        options["token_source"] = tokens
    if cacert:
        options["cacert"] = cacert
    if timeout is not None:
        options["timeout"] = timeout
    if retries is not None:
        options["retries"] = retries
    return open_store(url, **_object_store_options(url, options, object_options, token, None))


_OPTIONS = (
    click.option("--store", metavar="STORE",
                 help="Image store: a directory, file:///path, http(s)://glance:9292, "
                      "s3://bucket/prefix or swift://container/prefix."),
    click.option("--api-version", type=click.Choice(["1", "2"]), default="2", show_default=True,
                 help="Glance API version (http(s) stores)."),
    click.option("--os-auth-token", envvar="OS_AUTH_TOKEN", show_envvar=True, metavar="TOKEN",
                 help="Keystone token sent as X-Auth-Token (never printed)."),
    click.option("--cacert", type=click.Path(exists=True, dir_okay=False),
                 help="CA bundle to verify the store's TLS certificate."),
    click.option("--insecure", is_flag=True,
                 help="Do not verify the store's TLS certificate (unsafe)."),
    click.option("--os-cloud", envvar="OS_CLOUD", show_envvar=True, metavar="CLOUD",
                 help="Authenticate through keystone with this clouds.yaml entry "
                      "(needs vhdport[openstack]); the image endpoint comes from the catalog. "
                      "Without it, OS_AUTH_URL and the other OS_* variables are used."),
    click.option("--os-region-name", envvar="OS_REGION_NAME", show_envvar=True,
                 metavar="REGION", help="Region of the image endpoint in the catalog."),
    click.option("--os-interface", envvar="OS_INTERFACE", show_envvar=True,
                 type=click.Choice(["public", "internal", "admin"]),
                 help="Interface of the image endpoint in the catalog [default: public]."),
    click.option("--timeout", type=click.FloatRange(min=0.1), metavar="SECONDS",
                 help="Give up on a silent or too slow store after this long [default: 60]."),
    click.option("--retries", type=click.IntRange(min=0), metavar="N",
                 help="Retry a failed store request this often [default: 5; a refused "
                      "connection at most 3 times, 1 s apart]."),
)

_NAMES = ("store", "api_version", "os_auth_token", "cacert", "insecure", "os_cloud",
          "os_region_name", "os_interface", "timeout", "retries")
_PASS_THROUGH = (click.exceptions.ClickException, click.exceptions.Exit,
                 click.exceptions.Abort, KeyboardInterrupt, BrokenPipeError)


def _secrets_of(settings, opened):
    secrets = [settings.get("os_auth_token")]
    # Glance stores hold their Endpoint; s3:// and swift:// stores hold it in their api
    endpoint = getattr(opened, "_http", None) or getattr(getattr(opened, "api", None), "_http",
                                                         None)
    if endpoint is not None:
        secrets += endpoint.secrets()
    return [s for s in secrets if s]


def _say_created(opened):
    if getattr(opened, "created", False):
        click.echo("vhdport: created a new image store at {}".format(opened.root), err=True)


_LIBRARY_TLS_HINT = "; pass cacert="


def tls_hint(message, cacert):
    """The library's TLS failure message with its hint in CLI terms (--cacert, --insecure).

    The library speaks keyword arguments (cacert=..., insecure=True); a CLI user needs the
    options.  When the host name is what failed, a CA file would not help: say what would.
    """
    head = message.split(_LIBRARY_TLS_HINT, 1)[0]
    lowered = head.lower()
    if "mismatch" in lowered or "not valid for" in lowered or "doesn't match" in lowered:
        return ("{}; the certificate is valid but issued for another host name: give --store "
                "the host name the certificate names".format(head))
    if cacert:
        return ("{}; the certificate is not signed by the CA in --cacert {}: give the CA "
                "bundle that issued it".format(head, cacert))
    return ("{}; for a private CA give its bundle with --cacert FILE (--insecure turns "
            "verification off: only for tests)".format(head))


def _positive(ctx, param, value):
    if value is not None and value < 1:
        raise click.BadParameter("must be at least 1")
    return value


def _object_options():
    from vhdport.cli.common import SIZE
    return (
        click.option("--endpoint-url", metavar="URL",
                     help="S3 service URL (Ceph RGW, Swift s3api, MinIO ...); default "
                          "AWS_ENDPOINT_URL or AWS itself."),
        click.option("--region", metavar="REGION",
                     help="S3 region (default AWS_REGION / AWS_DEFAULT_REGION / us-east-1)."),
        click.option("--connections", type=int, callback=_positive, metavar="N",
                     help="Parallel connections of s3:// and swift:// transfers [default: 4]."),
        click.option("--part-size", type=SIZE, metavar="SIZE",
                     help="Multipart / segment size of s3:// and swift:// uploads "
                          "[default: 16M; S3 wants at least 5M]."),
    )


_OBJECT_NAMES = ("endpoint_url", "region", "connections", "part_size")


def store_options(func):
    """Decorate a command function that takes ``store`` (an open Store)."""

    @functools.wraps(func)
    def wrapper(*args, **kwargs):
        from vhdport.errors import StoreError

        settings = {name: kwargs.pop(name) for name in _NAMES}
        settings["api_version"] = int(settings["api_version"])
        settings["object_options"] = {name: kwargs.pop(name) for name in _OBJECT_NAMES}
        opened = None
        try:
            with open_store_from_options(**settings) as opened:
                try:
                    return func(*args, store=opened, **kwargs)
                finally:
                    _say_created(opened)
        except _PASS_THROUGH:
            raise
        except Exception as exc:
            # a token must not show in any form (raw, repr, %-encoded ...) in the error line
            from vhdport.stores import redact_text
            text = describe_exception(exc)
            clean = redact_text(text, _secrets_of(settings, opened))
            debug = click.get_current_context().find_root().params.get("debug")
            if isinstance(exc, StoreError) and "could not be verified" in clean and not debug:
                raise OperationFailed(tls_hint(clean, settings["cacert"])) from None
            if clean == text:
                raise
            raise OperationFailed(clean) from None

    for option in reversed(_OPTIONS + _object_options()):
        wrapper = option(wrapper)
    return wrapper
