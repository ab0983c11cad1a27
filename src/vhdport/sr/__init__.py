"""A XenServer file SR: graph of VDI files (VHD, QCOW2), GC rules, snapshot, staging, publish."""

from .repo import LOCK_NAME, SR, coalesceable, garbage_order, leaf_coalesceable
from .scan import VdiInfo, is_uuid, uuid_of_name
from .staging import STAGING_DIR, Staging

__all__ = ["SR", "VdiInfo", "Staging", "garbage_order", "coalesceable", "leaf_coalesceable",
           "is_uuid", "uuid_of_name",
           "LOCK_NAME", "STAGING_DIR"]
