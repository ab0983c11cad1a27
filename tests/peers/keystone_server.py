"""A real OpenStack Keystone (Debian's keystone package) and a Glance that trusts it.

Why this shape (facts found on Debian 12, Keystone 22 / Glance 25.1):
- Keystone runs under ``uwsgi --http-socket`` with its own config dir
  (``OS_KEYSTONE_CONFIG_DIR``); SQLite wants one process, one thread and WAL, or it
  answers "database is locked".
- uwsgi's http-socket closes every connection, so it says ``Connection: close``;
  otherwise keystonemiddleware reuses a dead socket.
- An in-memory dogpile cache takes token validation from ~0.8 s to ~20 ms.
- Users, projects and the catalog are made through the REST API (the openstack CLI
  costs seconds per call); bootstrap takes ~15 s, so one Keystone per test session.

The Glance (``KeystoneGlance``) uses ``[paste_deploy] flavor = keystone`` with
keystonemiddleware against this Keystone, two file stores (``fast`` default,
``cheap``), the import workflow with a staging store and ``workers = 0`` (import
tasks run inside the API process), and a policy file tests may rewrite (Glance
re-reads it on the next request).

Session fixtures: ``keystone`` (a KeystoneServer) and ``keystone_glance``.
"""

import atexit
import configparser
import json
import os
import shutil
import signal
import sqlite3
import subprocess
import sys
import tempfile
import threading
import time
import urllib.error
import urllib.request

import pytest

from tests.peers.glance_server import GlanceServer, GlanceUnavailable, free_port
from tests.peers.require import require_peer

START_TIMEOUT = 90.0
REGION = "RegionOne"
ADMIN_PASSWORD = "vhdport-admin-secret-7c1e"
USER_PASSWORD = "vhdport-user-secret-19ad"
GLANCE_PASSWORD = "vhdport-glance-secret-5b02"
STORES = ("fast", "cheap")


class KeystoneUnavailable(Exception):
    """Keystone cannot run here; the message says why."""


def _tool(name):
    for folder in ("/usr/bin", "/usr/local/bin"):
        path = os.path.join(folder, name)
        if os.access(path, os.X_OK):
            return path
    return shutil.which(name)


def _system_env(workdir):
    """Keystone and Glance run under the system python3: no venv leaks into them."""
    bindir = os.path.dirname(os.path.abspath(sys.executable))
    env = {k: v for k, v in os.environ.items()
           if k not in ("VIRTUAL_ENV", "PYTHONHOME", "PYTHONPATH", "PYTHONSTARTUP")
           and not k.startswith("OS_")}
    env["PATH"] = os.pathsep.join(p for p in env.get("PATH", "/usr/bin:/bin").split(os.pathsep)
                                  if p != bindir)
    env["HOME"] = workdir
    return env


