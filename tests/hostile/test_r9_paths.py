"""R9: nothing outside the SR or the store is followed into, created, changed or removed.

Generated cases per class (#11 defects 2-4):

- the SR staging root, its entries and the SR / staging lock files planted as symlinks,
  files or hard links to something outside;
- forged recovery journals in a dead staging dir naming paths that leave the SR;
- local store records whose own "id" (or types) lie, and lock / record files planted as links.

Every case hashes the whole test root (SR, store and an "outside" canary tree) before and
after with ``tree_digest`` and allows only the changes the case names.
"""

import json
import logging
import os
import uuid

import pytest

from tests.hostile.conftest import diff_digests, put_image, tree_digest
from vhdport.errors import ImageNotFound, SRError, StoreError
from vhdport.sr import SR
from vhdport.sr.recover import JOURNAL
from vhdport.sr.staging import LOCK_SUFFIX, ROOT_LOCK, STAGING_DIR
from vhdport.stores.local import LocalStore
from vhdport.transfer import download

OUTSIDE_TREE = ("victim-dir/a", "victim-dir/b", "x.lock")


def _outside_tree(outside):
    """Directories and files a followed link would destroy: reclaim removes unlocked dirs."""
    for rel in ("victim-dir/a/keep", "victim-dir/b/keep"):
        path = os.path.join(outside, rel)
        os.makedirs(os.path.dirname(path), exist_ok=True)
        with open(path, "wb") as f:
            f.write(b"precious")
    os.mkdir(os.path.join(outside, "x"))
    with open(os.path.join(outside, "x.lock"), "wb") as f:
        f.write(b"")
    with open(os.path.join(outside, "target"), "wb") as f:
        f.write(b"do not touch")


def _outside_unchanged(root, outside, before):
    after = tree_digest(root)
    changed = [line for line in diff_digests(before, after)
               if line.startswith(os.path.relpath(outside, root) + os.sep)]
    assert not changed, changed


# --- 2. staging root and lock files -------------------------------------------------------


def _root_link_to_dir(sr, outside):
    os.symlink(outside, os.path.join(sr, STAGING_DIR))


def _root_link_to_victims(sr, outside):
    os.symlink(os.path.join(outside, "victim-dir"), os.path.join(sr, STAGING_DIR))


def _root_dangling_link(sr, outside):
    os.symlink(os.path.join(outside, "nowhere"), os.path.join(sr, STAGING_DIR))


def _root_a_file(sr, outside):
    with open(os.path.join(sr, STAGING_DIR), "wb") as f:
        f.write(b"not a dir")


def _replace_staging_root(sr, outside, plant):
    staging = os.path.join(sr, STAGING_DIR)
    if os.path.lexists(staging):
        import shutil
        shutil.rmtree(staging)
    plant(sr, outside)


STAGING_ROOT_CASES = {
    "symlink to an outside dir holding unlocked dirs": (_root_link_to_dir, "symbolic link"),
    "symlink to a dir of victim dirs": (_root_link_to_victims, "symbolic link"),
    "dangling symlink": (_root_dangling_link, "symbolic link"),
    "a plain file": (_root_a_file, "is a file"),
}


@pytest.mark.parametrize("action", ["reclaim", "download"])
@pytest.mark.parametrize("name", sorted(STAGING_ROOT_CASES))
def test_staging_root_that_is_not_a_real_directory_is_refused(
        reliability_case, hostile_env, name, action):
    root, sr, store, outside = hostile_env
    plant, why = STAGING_ROOT_CASES[name]
    case = reliability_case("R9", "staging root is a {} ({})".format(name, action),
                            "SRError naming .vhdport-staging; nothing outside touched")
    _outside_tree(outside)
    _replace_staging_root(sr, outside, plant)
    image = put_image(store, b"never read")
    before = tree_digest(root)
    with pytest.raises(SRError) as err:
        if action == "reclaim":
            SR(sr).reclaim_staging()
        else:
            download(store, image, sr)
    assert STAGING_DIR in str(err.value) and why in str(err.value)
    _outside_unchanged(root, outside, before)
    assert tree_digest(root) == before
    case.detail = str(err.value)


def _entry_dir_link(root_dir, outside):
    os.symlink(os.path.join(outside, "victim-dir"), os.path.join(root_dir, "deadbeef"))
    open(os.path.join(root_dir, "deadbeef" + LOCK_SUFFIX), "wb").close()


