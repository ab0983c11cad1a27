"""R10: secrets in every representation, and plugin replies that are always XML (#11 5-6).

- a token holding CR, LF or another control character is refused before anything is sent,
  by the library, the CLI and the plugin, with a message that does not quote it;
- a hostile endpoint echoing the token back raw, repr'd, as bytes repr, %-encoded or JSON
  escaped: no form of it reaches an error, a log line, CLI output or a plugin reply;
- control characters and lone surrogates (sr_path, params keys, Glance error bodies) and
  malformed methodCalls: the plugin still answers one well-formed methodResponse.

Every token here carries a random hex core; every representation contains that core, so
"the core appears nowhere" covers every form at once.
"""

import json
import logging
import os
import secrets
import subprocess
import sys
import traceback
import urllib.parse
import xmlrpc.client
from http.server import BaseHTTPRequestHandler

import pytest

from tests.peers.tiny_http import LocalHttpServer
from tests.hostile.conftest import put_image
from tests.plugin.xapi import SESSION, call, params_args, python3
from vhdport.errors import StoreError, VhdportError
from vhdport.stores.glance import GlanceStore
from vhdport.stores.local import LocalStore

CLI = os.path.join(os.path.dirname(sys.executable), "vhdport")
IMAGE = "6b5a3f3e-1111-4222-8333-944445555666"


@pytest.fixture(scope="module")
def installed_plugin(tmp_path_factory):
    from vhdport.plugin_install import install
    plugin, _pyz = install(str(tmp_path_factory.mktemp("plugin-root")))
    return plugin


def _core():
    return secrets.token_hex(12)


def _assert_core_absent(core, *texts):
    for text in texts:
        assert core not in text, "secret leaked: ...{}...".format(
            text[max(0, text.find(core) - 100):text.find(core) + 40])


def _all_text(err):
    parts = [str(err), repr(err), repr(getattr(err, "fields", {}))]
    parts += traceback.format_exception(type(err), err, err.__traceback__)
    return "\n".join(parts)


def _log_text(records):
    return "\n".join(r.getMessage() + (r.exc_text or "") for r in records)


def _run_cli(args, env_extra=None, timeout=60):
    env = dict(os.environ)
    env.pop("OS_AUTH_TOKEN", None)
    env.update(env_extra or {})
    return subprocess.run([CLI] + args, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                          universal_newlines=True, env=env, timeout=timeout)


class Endpoint(LocalHttpServer):
    """A Glance impostor on 127.0.0.1 answering every request with ``answer(handler)``."""

    def __init__(self, answer):
        self.requests = 0
        owner = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.0"

            def _any(self):
                owner.requests += 1
                status, ctype, body = answer(self)
                self.send_response(status)
                self.send_header("Content-Type", ctype)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            do_GET = do_POST = do_PUT = do_DELETE = do_PATCH = _any

            def log_message(self, *args):
                pass

        super().__init__(Handler)


# --- tokens with control characters ------------------------------------------------------

BAD_TOKENS = {
    "trailing LF": "tok-{}\n",
    "trailing CRLF": "tok-{}\r\n",
    "LF inside (header injection)": "tok-{}\nX-Injected: 1",
    "NUL": "tok-{}\x00",
    "DEL and ESC": "tok-\x1b{}\x7f",
}


@pytest.mark.parametrize("name", sorted(BAD_TOKENS))
def test_token_with_control_characters_is_refused_unquoted_by_the_library(
        name, caplog, reliability_case):
    case = reliability_case("R10", "token with {}: library".format(name),
                            "StoreError 'control character' before sending; token in no form")
    caplog.set_level(logging.DEBUG)
    core = _core()
    token = BAD_TOKENS[name].format(core)
    with Endpoint(lambda h: (200, "application/json", b'{"images": []}')) as endpoint:
        texts = []
        for make in (lambda: GlanceStore(endpoint.url, auth_token=token, retries=0),
                     lambda: GlanceStore(endpoint.url, extra_headers={"X-Auth-Token": token},
                                         retries=0)):
            with pytest.raises(StoreError, match="control character") as err:
                list(make().list())
            texts.append(_all_text(err.value))
        assert endpoint.requests == 0
    _assert_core_absent(core, _log_text(caplog.records), *texts)
    case.detail = str(err.value)


