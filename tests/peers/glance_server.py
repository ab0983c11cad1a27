"""A real OpenStack Glance (Debian's glance-api) for the store tests.

Each server gets its own directory: a standalone config (sqlite, file store,
127.0.0.1 on a free port, workers=0), a copy of the system paste config with an
extra pipeline for token mode, its database made by ``glance-manage db_sync``.
Glance runs under the system python3, not our venv.  When Glance is missing and
cannot be installed (not root, no apt-get, offline) or will not start, tests skip
with the reason -- never fail for that.

Use the session fixtures ``glance_noauth`` / ``glance_auth`` (import them into
a test module); each Glance starts once per test run and is stopped by PID.
"""

import atexit
import configparser
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request

import pytest

from tests.peers.require import require_peer

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
PEERS_DIR = os.path.dirname(os.path.abspath(__file__))
SETUP_SCRIPT = os.path.join(REPO, "scripts", "glance-setup.sh")
SYSTEM_PASTE = "/etc/glance/glance-api-paste.ini"
TEST_TOKEN = "vhdport-test-token-0f3c9a"
START_TIMEOUT = 90.0


class GlanceUnavailable(Exception):
    """Glance cannot run here; the message says why (used as the skip reason)."""


def _tool(name):
    found = shutil.which(name)
    if found:
        return found
    for folder in ("/usr/bin", "/usr/local/bin"):
        path = os.path.join(folder, name)
        if os.access(path, os.X_OK):
            return path
    return None


_install_lock = threading.Lock()
_install_result = {}


def ensure_glance_installed():
    """Return (glance-api, glance-manage) paths, installing Debian's glance-api if we may."""
    with _install_lock:
        if "tools" in _install_result:
            return _install_result["tools"]
        if "error" in _install_result:
            raise GlanceUnavailable(_install_result["error"])
        api, manage = _tool("glance-api"), _tool("glance-manage")
        if not (api and manage):
            if os.environ.get("VHDPORT_NO_GLANCE_INSTALL"):
                why = "glance-api not installed (VHDPORT_NO_GLANCE_INSTALL set)"
            elif os.geteuid() != 0 or not _tool("apt-get"):
                why = ("glance-api not installed and not root on Debian; "
                       "run scripts/glance-setup.sh as root")
            else:
                why = None
                try:
                    subprocess.run(["bash", SETUP_SCRIPT], stdin=subprocess.DEVNULL,
                                   stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                                   timeout=900, check=False)
                except (OSError, subprocess.TimeoutExpired) as e:
                    why = "scripts/glance-setup.sh failed: {}".format(e)
                api, manage = _tool("glance-api"), _tool("glance-manage")
                if not (api and manage) and why is None:
                    why = "scripts/glance-setup.sh could not install glance-api (apt-get failed?)"
            if not (api and manage):
                _install_result["error"] = why
                raise GlanceUnavailable(why)
        if not os.path.exists(SYSTEM_PASTE):
            _install_result["error"] = "{} missing; glance-api install broken".format(SYSTEM_PASTE)
            raise GlanceUnavailable(_install_result["error"])
        _install_result["tools"] = (api, manage)
        return api, manage


