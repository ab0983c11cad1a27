"""R8: declared-size bombs -- VHD metadata that declares far more than the file holds.

Issue 11: a 65 KB image declaring 2^26 BAT entries drove a download to 1.8 GB of memory;
`vhd info` on it took 4.2 GB.  The rule: memory and time follow what the file holds and
what the virtual size needs, never a declared count.

Each case is generated (seeded, several per class) as a sparse file of at most 1 MiB on
disk whatever its apparent size, then `vhd info`, `vhd check` and a download each run in a
fresh interpreter: under 5 s and 100 MiB peak RSS (that process's own, from wait4), a
one-line refusal or a normal answer, never a traceback, and nothing around the file,
the SR or the store changes (tree_digest before and after).
"""

import os
import random
import sys
import uuid as uuidlib

import pytest

from tests.hostile.bombs import (MIB, allocated_bytes, env_digest, measure, vhdport_cli,
                                 write_bomb)
from tests.hostile.conftest import diff_digests, tree_digest
from vhdport.bundle import write_bundle
from vhdport.format import batmap as batmaps
from vhdport.format.locator import CODE_MACX, CODE_W2KU

GIB = 1 << 30
TIME_LIMIT = 5.0
RSS_LIMIT_MIB = 100.0
ON_DISK_LIMIT = MIB
CASES_PER_CLASS = 4
SCRIPTS = os.path.join(os.path.dirname(os.path.abspath(__file__)), "scripts")

pytestmark = pytest.mark.timeout(600)


def _huge_bat(rng):
    block = rng.choice([4096, 2 * MIB, 512, 3 * 4096])
    entries = rng.choice([1 << 24, 1 << 25, (1 << 26) - rng.randrange(1, 4096), 0xFFFFFFFF])
    table = rng.choice([1536, 4096])
    size = rng.choice([8 * MIB, 64 * MIB, 512 * MIB])
    return dict(virtual_size=size, block_size=block, entries=entries,
                file_size=min(table + entries * 4 + 8192, 15 << 40) // 512 * 512,
                table_offset=table)


