"""R7: security properties.

- kernel removal never leaves the kernel directory (library and the installed plugin);
- an auth token never appears in errors, tracebacks, log records or any output of the
  library, the CLI and the plugin -- against a 401 endpoint, hostile endpoints that echo
  the request headers back in their answers, and the real Glance;
- TLS certificates are verified by default (a self-signed server fails without cacert);
- no unsafe APIs in src/: pickle/marshal/shelve, shell=True, eval/exec, os.system; an
  unverified TLS context only inside an ``if insecure:`` opt-in.
"""

import ast
import json
import logging
import os
import re
import secrets
import subprocess
import sys
import traceback
from http.server import BaseHTTPRequestHandler

import pytest

from tests.peers.tiny_http import LocalHttpServer
from tests.hostile.conftest import bundle_bytes, make_chain
from tests.peers.glance_server import TEST_TOKEN, glance_auth  # noqa: F401
from tests.plugin.xapi import call, params_args
from tests.sr.helpers import make_vhd as sr_make_vhd
from vhdport import kernel
from vhdport.errors import AuthError, PluginError, StoreError, VhdportError
from vhdport.stores.glance import GlanceStore

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
SRC = os.path.join(REPO, "src", "vhdport")
CLI = os.path.join(os.path.dirname(sys.executable), "vhdport")
IMAGE = "6b5a3f3e-1111-4222-8333-944445555666"


# =====================================================================================
# kernel directory confinement
# =====================================================================================


@pytest.fixture
def kdirs(tmp_path):
    """(kernel dir, outside dir, victim file outside, a legitimate kernel file inside)."""
    kdir = tmp_path / "boot" / "guest"
    kdir.mkdir(parents=True)
    outside = tmp_path / "outside"
    outside.mkdir()
    victim = outside / "victim"
    victim.write_bytes(b"must survive")
    legit = kdir / "legit-kernel"
    legit.write_bytes(b"kernel")
    return str(kdir), str(outside), str(victim), str(legit)


def _kernel_cases():
    """name -> function(kdir, outside, victim) returning the path to ask to remove."""
    def link_in_kdir(kdir, outside, victim):
        os.symlink(victim, os.path.join(kdir, "evil-link"))
        return os.path.join(kdir, "evil-link")

    def link_relative(kdir, outside, victim):
        os.symlink(victim, os.path.join(kdir, "evil-link"))
        return "evil-link"

    def dir_link(kdir, outside, victim):
        os.symlink(outside, os.path.join(kdir, "sub"))
        return os.path.join(kdir, "sub", "victim")

    def dangling_to_outside(kdir, outside, victim):
        os.symlink(os.path.join(outside, "not-yet"), os.path.join(kdir, "dangling"))
        return "dangling"

    def subdir(kdir, outside, victim):
        os.mkdir(os.path.join(kdir, "d"))
        with open(os.path.join(kdir, "d", "f"), "wb") as f:
            f.write(b"x")
        return os.path.join(kdir, "d", "f")

    def the_dir_itself(kdir, outside, victim):
        return kdir

    def a_directory_inside(kdir, outside, victim):
        os.mkdir(os.path.join(kdir, "adir"))
        return "adir"

    return {
        "absolute path elsewhere": lambda k, o, v: v,
        "/etc/passwd": lambda k, o, v: "/etc/passwd",
        "relative ..": lambda k, o, v: os.path.join("..", "..", "outside", "victim"),
        "absolute with .. inside the kernel dir": lambda k, o, v: os.path.join(
            k, "..", "..", "outside", "victim"),
        "./.. prefix": lambda k, o, v: "./../../outside/victim",
        "symlink in kernel dir (absolute path)": link_in_kdir,
        "symlink in kernel dir (bare name)": link_relative,
        "path through a symlinked subdir": dir_link,
        "dangling symlink to outside": dangling_to_outside,
        "file in a subdirectory": subdir,
        "the kernel dir itself": the_dir_itself,
        "a directory inside": a_directory_inside,
        "NUL byte": lambda k, o, v: "legit-kernel\x00/../../outside/victim",
        "backslash ..": lambda k, o, v: "..\\..\\outside\\victim",
        "prefix-sibling dir": lambda k, o, v: _sibling(k),
    }


