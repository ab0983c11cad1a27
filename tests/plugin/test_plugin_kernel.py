"""copy_kernel_vdi / remove_kernel_ramdisk through the installed plugin, as XAPI calls them."""

import os

from tests.plugin.chains import MIB, virtual_bytes
from tests.plugin.xapi import call


def test_copy_then_remove(plugin, sr_chain, kernel_env):
    sr_path, leaf, base = sr_chain
    kdir, env = kernel_env
    size = MIB + 300 * 1024  # covers the leaf's write and base data around it
    reply = call(plugin, "copy_kernel_vdi",
                 {"vdi-uuid": leaf, "image-size": str(size), "sr-path": sr_path}, env)
    path = reply.value
    assert path == os.path.join(kdir, leaf)
    with open(path, "rb") as f:
        assert f.read() == virtual_bytes(sr_path, leaf, size)
    ramdisk = call(plugin, "copy_kernel_vdi",
                   {"vdi-uuid": base, "image-size": "4096", "sr-path": sr_path}, env).value

    reply = call(plugin, "remove_kernel_ramdisk", {"kernel-file": path, "ramdisk-file": ramdisk},
                 env)
    assert reply.value == "ok"
    assert os.listdir(kdir) == []
    # already gone, or nothing given: still fine
    assert call(plugin, "remove_kernel_ramdisk", {"kernel-file": path, "ramdisk-file": ""},
                env).value == "ok"


def test_kernel_dir_from_config_file(plugin, sr_chain, tmp_path):
    sr_path, leaf, _ = sr_chain
    conf = tmp_path / "vhdport.conf"
    kdir = str(tmp_path / "from-config")
    conf.write_text("kernel_dir = {}\n".format(kdir))
    reply = call(plugin, "copy_kernel_vdi",
                 {"vdi-uuid": leaf, "image-size": "512", "sr-path": sr_path},
                 {"VHDPORT_CONFIG": str(conf)})
    assert reply.value == os.path.join(kdir, leaf)


def test_oversized_kernel(plugin, sr_chain, kernel_env):
    sr_path, leaf, _ = sr_chain
    kdir, env = kernel_env
    reply = call(plugin, "copy_kernel_vdi",
                 {"vdi-uuid": leaf, "image-size": str(16 * MIB + 1), "sr-path": sr_path}, env)
    code, message = reply.error
    assert code == "VHD_LIMIT"
    assert "16777217" in message and "cap" in message
    assert not os.path.exists(os.path.join(kdir, leaf))


def test_copy_missing_args(plugin, sr_chain, kernel_env):
    sr_path, leaf, _ = sr_chain
    _, env = kernel_env
    reply = call(plugin, "copy_kernel_vdi", {"vdi-uuid": leaf, "sr-path": sr_path}, env)
    code, message = reply.error
    assert code == "PLUGIN_ARGS"
    assert "'image-size'" in message and "copy_kernel_vdi" in message


def test_copy_path_as_uuid(plugin, sr_chain, kernel_env):
    sr_path, _, _ = sr_chain
    _, env = kernel_env
    reply = call(plugin, "copy_kernel_vdi",
                 {"vdi-uuid": "../../etc/passwd", "image-size": "10", "sr-path": sr_path}, env)
    assert reply.error[0] == "PLUGIN_ARGS"
    assert "canonical uuid" in reply.error[1]


def _copy(plugin, sr_chain, env):
    sr_path, leaf, _ = sr_chain
    return call(plugin, "copy_kernel_vdi",
                {"vdi-uuid": leaf, "image-size": "4096", "sr-path": sr_path}, env).value


def test_remove_absolute_outside(plugin, sr_chain, kernel_env, victim):
    kdir, env = kernel_env
    inside = _copy(plugin, sr_chain, env)
    reply = call(plugin, "remove_kernel_ramdisk", {"kernel-file": inside, "ramdisk-file": victim},
                 env)
    code, message = reply.error
    assert code == "PLUGIN_ARGS"
    assert victim in message and "outside the kernel directory" in message
    assert os.path.exists(inside), "nothing may be removed when one path is refused"


def test_remove_dotdot(plugin, sr_chain, kernel_env, victim):
    kdir, env = kernel_env
    inside = _copy(plugin, sr_chain, env)
    sneaky = os.path.join(kdir, "..", "..", "victim")
    assert os.path.realpath(sneaky) == victim
    reply = call(plugin, "remove_kernel_ramdisk", {"kernel-file": sneaky, "ramdisk-file": inside},
                 env)
    assert reply.error[0] == "PLUGIN_ARGS"
    assert "'..'" in reply.error[1]
    assert os.path.exists(inside)


def test_remove_symlink_escape(plugin, sr_chain, kernel_env, victim):
    kdir, env = kernel_env
    inside = _copy(plugin, sr_chain, env)
    link = os.path.join(kdir, "kernel-link")
    os.symlink(victim, link)
    reply = call(plugin, "remove_kernel_ramdisk", {"kernel-file": link, "ramdisk-file": ""}, env)
    assert reply.error[0] == "PLUGIN_ARGS"
    assert "symbolic link" in reply.error[1]
    assert os.path.islink(link) and os.path.exists(inside)


def test_remove_missing_args(plugin, kernel_env):
    _, env = kernel_env
    reply = call(plugin, "remove_kernel_ramdisk", {"kernel-file": ""}, env)
    assert reply.error[0] == "PLUGIN_ARGS"
    assert "'ramdisk-file'" in reply.error[1]


def qcow2_kernel_copy(plugin, tmp_path, env, python=None):
    """copy_kernel_vdi of a QCOW2 VDI reads through its chain: the bytes qemu-img reads."""
    from tests.transfer import qcow2_chains
    from tests.transfer.helpers import MiB, build_chain
    sr_path = str(tmp_path / "sr-qcow2")
    os.makedirs(sr_path)
    uuids, _ = build_chain(sr_path, 3, 8 * MiB, dense=True, seed=9, fmt="qcow2")
    size = 5 * MiB + 4321
    kw = {} if python is None else {"python": python}
    path = call(plugin, "copy_kernel_vdi",
                {"vdi-uuid": uuids[0], "image-size": str(size), "sr-path": sr_path}, env,
                **kw).value
    raw = str(tmp_path / "qemu.raw")
    qcow2_chains.run("qemu-img", "convert", "-f", "qcow2", "-O", "raw",
                     os.path.join(sr_path, uuids[0] + ".qcow2"), raw)
    with open(path, "rb") as f, open(raw, "rb") as g:
        got, want = f.read(), g.read(size)
    assert len(got) == size and got == want and any(want)
    return path


def test_copy_kernel_reads_through_a_qcow2_chain(plugin, tmp_path, kernel_env):
    kdir, env = kernel_env
    assert os.path.dirname(qcow2_kernel_copy(plugin, tmp_path, env)) == kdir
