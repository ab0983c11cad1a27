"""The XAPI plugin protocol itself, the install, and the zipapp's dom0 compatibility."""

import os
import subprocess
import sys
import xmlrpc.client
import zipfile

import pytest

from vhdport.plugin_install import install
from tests.plugin.xapi import SESSION, call, params_args, python3


def test_unknown_function(plugin):
    reply = call(plugin, "no_such_fn", {})
    assert reply.error == ["UNKNOWN_XENAPI_PLUGIN_FUNCTION", "no_such_fn"]


def test_response_is_the_only_stdout(plugin):
    reply = call(plugin, "no_such_fn", {})
    assert reply.stdout.startswith("<?xml") and reply.stdout.rstrip().endswith("</methodResponse>")


@pytest.mark.parametrize("fn", ["download_vhd", "download_vhd2", "upload_vhd", "upload_vhd2"])
def test_missing_params(plugin, fn):
    reply = call(plugin, fn, {"other": "x"})
    code, message = reply.error
    assert code == "PLUGIN_ARGS"
    assert "'params'" in message and fn in message and "other" in message


@pytest.mark.parametrize("blob", [
    "(dp0\nS'image_id'\np1\nS'abc'\np2\ns.",          # protocol 0, what old nova sent
    "(lp0\nS'image_id'\np1\na.",                     # a pickled list
    # binary pickles start with 0x80; XML cannot carry their control bytes, so only a prefix
    "\x80}\x85image_id",
])
def test_pickled_params_refused(plugin, blob, tmp_path):
    reply = call(plugin, "download_vhd", {"params": blob})
    code, message = reply.error
    assert code == "PLUGIN_ARGS"
    assert "pickle" in message and "JSON" in message


def test_not_json_and_not_object(plugin):
    code, message = call(plugin, "download_vhd", {"params": "{nope"}).error
    assert code == "PLUGIN_ARGS" and "not valid JSON" in message
    code, message = call(plugin, "upload_vhd", {"params": "[1, 2]"}).error
    assert code == "PLUGIN_ARGS" and "JSON object" in message


def test_missing_keys_and_unknown_keys(plugin, tmp_path):
    code, message = call(plugin, "download_vhd", params_args(store=str(tmp_path))).error
    assert code == "PLUGIN_ARGS" and "'image_id'" in message
    code, message = call(plugin, "download_vhd",
                         params_args(image_id="x", sr_path="/x", stroe=str(tmp_path))).error
    assert code == "PLUGIN_ARGS" and "stroe" in message
    code, message = call(plugin, "upload_vhd",
                         params_args(store=str(tmp_path), sr_path=str(tmp_path))).error
    assert code == "PLUGIN_ARGS" and "vdi_uuids" in message
    code, message = call(plugin, "upload_vhd", params_args(
        store=str(tmp_path), sr_path=str(tmp_path), vdi_uuids=["../x"])).error
    assert code == "PLUGIN_ARGS" and "canonical uuid" in message


def test_tokens_never_in_logs_or_errors(plugin, tmp_path):
    token = "gAAAAAB-super-secret-token-value"
    args = params_args(image_id="3a0e1f2b-0000-4000-8000-000000000000", sr_path=str(tmp_path),
                       store="ftp://{}@example.invalid/".format(token), auth_token=token,
                       extra_headers={"X-Auth-Token": token, "X-Trace": "visible"})
    reply = call(plugin, "download_vhd", args)
    assert reply.error[0] == "STORE_ERROR"
    assert token not in reply.stdout and token not in reply.stderr
    assert '"auth_token": "***"' in reply.stderr and "visible" in reply.stderr


