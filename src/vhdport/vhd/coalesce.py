"""Merge a differencing child into its parent, as ``vhd-util coalesce`` does.

Only the sectors the child holds (its bitmaps) are copied, through the parent's
own write path, in batches: the data of a batch of blocks is written and synced
before any bitmap or BAT entry that makes it visible.  An interrupted coalesce
therefore leaves every parent sector reading either as before or as after, and
the parent structurally valid; running coalesce again finishes the job.

The caller owns the policy: the parent must have no other children (their view
would change), and afterwards the child's children are relinked to the parent
and the child removed.
"""

import os

from ..errors import ChainError
from .chain import file_identity, resolve_parent
from .disk import SECTOR, VhdFile

#: bytes of child blocks copied between two syncs of the parent
DEFAULT_BATCH_BYTES = 64 * 1024 * 1024
#: test hook: "N" raises SystemExit after the data of N child blocks is written
#: (before their metadata is committed); "N:exit" calls os._exit instead
CRASH_ENV = "VHDPORT_TEST_CRASH_AFTER_BLOCKS"


def _crash_point():
    """Parse the crash hook once per coalesce: (blocks, hard) or None."""
    value = os.environ.get(CRASH_ENV)
    if not value:
        return None
    count, _, mode = value.partition(":")
    return int(count), mode == "exit"


def _simulate_crash(hard):
    if hard:
        os._exit(75)
    raise SystemExit("{}: simulated crash".format(CRASH_ENV))


def open_parent_for_coalesce(child):
    """Open ``child``'s parent writable after checking it is the right one and big enough."""
    if not child.is_differencing:
        raise ChainError("{}: {} disk has no parent to coalesce into".format(
            child.path, child.type_name))
    if child.parent_uuid == child.uuid:
        raise ChainError("{}: records its own uuid {} as its parent's; refusing to coalesce a "
                         "disk into itself".format(child.path, child.uuid))
    parent_path = resolve_parent(child)
    if file_identity(parent_path) == file_identity(child.path):
        raise ChainError("{}: its parent locator resolves to the file itself ({}); refusing to "
                         "coalesce a disk into itself".format(child.path, parent_path))
    parent = VhdFile.open(parent_path, writable=True)
    try:
        if parent.uuid != child.parent_uuid:
            raise ChainError("{}: parent {} has uuid {} but the child records {}; refusing to "
                             "coalesce into the wrong disk".format(
                                 child.path, parent_path, parent.uuid, child.parent_uuid))
        if parent.virtual_size < child.virtual_size:
            raise ChainError("{}: parent {} is smaller ({} bytes) than the child ({} bytes); "
                             "resize the parent first".format(
                                 child.path, parent_path, parent.virtual_size,
                                 child.virtual_size))
    except Exception:
        parent.close()
        raise
    return parent


def coalesce(child_path, batch_bytes=DEFAULT_BATCH_BYTES, progress=None):
    """Copy the sectors present in ``child_path`` into its parent; return the parent path.

    ``progress(done_blocks, total_blocks)`` is called after each committed batch.
    """
    crash = _crash_point()
    with VhdFile.open(child_path) as child:
        parent = open_parent_for_coalesce(child)
        with parent:
            blocks = child.bat.allocated()
            spb, size_sectors = child.spb, child.virtual_size // SECTOR
            block_buf = bytearray(child.block_size)
            batch_blocks = max(1, batch_bytes // child.block_size)
            pending = 0
            for done, block in enumerate(blocks, 1):
                first = block * spb
                count = min(spb, size_sectors - first)
                if count > 0:
                    _copy_block(child, parent, block, first, count, block_buf)
                if crash is not None and done == crash[0]:
                    _simulate_crash(crash[1])
                pending += 1
                if pending >= batch_blocks:
                    parent.commit_staged()
                    pending = 0
                    if progress is not None:
                        progress(done, len(blocks))
            parent.commit_staged()
            parent.flush()
            if progress is not None:
                progress(len(blocks), len(blocks))
            return parent.path


def _copy_block(child, parent, block, first, count, block_buf):
    """Stage into ``parent`` the present sectors of one child block (one read, one write per run)."""
    view = memoryview(block_buf)[:count * SECTOR]
    data_at = child.bat[block] * SECTOR + child.bitmap_size
    child.read_into(data_at, view)
    for vsector, n, at in child.map_sectors(first, count):
        if at is not None:
            pos = (vsector - first) * SECTOR
            parent.stage_sectors(vsector, view[pos:pos + n * SECTOR])
