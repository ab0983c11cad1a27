"""Run the installed plugin exactly as XAPI does: ``python3 -I -S PLUGIN <methodCall>``."""

import glob
import json
import os
import shutil
import subprocess
import sys
import xmlrpc.client

SESSION = "OpaqueRef:00000000-test-session"


def python3():
    """The host-like interpreter: /usr/bin/python3 (the plugin's shebang) when present."""
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
    """A working Python 3.6 interpreter (dom0's version) if this machine has one, else None."""
    candidates = [os.environ.get("VHDPORT_TEST_PY36")]
    candidates += sorted(glob.glob(os.path.expanduser("~/.pyenv/versions/3.6*/bin/python3.6")))
    candidates += [shutil.which("python3.6")]  # last: may be a pyenv shim that cannot run
    for found in candidates:
        if not found or not os.path.exists(found):
            continue
        try:
            proc = subprocess.run([found, "-I", "-S", "-c", "import sys; print(sys.version_info[:2])"],
                                  stdout=subprocess.PIPE, stderr=subprocess.DEVNULL,
                                  universal_newlines=True, timeout=30)
        except (OSError, subprocess.SubprocessError):
            continue
        if proc.returncode == 0 and proc.stdout.strip() == "(3, 6)":
            return found
    return None


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
