"""kernel.copy_kernel / remove_kernel_files / kernel_dir, called directly."""

import os

import pytest

from vhdport import errors, kernel
from tests.plugin.chains import MIB, make_chain, virtual_bytes


@pytest.fixture
def sr(tmp_path):
    path = str(tmp_path / "sr")
    leaf, base = make_chain(path)
    return path, leaf, base


@pytest.fixture
def kdir(tmp_path):
    return str(tmp_path / "boot" / "guest")


def test_copy_reads_through_the_chain(sr, kdir):
    sr_path, leaf, _ = sr
    size = 2 * MIB + 12345
    out = kernel.copy_kernel(sr_path, leaf, str(size), kdir)
    assert out == os.path.join(os.path.realpath(kdir), leaf)
    with open(out, "rb") as f:
        data = f.read()
    expected = virtual_bytes(sr_path, leaf, size)
    assert data == expected
    # both layers contribute: the leaf's write and the base's pattern around it
    assert data[MIB + 100:MIB + 110] != data[MIB + 90:MIB + 100]
    assert not [n for n in os.listdir(kdir) if n.endswith(".tmp")]
    assert oct(os.stat(out).st_mode & 0o777) == oct(0o644)


def test_copy_replaces_an_existing_file(sr, kdir):
    sr_path, leaf, _ = sr
    os.makedirs(kdir)
    with open(os.path.join(kdir, leaf), "wb") as f:
        f.write(b"old" * 1000)
    out = kernel.copy_kernel(sr_path, leaf, 4096, kdir)
    assert open(out, "rb").read() == virtual_bytes(sr_path, leaf, 4096)


@pytest.mark.parametrize("size", [0, -1, "abc", "", kernel.DEFAULT_CAP + 1])
def test_copy_refuses_bad_sizes(sr, kdir, size):
    sr_path, leaf, _ = sr
    with pytest.raises(errors.VhdportError) as err:
        kernel.copy_kernel(sr_path, leaf, size, kdir)
    assert "size" in str(err.value)
    assert not os.path.exists(os.path.join(kdir, leaf))


def test_copy_cap_is_a_limit_error(sr, kdir):
    sr_path, leaf, _ = sr
    with pytest.raises(errors.LimitError, match="cap"):
        kernel.copy_kernel(sr_path, leaf, 2 * MIB, kdir, cap=MIB)


def test_copy_larger_than_the_disk(tmp_path, kdir):
    sr_path = str(tmp_path / "small")
    leaf, _ = make_chain(sr_path, size=4 * MIB)
    with pytest.raises(errors.PluginError, match="virtual size"):
        kernel.copy_kernel(sr_path, leaf, 5 * MIB, kdir)


@pytest.mark.parametrize("bad", ["../etc/passwd", "/etc/passwd", "x", "",
                                 "01234567-89AB-CDEF-0123-456789ABCDEF",
                                 "01234567-89ab-cdef-0123-456789abcdef/../x"])
def test_copy_refuses_non_uuids(sr, kdir, bad):
    sr_path, _, _ = sr
    with pytest.raises(errors.PluginError, match="canonical uuid"):
        kernel.copy_kernel(sr_path, bad, 4096, kdir)


def test_copy_missing_vdi(sr, kdir):
    sr_path, _, _ = sr
    with pytest.raises(errors.ChainError, match="not found"):
        kernel.copy_kernel(sr_path, "01234567-89ab-cdef-0123-456789abcdef", 4096, kdir)


def test_remove_inside_and_missing(sr, kdir):
    sr_path, leaf, base = sr
    k = kernel.copy_kernel(sr_path, leaf, 4096, kdir)
    r = kernel.copy_kernel(sr_path, base, 4096, kdir)
    gone = os.path.join(kdir, "01234567-89ab-cdef-0123-456789abcdef")
    removed = kernel.remove_kernel_files([k, "", r, gone], kdir)
    assert sorted(removed) == sorted([k, r])
    assert os.listdir(kdir) == []