def test_vhdport_errors_through_host_xenapiplugin(installed, tmp_path):
    """On a real dom0 XAPI's own XenAPIPlugin.dispatch runs; our errors keep their codes."""
    plugin = installed[0]
    fake = tmp_path / "site"
    fake.mkdir()
    (fake / "XenAPI.py").write_text(
        "class _Local(object):\n    _session = None\n\n"
        "def xapi_local():\n    return _Local()\n")
    # a minimal XenAPIPlugin with the host's shapes; it tags its output so we see it ran
    (fake / "XenAPIPlugin.py").write_text(
        "import sys\nimport xmlrpc.client\nimport XenAPI\n\n"
        "class Failure(Exception):\n"
        "    def __init__(self, code, params):\n"
        "        Exception.__init__(self)\n"
        "        self.params = [code] + params\n\n"
        "def _out(d):\n"
        "    sys.stderr.write('host-dispatch\\n')\n"
        "    print(xmlrpc.client.dumps((d,), '', True))\n\n"
        "def dispatch(table):\n"
        "    params, name = xmlrpc.client.loads(sys.argv[1])\n"
        "    if name not in table:\n"
        "        return _out({'Status': 'Failure', 'ErrorDescription': "
        "['UNKNOWN_XENAPI_PLUGIN_FUNCTION', name]})\n"
        "    try:\n"
        "        _out({'Status': 'Success', 'Value': table[name](XenAPI.xapi_local(), params[1])})\n"
        "    except Failure as e:\n"
        "        _out({'Status': 'Failure', 'ErrorDescription': e.params})\n")
    env = {"PYTHONPATH": str(fake)}
    reply = call(plugin, "copy_kernel_vdi", {"vdi-uuid": "x"}, env, isolated=False)
    assert "host-dispatch" in reply.stderr
    assert reply.error[0] == "PLUGIN_ARGS" and "'image-size'" in reply.error[1]


def test_wrong_argv_exits_with_usage(plugin):
    proc = subprocess.run([python3(), "-I", "-S", plugin], stdout=subprocess.PIPE,
                          stderr=subprocess.PIPE, universal_newlines=True, timeout=60)
    assert proc.returncode != 0 and "usage" in proc.stderr and proc.stdout == ""


def test_in_process_unexpected_error_shape():
    """Non-vhdport exceptions are reported like XenAPIPlugin does: code, fn, class, message."""
    from vhdport import plugin as mod
    import io

    def boom(session, args):
        raise ValueError("kaput")

    out = io.StringIO()
    table = {"boom": mod.wrap("boom", boom, mod.Failure)}
    mod.dispatch(table, ["plugin", xmlrpc.client.dumps((SESSION, {}), methodname="boom")], out)
    (struct,), _ = xmlrpc.client.loads(out.getvalue())
    assert struct == {"Status": "Failure",
                      "ErrorDescription": ["XENAPI_PLUGIN_FAILURE", "boom", "ValueError", "kaput"]}

    def leave(session, args):
        raise SystemExit(3)

    table = {"leave": mod.wrap("leave", leave, mod.Failure)}
    with pytest.raises(SystemExit):
        mod.dispatch(table, ["plugin", xmlrpc.client.dumps((SESSION, {}), methodname="leave")],
                     io.StringIO())


# --- install -------------------------------------------------------------------------------


def test_install_layout(tmp_path):
    root = str(tmp_path / "root")
    plugin, pyz = install(root)
    assert plugin == os.path.join(root, "etc", "xapi.d", "plugins", "vhdport")
    assert pyz == plugin + ".pyz"
    assert os.stat(plugin).st_mode & 0o777 == 0o755
    assert os.stat(pyz).st_mode & 0o777 == 0o644
    with open(plugin) as f:
        assert f.readline() == "#!/usr/bin/python3\n"
    names = zipfile.ZipFile(pyz).namelist()
    assert "__main__.py" in names and "vhdport/plugin.py" in names
    assert "vhdport/kernel.py" in names and "vhdport/vhd/chain.py" in names
    assert not [n for n in names if n.startswith("vhdport/cli/") or "__pycache__" in n]
    # reinstalling replaces in place and leaves no temp files
    install(root)
    assert sorted(os.listdir(os.path.dirname(plugin))) == ["vhdport", "vhdport.pyz"]