def _entry_lock_link(root_dir, outside):
    os.mkdir(os.path.join(root_dir, "f00d"))
    os.symlink(os.path.join(outside, "target"), os.path.join(root_dir, "f00d" + LOCK_SUFFIX))


def _entry_lock_dangling(root_dir, outside):
    os.symlink(os.path.join(outside, "new-file"), os.path.join(root_dir, "cd34" + LOCK_SUFFIX))


STAGING_ENTRY_CASES = {
    "staging dir is a symlink to outside dirs (with its lock)": _entry_dir_link,
    "staging lock is a symlink to an outside file": _entry_lock_link,
    "staging lock is a dangling symlink": _entry_lock_dangling,
}


@pytest.mark.parametrize("name", sorted(STAGING_ENTRY_CASES))
def test_links_inside_the_staging_root_are_left_alone(reliability_case, hostile_env, name):
    root, sr, store, outside = hostile_env
    case = reliability_case("R9", name, "reclaim and a download work; link left, outside "
                                        "untouched")
    _outside_tree(outside)
    os.makedirs(os.path.join(sr, STAGING_DIR), exist_ok=True)
    STAGING_ENTRY_CASES[name](os.path.join(sr, STAGING_DIR), outside)
    before = tree_digest(root)
    SR(sr).reclaim_staging()
    image = put_image(store, b"x" * 10)
    with pytest.raises(Exception):
        download(store, image, sr)   # not a bundle: fails after the staging was used
    _outside_unchanged(root, outside, before)
    assert not os.path.lexists(os.path.join(outside, "new-file"))
    case.detail = "outside tree unchanged"


LOCK_CASES = {
    "SR lock is a symlink to an outside file": (".vhdport.lock", "symlink", "symbolic link"),
    "SR lock is a dangling symlink": (".vhdport.lock", "dangling", "symbolic link"),
    "SR lock is a hard link to an outside file": (".vhdport.lock", "hardlink", "hard link"),
    "staging root lock is a symlink": (os.path.join(STAGING_DIR, ROOT_LOCK), "symlink",
                                       "symbolic link"),
    "staging root lock is a hard link": (os.path.join(STAGING_DIR, ROOT_LOCK), "hardlink",
                                         "hard link"),
}


@pytest.mark.parametrize("name", sorted(LOCK_CASES))
def test_lock_files_are_never_followed(reliability_case, hostile_env, name):
    root, sr, store, outside = hostile_env
    rel, kind, why = LOCK_CASES[name]
    case = reliability_case("R9", name, "SRError naming the lock file; outside file unchanged")
    _outside_tree(outside)
    lock = os.path.join(sr, rel)
    if os.path.lexists(lock):
        os.unlink(lock)
    target = os.path.join(outside, "target")
    if kind == "symlink":
        os.symlink(target, lock)
    elif kind == "dangling":
        os.symlink(os.path.join(outside, "new-file"), lock)
    else:
        os.link(target, lock)
    before = tree_digest(root)
    with pytest.raises(SRError) as err:
        SR(sr).reclaim_staging()
    assert lock in str(err.value) and why in str(err.value)
    assert "never follows links" in str(err.value) or "refuses to use it" in str(err.value)
    _outside_unchanged(root, outside, before)
    assert not os.path.lexists(os.path.join(outside, "new-file"))
    case.detail = str(err.value)


# --- 3. recovery journals -----------------------------------------------------------------


def _dead_staging(sr, name="0badc0de"):
    staging_root = os.path.join(sr, STAGING_DIR)
    os.makedirs(staging_root, exist_ok=True)
    path = os.path.join(staging_root, name)
    os.mkdir(path)
    open(path + LOCK_SUFFIX, "wb").close()
    return path


def _ino(path):
    return os.lstat(path).st_ino


