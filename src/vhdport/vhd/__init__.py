"""VHD files and chains: open, create, read and write through chains, check, coalesce, convert."""

from .chain import MAX_DEPTH, Chain
from .check import Defect, check_chain, check_file
from .coalesce import coalesce
from .convert import export_raw, import_raw, import_raw_stream
from .create import create_dynamic, create_fixed, create_snapshot
from .disk import MAX_VIRTUAL_SIZE, VhdFile
from .info import info
from .ops import set_hidden, set_parent

__all__ = ["Chain", "VhdFile", "MAX_DEPTH", "MAX_VIRTUAL_SIZE",
           "Defect", "check_chain", "check_file", "info",
           "create_dynamic", "create_fixed", "create_snapshot", "set_hidden", "set_parent",
           "coalesce", "export_raw", "import_raw", "import_raw_stream"]
