"""The disk face: one object per disk format, chosen by name, file suffix or magic.

Everything above the engines reaches a disk format through here: ``FORMATS`` maps
a format's name (a store record's ``disk_format``) to its DiskFormat (see
:mod:`vhdport.disk.base` for what it offers).  Adding a format is an engine plus
one entry in ``FORMATS``.  :func:`check_chain` is the one home of the rule a
chain must meet before it moves between an SR and a store.  ``SR_DIRECTORY`` /
``LOCAL_FILES``: where a chain's parents may be (:mod:`vhdport.disk.base`).
"""

from ..vhd.chain import MAX_DEPTH
from ..vhd.fastio import SequentialWriter
from .base import BACKING_POLICIES, LOCAL_FILES, SR_DIRECTORY, DiskFormat
from .digest import content_digest
from .registry import (DEFAULT, FORMATS, by_name, for_file_name, for_path, for_tool, register, sniff,
                       stem_of, suffixes)
from .rule import check_chain

__all__ = ["FORMATS", "DEFAULT", "MAX_DEPTH", "DiskFormat", "by_name", "for_file_name", "for_path",
           "for_tool", "SR_DIRECTORY", "LOCAL_FILES", "BACKING_POLICIES",
           "sniff", "suffixes", "stem_of", "check_chain", "register", "SequentialWriter",
           "content_digest"]

# flat images for KVM hosts (the transfer's ``upload --as qcow2|raw``)
from .flat import FLAT_FORMATS, flat_image, open_files  # noqa: E402
__all__ += ["FLAT_FORMATS", "flat_image", "open_files"]
