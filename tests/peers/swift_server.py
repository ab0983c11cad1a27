"""A real all-in-one OpenStack Swift (Debian's swift packages) for the object-store tests.

One account, container and object server each (``mount_check = false``, one device in
a directory on /dev/shm or the temp dir -- both need user xattrs), rings of that one
device built with ``swift-ring-builder``, a memcached, and a proxy whose pipeline has
``s3api`` before ``tempauth`` and ``slo`` after ``s3api``, so the same account speaks
both the Swift API (v1 auth, user ``test:tester`` / key ``testing``) and the S3 API
(access key ``test:tester``, secret ``testing``, region ``us-east-1``).  Everything
binds 127.0.0.1 on free ports and runs under the system python3 as the current user.

``swift_peer`` is the session fixture: it starts once per run and is stopped by PID.
Without the packages the tests skip -- except under ``CI=true``, where they fail.
"""

import atexit
import getpass
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

ACCOUNT, USER, KEY = "test", "tester", "testing"
REGION = "us-east-1"
#: parts smaller than S3's 5 MiB minimum are allowed here so that tests stay small
MIN_SEGMENT_SIZE = 64 * 1024
START_TIMEOUT = 60.0
SERVERS = ("account", "container", "object")
PIPELINE = ("catch_errors gatekeeper healthcheck proxy-logging cache listing_formats s3api "
            "tempauth copy slo dlo versioned_writes symlink proxy-logging proxy-server")


class SwiftUnavailable(Exception):
    """Swift cannot run here; the message says why."""


def _tool(name):
    for folder in ("/usr/bin", "/usr/local/bin", "/usr/sbin"):
        path = os.path.join(folder, name)
        if os.access(path, os.X_OK):
            return path
    return shutil.which(name)


def free_port():
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _storage_parent():
    """A directory on a filesystem with user xattrs (Swift's object metadata lives there)."""
    for candidate in ("/dev/shm", tempfile.gettempdir()):
        if not os.path.isdir(candidate) or not os.access(candidate, os.W_OK):
            continue
        probe = tempfile.mkdtemp(prefix="vhdport-xattr-", dir=candidate)
        try:
            path = os.path.join(probe, "f")
            open(path, "wb").close()
            os.setxattr(path, "user.vhdport", b"1")
            return candidate
        except OSError:
            continue
        finally:
            shutil.rmtree(probe, ignore_errors=True)
    raise SwiftUnavailable("no writable filesystem with user xattrs (/dev/shm or {})".format(
        tempfile.gettempdir()))


