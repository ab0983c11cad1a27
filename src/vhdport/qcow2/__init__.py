"""QCOW2 images and backing chains: open, read, write, create, check, convert."""

from .chain import MAX_DEPTH, Qcow2Chain, local_backing, open_disk
from .check import Defect, check_chain, check_image
from .convert import copy_disk, export_raw, import_disk, import_raw, import_raw_stream
from .create import MAX_VIRTUAL_SIZE, create, create_snapshot
from .image import Qcow2File
from .ops import commit, get_hidden, resize, set_hidden, set_parent

__all__ = ["MAX_DEPTH", "MAX_VIRTUAL_SIZE", "Qcow2Chain", "Qcow2File", "Defect", "local_backing",
           "open_disk", "check_chain", "check_image", "copy_disk", "export_raw", "import_disk", "import_raw",
           "import_raw_stream", "create", "create_snapshot", "commit", "get_hidden", "resize",
           "set_hidden", "set_parent"]
