"""R4 crash consistency: kill -9 vhdport at every mutating step of download, upload,
coalesce and snapshot, and at byte counts of the store stream.

Each operation runs in a subprocess (tests/hostile/scripts/crashrun.py) that counts
every mutating filesystem call (link, rename, unlink, fsync, write, VHD pwrite, ...)
and SIGKILLs itself just before the N-th one.  The steps are counted once at
collection time on the same, seeded scenario, so every step gets its own test.
After each kill the survivors are judged with vhdport.sr / vhd.check, then the
operation runs again and must reclaim the dead staging dir and succeed.
"""

import json
import os
import pathlib
import shutil
import signal
import subprocess
import sys
import tempfile

import pytest

from tests.hostile.conftest import bundle_bytes, diff_digests, put_image, tree_digest
from tests.hostile.scripts.chains import content_sha as vhd_content_sha, random_chain
from tests.transfer.helpers import build_chain, chain_sha256
from vhdport import disk, transfer
from vhdport.sr import SR
from vhdport.stores.local import LocalStore
from vhdport.vhd import Chain
from vhdport.vhd.check import check_chain, check_file
from vhdport.vhd.coalesce import coalesce

MIB = 1 << 20
SECTOR = 512
REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
SCRIPT = os.path.join(REPO, "tests", "hostile", "scripts", "crashrun.py")


def _fast_tmp(path="/dev/shm", need=512 * MIB):
    """A tmpfs with room to spare (containers often mount a 64 MiB one), else None."""
    try:
        st = os.statvfs(path)
    except OSError:
        return None
    return path if os.access(path, os.W_OK) and st.f_bavail * st.f_frsize >= need else None


FAST_TMP = _fast_tmp()
def content_sha(leaf_path):
    """sha256 of the whole virtual disk read through the chain, VHD or QCOW2."""
    if disk.for_path(leaf_path).name == "vhd":
        return vhd_content_sha(leaf_path)
    return chain_sha256(leaf_path)


def _stem(path):
    return disk.stem_of(os.path.basename(path))


def qcow2_chain(directory, depth, seed, size=8 * MIB):
    """A QCOW2 chain made as SM makes it (qemu-img, qemu-io), parents hidden; paths leaf first."""
    uuids, _ = build_chain(directory, depth, size, dense=True, seed=seed, fmt="qcow2")
    return [os.path.join(directory, u + ".qcow2") for u in uuids]


EXPECT_SR = ("right after: no hidden childless VHD, old VDIs untouched; after reclaim: the whole "
             "new chain or none of it; the next run succeeds")


# --- scenarios (seeded: the collection-time count and the tests see the same steps) ------

def build_download(root, make=random_chain):
    """SR with a 2-deep chain already in it; a local store holding a 3-deep gzip bundle."""
    sr = os.path.join(root, "sr")
    os.makedirs(sr)
    make(sr, 2, seed=1)
    src = os.path.join(root, "src")
    os.makedirs(src)
    chain = make(src, 3, seed=2)
    store = LocalStore(os.path.join(root, "store"))
    fmt = disk.for_path(chain[0]).name
    image = put_image(store, bundle_bytes(chain, level=1), disk_format=fmt)
    return {"sr": sr, "store": store.root, "image": image, "depth": 3,
            "sha": content_sha(chain[0])}


def build_upload(root, make=random_chain):
    """SR with a 3-deep chain to upload; an empty local store."""
    sr = os.path.join(root, "sr")
    os.makedirs(sr)
    chain = make(sr, 3, seed=3)
    store = LocalStore(os.path.join(root, "store"))
    os.makedirs(store.root, exist_ok=True)  # the store directory exists from here on
    return {"sr": sr, "store": store.root, "leaf": _stem(chain[0]),
            "depth": 3, "sha": content_sha(chain[0])}


def build_coalesce(root):
    """base <- mid <- leaf with 512 KiB blocks: the leaf's sectors land in blocks the
    mid has, blocks only the base has, and blocks nobody has."""
    d = os.path.join(root, "c")
    os.makedirs(d)
    paths = random_chain(d, 3, seed=4, block_size=512 * 1024, names=["base", "mid", "leaf"],
                         hide=False)
    leaf, mid = paths[0], paths[1]
    with Chain.open(mid) as chain:
        before = bytes(chain.read(0, chain.virtual_size))
    with Chain.open(leaf) as chain:
        after = bytes(chain.read(0, chain.virtual_size))
    return {"leaf": leaf, "mid": mid, "before": before, "after": after}