def _sibling(kdir):
    """<kdir>-evil/victim: shares the kernel dir's name as a string prefix."""
    sib = kdir + "-evil"
    os.mkdir(sib)
    path = os.path.join(sib, "victim")
    with open(path, "wb") as f:
        f.write(b"must survive")
    return path


KERNEL_CASES = _kernel_cases()


def _snapshot(*dirs):
    found = {}
    for d in dirs:
        for dirpath, dirnames, filenames in os.walk(d):
            for name in dirnames + filenames:
                full = os.path.join(dirpath, name)
                found[full] = os.path.islink(full) or os.path.getsize(full)
    return found


@pytest.mark.parametrize("name", sorted(KERNEL_CASES))
def test_kernel_removal_confined(name, kdirs, reliability_case):
    case = reliability_case("R7", "kernel removal: " + name,
                            "PluginError; nothing removed (the legit kernel file neither)")
    kdir, outside, victim, legit = kdirs
    path = KERNEL_CASES[name](kdir, outside, victim)
    before = _snapshot(os.path.dirname(kdir), outside)
    # refused for this path (not for the legit one, nor for some other reason)
    with pytest.raises(PluginError, match=r"^kernel file {} ".format(re.escape(repr(path)))) as info:
        kernel.remove_kernel_files([legit, path], kernel_dir_path=kdir)
    assert _snapshot(os.path.dirname(kdir), outside) == before
    assert os.path.exists(victim) and os.path.exists(legit)
    assert "\n" not in str(info.value)
    case.detail = str(info.value)


def test_kernel_removal_hard_link_only_unlinks_the_name(kdirs, reliability_case):
    """A hard link in the kernel dir is a regular file there: removing it leaves the data."""
    case = reliability_case("R7", "kernel removal: hard link to a file outside",
                            "only the name in the kernel dir goes; the outside file survives")
    kdir, _outside, victim, _legit = kdirs
    os.link(victim, os.path.join(kdir, "hl"))
    removed = kernel.remove_kernel_files(["hl"], kernel_dir_path=kdir)
    assert removed == [os.path.join(os.path.realpath(kdir), "hl")]
    with open(victim, "rb") as f:
        assert f.read() == b"must survive"


def test_kernel_removal_legit_still_works(kdirs, reliability_case):
    reliability_case("R7", "kernel removal: control (a file directly in the kernel dir)",
                     "removed")
    kdir, _outside, _victim, legit = kdirs
    assert kernel.remove_kernel_files([legit, ""], kernel_dir_path=kdir) == [
        os.path.join(os.path.realpath(kdir), "legit-kernel")]
    assert not os.path.exists(legit)


@pytest.fixture(scope="module")
def installed_plugin(tmp_path_factory):
    from vhdport.plugin_install import install
    plugin, _pyz = install(str(tmp_path_factory.mktemp("plugin-root")))
    return plugin


@pytest.mark.parametrize("name", ["absolute path elsewhere", "relative ..",
                                  "symlink in kernel dir (absolute path)",
                                  "path through a symlinked subdir"])
def test_plugin_kernel_removal_confined(name, kdirs, installed_plugin, reliability_case):
    case = reliability_case("R7", "plugin remove_kernel_ramdisk: " + name,
                            "PLUGIN_ARGS failure; nothing removed")
    kdir, outside, victim, legit = kdirs
    path = KERNEL_CASES[name](kdir, outside, victim)
    reply = call(installed_plugin, "remove_kernel_ramdisk",
                 {"kernel-file": legit, "ramdisk-file": path},
                 env={"VHDPORT_KERNEL_DIR": kdir})
    assert reply.error[0] == "PLUGIN_ARGS", reply.error
    assert os.path.exists(victim) and os.path.exists(legit)
    case.detail = reply.error[1]


# =====================================================================================
# tokens never in errors, logs or output
# =====================================================================================


