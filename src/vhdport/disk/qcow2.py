"""The QCOW2 engine (:mod:`vhdport.qcow2`) behind the disk face, as XCP-ng 8.3's SM uses it.

A QCOW2 carries no uuid: a VDI's uuid is its file's stem and its parent's uuid the
stem of its backing file name.  Backing files are followed only beside the child
(:mod:`vhdport.disk.qcow2_backing`); a backing name pointing anywhere else is a
FormatError (so the chain rule and the SR scan report it) and is never opened.
Only a caller passing ``backing=LOCAL_FILES`` (the CLI, on a user's own files) gets
qemu-img's resolution instead: relative to the child's directory, absolute as given.

So the chain rule judges QCOW2 links by names: a staged chain passes it when its
files name each other as they are named there (member i's backing file
``<i+1>.qcow2`` in a bundle), or when the caller passes the SR names as ``names``
(the upload's hard links in staging).
"""

import collections
import os

from .. import qcow2 as engine
from ..errors import FormatError, Qcow2FormatError
from ..qcow2.format.header import Header
from ..qcow2.info import info as _info
from . import qcow2_bundle as _bundle, qcow2_member as _member
from .base import Description, DiskFormat
from .qcow2_backing import backing_file_name, in_directory, stem
from .base import LOCAL_FILES, SR_DIRECTORY, check_backing

_MIN_CLUSTER, _MAX_CLUSTER = 1 << 9, 1 << 21

#: what the chain rule needs of one file (the fields VHD's facts carry)
Facts = collections.namedtuple(
    "Facts", "uuid parent_uuid is_differencing type_name virtual_size hidden")


def _stem_of_path(path):
    base = os.path.basename(path)
    return base[:-len(QcowFormat.suffix)] if base.endswith(QcowFormat.suffix) else base


def _resolver(backing):
    """The engine's backing resolver for a policy of :mod:`vhdport.disk.base`."""
    return engine.local_backing if check_backing(backing) == LOCAL_FILES else in_directory


def read_header(path, name=None):
    """The header of the QCOW2 at ``path`` (first cluster only: cheap); FormatError if bad."""
    name = name or os.path.basename(path)
    try:
        with open(path, "rb") as f:
            head = f.read(104)
            bits = int.from_bytes(head[20:24], "big") if len(head) >= 24 else 9
            f.seek(0)
            buf = f.read(min(max(1 << min(bits, 21), _MIN_CLUSTER), _MAX_CLUSTER))
    except OSError as e:
        raise Qcow2FormatError("cannot read: {}".format(e.strerror), path=name)
    return Header.parse(buf, name)