def build_snapshot(root, make=random_chain):
    sr = os.path.join(root, "sr")
    os.makedirs(sr)
    chain = make(sr, 2, seed=5)
    return {"sr": sr, "vdi": _stem(chain[0]), "sha": content_sha(chain[0])}


BUILDERS = {"download": build_download, "upload": build_upload, "coalesce": build_coalesce,
            "snapshot": build_snapshot,
            # the same scenarios over QCOW2 chains made as SM makes them
            "download-qcow2": lambda root: build_download(root, qcow2_chain),
            "upload-qcow2": lambda root: build_upload(root, qcow2_chain),
            "snapshot-qcow2": lambda root: build_snapshot(root, qcow2_chain)}


def op_args(op, sc):
    op = op.split("-")[0]
    if op == "download":
        return ["download", sc["store"], sc["image"], sc["sr"]]
    if op == "upload":
        return ["upload", sc["sr"], sc["leaf"], sc["store"], "crash-upload"]
    if op == "coalesce":
        return ["coalesce", sc["leaf"], str(512 * 1024)]   # one block per committed batch
    return ["snapshot", sc["sr"], sc["vdi"]]


_TEMPLATES = {}


@pytest.fixture(scope="module")
def templates():
    """Build each scenario once per module; tests get a copy (see ``scenario``)."""
    top = tempfile.mkdtemp(prefix="vhdport-r4-", dir=FAST_TMP)
    yield lambda op: _TEMPLATES.get(op) or _TEMPLATES.setdefault(
        op, _built(op, tempfile.mkdtemp(prefix=op + "-", dir=top)))
    _TEMPLATES.clear()
    shutil.rmtree(top, ignore_errors=True)


@pytest.fixture
def tmp_path():
    """Like pytest's, but on tmpfs when there is one: a kill -9 keeps the page cache, so
    fsync durability is not what these tests are about, and tmpfs fsyncs are free."""
    path = tempfile.mkdtemp(prefix="vhdport-r4-case-", dir=FAST_TMP)
    yield pathlib.Path(path)
    shutil.rmtree(path, ignore_errors=True)


def _built(op, root):
    return root, BUILDERS[op](root)


def scenario(templates, op, tmp_path):
    """A private copy of ``op``'s template scenario under ``tmp_path``: (root, scenario)."""
    src, sc = templates(op)
    root = str(tmp_path / "w")
    shutil.copytree(src, root, symlinks=True)
    return root, {k: v.replace(src, root) if isinstance(v, str) else v for k, v in sc.items()}


def crashrun(spec, op, sc, root):
    env = dict(os.environ, CRASHRUN_BASE=root)
    return subprocess.run([sys.executable, SCRIPT, spec] + op_args(op, sc), cwd=REPO, env=env,
                          stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                          universal_newlines=True, timeout=120)


# --- collection-time step count -------------------------------------------------------

_COUNTS = {}


def counted(op):
    """{"steps": [...], "bytes": n} of a full, uninterrupted run of ``op``."""
    if op not in _COUNTS:
        root = tempfile.mkdtemp(prefix="vhdport-r4-count-", dir=FAST_TMP)
        try:
            sc = BUILDERS[op](root)
            out = os.path.join(root, "count.json")
            res = crashrun("count:" + out, op, sc, root)
            if res.returncode != 0:
                raise RuntimeError("counting {} failed: {}".format(op, res.stderr[-2000:]))
            with open(out) as f:
                _COUNTS[op] = json.load(f)
        finally:
            shutil.rmtree(root, ignore_errors=True)
    return _COUNTS[op]


BYTE_FRACTIONS = {"download": (0.0, 0.1, 0.35, 0.6, 0.85, 0.999),
                  "upload": (0.0, 0.3, 0.7, 0.99)}
BYTE_FRACTIONS["download-qcow2"] = BYTE_FRACTIONS["download"]
BYTE_FRACTIONS["upload-qcow2"] = BYTE_FRACTIONS["upload"]


def kill_points(steps):
    """1-based step numbers to kill at: every step, except the inside of a run of identical
    steps (a data write loop) -- its first and last are enough."""
    return [i + 1 for i, step in enumerate(steps)
            if i == 0 or i == len(steps) - 1 or steps[i - 1] != step or steps[i + 1] != step]


def pytest_generate_tests(metafunc):
    if "crash_step" in metafunc.fixturenames:
        op = metafunc.function.op
        metafunc.parametrize("crash_step", kill_points(counted(op)["steps"]))
    if "crash_bytes" in metafunc.fixturenames:
        op = metafunc.function.op
        total = counted(op)["bytes"]
        points = sorted(set(max(1, int(total * f)) for f in BYTE_FRACTIONS[op]))
        metafunc.parametrize("crash_bytes", points)