class HostileEndpoint(LocalHttpServer):
    """A Glance impostor on 127.0.0.1: answers every request per ``mode``.

    401: plain refusal.  echo-400 / echo-500: an error page quoting every request
    header (a proxy that reflects what it got).  echo-200-text / echo-200-json: a
    'successful' answer whose body is the request headers.
    """

    def __init__(self, mode):
        self.mode = mode
        self.seen_tokens = []
        owner = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.0"

            def _answer(self):
                owner.seen_tokens.append(self.headers.get("X-Auth-Token"))
                length = int(self.headers.get("Content-Length") or 0)
                if length:
                    self.rfile.read(length)
                echo = "".join("{}: {}\n".format(k, v) for k, v in self.headers.items())
                token_first = "X-Auth-Token: {}\n{}".format(self.headers.get("X-Auth-Token"),
                                                             echo)
                mode = owner.mode
                status, ctype = 200, "text/plain"
                if mode == "401":
                    status, body = 401, b'{"error": "unauthorized"}'
                elif mode.startswith("echo-200-json"):
                    body = json.dumps({"echo": token_first,
                                       "headers": dict(self.headers.items())}).encode()
                    ctype = "application/json"
                elif mode.startswith("echo-200"):
                    body = token_first.encode()
                else:
                    status = int(mode.split("-")[1])
                    body = json.dumps({"error": {"message": token_first}}).encode()
                    ctype = "application/json"
                self.send_response(status)
                self.send_header("Content-Type", ctype)
                self.send_header("Content-Length", str(len(body)))
                self.send_header("X-Echo-Token", str(self.headers.get("X-Auth-Token")))
                self.end_headers()
                self.wfile.write(body)

            do_GET = do_POST = do_PUT = do_DELETE = do_HEAD = do_PATCH = _answer

            def log_message(self, *args):
                pass

        super().__init__(Handler)


MODES = ["401", "echo-400", "echo-500", "echo-200-text", "echo-200-json"]


def _token():
    return "tok-" + secrets.token_hex(16)


def _all_text(err):
    """Everything an error can show: str, repr, fields, and the formatted traceback chain."""
    parts = [str(err), repr(err), repr(getattr(err, "fields", {}))]
    parts += traceback.format_exception(type(err), err, err.__traceback__)
    return "\n".join(parts)


def _log_text(records):
    out = []
    for record in records:
        out.append(record.getMessage())
        if record.exc_info:
            out.append("".join(traceback.format_exception(*record.exc_info)))
        if record.exc_text:
            out.append(record.exc_text)
    return "\n".join(out)


def _assert_no_token(token, *texts):
    for text in texts:
        assert token not in text, "token leaked: ...{}...".format(
            text[max(0, text.find(token) - 120):text.find(token) + 60])


@pytest.mark.parametrize("mode", MODES)
def test_token_not_in_library_errors_or_logs(mode, tmp_path, caplog, reliability_case):
    case = reliability_case("R7", "token, library GlanceStore vs {} endpoint".format(mode),
                            "VhdportError; token in no error text, traceback or log record")
    token = _token()
    caplog.set_level(logging.DEBUG)
    sr = tmp_path / "sr"
    sr.mkdir()
    from vhdport.transfer import download
    texts = []
    with HostileEndpoint(mode) as endpoint:
        store = GlanceStore(endpoint.url, auth_token=token, retries=1, retry_delay=0.01,
                            timeout=5)
        texts.append(repr(store) + repr(vars(store)) + repr(vars(store._http)))
        for action in (lambda: store.get(IMAGE), lambda: list(store.list()),
                       lambda: download(store, IMAGE, str(sr)),
                       lambda: store.create("x", "vhd", "ovf")):
            try:
                texts.append(repr(action()))    # a lenient parse may accept an echo (list)
            except VhdportError as err:
                texts.append(_all_text(err))
                last = err
        assert token in endpoint.seen_tokens      # the token did go to the server
    _assert_no_token(token, _log_text(caplog.records), *texts)
    case.detail = str(last)


def _run_cli(args, env_extra=None, timeout=60):
    env = dict(os.environ)
    env.pop("OS_AUTH_TOKEN", None)
    env.update(env_extra or {})
    proc = subprocess.run([CLI, "--debug"] + args, stdout=subprocess.PIPE,
                          stderr=subprocess.PIPE, universal_newlines=True, env=env,
                          timeout=timeout)
    return proc


