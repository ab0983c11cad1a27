"""SM's SR lock (vhdport.sr.smlock) against a second process that takes it the way SM does.

The lock dir is a temp dir standing for /var/lock/sm (VHDPORT_SM_LOCK_DIR); the SR dir is
named by a uuid, as /var/run/sr-mount/<sr_uuid> is in dom0.
"""

import os
import stat
import threading
import time

import pytest

from vhdport import transfer
from vhdport.errors import SRError
from vhdport.sr import SR, smlock
from vhdport.stores.local import LocalStore

from tests.sr.helpers import FORMATS, make_chain, make_vhd, new_uuid, staged_chain, suffix, vhd_names
from tests.sr.sm_peer import SMPeer

#: how long an operation must stay blocked behind SM's lock to count as waiting for it
BLOCKED_FOR = 0.5


@pytest.fixture
def sm_dir(tmp_path, monkeypatch):
    """A temp dir standing for /var/lock/sm."""
    root = tmp_path / "var-lock-sm"
    root.mkdir()
    monkeypatch.setenv(smlock.LOCK_DIR_ENV, str(root))
    return str(root)


@pytest.fixture
def sr_path(tmp_path):
    path = tmp_path / "sr-mount" / new_uuid()
    path.mkdir(parents=True)
    return str(path)


@pytest.fixture
def sm(sm_dir, sr_path):
    peer = SMPeer(os.path.join(sm_dir, os.path.basename(sr_path), "sr"))
    yield peer
    peer.close()


class InThread(object):
    """Run ``func`` in a thread; ``done`` says whether it returned (or raised) yet."""

    def __init__(self, func):
        self.result = self.error = None
        self.finished = threading.Event()
        self.thread = threading.Thread(target=self._run, args=(func,), daemon=True)
        self.thread.start()

    def _run(self, func):
        try:
            self.result = func()
        except BaseException as e:   # handed to the test
            self.error = e
        finally:
            self.finished.set()

    def wait(self):
        assert self.finished.wait(60), "the operation did not finish once SM let go"
        self.thread.join()
        if self.error is not None:
            raise self.error
        return self.result


def test_lock_path_is_sms(sm_dir, sr_path):
    uuid = os.path.basename(sr_path)
    assert smlock.sr_uuid_of(sr_path) == uuid
    assert smlock.sr_lock_path(sr_path) == os.path.join(sm_dir, uuid, "sr")
    assert smlock.sr_lock_path(sr_path + "/") == os.path.join(sm_dir, uuid, "sr")


def test_sr_not_named_by_uuid_takes_no_sm_lock(sm_dir, tmp_path):
    plain = tmp_path / "not-a-uuid"
    plain.mkdir()
    assert smlock.sr_lock_path(str(plain)) is None
    with SR(str(plain)).locked():
        pass
    assert os.listdir(sm_dir) == []


def test_off_dom0_nothing_is_created(tmp_path, sr_path, monkeypatch):
    absent = tmp_path / "no-var-lock-sm"
    monkeypatch.setenv(smlock.LOCK_DIR_ENV, str(absent))
    assert smlock.lock_dir() is None
    make_vhd(sr_path, hidden=True)
    assert len(SR(sr_path).gc()) == 1
    assert not absent.exists()


def test_held_while_locked_and_created_as_sm_does(sm, sm_dir, sr_path):
    lock_file = os.path.join(sm_dir, os.path.basename(sr_path), "sr")
    umask = os.umask(0o022)
    os.umask(umask)
    sr = SR(sr_path)
    with sr.locked():
        assert sm.ask("try") == "busy"
        with sr.locked():                     # re-entrant: still one hold
            assert sm.ask("try") == "busy"
        assert sm.ask("try") == "busy"
    assert sm.ask("try") == "free"
    mode = stat.S_IMODE(os.stat(lock_file).st_mode)
    assert mode == 0o666 & ~umask
    assert stat.S_IMODE(os.stat(os.path.dirname(lock_file)).st_mode) == 0o777 & ~umask


