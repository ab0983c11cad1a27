"""``--os-cloud`` / ``OS_*`` / clouds.yaml: Keystone through keystoneauth1.

Why openstacksdk's config loader and a keystoneauth1 session: they read clouds.yaml,
secure.yaml and the ``OS_*`` variables exactly as the ``openstack`` CLI does (password,
application credential, token ... auth types), and the session re-authenticates when
its token runs out.  The store gets a token source (stores.keystone_auth), never the
password, and asks it for a fresh token when Glance answers 401.
"""

import os
import warnings

from vhdport.cli.common import OperationFailed

OPENSTACK_HINT = "pip install 'vhdport[openstack]'"


class CloudAuth(object):
    """What a cloud gives a store: a token source, the image endpoint, the TLS setting."""

    def __init__(self, tokens, endpoint, verify):
        self.tokens, self.endpoint, self.verify = tokens, endpoint, verify


def env_cloud_configured():
    """True when OS_* variables describe a Keystone without --os-cloud (OS_AUTH_URL set)."""
    return bool(os.environ.get("OS_AUTH_URL"))


def _name(cloud):
    return "cloud {!r}".format(cloud) if cloud else "the OS_* environment"


def keystone_auth(cloud, region=None, interface=None):
    """Authenticate to Keystone for ``cloud`` (None: the OS_* variables only).

    ``region`` and ``interface`` (public, internal, admin) pick the image endpoint of the
    catalog; by default those of the cloud's configuration.
    """
    try:
        from openstack import exceptions as sdk_exceptions
        from openstack.config import loader
        from keystoneauth1 import exceptions as ks_exceptions
    except ImportError:
        raise OperationFailed("--os-cloud needs the OpenStack client libraries, which are not "
                              "installed; run: {}".format(OPENSTACK_HINT)) from None
    from vhdport.errors import StoreError
    from vhdport.stores import SessionTokens

    overrides = {}
    if region:
        overrides["region_name"] = region
    if interface:
        overrides["interface"] = interface
    try:
        with warnings.catch_warnings():   # openstacksdk's own deprecations are not ours
            warnings.simplefilter("ignore")
            config = loader.OpenStackConfig().get_one(cloud=cloud, **overrides)
            session = config.get_session()
        tokens = SessionTokens(session, _name(cloud))
        tokens.token()
        endpoint = session.get_endpoint(
            service_type="image", interface=config.get_interface("image") or "public",
            region_name=config.get_region_name("image") or None)
    except ks_exceptions.EndpointNotFound:
        endpoint = None
    except OperationFailed:
        raise
    except sdk_exceptions.ConfigException as exc:
        raise OperationFailed("{}: bad OpenStack client configuration: {}".format(
            _name(cloud), exc)) from None
    except StoreError as exc:   # from SessionTokens: already one clear line
        raise OperationFailed(str(exc)) from None
    except Exception as exc:  # config and keystoneauth raise many kinds; one clear line
        text = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
        raise OperationFailed("{}: keystone authentication failed ({}: {})".format(
            _name(cloud), type(exc).__name__, text)) from None
    if not endpoint:
        raise OperationFailed("{}: no image (Glance) endpoint in the service catalog "
                              "(interface {}, region {}); give one with --store".format(
                                  _name(cloud), config.get_interface("image") or "public",
                                  config.get_region_name("image") or "any"))
    return CloudAuth(tokens, endpoint, session.verify)
