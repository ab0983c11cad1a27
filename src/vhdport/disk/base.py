"""The disk face: what every disk-format engine offers the layers above it.

sr, bundle, transfer, kernel, the plugin and the CLI hold a DiskFormat (from the
registry in :mod:`vhdport.disk`) and call these methods; they never import an
engine.  A second format (QCOW2) is an engine package plus one subclass of
DiskFormat and one registry entry.

Facts about one file (``facts``) carry: ``uuid``, ``parent_uuid`` (None for a
base), ``is_differencing``, ``type_name``, ``virtual_size``, ``hidden``.

Following a parent reads another host file, so where a parent may be is a named
trust decision, the ``backing`` argument of the methods that follow parents:
``SR_DIRECTORY`` (the default; sr, bundle, transfer and the plugin never pass
anything else) follows only what an SR can hold (for QCOW2: ``<uuid>.qcow2`` in
the child's own directory); ``LOCAL_FILES`` is for a tool user's own files, as
qemu-img follows them (relative names against the child's directory, absolute
names as given).  Only the CLI's disk verbs choose it.
"""

#: follow a parent only where an SR keeps it (the default: hostile images name anything)
SR_DIRECTORY = "sr-directory"
#: follow parents as qemu-img does: the caller vouches for the files (the CLI's disk verbs)
LOCAL_FILES = "local-files"
BACKING_POLICIES = (SR_DIRECTORY, LOCAL_FILES)


def check_backing(backing):
    """``backing`` if it is a known policy; ValueError otherwise (a typo must not widen trust)."""
    if backing not in BACKING_POLICIES:
        raise ValueError("unknown backing policy {!r} (one of {})".format(
            backing, ", ".join(BACKING_POLICIES)))
    return backing


class Description(object):
    """What an SR scan knows of one disk file (see ``DiskFormat.describe``)."""

    #: ``parent_names``: every name the file gives its parent (locators, header);
    #: ``parent_path``: the file a chain reader opens as its parent (None if none)
    __slots__ = ("uuid", "type_name", "hidden", "virtual_size", "physical_size", "block_size",
                 "is_differencing", "parent_uuid", "parent_names", "parent_path")

    def __init__(self, **fields):
        for name in self.__slots__:
            setattr(self, name, fields.get(name))


class DiskFormat(object):
    """One disk format.  Subclasses fill in the attributes and the methods."""

    #: registry key, and the store records' ``disk_format``
    name = None
    #: file name suffix of a disk in an SR or a bundle (".vhd")
    suffix = None
    #: (offset, bytes) that a stream of this format starts with, or None (see ``sniff``)
    magic = None
    #: bytes a member's head must hold before ``plan_member`` can bound it
    head_size = 0
    #: bytes at a member's end that ``check_tail`` looks at
    tail_size = 0
    #: largest virtual size XenServer accepts for this format
    max_virtual_size = 0
    #: longest chain (files, leaf to base) SM accepts for this format
    max_depth = 30
    #: True when nothing inside a file records a uuid: the disk's uuid is its file name's stem
    uuid_is_file_name = False
    #: whether a fixed (preallocated) disk still has a block size (``create``'s ``block_size``)
    fixed_has_block_size = True
    #: the keys of ``info`` a one-screen summary shows, in order
    info_fields = ()

    def __repr__(self):
        return "<disk format {}>".format(self.name)

    def sniff(self, head):
        """Whether a stream starting with ``head`` is of this format."""
        if self.magic is None:
            return False
        offset, magic = self.magic
        return bytes(head[offset:offset + len(magic)]) == magic

    def file_name(self, stem):
        """``stem`` + this format's suffix: the name of a disk in an SR or a bundle."""
        return "{}{}".format(stem, self.suffix)

    # --- streaming into staging (bundle reader) ---------------------------

    def plan_member(self, name, head, refuse, declared_size=None):
        """A plan (``bound``, ``observe(offset, data)``) for a member from its first bytes."""
        raise NotImplementedError

    def check_tail(self, name, plan, tail, size, refuse):
        """Check a landed member's last ``tail_size`` bytes against its plan."""
        raise NotImplementedError

    def bundle_head(self, fileobj, path, parent_member_name):
        """Bytes that replace the start of a chain member in a bundle, or None (send as is).

        For a format whose child names its parent by file name (QCOW2), so the member names
        ``parent_member_name`` instead of a file of the source SR; the size never changes.
        """
        return None

    def import_raw_stream(self, reader, out_path, virtual_size):
        """Write a raw disk stream as a new disk of this format."""
        raise NotImplementedError

    # --- one file -----------------------------------------------------------

    def facts(self, path, name=None):
        """Cheap facts for the chain rule (see module docstring); FormatError if unreadable."""
        raise NotImplementedError

    def describe(self, path):
        """One file fully validated, as the SR graph sees it: a Description."""
        raise NotImplementedError

    def check_file(self, path, check_parent=True, backing=SR_DIRECTORY):
        """Defects (with ``field``, ``offset``, ``message``) of one file; [] when valid."""
        raise NotImplementedError

    def info(self, path, backing=SR_DIRECTORY):
        """A dict summary of one file (type, sizes, uuid, hidden, parent, depth ...)."""
        raise NotImplementedError

    def create(self, path, size, fixed=False, block_size=None, uuid=None):
        """Create an empty disk (``uuid`` or a new one); return its uuid."""
        raise NotImplementedError

    def snapshot(self, child_path, parent_path, block_size=None, backing=SR_DIRECTORY):
        """Create an empty differencing child of ``parent_path`` (relative to the child's
        directory, or absolute); return its uuid."""
        raise NotImplementedError

    def relink(self, child_path, parent_path, backing=SR_DIRECTORY):
        """Point ``child_path`` at ``parent_path`` (relative names kept as given; with
        ``LOCAL_FILES`` absolute names too)."""
        raise NotImplementedError

    def set_hidden(self, path, hidden):
        raise NotImplementedError

    def repair_hidden(self, path):
        """Set hidden and mend torn copies of the flag; True if anything was written."""
        raise NotImplementedError

    # --- chains -------------------------------------------------------------

    def open_chain(self, leaf_path, writable=False, backing=SR_DIRECTORY):
        """The chain from ``leaf_path`` to its base: ``read``, ``write``, ``paths()``..."""
        raise NotImplementedError

    def check_chain(self, leaf_path, backing=SR_DIRECTORY):
        """Defects of every file of the chain and of the links between them."""
        raise NotImplementedError

    def coalesce(self, child_path, backing=SR_DIRECTORY):
        """Merge a child into its parent; return the parent's path."""
        raise NotImplementedError

    def import_raw(self, raw_path, out_path, fixed=False):
        raise NotImplementedError

    def export_raw(self, path, out_path, backing=SR_DIRECTORY):
        """Write the virtual contents of the chain ending at ``path`` to a new raw file."""
        raise NotImplementedError