@pytest.mark.parametrize("mode", ["401", "echo-400", "echo-200-json"])  # 5xx: retried for ~30 s
def test_token_not_in_cli_output(mode, tmp_path, reliability_case):
    case = reliability_case("R7", "token, CLI --debug vs {} endpoint".format(mode),
                            "exit 1; token in neither stdout nor stderr (option and env var)")
    token = _token()
    sr = tmp_path / "sr"
    sr.mkdir()
    outputs = []
    with HostileEndpoint(mode) as endpoint:
        for args, extra in (
                (["download", IMAGE, "--sr", str(sr), "--store", endpoint.url,
                  "--os-auth-token", token, "--progress", "json"], None),
                (["image", "ls", "--store", endpoint.url], {"OS_AUTH_TOKEN": token}),
                (["image", "show", IMAGE, "--store", endpoint.url, "--json"],
                 {"OS_AUTH_TOKEN": token})):
            proc = _run_cli(args, extra)
            assert proc.returncode in (0, 1), (args, proc.stdout, proc.stderr)
            assert proc.returncode == 1 or mode == "echo-200-json", (args, proc.stdout)
            outputs += [proc.stdout, proc.stderr]
        assert token in endpoint.seen_tokens
    _assert_no_token(token, *outputs)
    case.detail = [line for line in outputs[1].splitlines() if "error" in line][-1:]


def test_token_in_store_url_userinfo_not_printed(tmp_path, reliability_case):
    reliability_case("R7", "secret in the store URL's user:password@ part, CLI --debug",
                     "never printed")
    secret = _token()
    with HostileEndpoint("401") as endpoint:
        url = endpoint.url.replace("http://", "http://admin:{}@".format(secret))
        proc = _run_cli(["image", "ls", "--store", url])
        assert proc.returncode != 0
    _assert_no_token(secret, proc.stdout, proc.stderr)


@pytest.mark.parametrize("mode", ["401", "echo-400", "echo-200-json"])
def test_token_not_in_plugin_output(mode, tmp_path, installed_plugin, reliability_case):
    case = reliability_case("R7", "token, plugin download_vhd2/upload_vhd2 vs {} endpoint".format(
        mode), "failure reply; token in neither the reply, stdout nor stderr (syslog->stderr)")
    token = _token()
    sr = str(tmp_path / "sr")
    os.mkdir(sr)
    # a real VDI of the SR: the upload must get as far as sending the token, not stop at the chain
    vdi = sr_make_vhd(sr, writes=[(0, b"v" * 4096)])
    texts = []
    with HostileEndpoint(mode) as endpoint:
        for fn, params in (
                ("download_vhd2", dict(image_id=IMAGE, store=endpoint.url, sr_path=sr,
                                       auth_token=token)),
                ("download_vhd2", dict(image_id=IMAGE, endpoint=endpoint.url, sr_path=sr,
                                       extra_headers={"X-Auth-Token": token})),
                ("upload_vhd2", dict(vdi_uuid=vdi, store=endpoint.url,
                                     sr_path=sr, name="x", auth_token=token))):
            seen_before = len(endpoint.seen_tokens)
            reply = call(installed_plugin, fn, params_args(**params))
            assert not reply.ok
            # each call reached the endpoint with the token (the path under test really ran)
            assert token in endpoint.seen_tokens[seen_before:], (fn, reply.error)
            assert reply.error[0] in ("AUTH_FAILED", "STORE_ERROR"), reply.error
            texts += [reply.stdout, reply.stderr, repr(reply.struct)]
    _assert_no_token(token, *texts)
    case.detail = " ".join(reply.error)