class SwiftServer(object):
    """The processes of one all-in-one Swift; ``url`` is the proxy, ``auth_url`` its v1 auth."""

    def __init__(self, workdir):
        self.workdir = workdir
        self.swift_dir = os.path.join(workdir, "etc")
        self.devices = os.path.join(workdir, "srv")
        self.procs = {}
        self.ports = {}
        self.url = self.auth_url = None
        self.user, self.key = "{}:{}".format(ACCOUNT, USER), KEY
        self.region = REGION

    def __repr__(self):
        return "SwiftServer({})".format(self.url)

    # --- configuration ----------------------------------------------------

    def _common(self, port):
        return ("[DEFAULT]\nbind_ip = 127.0.0.1\nbind_port = {}\nworkers = 0\nuser = {}\n"
                "swift_dir = {}\ndevices = {}\nmount_check = false\nlog_level = INFO\n"
                "log_address = {}\n").format(port, getpass.getuser(), self.swift_dir,
                                             self.devices,
                                             os.path.join(self.workdir, "no-syslog"))

    def _write_configs(self):
        os.makedirs(self.swift_dir, exist_ok=True)
        os.makedirs(os.path.join(self.devices, "d1"), exist_ok=True)
        with open(os.path.join(self.swift_dir, "swift.conf"), "w") as f:
            f.write("[swift-hash]\nswift_hash_path_suffix = vhdport-test\n"
                    "swift_hash_path_prefix = vhdport\n\n"
                    "[storage-policy:0]\nname = Policy-0\ndefault = yes\n")
        for kind in SERVERS:
            self.ports[kind] = free_port()
            with open(os.path.join(self.swift_dir, kind + "-server.conf"), "w") as f:
                f.write(self._common(self.ports[kind]))
                f.write("\n[pipeline:main]\npipeline = {0}-server\n\n[app:{0}-server]\n"
                        "use = egg:swift#{0}\n".format(kind))
                if kind == "container":
                    f.write("\n[container-sharder]\n")
        self.ports["proxy"] = free_port()
        self.ports["memcached"] = free_port()
        filters = {
            "catch_errors": "", "gatekeeper": "", "healthcheck": "", "proxy-logging":
            "use = egg:swift#proxy_logging\n", "listing_formats": "", "copy": "", "slo": "",
            "dlo": "", "versioned_writes": "", "symlink": "",
            "cache": "memcache_servers = 127.0.0.1:{}\n".format(self.ports["memcached"]),
            "s3api": "location = {}\nmin_segment_size = {}\n".format(REGION, MIN_SEGMENT_SIZE),
            "tempauth": "user_{}_{} = {} .admin\n".format(ACCOUNT, USER, KEY),
        }
        eggs = {"catch_errors": "catch_errors", "cache": "memcache",
                "versioned_writes": "versioned_writes"}
        with open(os.path.join(self.swift_dir, "proxy-server.conf"), "w") as f:
            f.write(self._common(self.ports["proxy"]))
            f.write("\n[pipeline:main]\npipeline = {}\n".format(PIPELINE))
            # one node per ring: never error-limit it, and be patient with a loaded machine
            f.write("\n[app:proxy-server]\nuse = egg:swift#proxy\naccount_autocreate = true\n"
                    "conn_timeout = 5\nnode_timeout = 60\nerror_suppression_limit = 1000000\n"
                    "error_suppression_interval = 1\n")
            for name, extra in sorted(filters.items()):
                f.write("\n[filter:{}]\n".format(name))
                if not extra.startswith("use ="):
                    f.write("use = egg:swift#{}\n".format(eggs.get(name, name)))
                f.write(extra)

    def _build_rings(self, builder):
        for kind in SERVERS:
            path = os.path.join(self.swift_dir, kind + ".builder")
            steps = (["create", "2", "1", "0"],
                     ["add", "r1z1-127.0.0.1:{}/d1".format(self.ports[kind]), "1"],
                     ["rebalance"])
            for step in steps:
                res = subprocess.run([builder, path] + step, stdin=subprocess.DEVNULL,
                                     stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                                     env=self._env(), timeout=60)
                if res.returncode not in (0, 1):  # 1: a warning, e.g. about balance
                    raise SwiftUnavailable("swift-ring-builder {} failed: {}".format(
                        " ".join(step), res.stdout.decode("utf-8", "replace")[-800:]))

    def _env(self):
        env = {k: v for k, v in os.environ.items()
               if k not in ("VIRTUAL_ENV", "PYTHONHOME", "PYTHONPATH", "PYTHONSTARTUP")}
        env["PATH"] = os.pathsep.join(
            p for p in env.get("PATH", "/usr/bin:/bin").split(os.pathsep)
            if not p.startswith(os.path.dirname(sys.executable)))
        return env

    # --- lifecycle --------------------------------------------------------

    def start(self):
        tools = {name: _tool(name) for name in (
            "swift-ring-builder", "swift-proxy-server", "swift-account-server",
            "swift-container-server", "swift-object-server", "memcached")}
        missing = sorted(name for name, path in tools.items() if not path)
        if missing:
            raise SwiftUnavailable("not installed: {} (Debian packages swift swift-proxy "
                                   "swift-account swift-container swift-object memcached; "
                                   "scripts/sysdeps.sh installs them as root)".format(
                                       ", ".join(missing)))
        self._write_configs()
        self._build_rings(tools["swift-ring-builder"])
        memcached = [tools["memcached"], "-l", "127.0.0.1", "-p", str(self.ports["memcached"]),
                     "-U", "0", "-m", "16"]
        if os.geteuid() == 0:
            memcached += ["-u", "root"]
        self._spawn("memcached", memcached)
        for kind in SERVERS + ("proxy",):
            conf = os.path.join(self.swift_dir, kind + "-server.conf")
            self._spawn(kind, [tools["swift-{}-server".format(kind)], conf, "-v"])
        self.url = "http://127.0.0.1:{}".format(self.ports["proxy"])
        self.auth_url = self.url + "/auth/v1.0"
        self._wait_ready()
        return self

    def _spawn(self, name, argv):
        out = open(os.path.join(self.workdir, name + ".log"), "ab")
        try:
            self.procs[name] = subprocess.Popen(
                argv, stdin=subprocess.DEVNULL, stdout=out, stderr=subprocess.STDOUT,
                env=self._env(), cwd=self.workdir, start_new_session=True)
        except OSError as e:
            raise SwiftUnavailable("cannot run {}: {}".format(argv[0], e))
        finally:
            out.close()

    def _wait_ready(self):
        """Ready when every server accepts connections, v1 auth answers and an account
        HEAD succeeds (the proxy answers before the servers behind it listen)."""
        deadline = time.monotonic() + START_TIMEOUT
        last = None
        while time.monotonic() < deadline:
            for name, proc in self.procs.items():
                if proc.poll() is not None:
                    raise SwiftUnavailable("{} exited {} at start: {}".format(
                        name, proc.returncode, self.log_tail(name)))
            try:
                for name in SERVERS + ("memcached", "proxy"):
                    socket.create_connection(("127.0.0.1", self.ports[name]), timeout=2).close()
                storage_url, token = self.v1_auth()
                req = urllib.request.Request(storage_url, method="HEAD",
                                             headers={"X-Auth-Token": token})
                with urllib.request.urlopen(req, timeout=5) as r:
                    if r.status in (200, 204):
                        return
            except (OSError, ValueError) as e:
                last = e
            time.sleep(0.2)
        raise SwiftUnavailable("swift did not become ready within {:.0f}s ({}): {}".format(
            START_TIMEOUT, last, self.log_tail("proxy")))

    def v1_auth(self):
        """(storage URL, token) from tempauth."""
        req = urllib.request.Request(self.auth_url, headers={
            "X-Auth-User": self.user, "X-Auth-Key": self.key})
        with urllib.request.urlopen(req, timeout=5) as r:
            return r.headers["X-Storage-Url"], r.headers["X-Auth-Token"]

    def log_tail(self, name, chars=1500):
        try:
            with open(os.path.join(self.workdir, name + ".log"), "rb") as f:
                return f.read().decode("utf-8", "replace")[-chars:]
        except OSError:
            return ""

    def stop(self):
        procs, self.procs = self.procs, {}
        for proc in procs.values():
            if proc.poll() is None:
                proc.send_signal(signal.SIGTERM)
        for proc in procs.values():
            try:
                proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(timeout=10)


