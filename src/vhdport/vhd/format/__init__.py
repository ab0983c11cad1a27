"""Byte layouts of the VHD format: parse / serialize / checksum, nothing else.

Every structure is a small value class with ``parse(buf, path)`` and ``pack()``.  No
module here opens files or decides policy; that is :mod:`vhdport.vhd`'s job.
"""

SECTOR = 512