class KeystoneServer(object):
    """One private Keystone: ``url`` (…/v3), admin and vhdport credentials, REST helpers."""

    def __init__(self, workdir):
        self.workdir = workdir
        self.port = None
        self.proc = None
        self.url = None
        self.ids = {}

    # --- setup --------------------------------------------------------------

    def _write_config(self):
        d = self.workdir
        conf = configparser.ConfigParser(interpolation=None)
        conf["DEFAULT"] = {"log_file": os.path.join(d, "keystone.log"), "debug": "false"}
        conf["database"] = {"connection": "sqlite:///" + os.path.join(d, "keystone.sqlite")}
        conf["token"] = {"provider": "fernet", "expiration": "3600"}
        conf["fernet_tokens"] = {"key_repository": os.path.join(d, "fernet-keys")}
        conf["credential"] = {"key_repository": os.path.join(d, "credential-keys")}
        conf["cache"] = {"enabled": "true", "backend": "dogpile.cache.memory"}
        path = os.path.join(d, "keystone.conf")
        with open(path, "w") as f:
            conf.write(f)
        return path

    def _manage(self, conf, *args):
        manage = _tool("keystone-manage")
        try:
            res = subprocess.run([manage, "--config-file", conf] + list(args),
                                 stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                                 stderr=subprocess.STDOUT, env=_system_env(self.workdir),
                                 cwd=self.workdir, timeout=180)
        except (OSError, subprocess.TimeoutExpired) as e:
            raise KeystoneUnavailable("keystone-manage {} failed: {}".format(args[0], e))
        if res.returncode != 0:
            raise KeystoneUnavailable("keystone-manage {} exited {}: {}".format(
                args[0], res.returncode, res.stdout.decode("utf-8", "replace")[-1500:]))

    def start(self):
        missing = [t for t in ("keystone-manage", "keystone-wsgi-public", "uwsgi") if not _tool(t)]
        if missing:
            raise KeystoneUnavailable("{} not installed (Debian: keystone uwsgi "
                                      "uwsgi-plugin-python3; scripts/sysdeps.sh)".format(
                                          ", ".join(missing)))
        self.port = free_port()
        self.url = "http://127.0.0.1:{}/v3".format(self.port)
        conf = self._write_config()
        user = str(os.getuid())
        group = str(os.getgid())
        self._manage(conf, "db_sync")
        with sqlite3.connect(os.path.join(self.workdir, "keystone.sqlite")) as db:
            db.execute("PRAGMA journal_mode=WAL")
        self._manage(conf, "fernet_setup", "--keystone-user", user, "--keystone-group", group)
        self._manage(conf, "credential_setup", "--keystone-user", user,
                     "--keystone-group", group)
        self._manage(conf, "bootstrap", "--bootstrap-password", ADMIN_PASSWORD,
                     "--bootstrap-admin-url", self.url, "--bootstrap-public-url", self.url,
                     "--bootstrap-internal-url", self.url, "--bootstrap-region-id", REGION)
        self._launch()
        self._populate()
        return self

    def _launch(self):
        env = _system_env(self.workdir)
        env["OS_KEYSTONE_CONFIG_DIR"] = self.workdir
        out = open(os.path.join(self.workdir, "uwsgi.log"), "ab")
        try:
            self.proc = subprocess.Popen(
                [_tool("uwsgi"), "--plugins", "python3",
                 "--http-socket", "127.0.0.1:{}".format(self.port),
                 "--wsgi-file", _tool("keystone-wsgi-public"),
                 "--processes", "1", "--threads", "1", "--die-on-term",
                 "--add-header", "Connection: close", "--buffer-size", "65535"],
                stdin=subprocess.DEVNULL, stdout=out, stderr=subprocess.STDOUT, env=env,
                cwd=self.workdir, start_new_session=True)
        except OSError as e:
            raise KeystoneUnavailable("cannot run uwsgi: {}".format(e))
        finally:
            out.close()
        deadline = time.monotonic() + START_TIMEOUT
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise KeystoneUnavailable("keystone (uwsgi) exited {} at start: {}".format(
                    self.proc.returncode, self.log_tail()))
            try:
                with urllib.request.urlopen(self.url, timeout=5) as r:
                    if r.status == 200:
                        return
            except OSError:
                pass
            time.sleep(0.2)
        raise KeystoneUnavailable("keystone did not answer within {:.0f}s: {}".format(
            START_TIMEOUT, self.log_tail()))

    def log_tail(self, chars=1500):
        text = ""
        for name in ("uwsgi.log", "keystone.log"):
            try:
                with open(os.path.join(self.workdir, name), "rb") as f:
                    text += f.read().decode("utf-8", "replace")
            except OSError:
                pass
        return text[-chars:]

    # --- REST ---------------------------------------------------------------

    def call(self, method, path, body=None, token=None, headers=None, expect=(200, 201, 204)):
        """One Keystone API call -> (status, headers, JSON or None)."""
        hdrs = {"Content-Type": "application/json", "Connection": "close"}
        if token:
            hdrs["X-Auth-Token"] = token
        hdrs.update(headers or {})
        data = json.dumps(body).encode() if body is not None else None
        req = urllib.request.Request(self.url + path, data=data, method=method, headers=hdrs)
        try:
            with urllib.request.urlopen(req, timeout=60) as r:
                status, rh, raw = r.status, r.headers, r.read()
        except urllib.error.HTTPError as e:
            status, rh, raw = e.code, e.headers, e.read()
        if status not in expect:
            raise KeystoneUnavailable("keystone {} {} answered {}: {}".format(
                method, path, status, raw[:500]))
        return status, rh, (json.loads(raw.decode()) if raw else None)

    def password_token(self, user, password, project, with_catalog=False):
        """A project-scoped token for ``user`` -> (token, body)."""
        body = {"auth": {
            "identity": {"methods": ["password"], "password": {"user": {
                "name": user, "domain": {"id": "default"}, "password": password}}},
            "scope": {"project": {"name": project, "domain": {"id": "default"}}}}}
        path = "/auth/tokens" + ("" if with_catalog else "?nocatalog")
        _, headers, doc = self.call("POST", path, body)
        return headers["X-Subject-Token"], doc

    def admin_token(self):
        return self.password_token("admin", ADMIN_PASSWORD, "admin")[0]

    def revoke(self, token):
        """Revoke ``token`` now (as if it had expired): its next use answers 401."""
        self.call("DELETE", "/auth/tokens", token=self.admin_token(),
                  headers={"X-Subject-Token": token})

    def _create(self, kind, body, token):
        _, _, doc = self.call("POST", "/" + kind + "s", {kind: body}, token=token)
        return doc[kind]["id"]

    def _role_id(self, name, token):
        _, _, doc = self.call("GET", "/roles?name=" + name, token=token)
        return doc["roles"][0]["id"]

    def _grant(self, project, user, role, token):
        self.call("PUT", "/projects/{}/users/{}/roles/{}".format(project, user, role),
                  token=token)

    def _populate(self):
        """The project and user vhdport works as, and Glance's service user."""
        token = self.admin_token()
        member, admin = self._role_id("member", token), self._role_id("admin", token)
        ids = self.ids
        ids["project"] = self._create("project", {"name": "vhdport", "domain_id": "default"},
                                      token)
        ids["service"] = self._create("project", {"name": "service", "domain_id": "default"},
                                      token)
        ids["user"] = self._create("user", {"name": "vhdport", "password": USER_PASSWORD,
                                            "domain_id": "default",
                                            "default_project_id": ids["project"]}, token)
        ids["glance"] = self._create("user", {"name": "glance", "password": GLANCE_PASSWORD,
                                              "domain_id": "default"}, token)
        self._grant(ids["project"], ids["user"], member, token)
        self._grant(ids["service"], ids["glance"], admin, token)
        # admin of project admin also owns images there: for the admin-only copy-image
        ids["admin_project"] = self.call("GET", "/projects?name=admin", token=token)[2][
            "projects"][0]["id"]
        ids["image_service"] = self._create("service", {"type": "image", "name": "glance"},
                                            token)

    def register_image_endpoint(self, url):
        """Put ``url`` in the catalog as the image service (public, internal; RegionOne)."""
        token = self.admin_token()
        for interface in ("public", "internal"):
            self._create("endpoint", {"service_id": self.ids["image_service"],
                                      "interface": interface, "url": url,
                                      "region_id": REGION}, token)

    def application_credential(self, name):
        """A fresh application credential of the vhdport user -> (id, secret)."""
        token, _ = self.password_token("vhdport", USER_PASSWORD, "vhdport")
        _, _, doc = self.call("POST", "/users/{}/application_credentials".format(
            self.ids["user"]), {"application_credential": {"name": name}}, token=token)
        cred = doc["application_credential"]
        return cred["id"], cred["secret"]

    def clouds(self, **extra):
        """clouds.yaml entries (as a dict) for the vhdport user and for admin."""
        def entry(user, password, project):
            auth = {"auth_url": self.url, "username": user, "password": password,
                    "project_name": project, "user_domain_name": "Default",
                    "project_domain_name": "Default"}
            return {"auth": auth, "region_name": REGION, "identity_api_version": 3}
        clouds = {"vhdport": entry("vhdport", USER_PASSWORD, "vhdport"),
                  "admin": entry("admin", ADMIN_PASSWORD, "admin")}
        clouds.update(extra)
        return {"clouds": clouds}

    def stop(self):
        proc, self.proc = self.proc, None
        if proc is None or proc.poll() is not None:
            return
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=10)