@pytest.mark.parametrize("name", ["trailing LF", "trailing CRLF", "DEL and ESC"])
def test_token_with_control_characters_is_refused_unquoted_by_the_cli(name, tmp_path,
                                                                      reliability_case):
    case = reliability_case("R10", "token with {}: CLI option and OS_AUTH_TOKEN".format(name),
                            "exit 1, 'control character'; token in no form on stdout/stderr")
    core = _core()
    token = BAD_TOKENS[name].format(core)
    with Endpoint(lambda h: (200, "application/json", b'{"images": []}')) as endpoint:
        for args, env in ((["image", "ls", "--store", endpoint.url, "--os-auth-token", token],
                           None),
                          (["image", "ls", "--store", endpoint.url], {"OS_AUTH_TOKEN": token})):
            proc = _run_cli(args, env)
            assert proc.returncode == 1, (proc.stdout, proc.stderr)
            assert "control character" in proc.stderr
            _assert_core_absent(core, proc.stdout, proc.stderr)
        assert endpoint.requests == 0
    case.detail = proc.stderr.strip().splitlines()[-1]


@pytest.mark.parametrize("name", ["trailing LF", "LF inside (header injection)", "NUL"])
def test_token_with_control_characters_is_refused_unquoted_by_the_plugin(
        name, tmp_path, installed_plugin, reliability_case):
    case = reliability_case("R10", "token with {}: plugin download_vhd2".format(name),
                            "failure reply 'control character'; token in no form in reply/log")
    core = _core()
    token = BAD_TOKENS[name].format(core)
    sr = tmp_path / "sr"
    sr.mkdir()
    with Endpoint(lambda h: (200, "application/json", b'{}')) as endpoint:
        reply = call(installed_plugin, "download_vhd2", params_args(
            image_id=IMAGE, store=endpoint.url, sr_path=str(sr), auth_token=token))
        assert endpoint.requests == 0
    assert not reply.ok and "control character" in " ".join(reply.error), reply.error
    _assert_core_absent(core, reply.stdout, reply.stderr)
    case.detail = " ".join(reply.error)


# --- echoed tokens in every representation -----------------------------------------------


def _forms(token):
    """What a reflecting server might send back: each keeps the token's hex core."""
    return [token, repr(token)[1:-1], repr(token.encode())[2:-1], json.dumps(token)[1:-1],
            urllib.parse.quote(token, safe=""), urllib.parse.quote_plus(token)]


ECHO_MODES = {
    "percent-encoded in a 400 text body": lambda t: (
        400, "text/plain", "bad token {}".format(urllib.parse.quote(t, safe="")).encode()),
    "quote_plus in a 403 text body": lambda t: (
        403, "text/plain", "denied {}".format(urllib.parse.quote_plus(t)).encode()),
    "repr in a 400 text body": lambda t: (
        400, "text/plain", "got {!r}".format(t).encode()),
    "bytes repr in a 400 text body": lambda t: (
        400, "text/plain", "got {!r}".format(t.encode()).encode()),
    "JSON message (escaped) in a 400 body": lambda t: (
        400, "application/json", json.dumps({"error": {"message": "token " + t}}).encode()),
    "every form in a 409 body": lambda t: (
        409, "text/plain", " | ".join(_forms(t)).encode()),
}


def _echo(mode):
    def answer(handler):
        return ECHO_MODES[mode](handler.headers.get("X-Auth-Token"))
    return answer


def _token(core):
    # characters that every encoding changes: + / \ " and a space
    return 'tk+/\\"{} ='.format(core)


@pytest.mark.parametrize("mode", sorted(ECHO_MODES))
def test_echoed_token_hidden_in_every_form_library(mode, caplog, reliability_case):
    case = reliability_case("R10", "echoed token, library: " + mode,
                            "StoreError; no form of the token in error, traceback or log")
    caplog.set_level(logging.DEBUG)
    core = _core()
    token = _token(core)
    with Endpoint(_echo(mode)) as endpoint:
        store = GlanceStore(endpoint.url, auth_token=token, retries=0)
        with pytest.raises(VhdportError) as err:
            store.get(IMAGE)
        assert endpoint.requests == 1
    _assert_core_absent(core, _all_text(err.value), _log_text(caplog.records))
    assert "***" in str(err.value)   # the echo was quoted, masked
    case.detail = str(err.value)


@pytest.mark.parametrize("mode", ["percent-encoded in a 400 text body",
                                  "every form in a 409 body"])
def test_echoed_token_hidden_in_every_form_cli_and_plugin(mode, tmp_path, installed_plugin,
                                                          reliability_case):
    case = reliability_case("R10", "echoed token, CLI and plugin: " + mode,
                            "exit 1 / failure reply; no form of the token in any output")
    core = _core()
    token = _token(core)
    sr = tmp_path / "sr"
    sr.mkdir()
    with Endpoint(_echo(mode)) as endpoint:
        proc = _run_cli(["image", "show", IMAGE, "--store", endpoint.url, "--retries", "0"],
                        {"OS_AUTH_TOKEN": token})
        reply = call(installed_plugin, "download_vhd2", params_args(
            image_id=IMAGE, store=endpoint.url, sr_path=str(sr), auth_token=token))
    assert proc.returncode == 1 and "***" in proc.stderr, proc.stderr
    assert not reply.ok and "***" in " ".join(reply.error), reply.error
    _assert_core_absent(core, proc.stdout, proc.stderr, reply.stdout, reply.stderr)
    case.detail = reply.error[-1]