class QcowFormat(DiskFormat):
    """XCP-ng 8.3's QCOW2 VDIs: v3, 64 KiB clusters, SM's hidden flag, relative backing."""

    name = "qcow2"
    suffix = ".qcow2"
    magic = (0, b"QFI\xfb")
    head_size = _member.HEAD_SIZE
    tail_size = _member.TAIL_SIZE
    max_virtual_size = engine.MAX_VIRTUAL_SIZE
    max_depth = engine.MAX_DEPTH
    uuid_is_file_name = True
    info_fields = ("format", "type", "virtual_size", "physical_size", "cluster_size",
                   "refcount_bits", "hidden", "backing_file", "parent", "depth")

    # --- streaming into staging -------------------------------------------

    def plan_member(self, name, head, refuse, declared_size=None):
        return _member.plan_member(name, head, refuse, self.max_virtual_size, declared_size)

    def check_tail(self, name, plan, tail, size, refuse):
        return _member.check_tail(name, plan, tail, size, refuse)

    def bundle_head(self, fileobj, path, parent_member_name):
        """The child names its parent's member (``1.qcow2``): see disk/qcow2_bundle.py."""
        return _bundle.member_head(fileobj, path, parent_member_name)

    def import_raw_stream(self, reader, out_path, virtual_size):
        engine.import_raw_stream(reader, out_path, virtual_size)
        return _stem_of_path(out_path)

    # --- one file -----------------------------------------------------------

    def facts(self, path, name=None):
        """Header facts; the uuid is the stem of ``name`` when given (a staged link's SR
        name: a QCOW2's identity is its name), else of ``path``."""
        h = read_header(path, name)
        parent = None
        if h.backing_name:
            backing_file_name(name or path, h.backing_name)
            parent = stem(h.backing_name)
        return Facts(_stem_of_path(name or path), parent, parent is not None,
                     "differencing" if parent is not None else "dynamic", h.size, h.hidden)

    def describe(self, path):
        with engine.Qcow2File.open(path) as image:
            name = image.backing_name
            parent_path = in_directory(path, name, image.backing_format) if name else None
            return Description(
                uuid=_stem_of_path(path), type_name="differencing" if name else "dynamic",
                hidden=image.hidden, virtual_size=image.virtual_size,
                physical_size=image.file_size, block_size=image.cluster_size,
                is_differencing=bool(name), parent_uuid=stem(name) if name else None,
                parent_names=[name] if name else [], parent_path=parent_path)

    def check_file(self, path, check_parent=True, backing=SR_DIRECTORY):
        resolve = _resolver(backing)
        defects = engine.check_image(path)
        try:
            h = read_header(path)
        except FormatError:
            return defects          # check_image reported it
        if not h.backing_name:
            return defects
        try:
            parent = resolve(path, h.backing_name, h.backing_format)
        except FormatError as err:
            return defects + [engine.Defect("backing_file_name", h.backing_file_offset,
                                            err.fields.get("reason"), path)]
        if check_parent:
            problem = None
            if not os.path.isfile(parent):
                problem = "backing file {} not found".format(parent)
            else:
                try:
                    with engine.Qcow2File.open(parent) as image:
                        if image.virtual_size > h.size:
                            problem = "backing file {} is larger ({}) than this image ({})" \
                                .format(parent, image.virtual_size, h.size)
                except FormatError as err:
                    problem = "backing file {} is not a valid QCOW2: {}".format(parent, err)
            if problem:
                defects.append(engine.Defect("backing_file_name", h.backing_file_offset,
                                             problem, path))
        return defects

    def info(self, path, backing=SR_DIRECTORY):
        facts = _info(path, backing=_resolver(backing))
        facts["uuid"] = _stem_of_path(path)
        name = facts["backing_file"]
        facts["parent_uuid"] = _stem_of_path(name) if name else None
        facts["block_size"] = facts["cluster_size"]
        return facts

    def create(self, path, size, fixed=False, block_size=None, uuid=None):
        own = _stem_of_path(path)
        if uuid is not None and str(uuid) != own:
            raise Qcow2FormatError("a QCOW2 has no uuid inside: its uuid is its file name; "
                                   "asked for {} but the file is {}".format(uuid, own), path=path)
        kwargs = {"cluster_size": block_size} if block_size else {}
        engine.create(path, size, preallocate=fixed, **kwargs)
        return own

    def snapshot(self, child_path, parent_path, block_size=None, backing=SR_DIRECTORY):
        """SM's child: relative ``<parent>.qcow2``, backing format qcow2, parent's cluster size.

        With ``LOCAL_FILES`` the parent may be anywhere: the child names it relative to
        its own directory (``../base.qcow2``), as ``qemu-img create -b`` would.
        """
        if _resolver(backing) is engine.local_backing:
            engine.create_snapshot(child_path, parent_path, cluster_size=block_size)
            return _stem_of_path(child_path)
        child_dir = os.path.dirname(os.path.abspath(child_path))
        parent_abs = os.path.join(child_dir, parent_path)
        if os.path.dirname(os.path.normpath(parent_abs)) != child_dir:
            raise Qcow2FormatError("parent {} is not in the child's directory {}: SM's backing "
                                   "names are relative <uuid>.qcow2".format(parent_path,
                                                                           child_dir),
                                   path=child_path)
        backing_file_name(child_path, os.path.basename(parent_abs))
        engine.create_snapshot(child_path, os.path.basename(parent_abs), cluster_size=block_size)
        return _stem_of_path(child_path)

    def relink(self, child_path, parent_path, backing=SR_DIRECTORY):
        """``qemu-img rebase -u``: a relative name stays relative; an absolute path beside
        the child becomes its relative name; SM's ``/var/run/sr-mount`` form is kept.
        With ``LOCAL_FILES`` any name is stored as given (it must open as a QCOW2)."""
        if _resolver(backing) is engine.local_backing:
            engine.set_parent(child_path, parent_path, backing=engine.local_backing)
            return
        name = parent_path
        if os.path.isabs(name) and not name.startswith("/var/run/sr-mount/"):
            child_dir = os.path.dirname(os.path.abspath(child_path))
            if os.path.dirname(os.path.normpath(name)) == child_dir:
                name = os.path.basename(name)
        backing_file_name(child_path, name)
        engine.set_parent(child_path, name, backing=in_directory)

    def set_hidden(self, path, hidden):
        engine.set_hidden(path, hidden)

    def repair_hidden(self, path):
        """One copy of the flag (SM's extension): set it if it is not set."""
        return engine.set_hidden(path, True)

    # --- chains -------------------------------------------------------------

    def open_chain(self, leaf_path, writable=False, backing=SR_DIRECTORY):
        return engine.Qcow2Chain.open(leaf_path, writable=writable, backing=_resolver(backing))

    def check_chain(self, leaf_path, backing=SR_DIRECTORY):
        return engine.check_chain(leaf_path, backing=_resolver(backing))

    def coalesce(self, child_path, backing=SR_DIRECTORY):
        """``qemu-img commit``: the child's data into its parent; return the parent's path."""
        resolve = _resolver(backing)
        h = read_header(child_path)
        if not h.backing_name:
            return engine.commit(child_path, backing=resolve)   # raises: no parent
        parent = resolve(child_path, h.backing_name, h.backing_format)
        engine.commit(child_path, backing=resolve)
        return parent

    def import_raw(self, raw_path, out_path, fixed=False):
        engine.import_raw(raw_path, out_path, preallocate=fixed)
        return _stem_of_path(out_path)

    def export_raw(self, path, out_path, backing=SR_DIRECTORY):
        engine.export_raw(path, out_path, backing=_resolver(backing))


QCOW2 = QcowFormat()
