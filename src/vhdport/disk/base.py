"""The disk face: what every disk-format engine offers the layers above it.

sr, bundle, transfer, kernel, the plugin and the CLI hold a DiskFormat (from the
registry in :mod:`vhdport.disk`) and call these methods; they never import an
engine.  A second format (QCOW2) is an engine package plus one subclass of
DiskFormat and one registry entry.

Facts about one file (``facts``) carry: ``uuid``, ``parent_uuid`` (None for a
base), ``is_differencing``, ``type_name``, ``virtual_size``, ``hidden``.
"""


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

    def check_file(self, path, check_parent=True):
        """Defects (with ``field``, ``offset``, ``message``) of one file; [] when valid."""
        raise NotImplementedError

    def info(self, path):
        """A dict summary of one file (type, sizes, uuid, hidden, parent, depth ...)."""
        raise NotImplementedError

    def create(self, path, size, fixed=False, block_size=None, uuid=None):
        """Create an empty disk (``uuid`` or a new one); return its uuid."""
        raise NotImplementedError

    def snapshot(self, child_path, parent_path, block_size=None):
        """Create an empty differencing child of ``parent_path``; return its uuid."""
        raise NotImplementedError

    def relink(self, child_path, parent_path):
        """Point ``child_path`` at ``parent_path`` (relative names kept as given)."""
        raise NotImplementedError

    def set_hidden(self, path, hidden):
        raise NotImplementedError

    def repair_hidden(self, path):
        """Set hidden and mend torn copies of the flag; True if anything was written."""
        raise NotImplementedError

    # --- chains -------------------------------------------------------------

    def open_chain(self, leaf_path, writable=False):
        """The chain from ``leaf_path`` to its base: ``read``, ``write``, ``paths()``..."""
        raise NotImplementedError

    def check_chain(self, leaf_path):
        """Defects of every file of the chain and of the links between them."""
        raise NotImplementedError

    def coalesce(self, child_path):
        """Merge a child into its parent; return the parent's path."""
        raise NotImplementedError

    def import_raw(self, raw_path, out_path, fixed=False):
        raise NotImplementedError

    def export_raw(self, path, out_path):
        raise NotImplementedError