@pytest.mark.peer
def test_token_not_in_output_with_real_glance(glance_auth, tmp_path, installed_plugin,  # noqa: F811
                                              caplog, reliability_case):
    case = reliability_case("R7", "token, real Glance: CLI upload/download/show and plugin "
                                  "download with the right and a wrong token",
                            "token in no output, reply or log record")
    caplog.set_level(logging.DEBUG)
    sr = tmp_path / "sr"
    sr.mkdir()
    src = make_chain(str(tmp_path / "src"), 2)
    data = bundle_bytes(src)
    bundle = tmp_path / "b.tgz"
    bundle.write_bytes(data)
    texts = []
    wrong = _token()
    proc = _run_cli(["image", "import", str(bundle), "--name", "r7", "--store", glance_auth.url,
                     "--os-auth-token", TEST_TOKEN, "--progress", "json"])
    assert proc.returncode == 0, proc.stderr
    texts += [proc.stdout, proc.stderr]
    image_id = proc.stdout.split()[-1]
    for token, ok in ((TEST_TOKEN, True), (wrong, False)):
        proc = _run_cli(["download", image_id, "--sr", str(sr), "--store", glance_auth.url,
                         "--os-auth-token", token, "--progress", "json"])
        assert (proc.returncode == 0) == ok, proc.stderr
        texts += [proc.stdout, proc.stderr]
        reply = call(installed_plugin, "download_vhd2", params_args(
            image_id=image_id, store=glance_auth.url, sr_path=str(sr), auth_token=token))
        assert reply.ok == ok, reply
        texts += [reply.stdout, reply.stderr, repr(reply.struct)]
    store = GlanceStore(glance_auth.url, auth_token=wrong, retries=0)
    with pytest.raises(AuthError, match="token rejected") as info:
        store.get(image_id)
    texts.append(_all_text(info.value))
    _assert_no_token(TEST_TOKEN, *texts)
    _assert_no_token(wrong, _log_text(caplog.records), *texts)
    case.detail = str(info.value)


# =====================================================================================
# TLS verification on by default
# =====================================================================================


@pytest.fixture(scope="module")
def tls_glance(glance_auth, tmp_path_factory):  # noqa: F811
    """(https URL, cacert) of a TLS proxy with a self-signed cert in front of the real Glance."""
    from tests.peers.proxies import TlsProxy, make_self_signed_cert
    cert, key = make_self_signed_cert(str(tmp_path_factory.mktemp("tls")))
    port = int(glance_auth.url.rsplit(":", 1)[1])
    proxy = TlsProxy(port, cert, key)
    try:
        yield proxy.url, cert
    finally:
        proxy.stop()


@pytest.mark.peer
def test_tls_verified_by_default(tls_glance, tmp_path, installed_plugin, reliability_case):
    case = reliability_case("R7", "TLS: self-signed Glance without cacert (library, CLI, plugin)",
                            "refused: certificate not verified; with cacert it works")
    url, cert = tls_glance
    store = GlanceStore(url, auth_token=TEST_TOKEN, retries=0)
    with pytest.raises(StoreError, match="could not be verified") as info:
        list(store.list())
    proc = _run_cli(["image", "ls", "--store", url, "--os-auth-token", TEST_TOKEN])
    assert proc.returncode == 1 and "could not be verified" in proc.stderr, proc.stderr
    reply = call(installed_plugin, "download_vhd2", params_args(
        image_id=IMAGE, store=url, sr_path=str(tmp_path), auth_token=TEST_TOKEN))
    assert not reply.ok and "could not be verified" in reply.error[1], reply.error
    # the control: the same server verifies with its CA, and insecure=True is an explicit opt-in
    list(GlanceStore(url, auth_token=TEST_TOKEN, cacert=cert).list())
    list(GlanceStore(url, auth_token=TEST_TOKEN, insecure=True).list())
    case.detail = str(info.value)


def test_tls_verified_by_default_without_glance(tmp_path, reliability_case):
    """Same property with no Glance needed: a self-signed TLS proxy in front of a 401 endpoint."""
    from tests.peers.proxies import TlsProxy, make_self_signed_cert
    case = reliability_case("R7", "TLS: self-signed endpoint without cacert (no Glance needed)",
                            "refused before any request; with cacert the request gets through")
    cert, key = make_self_signed_cert(str(tmp_path))
    with HostileEndpoint("401") as endpoint:
        proxy = TlsProxy(int(endpoint.url.rsplit(":", 1)[1]), cert, key)
        try:
            with pytest.raises(StoreError, match="could not be verified") as info:
                GlanceStore(proxy.url, auth_token="tok-tls-1234", retries=0).get(IMAGE)
            assert endpoint.seen_tokens == []          # the token never left over bad TLS
            with pytest.raises(AuthError):
                GlanceStore(proxy.url, auth_token="tok-tls-1234", cacert=cert,
                            retries=0).get(IMAGE)
            assert endpoint.seen_tokens == ["tok-tls-1234"]
        finally:
            proxy.stop()
    case.detail = str(info.value)


