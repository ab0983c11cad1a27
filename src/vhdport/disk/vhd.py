"""The VHD engine (:mod:`vhdport.vhd`) behind the disk face.

A VHD's parent is found by its locators (relative to the child's directory) and must
carry the uuid the child records, whatever the ``backing`` policy: both policies
(:mod:`vhdport.disk.base`) resolve a VHD parent the same way.
"""

from .. import vhd as engine
from ..vhd import facts as _facts, member as _member
from ..vhd.disk import MAX_VIRTUAL_SIZE
from .base import SR_DIRECTORY, Description, DiskFormat, check_backing


class VhdFormat(DiskFormat):
    """XenServer's VHD: fixed, dynamic and differencing disks, as blktap writes them."""

    name = "vhd"
    suffix = ".vhd"
    # a fixed VHD has its only footer at the end, so only dynamic ones sniff as VHD
    magic = (0, b"conectix")
    head_size = _member.HEAD_SIZE
    tail_size = _member.FOOTER_SIZE
    max_virtual_size = MAX_VIRTUAL_SIZE
    max_depth = engine.MAX_DEPTH
    fixed_has_block_size = False     # a fixed VHD is raw data and a footer: no blocks
    info_fields = ("type", "uuid", "virtual_size", "physical_size", "block_size",
                   "allocated_blocks", "hidden", "parent", "parent_uuid", "depth")

    def plan_member(self, name, head, refuse, declared_size=None):
        return _member.plan_member(name, head, refuse, declared_size)

    def check_tail(self, name, plan, tail, size, refuse):
        return _member.check_tail(name, plan, tail, size, refuse)

    def import_raw_stream(self, reader, out_path, virtual_size):
        return engine.import_raw_stream(reader, out_path, virtual_size)

    def facts(self, path, name=None):
        return _facts.read_facts(path, name)

    def describe(self, path):
        with engine.VhdFile.open(path) as disk:
            names = list(disk.locator_paths())
            if disk.is_differencing and disk.header.parent_name:
                names.append(disk.header.parent_name)
            parent_path = disk.parent_locator_path() if disk.is_differencing else None
            return Description(
                uuid=str(disk.uuid), type_name=disk.type_name, hidden=disk.hidden,
                virtual_size=disk.virtual_size, physical_size=disk.physical_size,
                block_size=disk.block_size, is_differencing=disk.is_differencing,
                parent_uuid=str(disk.parent_uuid) if disk.is_differencing else None,
                parent_names=names, parent_path=parent_path)

    def check_file(self, path, check_parent=True, backing=SR_DIRECTORY):
        check_backing(backing)
        return engine.check_file(path, check_parent=check_parent)

    def info(self, path, backing=SR_DIRECTORY):
        check_backing(backing)
        return engine.info(path)

    def create(self, path, size, fixed=False, block_size=None, uuid=None):
        if fixed:
            return engine.create_fixed(path, size, uuid=uuid)
        kwargs = {"block_size": block_size} if block_size else {}
        return engine.create_dynamic(path, size, uuid=uuid, **kwargs)

    def snapshot(self, child_path, parent_path, block_size=None, backing=SR_DIRECTORY):
        check_backing(backing)
        kwargs = {"block_size": block_size} if block_size else {}
        return engine.create_snapshot(child_path, parent_path, **kwargs)

    def relink(self, child_path, parent_path, backing=SR_DIRECTORY):
        check_backing(backing)
        engine.set_parent(child_path, parent_path)

    def set_hidden(self, path, hidden):
        engine.set_hidden(path, hidden)

    def repair_hidden(self, path):
        with engine.VhdFile.open(path) as disk:
            torn = disk.backup_footer is not None and disk.backup_footer.hidden != disk.hidden
            hidden = disk.hidden
        if torn or not hidden:   # set both footer copies (a kill may have torn them)
            engine.set_hidden(path, True)
            return True
        return False

    def open_chain(self, leaf_path, writable=False, backing=SR_DIRECTORY):
        check_backing(backing)
        return engine.Chain.open(leaf_path, writable=writable)

    def check_chain(self, leaf_path, backing=SR_DIRECTORY):
        check_backing(backing)
        return engine.check_chain(leaf_path)

    def coalesce(self, child_path, backing=SR_DIRECTORY):
        check_backing(backing)
        return engine.coalesce(child_path)

    def import_raw(self, raw_path, out_path, fixed=False):
        return engine.import_raw(raw_path, out_path, fixed=fixed)

    def export_raw(self, path, out_path, backing=SR_DIRECTORY):
        check_backing(backing)
        return engine.export_raw(path, out_path)


VHD = VhdFormat()