def for_op(op):
    def mark(fn):
        fn.op = op
        return fn
    return mark


# --- judging the survivors ------------------------------------------------------------

def staging_leftovers(sr):
    root = os.path.join(sr, ".vhdport-staging")
    return sorted(n for n in os.listdir(root) if n != ".root.lock") if os.path.isdir(root) \
        else []


def vdi_digest(sr):
    """Digest of the VDI files only (not locks, not staging)."""
    return {k: v for k, v in tree_digest(sr).items()
            if "/" not in k and disk.stem_of(k) is not None}


def sr_problems(sr, deep=True):
    """Structural problems of the SR as a list of lines (empty: consistent); ``deep`` adds
    the format's check_chain of every leaf."""
    vdis = SR(sr).vdis()
    problems = []
    for u, v in sorted(vdis.items()):
        if v.error:
            problems.append("{}: {}".format(u, v.error))
        if v.hidden and not v.children:
            problems.append("{}: hidden disk without children (GC would delete it)".format(u))
        if v.parent_uuid is not None and v.parent_uuid not in vdis:
            problems.append("{}: parent {} missing (incomplete chain)".format(u, v.parent_uuid))
    for leaf in SR(sr).leaves(vdis) if deep else ():
        if not any(p.startswith(leaf) for p in problems):
            path = SR(sr).vdi_path(leaf)
            problems.extend(str(d) for d in disk.for_path(path).check_chain(path))
    return problems, vdis


def safe_after_kill(sr, old_digest):
    """What must hold the instant after a kill, before anything recovers: no hidden VHD
    without children, every VDI readable, old VDIs byte-identical.  Returns the uuids of
    new VDIs whose parent is still missing (a publish cut short; see sr/recover.py)."""
    problems, vdis = sr_problems(sr, deep=False)
    pending = [line.split(":")[0] for line in problems if "missing (incomplete" in line]
    problems = [line for line in problems if "missing (incomplete" not in line]
    assert problems == [], "unsafe SR right after the kill:\n" + "\n".join(problems)
    after = vdi_digest(sr)
    assert {k: after.get(k) for k in old_digest} == old_digest, \
        "\n".join(diff_digests(old_digest, after))
    return pending


def judge_new_chain(sr, old, depth, sha):
    """The VDIs not in ``old`` are none, or one complete chain of ``depth`` reading ``sha``.
    Returns "none" or "complete"; asserts otherwise."""
    problems, vdis = sr_problems(sr)
    assert problems == [], "inconsistent SR after the kill:\n" + "\n".join(problems)
    new = set(vdis) - set(old)
    if not new:
        return "none"
    leaves = [u for u in new if not vdis[u].children]
    assert len(leaves) == 1, "new VDIs {} are not one chain".format(sorted(new))
    paths = SR(sr).chain_paths(leaves[0], vdis)
    assert sorted(_stem(p) for p in paths) == sorted(new), \
        "partial chain in the SR: {} of {}".format(sorted(new), depth)
    assert len(paths) == depth
    assert content_sha(paths[0]) == sha, "published chain reads wrong data"
    return "complete"


# --- download -------------------------------------------------------------------------

def _download_case(templates, tmp_path, spec, reliability_case, label, op="download"):
    root, sc = scenario(templates, op, tmp_path)
    case = reliability_case("R4", "{}: kill -9 {}".format(op, label), EXPECT_SR)
    old = set(SR(sc["sr"]).vdis())
    old_digest = vdi_digest(sc["sr"])
    res = crashrun(spec, "download", sc, root)
    assert res.returncode == -signal.SIGKILL, "not killed: rc {} {}".format(
        res.returncode, res.stderr[-1500:])
    pending = safe_after_kill(sc["sr"], old_digest)
    SR(sc["sr"]).reclaim_staging()      # what the next vhdport run does first
    state = judge_new_chain(sc["sr"], old, sc["depth"], sc["sha"])
    if pending:
        state += " (leaf published, parents finished by recovery)"
    # the next run reclaims the dead staging dir and succeeds
    again = transfer.download(LocalStore(sc["store"]), sc["image"], sc["sr"])
    assert staging_leftovers(sc["sr"]) == []
    judge_new_chain(sc["sr"], set(SR(sc["sr"]).vdis()) - set(again["chain"]),
                    sc["depth"], sc["sha"])
    case.detail = "after the kill: {} of the chain in the SR; rerun ok".format(state)