def test_kernel_copy_names_are_confined(tmp_path, reliability_case):
    case = reliability_case("R7", "copy_kernel with a path-like VDI uuid ('../', absolute)",
                            "PluginError; nothing written outside the kernel dir")
    kdir = str(tmp_path / "k")
    for bad in ("../../etc/passwd", "/etc/passwd", "..", "x" * 36,
                "6B5A3F3E-1111-4222-8333-944445555666"):
        with pytest.raises(PluginError, match=r"^vdi uuid {} is not a canonical uuid".format(
                re.escape(repr(bad)))) as info:
            kernel.copy_kernel(str(tmp_path), bad, 512, kernel_dir_path=kdir)
    assert not os.path.exists(kdir) or os.listdir(kdir) == []
    case.detail = str(info.value)


@pytest.mark.peer
def test_tls_wrong_host_name_refused(glance_auth, tmp_path, reliability_case):  # noqa: F811
    """A certificate the client trusts (it is the cacert) but for another name, served on the
    address the client dials: the chain verifies, so only host-name checking can refuse it."""
    from tests.peers.proxies import TlsProxy, make_self_signed_cert
    case = reliability_case("R7", "TLS: host name not in the certificate (cacert given)",
                            "refused by host-name checking (IP address mismatch)")
    cert, key = make_self_signed_cert(str(tmp_path), host="glance.example",
                                      names="DNS:glance.example")
    port = int(glance_auth.url.rsplit(":", 1)[1])
    proxy = TlsProxy(port, cert, key)
    try:
        store = GlanceStore(proxy.url, auth_token=TEST_TOKEN, cacert=cert, retries=0, timeout=10)
        with pytest.raises(StoreError, match="could not be verified") as info:
            list(store.list())
        # the cause is the host name (OpenSSL's verify result during a real handshake), not
        # the chain (the CA is trusted) nor a dead socket
        assert "IP address mismatch, certificate is not valid for '127.0.0.1'" in str(info.value)
        # the control: the same trusted certificate with the host name not checked gets through
        control = GlanceStore(proxy.url, auth_token=TEST_TOKEN, insecure=True, retries=0)
        list(control.list())
    finally:
        proxy.stop()
    case.detail = str(info.value)


# =====================================================================================
# no unsafe APIs in the source tree
# =====================================================================================


def _sources():
    for dirpath, _dirs, files in os.walk(SRC):
        for name in files:
            if name.endswith(".py"):
                path = os.path.join(dirpath, name)
                with open(path, encoding="utf-8") as f:
                    yield os.path.relpath(path, REPO), f.read()


def _parents(tree):
    parents = {}
    for node in ast.walk(tree):
        for child in ast.iter_child_nodes(node):
            parents[child] = node
    return parents


def _inside_insecure_branch(node, parents):
    """True if ``node`` sits in the body of an ``if`` whose test mentions ``insecure``."""
    child = node
    while child in parents:
        parent = parents[child]
        if isinstance(parent, ast.If) and child in parent.body and any(
                isinstance(n, ast.Name) and n.id == "insecure" for n in ast.walk(parent.test)):
            return True
        child = parent
    return False


def _findings(check):
    hits = []
    for rel, text in _sources():
        tree = ast.parse(text)
        parents = _parents(tree)
        for node in ast.walk(tree):
            reason = check(node, parents)
            if reason:
                hits.append("{}:{}: {}".format(rel, getattr(node, "lineno", "?"), reason))
    return hits