def test_remove_by_bare_name(sr, kdir):
    sr_path, leaf, _ = sr
    kernel.copy_kernel(sr_path, leaf, 4096, kdir)
    kernel.remove_kernel_files([leaf], kdir)
    assert os.listdir(kdir) == []


def _victim(tmp_path):
    victim = tmp_path / "victim"
    victim.write_bytes(b"keep me")
    return str(victim)


def test_remove_refuses_outside_and_removes_nothing(sr, kdir, tmp_path):
    sr_path, leaf, _ = sr
    k = kernel.copy_kernel(sr_path, leaf, 4096, kdir)
    victim = _victim(tmp_path)
    for bad in [victim, os.path.join(kdir, "..", "victim"), "../victim",
                os.path.join(kdir, "sub", "..", leaf)]:
        with pytest.raises(errors.PluginError) as err:
            kernel.remove_kernel_files([k, bad], kdir)
        assert repr(bad) in str(err.value)
        assert os.path.exists(k), bad
        assert os.path.exists(victim)


def test_remove_refuses_symlinks(sr, kdir, tmp_path):
    sr_path, leaf, _ = sr
    k = kernel.copy_kernel(sr_path, leaf, 4096, kdir)
    victim = _victim(tmp_path)
    link = os.path.join(kdir, "evil")
    os.symlink(victim, link)
    with pytest.raises(errors.PluginError):
        kernel.remove_kernel_files([k, link], kdir)
    # a symlinked directory inside the kernel dir is resolved and refused too
    os.symlink(str(tmp_path), os.path.join(kdir, "dirlink"))
    with pytest.raises(errors.PluginError, match="outside"):
        kernel.remove_kernel_files([os.path.join(kdir, "dirlink", "victim")], kdir)
    # even a link to a file inside the dir is not a regular file
    inner = os.path.join(kdir, "inner")
    os.symlink(k, inner)
    with pytest.raises(errors.PluginError, match="symbolic link"):
        kernel.remove_kernel_files([inner], kdir)
    assert os.path.exists(k) and os.path.exists(victim)


def test_remove_refuses_directories(kdir):
    os.makedirs(os.path.join(kdir, "d"))
    with pytest.raises(errors.PluginError, match="not a regular file"):
        kernel.remove_kernel_files([os.path.join(kdir, "d")], kdir)


def test_remove_through_a_symlinked_kernel_dir(sr, tmp_path):
    sr_path, leaf, _ = sr
    real = tmp_path / "real"
    real.mkdir()
    linked = str(tmp_path / "linked")
    os.symlink(str(real), linked)
    k = kernel.copy_kernel(sr_path, leaf, 4096, linked)
    kernel.remove_kernel_files([os.path.join(linked, leaf)], linked)
    assert not os.path.exists(k)


def test_kernel_dir_sources(tmp_path):
    conf = tmp_path / "vhdport.conf"
    env = {"VHDPORT_CONFIG": str(conf)}
    assert kernel.kernel_dir(env) == "/boot/guest"
    conf.write_text("# dom0 settings\n\nkernel_dir = /var/guest/  # trailing comment\n")
    assert kernel.kernel_dir(env) == "/var/guest"
    conf.write_text('{"kernel_dir": "/srv/k"}')
    assert kernel.kernel_dir(env) == "/srv/k"
    env["VHDPORT_KERNEL_DIR"] = "/from/env"
    assert kernel.kernel_dir(env) == "/from/env"
    env["VHDPORT_KERNEL_DIR"] = "relative"
    with pytest.raises(errors.PluginError, match="absolute"):
        kernel.kernel_dir(env)
    del env["VHDPORT_KERNEL_DIR"]
    conf.write_text("kernel_dir /nope\n")
    with pytest.raises(errors.PluginError, match="line 1"):
        kernel.kernel_dir(env)
    conf.write_text("{broken")
    with pytest.raises(errors.PluginError, match="JSON"):
        kernel.kernel_dir(env)


def test_kernel_dir_is_created(sr, tmp_path):
    sr_path, leaf, _ = sr
    target = str(tmp_path / "a" / "b" / "c")
    kernel.copy_kernel(sr_path, leaf, 512, target)
    assert os.path.isdir(target)
