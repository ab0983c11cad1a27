"""A XenServer file SR: graph of ``<uuid>.vhd`` files, GC rule, snapshot, staging, publish."""

from .repo import LOCK_NAME, SR, garbage_order
from .scan import VdiInfo, is_uuid, uuid_of_name
from .staging import STAGING_DIR, Staging

__all__ = ["SR", "VdiInfo", "Staging", "garbage_order", "is_uuid", "uuid_of_name",
           "LOCK_NAME", "STAGING_DIR"]
