import errno
import os
import subprocess

import pytest

from tests.allowed_skips import allowed_skip

from vhdport.errors import NoSpaceError
from vhdport.sr import SR
from vhdport.sr.scan import os_error

from tests.sr.helpers import make_vhd, read_vdi, vhd_names


def test_os_error_mapping():
    assert isinstance(os_error(OSError(errno.ENOSPC, "full"), "/x", "write"), NoSpaceError)
    assert isinstance(os_error(OSError(errno.EDQUOT, "quota"), "/x", "write"), NoSpaceError)
    err = os_error(OSError(errno.EACCES, "Permission denied"), "/x/y.vhd", "delete")
    assert not isinstance(err, NoSpaceError) and "/x/y.vhd" in str(err)


@pytest.fixture
def small_fs(tmp_path):
    """A 1 MiB tmpfs (needs root and mount rights; skipped elsewhere)."""
    mnt = str(tmp_path / "mnt")
    os.mkdir(mnt)
    done = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=1m", "tmpfs", mnt],
                          stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    if done.returncode != 0:
        allowed_skip("tmpfs", done.stderr.decode(errors="replace").strip())
    try:
        yield mnt
    finally:
        subprocess.run(["umount", mnt])


def test_snapshot_on_a_full_sr_raises_no_space_and_changes_nothing(small_fs):
    vdi = make_vhd(small_fs, writes=[(0, b"D" * 4096)])
    before = read_vdi(small_fs, vdi)
    filler = os.path.join(small_fs, "filler")
    fd = os.open(filler, os.O_WRONLY | os.O_CREAT)
    try:
        while True:
            os.write(fd, b"\xff" * 4096)
    except OSError as e:
        assert e.errno == errno.ENOSPC
    finally:
        os.close(fd)
    sr = SR(small_fs)
    with pytest.raises(NoSpaceError):
        sr.snapshot(vdi)
    assert vhd_names(small_fs) == [vdi + ".vhd"]
    assert read_vdi(small_fs, vdi) == before
    assert os.listdir(os.path.join(small_fs, ".vhdport-staging")) == [".root.lock"]
    os.unlink(filler)
    snap, base = sr.snapshot(vdi)
    assert read_vdi(small_fs, snap) == before