def _journal_cases(sr, outside, dead):
    """name -> journal document; each would act outside the SR if its names were trusted."""
    victim = os.path.join(outside, "victim.vhd")
    with open(victim, "wb") as f:
        f.write(b"outside file")
    smuggled = os.path.join(sr, STAGING_DIR, "outside")
    os.makedirs(smuggled, exist_ok=True)
    with open(os.path.join(smuggled, "created.vhd"), "wb") as f:
        f.write(b"would be linked out")
    leaf = sorted(n for n in os.listdir(sr) if n.endswith(".vhd"))[0]
    rel_out = os.path.relpath(outside, sr)
    vic = os.path.join(rel_out, "victim")
    return {
        "snapshot naming ../outside/victim": {
            "op": "snapshot", "vdi": vic, "base": vic, "snap": str(uuid.uuid4()),
            "ino": _ino(victim)},
        "snapshot naming an absolute path": {
            "op": "snapshot", "vdi": victim[:-4], "base": victim[:-4], "snap": str(uuid.uuid4()),
            "ino": _ino(victim)},
        "publish leaf ../outside/victim.vhd linking out": {
            "op": "publish", "files": [[vic + ".vhd", _ino(victim)],
                                       [os.path.join(rel_out, "created.vhd"),
                                        _ino(os.path.join(smuggled, "created.vhd"))]]},
        "publish of a real leaf, parent named ../outside/created.vhd": {
            "op": "publish", "files": [[leaf, _ino(os.path.join(sr, leaf))],
                                       [os.path.join(rel_out, "created.vhd"),
                                        _ino(os.path.join(smuggled, "created.vhd"))]]},
        "publish naming a sub/dir path": {
            "op": "publish", "files": [[leaf, _ino(os.path.join(sr, leaf))],
                                       ["{}/../{}".format(STAGING_DIR, leaf), 12]]},
    }


JOURNAL_NAMES = [
    "snapshot naming ../outside/victim", "snapshot naming an absolute path",
    "publish leaf ../outside/victim.vhd linking out",
    "publish of a real leaf, parent named ../outside/created.vhd",
    "publish naming a sub/dir path",
]


@pytest.mark.parametrize("name", JOURNAL_NAMES)
def test_forged_journal_names_are_reported_and_left_alone(reliability_case, hostile_env,
                                                          caplog, name):
    root, sr, store, outside = hostile_env
    case = reliability_case("R9", "journal: " + name,
                            "warning names the bad entry; nothing outside created or removed")
    dead = _dead_staging(sr)
    doc = _journal_cases(sr, outside, dead)[name]
    with open(os.path.join(dead, JOURNAL), "w") as f:
        json.dump(doc, f)
    before = tree_digest(root)
    sr_before = {k: v for k, v in before.items() if not k.startswith(("sr/" + STAGING_DIR,
                                                                       "outside"))}
    with caplog.at_level(logging.WARNING, logger="vhdport"):
        SR(sr).reclaim_staging()
    assert "outside SR" in caplog.text and "not a bare" in caplog.text or \
        "is not a uuid" in caplog.text, caplog.text
    _outside_unchanged(root, outside, before)
    after = tree_digest(root)
    assert {k: v for k, v in after.items() if not k.startswith(("sr/" + STAGING_DIR,
                                                                "outside"))} == sr_before
    case.detail = [r.getMessage() for r in caplog.records if "journal" in r.getMessage()][0]


def test_journal_that_is_a_symlink_is_not_read(reliability_case, hostile_env, caplog):
    root, sr, store, outside = hostile_env
    case = reliability_case("R9", "journal: a symlink to a journal outside",
                            "ignored with a warning; outside journal and victim untouched")
    dead = _dead_staging(sr)
    victim = os.path.join(outside, "victim.vhd")
    with open(victim, "wb") as f:
        f.write(b"outside")
    real_leaf = sorted(n for n in os.listdir(sr) if n.endswith(".vhd"))[0]
    leaf_ino = _ino(os.path.join(sr, real_leaf))
    with open(os.path.join(outside, "journal.json"), "w") as f:
        json.dump({"op": "snapshot", "vdi": real_leaf[:-4], "base": real_leaf[:-4],
                   "snap": str(uuid.uuid4()), "ino": leaf_ino}, f)
    os.symlink(os.path.join(outside, "journal.json"), os.path.join(dead, JOURNAL))
    before = tree_digest(root)
    with caplog.at_level(logging.WARNING, logger="vhdport"):
        SR(sr).reclaim_staging()
    assert "symbolic link" in caplog.text
    assert os.path.exists(os.path.join(sr, real_leaf))
    _outside_unchanged(root, outside, before)
    case.detail = "journal link ignored"


# --- 4. local store records -----------------------------------------------------------------