# --- the session fixture ---------------------------------------------------------------------

_state = {}
_lock = threading.Lock()


def acquire_swift():
    with _lock:
        if "error" in _state:
            raise SwiftUnavailable(_state["error"])
        if "server" not in _state:
            workdir = tempfile.mkdtemp(prefix="vhdport-swift-", dir=_storage_parent())
            server = SwiftServer(workdir)
            try:
                server.start()
            except (SwiftUnavailable, OSError, subprocess.SubprocessError) as e:
                server.stop()
                shutil.rmtree(workdir, ignore_errors=True)
                _state["error"] = str(e)
                raise SwiftUnavailable(str(e))
            _state["server"] = server
        return _state["server"]


@atexit.register
def _stop():
    server = _state.pop("server", None)
    if server is not None:
        server.stop()
        if os.environ.get("VHDPORT_KEEP_SWIFT"):  # for debugging: logs and storage stay
            sys.stderr.write("swift peer kept in {}\n".format(server.workdir))
        else:
            shutil.rmtree(server.workdir, ignore_errors=True)


@pytest.fixture(scope="session")
def swift_peer():
    """The running all-in-one Swift (a :class:`SwiftServer`), shared by the whole session."""
    try:
        server = acquire_swift()
    except SwiftUnavailable as e:
        require_peer("OpenStack Swift (swift swift-proxy swift-account swift-container "
                     "swift-object memcached)", False, str(e))
    yield server
    _stop()
