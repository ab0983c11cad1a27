"""How big a QCOW2 arriving as a stream may be, judged from its header.

The bundle reader lands a QCOW2 member into staging just as a VHD member: it reads
the head, asks for a plan, copies at most ``plan.bound`` bytes and looks at the tail.
A QCOW2 is random-access, so nothing is read through while it streams; the header
alone bounds the file (every cluster a valid image holds is the header, a table, or
data the L1 / L2 tables map), and the whole file is checked after landing
(``check_file``, through the chain rule).  Refusals go through ``refuse(name, reason)``.
"""

from ..errors import FormatError
from ..qcow2.format import tables as t
from ..qcow2.format.header import Header
from .qcow2_backing import backing_file_name

#: the head read before a member is trusted: header, extensions and backing name
HEAD_SIZE = 64 * 1024
#: QCOW2 has no trailer; the tail only shows the landed file's last bytes
TAIL_SIZE = 8
#: room for what the header does not count (snapshot table, bitmaps, a few leaks)
METADATA_SLACK = 64 << 20
MAX_L1_BYTES = 32 * 1024 * 1024         # qemu's limits, as the engine enforces them
MAX_REFTABLE_BYTES = 8 * 1024 * 1024


class Qcow2MemberPlan(object):
    """``bound``: the largest file the header explains; ``min_size``: the smallest."""

    __slots__ = ("bound", "min_size", "virtual_size", "backing_name")

    def __init__(self, bound, min_size, virtual_size, backing_name):
        self.bound, self.min_size = bound, min_size
        self.virtual_size, self.backing_name = virtual_size, backing_name

    def observe(self, offset, data):
        """Nothing to watch: QCOW2 tables may lie anywhere, the header bound is final."""


def _ceil(a, b):
    return (a + b - 1) // b


def file_bound(h):
    """Bytes a valid image with header ``h`` can hold at most."""
    cs = h.cluster_size
    guest = _ceil(h.size, cs)
    layers = 1 + h.nb_snapshots
    clusters = 1 + h.refcount_table_clusters + _ceil(h.l1_size * 8, cs) \
        + (h.l1_size + guest) * layers
    per_block = cs * 8 // h.refcount_bits
    clusters += _ceil(clusters, per_block) + 1
    reach = h.refcount_table_clusters * cs // 8 * per_block
    return min(clusters * cs + METADATA_SLACK, reach * cs)


def plan_member(name, head, refuse, max_virtual_size, declared_size=None):
    """A plan for member ``name`` from its first bytes; refuse a header that cannot be one.

    Refused before a byte of data lands: no magic, a header the engine refuses
    (encryption, external data file, unknown features), a virtual size over SM's
    limit, tables beyond qemu's limits, a backing name outside the SR directory, a
    ``declared_size`` (the tar header's) larger or smaller than the header allows.
    """
    try:
        h = Header.parse(bytes(head), name)
    except FormatError as err:
        detail = str(err)
        if detail.startswith(name + ": "):
            detail = detail[len(name) + 2:]
        raise refuse(name, "not a valid QCOW2 (header): {}".format(detail))
    if h.size > max_virtual_size:
        raise refuse(name, "virtual size {} exceeds SM's QCOW2 limit of {} bytes".format(
            h.size, max_virtual_size))
    need = t.l1_entries_needed(h.size, h.cluster_bits, h.extended_l2)
    if h.l1_size < need or h.l1_size * 8 > MAX_L1_BYTES:
        raise refuse(name, "L1 table of {} entries for virtual size {} (needs {}, at most {} "
                           "bytes)".format(h.l1_size, h.size, need, MAX_L1_BYTES))
    if not h.refcount_table_clusters or \
            h.refcount_table_clusters * h.cluster_size > MAX_REFTABLE_BYTES:
        raise refuse(name, "refcount table of {} clusters (1 .. {} bytes allowed)".format(
            h.refcount_table_clusters, MAX_REFTABLE_BYTES))
    if h.backing_name:
        try:
            backing_file_name(name, h.backing_name)
        except FormatError as err:
            raise refuse(name, str(err.fields.get("reason")))
    cs = h.cluster_size
    min_size = max(cs, h.refcount_table_offset + cs,
                   h.l1_table_offset + h.l1_size * 8 if h.l1_size else 0)
    bound = file_bound(h)
    if min_size > bound:
        raise refuse(name, "its tables lie at offset {}, past the {} bytes its header "
                           "explains: corrupt or hostile".format(min_size, bound))
    if declared_size is not None:
        if declared_size > bound:
            raise refuse(name, "declared size {} is larger than its own QCOW2 header allows "
                               "({} bytes): corrupt or hostile".format(declared_size, bound))
        if declared_size < min_size:
            raise refuse(name, "declared size {} cannot hold the tables its header places "
                               "(up to byte {})".format(declared_size, min_size))
    return Qcow2MemberPlan(bound, min_size, h.size, h.backing_name)


def check_tail(name, plan, tail, size, refuse):
    """A landed member holds at least the tables its header placed (the rest: check_file)."""
    del tail    # no trailer in QCOW2
    if size < plan.min_size:
        raise refuse(name, "{} bytes: ends before the tables its header places (byte "
                           "{}); truncated".format(size, plan.min_size))
    if size > plan.bound:
        raise refuse(name, "{} bytes, more than its QCOW2 header allows ({} bytes)".format(
            size, plan.bound))
    return plan
