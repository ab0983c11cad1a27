"""QCOW2 byte layouts: the header and its extensions, table entries, refcount blocks."""