def test_threads_of_one_process_queue_on_one_sm_lock(sm, sr_path, tmp_path):
    """Record locks belong to the process (re-locking succeeds, any close drops them), so two
    SR dirs that SM sees as one SR (same uuid) must still take turns inside one process."""
    twin = tmp_path / "other-mount" / os.path.basename(sr_path)
    twin.mkdir(parents=True)
    entered, leave = threading.Event(), threading.Event()

    def hold_twin():
        with SR(str(twin)).locked():
            entered.set()
            assert leave.wait(60)

    with SR(sr_path).locked():
        other = InThread(hold_twin)
        time.sleep(BLOCKED_FOR)
        assert not entered.is_set()
        assert sm.ask("try") == "busy"
    assert entered.wait(60)
    assert sm.ask("try") == "busy"            # the first release did not drop the twin's hold
    leave.set()
    other.wait()
    assert sm.ask("try") == "free"


@pytest.mark.parametrize("fmt", FORMATS)
def test_gc_waits_for_sm(sm, sr_path, fmt):
    garbage = make_vhd(sr_path, hidden=True, fmt=fmt)
    sr = SR(sr_path)
    assert sm.ask("lock") == "locked"
    gc = InThread(sr.gc)
    time.sleep(BLOCKED_FOR)
    assert not gc.finished.is_set()
    assert vhd_names(sr_path) == [garbage + suffix(fmt)]   # nothing deleted while SM holds it
    assert sm.ask("unlock") == "unlocked"
    assert gc.wait() == [garbage]
    assert vhd_names(sr_path) == []
    assert sm.ask("try") == "free"


@pytest.mark.parametrize("fmt", FORMATS)
def test_publish_waits_for_sm(sm, sr_path, fmt):
    sr = SR(sr_path)
    with sr.staging() as st:
        staged, _ = staged_chain(st.path, 2, fmt=fmt)
        adopted = st.adopt(staged)
        assert sm.ask("lock") == "locked"
        publish = InThread(lambda: sr.publish(adopted))
        time.sleep(BLOCKED_FOR)
        assert not publish.finished.is_set()
        assert vhd_names(sr_path) == []
        assert sm.ask("unlock") == "unlocked"
        finals = publish.wait()
    assert vhd_names(sr_path) == sorted(os.path.basename(p) for p in finals)


@pytest.mark.parametrize("fmt", FORMATS)
def test_snapshot_waits_for_sm(sm, sr_path, fmt):
    vdi = make_vhd(sr_path, fmt=fmt)
    sr = SR(sr_path)
    assert sm.ask("lock") == "locked"
    snap = InThread(lambda: sr.snapshot(vdi))
    time.sleep(BLOCKED_FOR)
    assert not snap.finished.is_set()
    assert vhd_names(sr_path) == [vdi + suffix(fmt)]
    assert sm.ask("unlock") == "unlocked"
    snap_uuid, base_uuid = snap.wait()
    assert vhd_names(sr_path) == sorted(u + suffix(fmt) for u in (vdi, snap_uuid, base_uuid))


def test_timeout_names_sm_and_its_pid(sm, sr_path):
    make_vhd(sr_path, hidden=True)
    assert sm.ask("lock") == "locked"
    with pytest.raises(SRError) as caught:
        SR(sr_path, lock_timeout=0.3).gc()
    message = str(caught.value)
    assert "storage manager" in message and "pid {}".format(sm.proc.pid) in message
    assert len(vhd_names(sr_path)) == 1
    assert sm.ask("unlock") == "unlocked"


def _probing(sm, seen, sr_path):
    """A progress callback that asks SM whether it could take the lock right now."""
    def progress(done, total):
        if len(seen) < 3:                       # a few probes are enough; keep the test quick
            staging = os.path.join(sr_path, ".vhdport-staging")
            seen.append((sm.ask("try"), bool(os.listdir(staging))))
    return progress


def test_lock_is_free_while_data_streams(sm, sr_path, tmp_path):
    """Only the short critical sections hold it: SM can lock the SR mid-upload and mid-download."""
    leaf = make_chain(sr_path, 3)[0]
    store = LocalStore(str(tmp_path / "store"))
    seen = []
    image_id = transfer.upload(sr_path, leaf, store, name="sm-lock",
                               progress=_probing(sm, seen, sr_path))
    assert seen and seen == [("free", True)] * len(seen)
    seen[:] = []
    result = transfer.download(store, image_id, sr_path, progress=_probing(sm, seen, sr_path))
    assert seen and seen == [("free", True)] * len(seen)
    assert len(result["chain"]) == 3
    assert sm.ask("try") == "free"
