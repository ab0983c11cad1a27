"""Flat images: a chain's virtual contents as one standard image a KVM host boots.

``flat_image(chain, "qcow2" | "raw")`` is the only way the layers above ask for one;
they never learn which engine writes it.  Either kind is a sized iterable of bytes:
``size`` is exact before the first byte (a store's Content-Length), the data is read
only while iterating, and nothing is written to disk on the way.
"""

from ..errors import ChainError, VhdportError
from ..qcow2 import Qcow2Chain, Qcow2File
from ..qcow2.flatstream import CHUNK, FlatQcow2, allocated_ranges, read_range
from ..vhd import Chain as VhdChain, VhdFile
from .registry import for_path

#: the ``disk_format`` of each flat image kind (its ``container_format`` is always bare)
FLAT_FORMATS = ("qcow2", "raw")


class FlatRaw(object):
    """The virtual disk byte for byte; holes are sent as zeros without reading them.

    The allocation map is walked while streaming: the size is the virtual size.
    """

    container_format = "bare"
    disk_format = "raw"

    def __init__(self, chain, chunk=CHUNK):
        self.chain = chain
        self.size = int(chain.virtual_size)
        self.chunk = chunk

    def _zeros(self, length):
        zeros = bytes(min(self.chunk, length))
        while length > 0:
            n = min(length, len(zeros))
            yield zeros if n == len(zeros) else zeros[:n]
            length -= n

    def __iter__(self):
        at = 0
        for offset, length in allocated_ranges(self.chain):
            end = min(offset + length, self.size)
            if end <= at:
                continue
            offset = max(offset, at)
            for chunk in self._zeros(offset - at):
                yield chunk
            for chunk in read_range(self.chain, offset, end - offset, self.chunk):
                yield chunk
            at = end
        for chunk in self._zeros(self.size - at):
            yield chunk


def flat_image(chain, image_format):
    """``chain``'s contents as one image of ``image_format`` (see FLAT_FORMATS).

    ``chain`` is what ``open_chain`` / :func:`open_files` return, and must stay open
    until the iteration ends.
    """
    if image_format == "qcow2":
        return FlatQcow2(chain)
    if image_format == "raw":
        return FlatRaw(chain)
    raise VhdportError("no flat image format {!r}: choose one of {}".format(
        image_format, ", ".join(FLAT_FORMATS)))


#: disk format name -> (open one file, chain of open files leaf first)
_READERS = {"vhd": (VhdFile.open, VhdChain), "qcow2": (Qcow2File.open, Qcow2Chain)}


def open_files(paths):
    """Open ``paths`` [leaf .. base] as one readable chain, in exactly that order.

    For files whose parent references need not resolve where they are (links in a
    staging directory, a parent named by an SR mount path): nothing is followed, so
    the caller must have checked the linkage first (:func:`vhdport.disk.check_chain`).
    """
    if not paths:
        raise ChainError("no files to open as a chain")
    names = sorted(set(for_path(path).name for path in paths))
    if len(names) != 1:
        raise ChainError("{}: the chain mixes disk formats ({}); refused".format(
            paths[0], ", ".join(names)))
    if names[0] not in _READERS:
        raise ChainError("{}: no chain reader for disk format {}".format(paths[0], names[0]))
    open_file, chain_of = _READERS[names[0]]
    files = []
    try:
        for path in paths:
            files.append(open_file(path))
    except BaseException:
        for f in files:
            f.close()
        raise
    return chain_of(files)