def _small_blocks(rng):
    block = rng.choice([512, 1024, 4096, 16384])
    size = rng.randrange(1 << 40, 2040 * GIB, 1 << 20)
    entries = (size + block - 1) // block
    return dict(virtual_size=size, block_size=block, entries=entries,
                file_size=(1536 + entries * 4 + 8192) // 512 * 512)


def _huge_locators(rng):
    """Locators whose declared length and space reach GiBs, placed inside a sparse file so
    a reader trusting them would read (and allocate) all of it."""
    size = 64 * MIB
    file_size = rng.choice([4 * GIB, 64 * GIB])
    length = rng.choice([1 << 27, 1 << 28, 1 << 30, rng.randrange(1 << 17, 1 << 31)])
    space = rng.choice([length, 0xFFFFFFFF])
    offset = rng.randrange(8192, file_size - length - 4096) // 512 * 512
    return dict(virtual_size=size, block_size=2 * MIB, entries=size // (2 * MIB),
                file_size=file_size, parent_uuid=uuidlib.uuid4(),
                locators=[(CODE_MACX, space, length, offset), (CODE_W2KU, space, length, offset)])


def _far_offsets(rng):
    """Header, BAT and batmap placed far into a sparse file; a batmap declaring a map of
    512 MiB .. 2 TiB that (in most cases) lies inside the file."""
    file_size = rng.choice([1 << 40, 1 << 36, 2040 * GIB])
    table = rng.choice([1 << 35, file_size - 8192, 1536])
    data_offset = rng.choice([512, file_size - (1 << 30)])
    map_sectors = rng.choice([1 << 20, 1 << 21, 0xFFFFFFFF])
    map_offset = rng.choice([file_size - map_sectors * 512 - 4096, 1 << 30, file_size - 1024])
    hdr = batmaps.BatmapHeader(map_offset=max(1 << 20, map_offset), map_sectors=map_sectors,
                               checksum=0)
    extra = [(table + 512, hdr.pack())] if table + 1024 < file_size - 512 else []
    return dict(virtual_size=16 * MIB, block_size=2 * MIB, entries=8, file_size=file_size,
                table_offset=table, data_offset=data_offset, extra=extra)


def _sparse_max(rng):
    """Declared sizes at the very maximum XenServer allows, BAT a hole (every entry 0), a
    batmap of all ones with a valid checksum: open succeeds, check has work to do."""
    block = 2 * MIB
    size = rng.choice([2040 * GIB, 2040 * GIB - rng.randrange(1, 1 << 20) * 512])
    need = (size + block - 1) // block
    entries = rng.choice([need, 2048 * GIB // block])     # plain, or LVHD-preallocated
    table = 1536
    bat_end = table + (entries * 4 + 511) // 512 * 512
    sectors = batmaps.map_sectors(entries)
    map_bytes = b"\xff" * (sectors * 512)
    hdr = batmaps.BatmapHeader(map_offset=bat_end + 512, map_sectors=sectors,
                               checksum=batmaps.checksum(map_bytes))
    return dict(virtual_size=size, block_size=block, entries=entries,
                file_size=rng.choice([size, 2048 * GIB, size // 2]) // 512 * 512,
                extra=[(bat_end, hdr.pack()), (bat_end + 512, map_bytes)])


CLASSES = {
    "huge BAT entry count": _huge_bat,
    "small blocks, huge virtual size": _small_blocks,
    "huge parent locators": _huge_locators,
    "header / table / batmap offsets far away": _far_offsets,
    "sparse file at the declared maximum": _sparse_max,
}
SHORT = {_huge_bat: "huge-bat", _small_blocks: "small-blocks", _huge_locators: "locators",
         _far_offsets: "far-offsets", _sparse_max: "sparse-max"}


def _generated():
    for name in sorted(CLASSES):
        for i in range(CASES_PER_CLASS):
            yield pytest.param(name, i, id="{}-{}".format(SHORT[CLASSES[name]], i))


def _make(directory, cls, seed):
    rng = random.Random("{}:{}".format(cls, seed))
    kwargs = CLASSES[cls](rng)
    path = os.path.join(directory, "bomb.vhd")
    write_bomb(path, **kwargs)
    assert allocated_bytes(path) <= ON_DISK_LIMIT, allocated_bytes(path)
    return path, kwargs


def _describe(kwargs):
    keys = ("virtual_size", "block_size", "entries", "file_size", "table_offset")
    return ", ".join("{}={}".format(k, kwargs[k]) for k in keys if k in kwargs)


def _bounded(verb, result):
    code, out, seconds, rss = result
    assert code is not None, "{} still running after the timeout".format(verb)
    assert "Traceback" not in out, out[-2000:]
    assert seconds < TIME_LIMIT, "{} took {:.2f} s".format(verb, seconds)
    assert rss < RSS_LIMIT_MIB, "{} peaked at {:.0f} MiB".format(verb, rss)
    return code, out


@pytest.mark.parametrize("cls,seed", list(_generated()))
def test_info_and_check_bounded(cls, seed, tmp_path, reliability_case):
    case = reliability_case("R8", "{} #{}: vhd info / vhd check".format(cls, seed),
                            "< 5 s and < 100 MiB each (fresh process), one-line answer, "
                            "check says invalid, surroundings unchanged")
    root = str(tmp_path / "env")
    work = os.path.join(root, "work")
    os.makedirs(work)
    os.makedirs(os.path.join(root, "outside"))
    with open(os.path.join(root, "outside", "canary"), "wb") as f:
        f.write(b"must stay")
    path, kwargs = _make(work, cls, seed)
    before = env_digest(root)
    details = []
    for verb in ("info", "check"):
        code, out = _bounded(verb, measure(vhdport_cli("vhd", verb, path)))
        if verb == "check":
            assert code == 1, out
        else:
            assert code in (0, 1), out
            if code == 1:
                lines = [l for l in out.splitlines() if l.strip()]
                assert len(lines) == 1 and lines[0].startswith("vhdport: error: "), out
        details.append("{} exit {}".format(verb, code))
    after = env_digest(root)
    assert before == after, diff_digests(before, after)[:5]
    case.detail = "{}; {}".format(_describe(kwargs), ", ".join(details))


def _download_cases():
    """Bombs small enough to bundle (apparent size <= 260 MiB): the download path."""
    out = []
    for entries in (1 << 24, 1 << 25, (1 << 26) - 7):
        out.append(("BAT of {} entries, 4 KiB blocks".format(entries),
                    dict(virtual_size=8 * MIB, block_size=4096, entries=entries,
                         file_size=1536 + entries * 4 + 4096)))
    out.append(("BAT of 2^22 entries, 512 B blocks, 2 GiB declared",
                dict(virtual_size=2 * GIB, block_size=512, entries=1 << 22,
                     file_size=1536 + (1 << 24) + 4096)))
    out.append(("locator of 4 GiB",
                dict(virtual_size=8 * MIB, block_size=2 * MIB, entries=4, file_size=64 * MIB,
                     parent_uuid=uuidlib.uuid4(),
                     locators=[(CODE_MACX, 0xFFFFFFFF, 0xFFFFFFFF, 4096)])))
    return out


@pytest.mark.parametrize("index", range(len(_download_cases())))
def test_download_bounded(index, hostile_env, tmp_path, reliability_case):
    name, kwargs = _download_cases()[index]
    case = reliability_case("R8", "download of a bundle holding: {}".format(name),
                            "refused < 5 s and < 100 MiB (fresh process); SR, store and "
                            "outside unchanged")
    root, sr, store, _outside = hostile_env
    src = str(tmp_path / "src")
    os.mkdir(src)
    path = os.path.join(src, "bomb.vhd")
    write_bomb(path, **kwargs)
    assert allocated_bytes(path) <= ON_DISK_LIMIT
    record = store.create("bomb", "vhd", "ovf")
    store.put(record["id"], write_bundle([("0.vhd", path)], level=1))
    before = tree_digest(root)
    code, out = _bounded("download", measure(
        [sys.executable, os.path.join(SCRIPTS, "download_one.py"), store.root, record["id"],
         sr]))
    assert code == 1, out
    after = tree_digest(root)
    assert before == after, diff_digests(before, after)[:5]
    case.detail = out.strip().splitlines()[-1][:200]


def test_valid_preallocated_bat_still_opens(tmp_path, reliability_case):
    """The bound is not a refusal of XenServer's own files: an LVHD-style BAT sized for
    2 TiB on a small disk (``vhd-util create -S``) opens and checks clean."""
    case = reliability_case("R8", "control: BAT preallocated for 2 TiB on an 8 MiB disk",
                            "opens and checks valid")
    from vhdport.vhd import VhdFile, check_file
    path = str(tmp_path / "lvhd.vhd")
    entries = 2048 * GIB // (2 * MIB)
    bat_end = 1536 + entries * 4
    sectors = batmaps.map_sectors(entries)
    map_bytes = bytes(sectors * 512)
    hdr = batmaps.BatmapHeader(map_offset=bat_end + 512, map_sectors=sectors,
                               checksum=batmaps.checksum(map_bytes))
    write_bomb(path, 8 * MIB, 2 * MIB, entries, bat_end + 512 + len(map_bytes) + 512,
               bat_bytes=b"\xff" * (entries * 4),
               extra=[(bat_end, hdr.pack()), (bat_end + 512, map_bytes)])
    with VhdFile.open(path) as disk:
        assert disk.header.max_table_entries == 1 << 20 and disk.virtual_size == 8 * MIB
    assert check_file(path) == []
    case.detail = "{} entries for 4 needed: accepted".format(entries)