class KeystoneGlance(GlanceServer):
    """A Glance behind keystonemiddleware, two file stores, import, a rewritable policy."""

    def __init__(self, workdir, keystone):
        super().__init__(workdir, token=None)
        self.keystone = keystone
        self.policy_path = os.path.join(workdir, "policy.json")

    def __repr__(self):
        return "KeystoneGlance({})".format(self.url)

    def set_policy(self, rules):
        """Write Glance's policy file (rules: dict); Glance reads it on the next request."""
        with open(self.policy_path + ".tmp", "w") as f:
            json.dump(rules, f)
        os.replace(self.policy_path + ".tmp", self.policy_path)

    def _write_config(self):
        path = super()._write_config()
        d = self.workdir
        self.set_policy({"upload_image": ""})
        conf = configparser.ConfigParser(interpolation=None)
        conf.read(path)
        conf["DEFAULT"]["enabled_backends"] = ", ".join(s + ":file" for s in STORES)
        conf.remove_section("fs")
        for name in STORES:
            os.makedirs(os.path.join(d, "store-" + name), exist_ok=True)
            conf[name] = {"filesystem_store_datadir": os.path.join(d, "store-" + name) + "/",
                          "store_description": "vhdport test store " + name}
        conf["glance_store"] = {"default_backend": STORES[0]}
        conf["paste_deploy"]["flavor"] = "keystone"
        conf["oslo_policy"]["policy_file"] = self.policy_path
        ks = self.keystone
        conf["keystone_authtoken"] = {
            "www_authenticate_uri": ks.url, "auth_url": ks.url, "auth_type": "password",
            "project_domain_name": "Default", "user_domain_name": "Default",
            "project_name": "service", "username": "glance", "password": GLANCE_PASSWORD,
            "region_name": REGION,
            # validate every request: a revoked token must be refused at once
            "token_cache_time": "-1",
        }
        with open(path, "w") as f:
            conf.write(f)
        return path

    def _env(self):
        env = super()._env()
        return {k: v for k, v in env.items() if not k.startswith("OS_")}


