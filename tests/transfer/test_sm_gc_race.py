"""Downloads, a snapshot and an upload while XenServer SM's GC runs beside them, in dom0's layout.

The SM stand-in (tests.transfer.loops smgc) knows nothing of vhdport's own lock: like SM's GC,
each pass holds only SM's SR lock, deletes what the GC rule says, and records any change to the
SR's VHDs that happened while it held that lock. vhdport must make none: it publishes, snapshots
and links only under SM's lock too.
"""

import uuid

from tests.transfer.helpers import (assert_chain_clean, build_chain, make_sr, staging_leftovers,
                                    vdi_sha256)
from tests.transfer.test_gc_race import Loop, images, seed_garbage  # noqa: F401
from vhdport import transfer
from vhdport.sr import SR

MiB = 1 << 20


def test_transfers_and_snapshot_beside_sms_gc(tmp_path, images, monkeypatch):  # noqa: F811
    store, made, fmt = images
    lock_dir = tmp_path / "var-lock-sm"
    lock_dir.mkdir()
    monkeypatch.setenv("VHDPORT_SM_LOCK_DIR", str(lock_dir))   # this process and the loop
    sr_path = make_sr(tmp_path / "sr-mount" / str(uuid.uuid4()))
    keep, keep_model = build_chain(sr_path, 2, 8 * MiB, seed=2, fmt=fmt)
    garbage = seed_garbage(sr_path, fmt)
    sm_gc = Loop("smgc", sr_path, str(tmp_path))
    try:
        sm_gc.wait_ready()
        landed = []
        for image_id, depth, expected in made:
            result = transfer.download(store, image_id, sr_path)
            assert len(result["chain"]) == depth
            landed.append((result, expected))
        snap, base = SR(sr_path).snapshot(landed[-1][0]["root"]["uuid"])
        reup = transfer.upload(sr_path, snap, store, name="beside-sm")
        report = sm_gc.finish()
    finally:
        sm_gc.kill()

    assert report["errors"] == [] and report["passes"] >= 5, report
    assert report["changed_under_lock"] == [], report["changed_under_lock"]
    assert sorted(report["deleted"]) == sorted(garbage)     # SM's GC really ran and deleted
    vdis = SR(sr_path).vdis()
    for result, expected in landed:
        assert vdi_sha256(sr_path, result["root"]["uuid"]) == expected
        assert_chain_clean(sr_path, result["root"]["uuid"])
    assert {snap, base} <= set(vdis) and vdis[base].hidden
    assert vdi_sha256(sr_path, snap) == landed[-1][1]
    assert vdi_sha256(sr_path, keep[0]) == keep_model.sha256()
    assert staging_leftovers(sr_path) == []
    out = make_sr(tmp_path / "check")
    again = transfer.download(store, reup, out)
    assert vdi_sha256(out, again["root"]["uuid"]) == landed[-1][1]
