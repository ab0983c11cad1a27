"""SessionTokens: a GlanceStore fed by a real keystoneauth1 session, against a real Keystone
and a Glance behind keystonemiddleware (tests/peers/keystone_server.py)."""

import hashlib
import random

import pytest

from tests.peers.keystone_server import USER_PASSWORD, keystone, keystone_glance  # noqa: F401
from vhdport.errors import AuthError, StoreError
from vhdport.stores.glance import GlanceStore
from vhdport.stores.keystone_auth import SessionTokens

pytestmark = pytest.mark.peer

ks_identity = pytest.importorskip("keystoneauth1.identity")
ks_session = pytest.importorskip("keystoneauth1.session")


def session_for(keystone, password=USER_PASSWORD):  # noqa: F811
    auth = ks_identity.v3.Password(
        auth_url=keystone.url, username="vhdport", password=password,
        user_domain_id="default", project_name="vhdport", project_domain_id="default")
    return ks_session.Session(auth=auth)


@pytest.fixture
def tokens(keystone):  # noqa: F811
    return SessionTokens(session_for(keystone), "test cloud")


def chunks(data, size=256 * 1024, during=None):
    for i in range(0, len(data), size):
        yield data[i:i + size]
        if i == 0 and during is not None:
            during()


def test_token_revoked_mid_upload_is_renewed_once(keystone, keystone_glance, tokens):  # noqa: F811
    """The upload was accepted with the old token; the read-back needs (and gets) a new one."""
    store = GlanceStore(keystone_glance.url, token_source=tokens, retry_delay=0.01)
    data = random.Random(7).getrandbits(8 * (3 << 20)).to_bytes(3 << 20, "little")
    image = store.create("revoked mid-way", container_format="bare")["id"]
    first = tokens.token()
    sent = store.put(image, chunks(data, during=lambda: keystone.revoke(first)),
                     size=len(data))
    assert tokens.renewals == 1 and tokens.token() != first
    assert sent.md5 == hashlib.md5(data).hexdigest()
    with store.open(image) as stream:
        assert stream.read() == data
    store.delete(image)


def test_token_revoked_before_download_is_renewed(keystone, keystone_glance, tokens):  # noqa: F811
    store = GlanceStore(keystone_glance.url, token_source=tokens, retry_delay=0.01)
    data = random.Random(8).getrandbits(8 << 20).to_bytes(1 << 20, "little")
    image = store.create("download after revoke", container_format="bare")["id"]
    store.put(image, chunks(data), size=len(data))
    keystone.revoke(tokens.token())
    with store.open(image) as stream:
        assert stream.read() == data
    assert tokens.renewals == 1
    store.delete(image)


def test_a_401_with_a_fresh_token_is_an_auth_error(keystone, keystone_glance, tokens):  # noqa: F811
    """Renewal is tried once: a token Glance keeps refusing is not retried forever."""
    revoked = set()

    class Revoking(SessionTokens):
        def token(self):
            token = super().token()
            if token not in revoked:
                keystone.revoke(token)
                revoked.add(token)
            return token

    revoking = Revoking(session_for(keystone), "revoking cloud")
    store = GlanceStore(keystone_glance.url, token_source=revoking, retry_delay=0.01)
    with pytest.raises(AuthError) as caught:
        list(store.list())
    assert "401" in str(caught.value) and revoking.renewals == 1 and len(revoked) == 2


def test_wrong_password_names_the_cloud(keystone):  # noqa: F811
    tokens = SessionTokens(session_for(keystone, password="wrong-pw-81f2"), "cloud 'x'")
    with pytest.raises(StoreError, match=r"cloud 'x': keystone authentication failed "
                                         r"\(Unauthorized") as caught:
        tokens.token()
    assert "wrong-pw-81f2" not in str(caught.value)
    assert tokens.secrets() == []
