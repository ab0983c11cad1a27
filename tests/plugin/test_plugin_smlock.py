"""The installed plugin and SM's SR lock: a download publishes only once SM lets go of the SR.

Like dom0: the SR is <dir>/<sr_uuid>, the lock dir (a temp dir standing for /var/lock/sm) is
passed to the plugin with VHDPORT_SM_LOCK_DIR, and SM is tests/sr/sm_peer.py in its own process.
"""

import os
import threading
import time
import uuid

from tests.plugin.test_plugin_transfer import image, virtual_digest  # noqa: F401
from tests.plugin.xapi import call, params_args
from tests.sr.sm_peer import SMPeer

BLOCKED_FOR = 1.0


def test_download_waits_for_sm_then_publishes(plugin, image, tmp_path):  # noqa: F811
    store, image_id, digest = image
    lock_dir = str(tmp_path / "var-lock-sm")
    os.makedirs(lock_dir)
    sr_uuid = str(uuid.uuid4())
    sr = str(tmp_path / "sr-mount" / sr_uuid)
    os.makedirs(sr)
    sm = SMPeer(os.path.join(lock_dir, sr_uuid, "sr"))
    try:
        assert sm.ask("lock") == "locked"
        replies = []
        worker = threading.Thread(target=lambda: replies.append(call(
            plugin, "download_vhd", params_args(image_id=image_id, store=store, sr_path=sr),
            env={"VHDPORT_SM_LOCK_DIR": lock_dir})), daemon=True)
        worker.start()
        time.sleep(BLOCKED_FOR)
        assert worker.is_alive() and not [n for n in os.listdir(sr) if n.endswith(".vhd")]
        assert sm.ask("unlock") == "unlocked"
        worker.join(120)
        assert not worker.is_alive()
        leaf = replies[0].json()["root"]["uuid"]
        assert virtual_digest(sr, leaf)[0] == digest
        assert sm.ask("try") == "free"
    finally:
        sm.close()
