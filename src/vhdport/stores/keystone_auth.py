"""Keystone tokens for the HTTP stores, from a keystoneauth1 session.

Why a token *source* and not a token: a transfer of a large image can outlive the
token it started with.  The session hands out a fresh token when the old one is near
its end; when Glance refuses one anyway (401: revoked, or expired earlier than
announced) the store asks :meth:`SessionTokens.renew` once and repeats the request.

This module needs no third-party import itself (dom0 core stays stdlib): it is given
a keystoneauth1 ``Session`` (built by the CLI's ``--os-cloud`` path) and only calls
its methods.
"""

import logging

from vhdport.errors import StoreError

log = logging.getLogger("vhdport.stores.keystone_auth")


class SessionTokens(object):
    """Tokens of a keystoneauth1 session (password, application credential, ...).

    ``describe`` names the cloud in messages.  Every token handed out is remembered
    (only to mask it in messages; see :meth:`secrets`).
    """

    def __init__(self, session, describe="keystone"):
        self._session = session
        self.describe = describe
        self._seen = []
        self.renewals = 0

    def __repr__(self):
        return "SessionTokens({!r})".format(self.describe)

    def token(self):
        """A token valid now (keystoneauth re-authenticates when the last one runs out)."""
        try:
            token = self._session.get_token()
        except Exception as exc:  # keystoneauth raises many kinds; one clear line
            raise StoreError("{}: keystone authentication failed ({}: {})".format(
                self.describe, type(exc).__name__, exc)) from None
        if not token:
            raise StoreError("{}: keystone gave no token".format(self.describe))
        if token not in self._seen:
            self._seen.append(token)
            del self._seen[:-8]
        return token

    def renew(self):
        """Forget the current token (the store was refused with it) and get another."""
        auth = getattr(self._session, "auth", None)
        if auth is not None and hasattr(auth, "invalidate"):
            auth.invalidate()
        self.renewals += 1
        log.info("%s: token refused (HTTP 401); authenticated again", self.describe)
        return self.token()

    def secrets(self):
        """The tokens handed out so far (for redaction; never for display)."""
        return list(self._seen)
