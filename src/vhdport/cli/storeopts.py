"""The store options every store-using command shares, in one decorator.

``@store_options`` adds --store, --api-version, --os-auth-token, --cacert, --insecure,
--os-cloud, --timeout and --retries, opens the store (``vhdport.stores.open_store``)
before the command runs, passes it as ``store`` and closes it afterwards.  Tokens are
never printed.
"""

import functools

import click

from vhdport.cli.common import OperationFailed, describe_exception

OPENSTACK_HINT = "pip install 'vhdport[openstack]'"


class CloudAuth(object):
    """Token, image endpoint and TLS setting found through openstacksdk for a named cloud."""

    def __init__(self, token, endpoint, verify):
        self.token, self.endpoint, self.verify = token, endpoint, verify


def cloud_auth(cloud):
    """Authenticate to keystone for ``cloud`` (clouds.yaml / OS_* variables) via openstacksdk."""
    try:
        import openstack
    except ImportError:
        raise OperationFailed("--os-cloud needs the OpenStack client libraries, which are not "
                              "installed; run: {}".format(OPENSTACK_HINT)) from None
    try:
        conn = openstack.connect(cloud=cloud)
        token = conn.auth_token
        endpoint = conn.endpoint_for("image")
        verify = getattr(conn.session, "verify", True)
    except Exception as exc:  # openstacksdk raises many kinds; report them in one line
        raise OperationFailed("cloud {!r}: keystone authentication failed ({}: {})".format(
            cloud, type(exc).__name__, exc)) from None
    if not endpoint:
        raise OperationFailed("cloud {!r}: no image (Glance) endpoint in the service "
                              "catalog; give one with --store".format(cloud))
    return CloudAuth(token, endpoint, verify)


def open_store_from_options(store, api_version=2, os_auth_token=None, cacert=None,
                            insecure=False, os_cloud=None, timeout=None, retries=None):
    """Open the store the options describe (a LocalStore or GlanceStore)."""
    from vhdport.stores import open_store

    token = os_auth_token
    url = store
    if os_cloud:
        auth = cloud_auth(os_cloud)
        token = token or auth.token
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
    if cacert:
        options["cacert"] = cacert
    if timeout is not None:
        options["timeout"] = timeout
    if retries is not None:
        options["retries"] = retries
    return open_store(url, **options)


_OPTIONS = (
    click.option("--store", metavar="STORE",
                 help="Image store: a directory, file:///path, or http(s)://glance:9292."),
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
                      "(needs vhdport[openstack]); the image endpoint comes from the catalog."),
    click.option("--timeout", type=click.FloatRange(min=0.1), metavar="SECONDS",
                 help="Give up on a silent or too slow store after this long [default: 60]."),
    click.option("--retries", type=click.IntRange(min=0), metavar="N",
                 help="Retry a failed store request this often [default: 5; a refused "
                      "connection at most 3 times, 1 s apart]."),
)

_NAMES = ("store", "api_version", "os_auth_token", "cacert", "insecure", "os_cloud",
          "timeout", "retries")
_PASS_THROUGH = (click.exceptions.ClickException, click.exceptions.Exit,
                 click.exceptions.Abort, KeyboardInterrupt, BrokenPipeError)


def _secrets_of(settings, opened):
    secrets = [settings.get("os_auth_token")]
    endpoint = getattr(opened, "_http", None)
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


def store_options(func):
    """Decorate a command function that takes ``store`` (an open Store)."""

    @functools.wraps(func)
    def wrapper(*args, **kwargs):
        from vhdport.errors import StoreError

        settings = {name: kwargs.pop(name) for name in _NAMES}
        settings["api_version"] = int(settings["api_version"])
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
            from vhdport.stores.http_bounds import redact_text
            text = describe_exception(exc)
            clean = redact_text(text, _secrets_of(settings, opened))
            debug = click.get_current_context().find_root().params.get("debug")
            if isinstance(exc, StoreError) and "could not be verified" in clean and not debug:
                raise OperationFailed(tls_hint(clean, settings["cacert"])) from None
            if clean == text:
                raise
            raise OperationFailed(clean) from None

    for option in reversed(_OPTIONS):
        wrapper = option(wrapper)
    return wrapper
