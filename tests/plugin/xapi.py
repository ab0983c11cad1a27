"""Run the installed plugin exactly as XAPI does: ``python3 -I -S PLUGIN <methodCall>``."""

import json
import os
import shutil
import subprocess
import sys
import xmlrpc.client

from tests.runtimes import py36

SESSION = "OpaqueRef:00000000-test-session"


def python3():
    """The plugin's interpreter: dom0's 3.6 when the tests themselves run under 3.6
    (``make test-py36``), else the host's /usr/bin/python3 (the plugin's shebang)."""
    if sys.version_info[:2] == (3, 6):
        return python36() or sys.executable
    return "/usr/bin/python3" if os.path.exists("/usr/bin/python3") else sys.executable


class Reply(object):
    """A parsed methodResponse plus what the plugin wrote on stderr."""

    def __init__(self, struct, stderr, stdout):
        self.struct, self.stderr, self.stdout = struct, stderr, stdout

    @property
    def ok(self):
        return self.struct["Status"] == "Success"

    @property
    def value(self):
        assert self.ok, self.struct
        return self.struct["Value"]

    def json(self):
        return json.loads(self.value)

    @property
    def error(self):
        assert not self.ok, self.struct
        return self.struct["ErrorDescription"]

    def __repr__(self):
        return "Reply({!r})".format(self.struct)


def python36():
    """dom0's Python 3.6: the vendored runtime (tests/runtimes/), or $VHDPORT_TEST_PY36.

    None when it cannot run here; python36_problem() says why (tests go through require_peer,
    so under CI=true that fails).
    """
    try:
        return py36.interpreter()
    except py36.RuntimeUnavailable:
        return None


def python36_problem():
    """Why python36() is None ("" when it is not)."""
    try:
        py36.interpreter()
    except py36.RuntimeUnavailable as e:
        return str(e)
    return ""


def call(plugin, fn, args, env=None, isolated=True, timeout=120, python=None):
    """Call ``fn`` with ``args`` (dict of strings); return the parsed Reply."""
    request = xmlrpc.client.dumps((SESSION, args), methodname=fn)
    full_env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "VHDPORT_LOG": "stderr"}
    full_env.update(env or {})
    cmd = [python or python3()] + (["-I", "-S"] if isolated else ["-S"]) + [plugin, request]
    proc = subprocess.run(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                          universal_newlines=True, env=full_env, timeout=timeout)
    assert proc.returncode == 0, (proc.returncode, proc.stdout, proc.stderr)
    params, method = xmlrpc.client.loads(proc.stdout)
    assert method is None and len(params) == 1, proc.stdout
    return Reply(params[0], proc.stderr, proc.stdout)


def params_args(**params):
    return {"params": json.dumps(params)}


def have_vermin():
    return shutil.which("vermin") or os.path.exists(os.path.join(os.path.dirname(sys.executable),
                                                                 "vermin"))