def free_port():
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class GlanceServer(object):
    """One private glance-api process; ``url`` is its endpoint, ``token`` the one it wants."""

    def __init__(self, workdir, token=None):
        self.workdir = workdir
        self.token = token
        self.port = None
        self.proc = None
        self.log_path = os.path.join(workdir, "glance-api.log")
        self.url = None

    def __repr__(self):
        return "GlanceServer({}, auth={})".format(self.url, self.token is not None)

    # --- configuration ----------------------------------------------------

    def _write_config(self):
        d = self.workdir
        for sub in ("images", "staging", "tasks", "locks", "conf.d"):
            os.makedirs(os.path.join(d, sub), exist_ok=True)
        paste = os.path.join(d, "glance-api-paste.ini")
        self._write_paste(paste)
        conf = configparser.ConfigParser(interpolation=None)
        conf["DEFAULT"] = {
            "bind_host": "127.0.0.1", "bind_port": str(self.port), "workers": "0",
            "enabled_backends": "fs:file", "log_file": self.log_path, "debug": "false",
            "image_cache_dir": os.path.join(d, "cache"),
        }
        conf["database"] = {"connection": "sqlite:///" + os.path.join(d, "glance.sqlite")}
        conf["glance_store"] = {"default_backend": "fs"}
        conf["fs"] = {"filesystem_store_datadir": os.path.join(d, "images") + "/"}
        conf["os_glance_staging_store"] = {
            "filesystem_store_datadir": os.path.join(d, "staging") + "/"}
        conf["os_glance_tasks_store"] = {
            "filesystem_store_datadir": os.path.join(d, "tasks") + "/"}
        conf["paste_deploy"] = {"config_file": paste,
                                "flavor": "vhdporttoken" if self.token else ""}
        conf["oslo_concurrency"] = {"lock_path": os.path.join(d, "locks")}
        conf["oslo_policy"] = {"enforce_scope": "false", "enforce_new_defaults": "false"}
        path = os.path.join(d, "glance-api.conf")
        with open(path, "w") as f:
            conf.write(f)
        return path

    def _write_paste(self, path):
        shutil.copyfile(SYSTEM_PASTE, path)
        if not self.token:
            return
        system = configparser.ConfigParser(interpolation=None)
        system.read(SYSTEM_PASTE)
        keystone = system.get("pipeline:glance-api-keystone", "pipeline").split()
        pipeline = ["vhdporttoken" if step == "authtoken" else step for step in keystone]
        if "vhdporttoken" not in pipeline:
            raise GlanceUnavailable("unexpected paste pipeline in {}: {}".format(
                SYSTEM_PASTE, keystone))
        with open(path, "a") as f:
            f.write("\n[pipeline:glance-api-vhdporttoken]\npipeline = {}\n".format(
                " ".join(pipeline)))
            f.write("\n[filter:vhdporttoken]\n"
                    "paste.filter_factory = glance_token_filter:filter_factory\n"
                    "token = {}\n".format(self.token))

    def _env(self):
        env = {k: v for k, v in os.environ.items()
               if k not in ("VIRTUAL_ENV", "PYTHONHOME", "PYTHONPATH", "PYTHONSTARTUP")}
        env["PATH"] = os.pathsep.join(
            p for p in env.get("PATH", "/usr/bin:/bin").split(os.pathsep)
            if not p.startswith(os.path.dirname(sys.executable)))
        env["PYTHONPATH"] = PEERS_DIR  # for glance_token_filter
        env["HOME"] = self.workdir
        return env

    # --- lifecycle --------------------------------------------------------

    def start(self):
        api, manage = ensure_glance_installed()
        last = None
        for _ in range(3):  # the free port may be taken between probe and bind
            self.port = free_port()
            self.url = "http://127.0.0.1:{}".format(self.port)
            conf = self._write_config()
            try:
                self._db_sync(manage, conf)
                self._launch(api, conf)
                return self
            except GlanceUnavailable as e:
                last = e
                self.stop()
        raise last

    def _db_sync(self, manage, conf):
        if os.path.exists(os.path.join(self.workdir, "glance.sqlite")):
            return
        try:
            res = subprocess.run([manage, "--config-file", conf, "db_sync"],
                                 stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                                 stderr=subprocess.STDOUT, env=self._env(), timeout=120,
                                 cwd=self.workdir)
        except (OSError, subprocess.TimeoutExpired) as e:
            raise GlanceUnavailable("glance-manage db_sync failed: {}".format(e))
        if res.returncode != 0:
            raise GlanceUnavailable("glance-manage db_sync exited {}: {}".format(
                res.returncode, res.stdout.decode("utf-8", "replace")[-1500:]))

    def _launch(self, api, conf):
        out = open(os.path.join(self.workdir, "glance-api.stdout"), "ab")
        try:
            self.proc = subprocess.Popen(
                [api, "--config-file", conf, "--config-dir", os.path.join(self.workdir, "conf.d")],
                stdin=subprocess.DEVNULL, stdout=out, stderr=subprocess.STDOUT,
                env=self._env(), cwd=self.workdir, start_new_session=True)
        except OSError as e:
            raise GlanceUnavailable("cannot run glance-api: {}".format(e))
        finally:
            out.close()
        deadline = time.monotonic() + START_TIMEOUT
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise GlanceUnavailable("glance-api exited {} at start: {}".format(
                    self.proc.returncode, self.log_tail()))
            try:
                with urllib.request.urlopen(self.url + "/healthcheck", timeout=2) as r:
                    if r.status == 200:
                        return
            except OSError:
                pass
            time.sleep(0.2)
        raise GlanceUnavailable("glance-api did not answer /healthcheck within {:.0f}s: {}"
                                .format(START_TIMEOUT, self.log_tail()))

    def log_tail(self, chars=1500):
        text = ""
        for name in ("glance-api.stdout", "glance-api.log"):
            try:
                with open(os.path.join(self.workdir, name), "rb") as f:
                    text += f.read().decode("utf-8", "replace")
            except OSError:
                pass
        return text[-chars:]

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


# --- session fixtures ------------------------------------------------------
#
# Test modules import these fixtures; pytest then holds one definition per
# module, so the servers live in this module-level registry (refcounted) and
# each mode starts only once per run.

_servers = {}
_failures = {}
_refs = {}
_lock = threading.Lock()


def acquire_glance(mode):
    """Start (once) and return the Glance server of ``mode`` ('noauth' or 'auth')."""
    with _lock:
        if mode in _failures:
            raise GlanceUnavailable(_failures[mode])
        server = _servers.get(mode)
        if server is None:
            workdir = tempfile.mkdtemp(prefix="vhdport-glance-{}-".format(mode))
            server = GlanceServer(workdir, token=TEST_TOKEN if mode == "auth" else None)
            try:
                server.start()
            except GlanceUnavailable as e:
                _failures[mode] = str(e)
                shutil.rmtree(workdir, ignore_errors=True)
                raise
            _servers[mode] = server
        _refs[mode] = _refs.get(mode, 0) + 1
        return server


def release_glance(mode):
    with _lock:
        _refs[mode] -= 1
        if _refs[mode] > 0:
            return
        server = _servers.pop(mode, None)
    if server is not None:
        server.stop()
        shutil.rmtree(server.workdir, ignore_errors=True)


@atexit.register
def _stop_all():
    for mode in list(_servers):
        server = _servers.pop(mode)
        server.stop()
        shutil.rmtree(server.workdir, ignore_errors=True)


def _fixture(mode):
    try:
        server = acquire_glance(mode)
    except GlanceUnavailable as e:
        require_peer("Glance (glance-api)", False, str(e))
    try:
        yield server
    finally:
        release_glance(mode)


@pytest.fixture(scope="session")
def glance_noauth():
    """A Glance without authentication (unauthenticated-context pipeline)."""
    yield from _fixture("noauth")


@pytest.fixture(scope="session")
def glance_auth():
    """A Glance that wants X-Auth-Token == TEST_TOKEN (admin, member, reader roles)."""
    yield from _fixture("auth")