def _record_path(store, image_id):
    return os.path.join(store.images_dir, image_id + ".json")


def _forge(store, image_id, change):
    path = _record_path(store, image_id)
    with open(path) as f:
        doc = json.load(f)
    change(doc["record"], doc)
    with open(path, "w") as f:
        json.dump(doc, f)


RECORD_CASES = {
    "id ../../outside/PWNED": lambda r, d: r.update(id="../../outside/PWNED"),
    "id an absolute path": lambda r, d: r.update(id="/tmp/vhdport-r9-PWNED"),
    "id of another image": lambda r, d: r.update(id=str(uuid.uuid4())),
    "status not a string": lambda r, d: r.update(status=7),
    "properties a list": lambda r, d: r.update(properties=["a"]),
    "size a string": lambda r, d: r.update(size="12"),
    "active without hashes": lambda r, d: r.update(status="active", size=3, checksum=None),
    "created_ns missing": lambda r, d: d.pop("created_ns"),
}


@pytest.mark.parametrize("name", sorted(RECORD_CASES))
def test_a_lying_record_is_damaged_never_a_path(reliability_case, tmp_path, name):
    case = reliability_case("R9", "store record: " + name,
                            "StoreError 'damaged'; ls lists it damaged; nothing outside")
    root = str(tmp_path)
    outside = os.path.join(root, "outside")
    os.mkdir(outside)
    store = LocalStore(os.path.join(root, "store"))
    good = store.create("good")["id"]
    bad = store.create("bad")["id"]
    _forge(store, bad, RECORD_CASES[name])
    before = tree_digest(root)
    for verb in (lambda: store.get(bad), lambda: store.update(bad, name="y"),
                 lambda: store.put(bad, [b"data"]), lambda: store.open(bad),
                 lambda: store.delete(bad)):
        with pytest.raises(StoreError, match="damaged image record"):
            verb()
    listed = {r["id"]: r["status"] for r in store.list()}
    assert listed == {good: "queued", bad: "damaged"}
    after = tree_digest(root)
    assert not os.path.exists("/tmp/vhdport-r9-PWNED")
    changed = [k for k in set(before) | set(after) if before.get(k) != after.get(k)]
    # only the bad image's lock file may appear (put takes it before reading the record)
    assert all(k.endswith(bad + ".lock") for k in changed), changed
    case.detail = "listed as damaged, paths unchanged"


@pytest.mark.parametrize("which", ["upload lock symlink", "store lock symlink",
                                   "upload lock dangling symlink", "record symlink",
                                   "data symlink"])
def test_store_files_planted_as_links_are_refused(reliability_case, tmp_path, which):
    case = reliability_case("R9", "store: " + which, "StoreError 'symbolic link'; no file "
                                                     "outside created or changed")
    root = str(tmp_path)
    outside = os.path.join(root, "outside")
    os.mkdir(outside)
    target = os.path.join(outside, "target")
    with open(target, "wb") as f:
        f.write(b"keep")
    store = LocalStore(os.path.join(root, "store"))
    image_id = store.create("img")["id"]
    if which == "data symlink":
        store.put(image_id, [b"abc"])
        os.unlink(os.path.join(store.images_dir, image_id + ".data"))
        os.symlink(target, os.path.join(store.images_dir, image_id + ".data"))
        verb = lambda: store.open(image_id)  # noqa: E731
    elif which == "record symlink":
        os.rename(_record_path(store, image_id), os.path.join(outside, "rec.json"))
        os.symlink(os.path.join(outside, "rec.json"), _record_path(store, image_id))
        verb = lambda: store.update(image_id, name="changed")  # noqa: E731
    else:
        lock = os.path.join(store.root, "lock") if which.startswith("store") else \
            os.path.join(store.images_dir, image_id + ".lock")
        if os.path.lexists(lock):
            os.unlink(lock)
        os.symlink(os.path.join(outside, "new") if "dangling" in which else target, lock)
        verb = lambda: store.put(image_id, [b"data"])  # noqa: E731
    before = tree_digest(root)
    with pytest.raises(StoreError, match="symbolic link") as err:
        verb()
    assert not isinstance(err.value, ImageNotFound)
    assert not os.path.lexists(os.path.join(outside, "new"))
    _outside_unchanged(root, outside, before)
    case.detail = str(err.value)