def _imports(*modules):
    def check(node, parents):
        if isinstance(node, ast.Import):
            names = [a.name.split(".")[0] for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            names = [(node.module or "").split(".")[0]]
        else:
            return None
        bad = [n for n in names if n in modules]
        return "imports {}".format(bad) if bad else None
    return check


def _keyword(name, value, not_callee=()):
    """A call passing ``name=value`` (callees named in ``not_callee`` are other APIs)."""
    def check(node, parents):
        if isinstance(node, ast.Call):
            callee = getattr(node.func, "attr", getattr(node.func, "id", None))
            if callee in not_callee:
                return None
            for kw in node.keywords:
                if kw.arg == name and isinstance(kw.value, ast.Constant) and kw.value.value is value:
                    return "{}={!r}".format(name, value)
        return None
    return check


def _calls(*names):
    def check(node, parents):
        if isinstance(node, ast.Call):
            func = node.func
            full = func.id if isinstance(func, ast.Name) else None
            if isinstance(func, ast.Attribute) and isinstance(func.value, ast.Name):
                full = "{}.{}".format(func.value.id, func.attr)
            if full in names:
                return "calls {}".format(full)
        return None
    return check


def _unverified_tls(node, parents):
    """CERT_NONE / check_hostname=False / _create_unverified_context outside `if insecure:`."""
    hit = None
    if isinstance(node, ast.Attribute) and node.attr in ("CERT_NONE", "_create_unverified_context",
                                                         "CERT_OPTIONAL"):
        hit = node.attr
    if isinstance(node, ast.Assign) and any(
            isinstance(t, ast.Attribute) and t.attr == "check_hostname" for t in node.targets) \
            and isinstance(node.value, ast.Constant) and node.value.value is False:
        hit = "check_hostname = False"
    if hit and not _inside_insecure_branch(node, parents):
        return hit + " outside an `if insecure:` opt-in"
    return None


SOURCE_CHECKS = {
    "no pickle / marshal / shelve / dill imports": _imports("pickle", "cPickle", "marshal",
                                                            "shelve", "dill", "_pickle"),
    "no shell=True": _keyword("shell", True),
    # Footer.parse(verify=False) re-reads a footer whose checksum already failed: not TLS
    "no verify=False (requests-style TLS off)": _keyword("verify", False, not_callee=("parse",)),
    "no eval / exec / os.system / os.popen / yaml.load": _calls(
        "eval", "exec", "os.system", "os.popen", "yaml.load", "compile"),
    "unverified TLS only behind `if insecure:`": _unverified_tls,
}


@pytest.mark.parametrize("name", sorted(SOURCE_CHECKS))
def test_source_tree_has_no_unsafe_calls(name, reliability_case):
    case = reliability_case("R7", "source: " + name, "no hit in src/vhdport (AST scan)")
    hits = _findings(SOURCE_CHECKS[name])
    assert hits == []
    case.detail = "scanned {} files".format(sum(1 for _ in _sources()))


def test_source_insecure_opt_in_exists_and_is_default_off(reliability_case):
    """The scan above must be able to fail: the one CERT_NONE is found, and only behind the
    opt-in; and every public insecure parameter defaults to False."""
    reliability_case("R7", "source: the insecure opt-in is found by the scan and defaults off",
                     "CERT_NONE found only in an `if insecure:` branch; insecure=False defaults")
    seen = []

    def spy(node, parents):
        if isinstance(node, ast.Attribute) and node.attr == "CERT_NONE":
            seen.append(_inside_insecure_branch(node, parents))
        return None
    _findings(spy)
    assert seen and all(seen), seen
    defaults = []
    for rel, text in _sources():
        for node in ast.walk(ast.parse(text)):
            if isinstance(node, ast.FunctionDef):
                args = node.args.args + node.args.kwonlyargs
                values = [None] * (len(node.args.args) - len(node.args.defaults)) + \
                    list(node.args.defaults) + list(node.args.kw_defaults)
                for arg, default in zip(args, values):
                    if arg.arg == "insecure":
                        defaults.append((rel, node.name, getattr(default, "value", default)))
    assert defaults and all(d[2] is False for d in defaults), defaults


def test_plugin_refuses_pickled_params(installed_plugin, tmp_path, reliability_case):
    """The old nova protocol sent pickles; the plugin must refuse them without loading."""
    reliability_case("R7", "plugin params that are a pickle", "PLUGIN_ARGS, never unpickled")
    marker = tmp_path / "pwned"
    payload = "cos\nsystem\n(S'touch {}'\ntR.".format(marker)
    for text in (payload, "(dp0\nS'x'\np1\n.", "ccopy_reg\n_reconstructor\n"):
        reply = call(installed_plugin, "download_vhd2", {"params": text})
        assert reply.error[0] == "PLUGIN_ARGS", reply.error
    assert not marker.exists()
