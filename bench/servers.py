"""The peers of the benchmark: a private nginx (GET with Range, WebDAV PUT) and a real Glance.

nginx is the "HTTP server that is not the bottleneck": sendfile for downloads, a
temp file + rename for PUT.  Both listen on 127.0.0.1 only and are stopped by PID.
"""

import os
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.request

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

NGINX_CONF = """\
daemon off;
{user}
worker_processes 1;
pid {work}/nginx.pid;
error_log {work}/error.log warn;
events {{ worker_connections 64; }}
http {{
    access_log off;
    client_body_temp_path {root}/.tmp;
    proxy_temp_path {work}/proxy; fastcgi_temp_path {work}/fcgi;
    uwsgi_temp_path {work}/uwsgi; scgi_temp_path {work}/scgi;
    default_type application/octet-stream;
    sendfile on;
    tcp_nopush on;
    server {{
        listen 127.0.0.1:{port};
        root {root};
        client_max_body_size 0;
        client_body_buffer_size 1m;
        location /up/ {{
            dav_methods PUT DELETE;
            create_full_put_path on;
            dav_access user:rw group:r all:r;
        }}
    }}
}}
"""


def free_port():
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def nginx_binary():
    for path in (shutil.which("nginx"), "/usr/sbin/nginx"):
        if path and os.access(path, os.X_OK):
            return path
    return None


class Nginx(object):
    """``root`` is served at ``url``; PUT is allowed under ``url + '/up/'``."""

    def __init__(self, work):
        self.work = work
        self.root = os.path.join(work, "root")
        self.proc = None
        self.url = None

    def start(self):
        binary = nginx_binary()
        if binary is None:
            raise RuntimeError("nginx is not installed (bash bench/setup.sh as root)")
        for sub in ("root/.tmp", "root/up", "proxy", "fcgi", "uwsgi", "scgi"):
            os.makedirs(os.path.join(self.work, sub), exist_ok=True)
        port = free_port()
        conf = os.path.join(self.work, "nginx.conf")
        with open(conf, "w") as f:
            # as root, workers would drop to nobody and could not write our temp dirs
            user = "user root;" if os.geteuid() == 0 else ""
            f.write(NGINX_CONF.format(user=user, work=self.work, root=self.root, port=port))
        self.proc = subprocess.Popen([binary, "-c", conf, "-p", self.work],
                                     stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                                     stderr=open(os.path.join(self.work, "stderr.log"), "wb"))
        self.url = "http://127.0.0.1:{}".format(port)
        deadline = time.time() + 10
        while time.time() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError("nginx exited: see {}".format(self.work))
            try:
                urllib.request.urlopen(self.url + "/up/", timeout=1).read()
            except urllib.error.HTTPError:
                return self     # up (403/404 for the directory is fine)
            except OSError:
                time.sleep(0.05)
                continue
            return self
        self.stop()
        raise RuntimeError("nginx did not answer on {}".format(self.url))

    def stop(self):
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGQUIT)   # graceful: workers exit too
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.proc = None


def start_glance(work):
    """A real Glance from tests/peers (installed by scripts/glance-setup.sh); or raise."""
    if REPO not in sys.path:
        sys.path.insert(0, REPO)
    from tests.peers.glance_server import GlanceServer
    os.makedirs(work, exist_ok=True)
    return GlanceServer(work).start()