# --- session fixtures -----------------------------------------------------------
#
# Test modules import these fixtures; pytest then holds one definition per module, so
# the servers live in this module-level registry, refcounted: started once, stopped
# when the last session fixture is torn down (atexit as a backstop).

_lock = threading.Lock()
_state = {}
_refs = {}


def _start(kind, factory):
    with _lock:
        if kind + ":error" in _state:
            raise KeystoneUnavailable(_state[kind + ":error"])
        if kind not in _state:
            try:
                _state[kind] = factory()
            except (KeystoneUnavailable, GlanceUnavailable) as e:
                _state[kind + ":error"] = str(e)
                raise KeystoneUnavailable(str(e))
        _refs[kind] = _refs.get(kind, 0) + 1
        return _state[kind]


def _release(kind):
    with _lock:
        _refs[kind] -= 1
        if _refs[kind] > 0:
            return
        server = _state.pop(kind, None)
    if server is not None:
        server.stop()
        shutil.rmtree(server.workdir, ignore_errors=True)


def acquire_keystone():
    def make():
        server = KeystoneServer(tempfile.mkdtemp(prefix="vhdport-keystone-"))
        try:
            return server.start()
        except BaseException:
            server.stop()
            shutil.rmtree(server.workdir, ignore_errors=True)
            raise
    return _start("keystone", make)


def acquire_keystone_glance():
    """The keystone-Glance (and, held by it, the Keystone); release_keystone_glance() after."""
    keystone = acquire_keystone()

    def make():
        server = KeystoneGlance(tempfile.mkdtemp(prefix="vhdport-glance-ks-"), keystone)
        try:
            server.start()
        except BaseException:
            server.stop()
            shutil.rmtree(server.workdir, ignore_errors=True)
            raise
        keystone.register_image_endpoint(server.url)
        return server
    try:
        return _start("glance", make)
    except KeystoneUnavailable:
        _release("keystone")
        raise


def release_keystone_glance():
    _release("glance")
    _release("keystone")


@atexit.register
def _stop_all():
    for kind in ("glance", "keystone"):
        server = _state.pop(kind, None)
        if server is not None and not isinstance(server, str):
            server.stop()
            shutil.rmtree(server.workdir, ignore_errors=True)


@pytest.fixture(scope="session")
def keystone():
    """A real Keystone (admin, project+user vhdport, glance service user, image catalog)."""
    try:
        server = acquire_keystone()
    except KeystoneUnavailable as e:
        require_peer("Keystone (keystone, uwsgi, uwsgi-plugin-python3)", False, str(e))
    try:
        yield server
    finally:
        _release("keystone")


@pytest.fixture(scope="session")
def keystone_glance():
    """A Glance authenticating through ``keystone``; two stores, import enabled."""
    try:
        server = acquire_keystone_glance()
    except KeystoneUnavailable as e:
        require_peer("Keystone + Glance (keystone, glance-api, python3-keystonemiddleware)",
                     False, str(e))
    try:
        yield server
    finally:
        release_keystone_glance()
