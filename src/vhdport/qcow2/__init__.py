"""QCOW2 images and backing chains: open, read, write, create, check, convert."""

from .chain import MAX_DEPTH, Qcow2Chain, local_backing, open_disk
from .image import Qcow2File

__all__ = ["MAX_DEPTH", "Qcow2Chain", "Qcow2File", "local_backing", "open_disk"]
