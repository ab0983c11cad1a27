"""The shared store options: TLS failures explained in CLI terms (--cacert, --insecure)."""

import pytest

from tests.cli.helpers import assert_failed_cleanly, run
from tests.peers.proxies import TlsProxy, make_self_signed_cert
from vhdport.cli.storeopts import tls_hint

LIBRARY = ("TLS certificate of https://127.0.0.1:1 could not be verified ({}); pass "
           "cacert=<CA bundle file> for a private CA (insecure=True only for tests)")


def test_hint_without_cacert_names_the_options():
    text = tls_hint(LIBRARY.format("[SSL: CERTIFICATE_VERIFY_FAILED] self-signed certificate"),
                    None)
    assert "--cacert FILE" in text and "--insecure" in text
    assert "cacert=" not in text and "insecure=True" not in text


def test_hint_with_cacert_and_a_host_name_mismatch_suggests_no_ca_file():
    text = tls_hint(LIBRARY.format("[SSL: CERTIFICATE_VERIFY_FAILED] IP address mismatch, "
                                   "certificate is not valid for '127.0.0.1'"), "/ca.pem")
    assert "issued for another host name" in text
    assert "--cacert" not in text and "private CA" not in text and "CA bundle" not in text


def test_hint_with_cacert_and_an_untrusted_chain_names_the_given_file():
    text = tls_hint(LIBRARY.format("[SSL: CERTIFICATE_VERIFY_FAILED] unable to get local issuer"),
                    "/ca.pem")
    assert "not signed by the CA in --cacert /ca.pem" in text and "cacert=" not in text


@pytest.fixture
def tls_endpoint(tmp_path, glance_401):
    """(url, trusted cert for another name, cert for 127.0.0.1): TLS proxies before a 401."""
    port = int(glance_401.url.rsplit(":", 1)[1])
    (tmp_path / "other").mkdir()
    (tmp_path / "own").mkdir()
    other, other_key = make_self_signed_cert(str(tmp_path / "other"), host="glance.example",
                                             names="DNS:glance.example")
    proxy = TlsProxy(port, other, other_key)
    try:
        yield proxy.url, other
    finally:
        proxy.stop()


def test_cli_tls_failures_speak_options(tls_endpoint):
    """Was: `pass cacert=<CA bundle file> ... (insecure=True only for tests)` in the CLI, and a
    CA file suggested even when --cacert was given and the host name failed."""
    url, other = tls_endpoint
    line = assert_failed_cleanly(run("image", "ls", "--store", url), "could not be verified",
                                 "--cacert FILE")
    assert "cacert=" not in line and "insecure=True" not in line
    line = assert_failed_cleanly(run("image", "ls", "--store", url, "--cacert", other),
                                 "IP address mismatch", "issued for another host name")
    assert "--cacert FILE" not in line and "cacert=" not in line