@for_op("download")
def test_download_killed_at_step(templates, tmp_path, crash_step, reliability_case):
    step = counted("download")["steps"][crash_step - 1]
    _download_case(templates, tmp_path, "step:{}".format(crash_step), reliability_case,
                   "before step {} {}".format(crash_step, step))


@for_op("download")
def test_download_killed_at_byte(templates, tmp_path, crash_bytes, reliability_case):
    _download_case(templates, tmp_path, "bytes:{}".format(crash_bytes), reliability_case,
                   "after {} of {} store bytes".format(crash_bytes, counted("download")["bytes"]))


@for_op("download-qcow2")
def test_download_qcow2_killed_at_step(templates, tmp_path, crash_step, reliability_case):
    step = counted("download-qcow2")["steps"][crash_step - 1]
    _download_case(templates, tmp_path, "step:{}".format(crash_step), reliability_case,
                   "before step {} {}".format(crash_step, step), op="download-qcow2")


@for_op("download-qcow2")
def test_download_qcow2_killed_at_byte(templates, tmp_path, crash_bytes, reliability_case):
    _download_case(templates, tmp_path, "bytes:{}".format(crash_bytes), reliability_case,
                   "after {} of {} store bytes".format(
                       crash_bytes, counted("download-qcow2")["bytes"]), op="download-qcow2")


# --- upload ---------------------------------------------------------------------------

def judge_store(store_root, sha, scratch):
    """No active image whose bytes do not download into the uploaded chain."""
    store = LocalStore(store_root)
    active = 0
    for record in store.list():
        if record["status"] != "active":
            continue
        active += 1
        sr = os.path.join(scratch, "check-{}".format(record["id"]))
        os.makedirs(sr)
        got = transfer.download(store, record["id"], sr)
        assert content_sha(SR(sr).vdi_path(got["root"]["uuid"])) == sha, \
            "active image {} holds wrong data".format(record["id"])
    return active


def _upload_case(templates, tmp_path, spec, reliability_case, label, op="upload"):
    root, sc = scenario(templates, op, tmp_path)
    case = reliability_case("R4", "{}: kill -9 {}".format(op, label),
                            "SR untouched; no active image with wrong data; rerun ok")
    digest = vdi_digest(sc["sr"])
    res = crashrun(spec, "upload", sc, root)
    assert res.returncode == -signal.SIGKILL, "not killed: rc {} {}".format(
        res.returncode, res.stderr[-1500:])
    assert vdi_digest(sc["sr"]) == digest
    problems, _ = sr_problems(sc["sr"])
    assert problems == []
    active = judge_store(sc["store"], sc["sha"], os.path.join(root, "scratch"))
    image = transfer.upload(sc["sr"], sc["leaf"], LocalStore(sc["store"]), name="rerun")
    assert staging_leftovers(sc["sr"]) == []
    assert vdi_digest(sc["sr"]) == digest
    assert LocalStore(sc["store"]).get(image)["status"] == "active"
    assert judge_store(sc["store"], sc["sha"], os.path.join(root, "scratch2")) == active + 1
    case.detail = "{} complete image(s) after the kill; rerun ok".format(active)


@for_op("upload")
def test_upload_killed_at_step(templates, tmp_path, crash_step, reliability_case):
    step = counted("upload")["steps"][crash_step - 1]
    _upload_case(templates, tmp_path, "step:{}".format(crash_step), reliability_case,
                 "before step {} {}".format(crash_step, step))


@for_op("upload")
def test_upload_killed_at_byte(templates, tmp_path, crash_bytes, reliability_case):
    _upload_case(templates, tmp_path, "bytes:{}".format(crash_bytes), reliability_case,
                 "after {} of {} bytes sent".format(crash_bytes, counted("upload")["bytes"]))


@for_op("upload-qcow2")
def test_upload_qcow2_killed_at_step(templates, tmp_path, crash_step, reliability_case):
    step = counted("upload-qcow2")["steps"][crash_step - 1]
    _upload_case(templates, tmp_path, "step:{}".format(crash_step), reliability_case,
                 "before step {} {}".format(crash_step, step), op="upload-qcow2")


@for_op("upload-qcow2")
def test_upload_qcow2_killed_at_byte(templates, tmp_path, crash_bytes, reliability_case):
    _upload_case(templates, tmp_path, "bytes:{}".format(crash_bytes), reliability_case,
                 "after {} of {} bytes sent".format(
                     crash_bytes, counted("upload-qcow2")["bytes"]), op="upload-qcow2")


# --- coalesce -------------------------------------------------------------------------

