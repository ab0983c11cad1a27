"""vhdport: move XenServer VHD chains between image stores and storage repositories.

The core (``format``, ``vhd``, ``sr``, ``bundle``, ``stores``, ``transfer``, ``plugin``)
uses only the standard library and Python 3.6 syntax, because it runs in dom0.
"""

__version__ = "0.1.0"
