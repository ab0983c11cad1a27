"""The Keystone harness itself: a catalog with Glance in it, and a Glance that trusts it."""

import json
import urllib.error
import urllib.request

import pytest

from tests.peers.keystone_server import (REGION, STORES, USER_PASSWORD,  # noqa: F401
                                         keystone, keystone_glance)

pytestmark = pytest.mark.peer


def _get(url, token=None):
    headers = {"X-Auth-Token": token} if token else {}
    try:
        with urllib.request.urlopen(urllib.request.Request(url, headers=headers),
                                    timeout=30) as r:
            return r.status, json.loads(r.read().decode())
    except urllib.error.HTTPError as e:
        return e.code, None


def test_catalog_names_the_glance_and_glance_checks_tokens(keystone, keystone_glance):  # noqa: F811
    token, doc = keystone.password_token("vhdport", USER_PASSWORD, "vhdport", with_catalog=True)
    images = [s for s in doc["token"]["catalog"] if s["type"] == "image"]
    assert [(e["url"], e["region_id"]) for e in images[0]["endpoints"]
            if e["interface"] == "public"] == [(keystone_glance.url, REGION)]
    assert _get(keystone_glance.url + "/v2/images")[0] == 401
    status, stores = _get(keystone_glance.url + "/v2/info/stores", token)
    assert status == 200
    assert sorted(s["id"] for s in stores["stores"]) == sorted(STORES)


def test_a_revoked_token_is_refused_at_once(keystone, keystone_glance):  # noqa: F811
    token, _ = keystone.password_token("vhdport", USER_PASSWORD, "vhdport")
    assert _get(keystone_glance.url + "/v2/images", token)[0] == 200
    keystone.revoke(token)
    assert _get(keystone_glance.url + "/v2/images", token)[0] == 401
