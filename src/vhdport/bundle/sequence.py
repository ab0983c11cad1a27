"""Chain order of staged members: the disk face's one chain rule, in bundle words."""

from .. import disk


def check_sequence(paths, allow_growth=False):
    """Check [leaf .. base] ordering by uuids; return the members' uuids in that order.

    Each member but the last must be differencing with parent uuid == the next
    member's uuid; the base must have no parent; the leaf must not be hidden; all
    virtual sizes equal (``allow_growth``: a child may be larger than its parent,
    as after a resize of a snapshotted disk).  See :func:`vhdport.disk.check_chain`.
    """
    return disk.check_chain(paths, allow_growth=allow_growth)