def sectors_between(got, before, after):
    """Offsets of sectors of ``got`` equal to neither model."""
    bad = []
    for off in range(0, len(got), SECTOR):
        g = got[off:off + SECTOR]
        if g != before[off:off + SECTOR] and g != after[off:off + SECTOR]:
            bad.append(off)
    return bad


@for_op("coalesce")
def test_coalesce_killed_at_step(templates, tmp_path, crash_step, reliability_case):
    root, sc = scenario(templates, "coalesce", tmp_path)
    step = counted("coalesce")["steps"][crash_step - 1]
    case = reliability_case(
        "R4", "coalesce: kill -9 before step {} {}".format(crash_step, step),
        "parent passes check; each sector reads as before or after; rerun completes")
    child_digest = tree_digest(os.path.dirname(sc["leaf"]))["leaf.vhd"]
    res = crashrun("step:{}".format(crash_step), "coalesce", sc, root)
    assert res.returncode == -signal.SIGKILL, res.stderr[-1500:]
    assert check_file(sc["mid"]) == []
    assert check_chain(sc["mid"]) == []
    with Chain.open(sc["mid"]) as chain:
        got = bytes(chain.read(0, chain.virtual_size))
    bad = sectors_between(got, sc["before"], sc["after"])
    assert bad == [], "sectors reading neither before nor after: {}".format(bad[:10])
    moved = sum(1 for off in range(0, len(got), SECTOR)
                if got[off:off + SECTOR] != sc["before"][off:off + SECTOR])
    assert tree_digest(os.path.dirname(sc["leaf"]))["leaf.vhd"] == child_digest
    coalesce(sc["leaf"])
    with Chain.open(sc["mid"]) as chain:
        assert bytes(chain.read(0, chain.virtual_size)) == sc["after"]
    assert check_chain(sc["mid"]) == []
    case.detail = "{} sectors already 'after' at the kill; rerun reads 'after'".format(moved)


# --- snapshot -------------------------------------------------------------------------

@for_op("snapshot")
def test_snapshot_killed_at_step(templates, tmp_path, crash_step, reliability_case):
    _snapshot_case(templates, tmp_path, crash_step, reliability_case, "snapshot")


@for_op("snapshot-qcow2")
def test_snapshot_qcow2_killed_at_step(templates, tmp_path, crash_step, reliability_case):
    _snapshot_case(templates, tmp_path, crash_step, reliability_case, "snapshot-qcow2")


def _snapshot_case(templates, tmp_path, crash_step, reliability_case, op):
    root, sc = scenario(templates, op, tmp_path)
    step = counted(op)["steps"][crash_step - 1]
    case = reliability_case(
        "R4", "{}: kill -9 before step {} {}".format(op, crash_step, step),
        "VDI reads as before, no hidden childless VHD; after reclaim: snapshot complete or "
        "absent; rerun ok")
    sr = SR(sc["sr"])
    old = set(sr.vdis())
    res = crashrun("step:{}".format(crash_step), op, sc, root)
    assert res.returncode == -signal.SIGKILL, res.stderr[-1500:]
    old_digest = {k: v for k, v in vdi_digest(sc["sr"]).items() if disk.stem_of(k) in old
                  and disk.stem_of(k) != sc["vdi"]}
    safe_after_kill(sc["sr"], old_digest)
    assert content_sha(sr.vdi_path(sc["vdi"])) == sc["sha"]
    sr.reclaim_staging()      # what the next vhdport run does first
    problems, vdis = sr_problems(sc["sr"])
    assert problems == [], "\n".join(problems)
    assert content_sha(sr.vdi_path(sc["vdi"])) == sc["sha"]
    new = set(vdis) - old
    visible_new = sorted(u for u in new if not vdis[u].hidden)
    if new:
        # complete: one new visible leaf (the snapshot) and its hidden base
        hidden_new = [u for u in new if vdis[u].hidden]
        assert len(new) == 2 and len(hidden_new) == 1 and len(visible_new) == 1, \
            "partial snapshot left in the SR: {}".format(
                {u: repr(vdis[u]) for u in sorted(new)})
        assert content_sha(sr.vdi_path(visible_new[0])) == sc["sha"]
    assert sr.gc() == []
    snap, base = sr.snapshot(sc["vdi"])
    assert staging_leftovers(sc["sr"]) == []
    assert content_sha(sr.vdi_path(snap)) == sc["sha"]
    assert content_sha(sr.vdi_path(sc["vdi"])) == sc["sha"]
    assert sr_problems(sc["sr"])[0] == []
    case.detail = "snapshot {} after the kill; rerun ok".format(
        "complete" if new else "absent")
