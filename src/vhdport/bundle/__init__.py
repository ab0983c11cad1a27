"""Image bundles: a tar (usually gzip'd) of one disk chain, ``0.<suffix>`` leaf .. ``N.<suffix>`` base.

One format per bundle (the suffix of a disk-face format: a VHD chain or a QCOW2 chain,
same names, order and rules).  Write with :func:`write_bundle`; read with
:func:`extract_bundle` (tar or tar.gz), :func:`extract_single` (a bare disk) or
:func:`extract_raw` (a raw image made into a new disk); :func:`check_sequence` checks
the staged chain order and
:func:`sniff` tells which of these a stream's first bytes look like.
"""

from .. import disk
from .reader import extract_bundle, extract_raw, extract_single, extract_single_vhd
from .rules import MAX_MEMBERS
from .sequence import check_sequence
from .writer import BundleStream, compressor_name, write_bundle

__all__ = ["write_bundle", "BundleStream", "compressor_name", "extract_bundle",
           "extract_single", "extract_single_vhd", "extract_raw", "check_sequence", "sniff",
           "MAX_MEMBERS", "SNIFF_SIZE"]

#: how many leading bytes :func:`sniff` wants
SNIFF_SIZE = 512


def sniff(head_bytes):
    """"gzip", "tar", a disk format's name (e.g. "vhd") or "raw" from a stream's first bytes.

    A fixed VHD has its only footer at the end, so it sniffs as "raw".
    """
    head = bytes(head_bytes[:SNIFF_SIZE])
    if head[:2] == b"\x1f\x8b":
        return "gzip"
    if head[257:262] == b"ustar":
        return "tar"
    fmt = disk.sniff(head)
    return fmt.name if fmt is not None else "raw"