# --- plugin replies are always XML -----------------------------------------------------------


def _well_formed(stdout):
    """The methodResponse parsed strictly (expat refuses what XML 1.0 forbids)."""
    params, method = xmlrpc.client.loads(stdout)
    assert method is None and len(params) == 1
    return params[0]


WEIRD_STRINGS = {
    "C0 control": "a\x01b\x1b[31m",
    "vertical tab and form feed": "x\x0by\x0cz",
    "lone high surrogate": "p\ud800q",
    "lone low surrogate": "p\udfffq",
}


@pytest.mark.parametrize("where", ["sr_path", "params key", "store path"])
@pytest.mark.parametrize("name", sorted(WEIRD_STRINGS))
def test_plugin_reply_is_xml_for_weird_params(name, where, tmp_path, installed_plugin,
                                              reliability_case):
    case = reliability_case("R10", "plugin reply with {} in {}".format(name, where),
                            "a well-formed failure methodResponse naming the problem")
    weird = WEIRD_STRINGS[name]
    store = LocalStore(str(tmp_path / "store"))
    image = put_image(store, b"not reached")
    params = dict(image_id=image, store=store.root, sr_path=str(tmp_path / "sr"))
    if where == "sr_path":
        params["sr_path"] = str(tmp_path / weird)
    elif where == "store path":
        params["store"] = str(tmp_path / weird)
    else:
        params[weird] = "1"
    reply = call(installed_plugin, "download_vhd2", params_args(**params))
    struct = _well_formed(reply.stdout)
    assert struct["Status"] == "Failure", struct
    text = " ".join(struct["ErrorDescription"])
    assert "\\x" in text or "\\u" in text, text   # the character is spelled, not dropped
    case.detail = text


GLANCE_BODIES = {
    "control chars in a text body": (400, "text/plain", b"bad\x01\x02\x1b request"),
    "lone surrogate in a JSON message": (
        400, "application/json", b'{"error": {"message": "bad \\ud800 thing \\u0001"}}'),
    "control chars in a JSON message": (
        400, "application/json", b'{"error": {"message": "bad \\u0001\\u001b[0m"}}'),
}


@pytest.mark.parametrize("name", sorted(GLANCE_BODIES))
def test_plugin_reply_is_xml_for_weird_glance_error_bodies(name, tmp_path, installed_plugin,
                                                           reliability_case):
    case = reliability_case("R10", "plugin reply quoting a Glance error with " + name,
                            "a well-formed failure methodResponse with the HTTP status")
    sr = tmp_path / "sr"
    sr.mkdir()
    with Endpoint(lambda h: GLANCE_BODIES[name]) as endpoint:
        reply = call(installed_plugin, "download_vhd2", params_args(
            image_id=IMAGE, store=endpoint.url, sr_path=str(sr)))
    struct = _well_formed(reply.stdout)
    assert struct["Status"] == "Failure" and "HTTP 400" in " ".join(
        struct["ErrorDescription"]), struct
    case.detail = " ".join(struct["ErrorDescription"])


MALFORMED_CALLS = {
    "not XML at all": "hello",
    "truncated XML": "<?xml version='1.0'?><methodCall><methodName>download_vhd2",
    "no params": "<?xml version='1.0'?><methodCall><methodName>download_vhd2</methodName>"
                 "</methodCall>",
    "one param only": xmlrpc.client.dumps((SESSION,), methodname="download_vhd2"),
    "bad value type": "<?xml version='1.0'?><methodCall><methodName>x</methodName><params>"
                      "<param><value><int>zz</int></value></param></params></methodCall>",
}


@pytest.mark.parametrize("name", sorted(MALFORMED_CALLS))
def test_plugin_answers_a_malformed_call_with_a_failure_reply(name, installed_plugin,
                                                              reliability_case):
    case = reliability_case("R10", "plugin given a malformed methodCall: " + name,
                            "exit 0, one well-formed failure reply, no traceback")
    proc = subprocess.run([python3(), "-I", "-S", installed_plugin, MALFORMED_CALLS[name]],
                          stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                          universal_newlines=True, env={"PATH": os.environ.get("PATH", ""),
                                                        "VHDPORT_LOG": "stderr"}, timeout=60)
    assert proc.returncode == 0, proc.stderr
    assert "Traceback" not in proc.stderr, proc.stderr
    struct = _well_formed(proc.stdout)
    assert struct["Status"] == "Failure"
    assert struct["ErrorDescription"][:2] == ["XENAPI_PLUGIN_FAILURE", "dispatch"], struct
    case.detail = " ".join(struct["ErrorDescription"])