def test_plugin_runs_as_an_executable(installed):
    """XAPI execs the file itself: shebang + mode must work, not only `python3 PLUGIN`."""
    request = xmlrpc.client.dumps((SESSION, {}), methodname="nope")
    proc = subprocess.run([installed[0], request], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                          universal_newlines=True, timeout=60,
                          env={"PATH": "/usr/bin:/bin", "VHDPORT_LOG": "stderr"})
    (struct,), _ = xmlrpc.client.loads(proc.stdout)
    assert struct["ErrorDescription"] == ["UNKNOWN_XENAPI_PLUGIN_FUNCTION", "nope"]


def test_zipapp_is_python36_compatible(installed, tmp_path):
    """vermin -t=3.6- over everything the host will run."""
    vermin = os.path.join(os.path.dirname(sys.executable), "vermin")
    assert os.path.exists(vermin), "vermin is a test dependency (pip install -e '.[test]')"
    out = tmp_path / "pyz"
    zipfile.ZipFile(installed[1]).extractall(str(out))
    files = [str(p) for p in out.rglob("*.py")]
    assert len(files) > 20
    proc = subprocess.run([vermin, "-q", "-t=3.6-", "--no-tips", "--violations"] + files,
                          stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                          universal_newlines=True, timeout=300)
    assert proc.returncode == 0 and proc.stdout.strip() == "", proc.stdout


def test_zipapp_imports_only_the_standard_library(installed, tmp_path):
    """Import every core module from the zipapp under -I -S: nothing from site-packages."""
    names = sorted(n[:-3].replace("/", ".").replace(".__init__", "")
                   for n in zipfile.ZipFile(installed[1]).namelist()
                   if n.startswith("vhdport/") and n.endswith(".py"))
    code = ("import sys, importlib\nsys.path.insert(0, sys.argv[1])\n"
            "for name in sys.argv[2:]:\n    importlib.import_module(name)\n"
            "bad = [m for m in sys.modules.values() if 'site-packages' in "
            "str(getattr(m, '__file__', '') or '')]\n"
            "assert not bad, bad\nprint('ok')\n")
    proc = subprocess.run([python3(), "-I", "-S", "-c", code, installed[1]] + names,
                          stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                          universal_newlines=True, timeout=120)
    assert proc.stdout.strip() == "ok", proc.stderr


def test_unexpected_error_traceback_is_redacted():
    """A token inside an unexpected exception leaves neither the log traceback nor the reply."""
    from vhdport import plugin as mod
    import io
    import logging

    secret = "tok-" + "9" * 24
    mod.add_secret(secret)
    buf = io.StringIO()
    handler = logging.StreamHandler(buf)
    handler.addFilter(mod._RedactingFilter())
    mod.log.addHandler(handler)
    try:
        def leak(session, args):
            raise RuntimeError("GET failed with X-Auth-Token: " + secret)

        with pytest.raises(mod.Failure) as err:
            mod.wrap("leak", leak, mod.Failure)(SESSION, {})
    finally:
        mod.log.removeHandler(handler)
    assert err.value.params[:3] == ["XENAPI_PLUGIN_FAILURE", "leak", "RuntimeError"]
    assert secret not in str(err.value.params) and "***" in err.value.params[3]
    logged = buf.getvalue()
    assert "Traceback" in logged and "RuntimeError" in logged and secret not in logged


def test_zipapp_alone_is_the_plugin_too(installed):
    """`python3 vhdport.pyz <methodCall>` enters the same plugin (handy for debugging on a host)."""
    request = xmlrpc.client.dumps((SESSION, {}), methodname="nope")
    proc = subprocess.run([python3(), "-I", "-S", installed[1], request], stdout=subprocess.PIPE,
                          stderr=subprocess.PIPE, universal_newlines=True, timeout=60,
                          env={"VHDPORT_LOG": "stderr"})
    (struct,), _ = xmlrpc.client.loads(proc.stdout)
    assert struct["ErrorDescription"] == ["UNKNOWN_XENAPI_PLUGIN_FUNCTION", "nope"]
