"""Safe streaming extraction of a bundle (or a bare disk, or a raw image) into staging.

Nothing is trusted: every tar header is parsed here, every member checked by name,
type and size before its data is read, and written only under a temporary name
inside ``staging_dir`` (never following links).  Any failure removes what we wrote.
"""

import errno
import os

from .. import disk
from ..errors import BundleError, NoSpaceError
from ..fsutil import fsync_dir, fsync_file, unlink_quietly
from . import rules, tarfmt
from .streams import CHUNK, open_source

#: zero padding tolerated after the end-of-archive marker (GNU tar pads to 10 KiB)
MAX_TRAILER = 1 << 20
_OPEN_FLAGS = os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_NOFOLLOW", 0) \
    | getattr(os, "O_CLOEXEC", 0)


class Landing(object):
    """Files written into the caller's staging dir; ``discard`` removes exactly those."""

    def __init__(self, staging_dir):
        if not os.path.isdir(staging_dir):
            raise BundleError("staging directory {} does not exist".format(staging_dir))
        self.dir = staging_dir
        self.written = []
        self._serial = 0

    def new_temp(self):
        self._serial += 1
        path = os.path.join(self.dir, ".bundle-{}-{}.part".format(os.getpid(), self._serial))
        fd = os.open(path, _OPEN_FLAGS, 0o644)
        self.written.append(path)
        return path, fd

    def publish(self, temp, final_name):
        """Rename a landed temp file to its final name (never over an existing file)."""
        final = os.path.join(self.dir, final_name)
        if os.path.lexists(final):
            raise BundleError("staging directory {} already holds {}: use a fresh "
                              "directory".format(self.dir, final_name))
        os.rename(temp, final)
        self.written[self.written.index(temp)] = final
        return final

    def sync(self):
        fsync_dir(self.dir)

    def discard(self):
        for path in reversed(self.written):
            unlink_quietly(path)
        self.written = []


def _land(source, staging, name, fmt, plan, head, size=None):
    """Copy one member (``size`` bytes, or to EOF) to a temp file, fsync, check its tail."""
    temp, fd = staging.new_temp()
    written = 0
    try:
        # direct I/O from a writer thread, zero pieces left as holes (see fastio)
        try:
            out = disk.SequentialWriter(fd)
        except BaseException:
            os.close(fd)
            raise
        try:
            out.write(head)
            plan.observe(0, head)
            written = len(head)
            keep = fmt.tail_size
            tail = bytearray(head[-keep:])
            while size is None or written < size:
                want = CHUNK if size is None else min(CHUNK, size - written)
                data = source.read_some(want)
                if not data:
                    if size is None:
                        break
                    raise source.truncated(size, written)
                plan.observe(written, data)
                written += len(data)
                if max(written, size or 0) > plan.bound:
                    raise rules.refuse(name, "{} bytes, more than its own {} metadata "
                                             "allows ({} bytes)".format(
                                                 size or "a stream of over " + str(written),
                                                 fmt.name.upper(), plan.bound))
                out.write(data)
                tail += data[-keep:]
                del tail[:-keep]
            out.finish()
        finally:
            out.close()
    except OSError as err:
        if err.errno == errno.ENOSPC:
            raise NoSpaceError(path=temp)
        raise
    fmt.check_tail(name, plan, tail, written, rules.refuse)
    return temp


def free_bytes(directory):
    """Space an unprivileged writer may still use under ``directory``."""
    st = os.statvfs(directory)
    return st.f_bavail * st.f_frsize


def _read_member(source, staging, name, fmt, size):
    """Head first (to bound the size), then the rest."""
    head = source.read_exact(min(fmt.head_size, size))
    plan = fmt.plan_member(name, head, rules.refuse, size)
    if size > free_bytes(staging.dir):
        raise NoSpaceError(path="{} (member {} needs {} bytes, {} free)".format(
            staging.dir, name, size, free_bytes(staging.dir)))
    return _land(source, staging, name, fmt, plan, head, size)


class _Pending(object):
    """Overrides from pax / GNU long-name headers that apply to the next member."""

    def __init__(self):
        self.path = None
        self.size = None
        self.linkpath = None

    def apply_pax(self, records, offset, global_header):
        for key, value in records.items():
            if key.startswith("GNU.sparse."):
                raise BundleError("pax header at offset {}: sparse files are not "
                                  "accepted in a bundle".format(offset), offset=offset)
            if key in ("path", "linkpath", "size") and global_header:
                raise BundleError("global pax header at offset {} sets {!r} for every member: "
                                  "refused (a bundle's members carry their own "
                                  "names)".format(offset, key), offset=offset)
        if "path" in records:
            self.path = records["path"]
        if "linkpath" in records:
            self.linkpath = records["linkpath"]
        if "size" in records:
            try:
                self.size = int(records["size"])
                if self.size < 0:
                    raise ValueError(self.size)
            except ValueError:
                raise BundleError("pax header at offset {}: bad size {!r}".format(
                    offset, records["size"]), offset=offset)


def _read_meta(source, header):
    """Data of a pax / long-name header, bounded."""
    if header.size > tarfmt.MAX_META_DATA:
        raise BundleError("{} at offset {} is {} bytes: refused".format(
            "pax header" if header.typeflag in (tarfmt.PAX_HEADER, tarfmt.PAX_GLOBAL)
            else "GNU long name", header.offset, header.size), offset=header.offset)
    data = source.read_exact(header.size)
    source.skip(tarfmt.padding(header.size))
    return data


def _next_header(source, last_name):
    """The next header, or None at the end-of-archive marker (two zero blocks)."""
    offset = source.consumed
    source.where = "the tar header after {}".format(
        rules.show(last_name) if last_name else "the start of the archive")
    block = source.read_upto(tarfmt.BLOCK)
    if not block:
        raise BundleError("archive truncated: it ends without the end-of-archive marker, "
                          "after {}".format(rules.show(last_name) if last_name
                                            else "no member at all"))
    if len(block) < tarfmt.BLOCK:
        raise source.truncated(tarfmt.BLOCK, len(block))
    if block == tarfmt.ZERO_BLOCK:
        source.where = "the end-of-archive marker"
        if source.read_exact(tarfmt.BLOCK) != tarfmt.ZERO_BLOCK:
            raise BundleError("lone zero block at offset {} followed by data: corrupt "
                              "archive".format(offset))
        return None
    return tarfmt.parse_header(block, offset)


def extract_bundle(reader, staging_dir, max_members=rules.MAX_MEMBERS):
    """Extract a tar or tar.gz bundle from ``reader`` into ``staging_dir``.

    Returns the staged paths [leaf .. base] (``staging_dir/0<suffix>`` .., the suffix of
    the bundle's one disk format).  Raises BundleError naming the member on anything
    unsafe or malformed (a bundle mixing formats included), after removing everything
    it wrote.
    """
    staging = Landing(staging_dir)
    source = None
    try:
        source = open_source(reader)
        return _extract(source, staging, max_members)
    except BaseException:
        staging.discard()
        raise
    finally:
        if source is not None:
            source.close()


def _extract(source, staging, max_members):
    numbered, legacy = {}, {}
    seen = set()
    first = None    # (name, format) of the first disk member: the bundle's one format
    pending = _Pending()
    last = None
    while True:
        header = _next_header(source, last)
        if header is None:
            break
        if header.typeflag in (tarfmt.PAX_HEADER, tarfmt.PAX_GLOBAL):
            source.where = "the pax header at offset {}".format(header.offset)
            pending.apply_pax(tarfmt.parse_pax(_read_meta(source, header), header.offset),
                              header.offset, header.typeflag == tarfmt.PAX_GLOBAL)
            continue
        if header.typeflag in (tarfmt.GNU_LONGNAME, tarfmt.GNU_LONGLINK):
            source.where = "the GNU long name header at offset {}".format(header.offset)
            raw = tarfmt.field_text(bytes(_read_meta(source, header)), "long name",
                                     header.offset)
            text = tarfmt.decode_name(raw, header.offset)
            if header.typeflag == tarfmt.GNU_LONGNAME:
                pending.path = text
            else:
                pending.linkpath = text
            continue
        name = pending.path if pending.path is not None else header.name
        size = pending.size if pending.size is not None else header.size
        pending = _Pending()
        last = name
        source.where = "member {}".format(rules.show(name))
        is_dir = header.typeflag == tarfmt.DIRECTORY
        if not is_dir and header.typeflag not in tarfmt.REGULAR_TYPES:
            raise rules.refuse(name, "it is a {}".format(header.type_name),
                               rules.only_disks())
        kind, key = rules.classify(name, is_dir)
        if (kind, key) in seen:
            raise rules.refuse(name, "duplicate member (the same file appears twice)")
        seen.add((kind, key))
        if kind == rules.DOT_DIR or kind == rules.SKIPPED:
            source.skip(size + tarfmt.padding(size))
            continue
        if kind == rules.NUMBERED and legacy or kind == rules.LEGACY and numbered:
            raise rules.refuse(name, "mixes numbered ({}) and legacy (snap/image/base{}) "
                                     "names".format(rules.LEGACY_FORMAT.file_name("N"),
                                                    rules.LEGACY_FORMAT.suffix))
        if kind == rules.NUMBERED and key >= max_members:
            raise rules.refuse(name, "more than {} members (the chain limit)".format(
                max_members))
        fmt = rules.member_format(name)
        rules.check_one_format(name, fmt, first)
        first = first or (name, fmt)
        if size == 0:
            raise rules.refuse(name, "empty file: not a {}".format(fmt.name.upper()))
        temp = _read_member(source, staging, name, fmt, size)
        source.skip(tarfmt.padding(size))
        if kind == rules.NUMBERED:
            numbered[key] = staging.publish(temp, fmt.file_name(key))
        else:
            legacy[key] = temp
    source.where = "the end of the archive"
    source.expect_only_zeros(MAX_TRAILER, "the end-of-archive marker")
    paths = _order(staging, numbered, legacy)
    staging.sync()
    return paths


def _order(staging, numbered, legacy):
    if legacy:
        numbers = rules.legacy_numbers(legacy)
        for stem in sorted(legacy, key=numbers.get):
            numbered[numbers[stem]] = staging.publish(
                legacy[stem], rules.LEGACY_FORMAT.file_name(numbers[stem]))
    if not numbered:
        raise BundleError("the bundle holds no disk member ({})".format(rules.only_disks()))
    count = max(numbered) + 1
    missing = [i for i in range(count) if i not in numbered]
    if missing:
        gap = rules.member_format(numbered[max(numbered)]).file_name(missing[0])
        raise BundleError("bundle member '{}' is missing: the chain numbering has a gap "
                          "(members {} present)".format(gap, sorted(numbered)), member=gap)
    return [numbered[i] for i in range(count)]


def extract_single_vhd(reader, staging_dir):
    """A bare VHD stream (optionally gzipped) -> ``[staging_dir/0.vhd]``, same checks."""
    return extract_single(reader, staging_dir, rules.LEGACY_FORMAT)


def extract_single(reader, staging_dir, fmt):
    """A bare disk stream of format ``fmt`` (optionally gzipped) -> ``[staging_dir/0<suffix>]``."""
    staging = Landing(staging_dir)
    source = None
    try:
        source = open_source(reader)
        source.where = "the {} stream".format(fmt.name.upper())
        name = fmt.file_name(0)
        head = source.read_upto(fmt.head_size)
        if not head:
            raise BundleError("empty stream: no {} to import".format(fmt.name.upper()))
        plan = fmt.plan_member(name, head, rules.refuse)
        temp = _land(source, staging, name, fmt, plan, head)
        path = staging.publish(temp, name)
        staging.sync()
        return [path]
    except BaseException:
        staging.discard()
        raise
    finally:
        if source is not None:
            source.close()


def extract_raw(reader, staging_dir, virtual_size, fmt=rules.LEGACY_FORMAT):
    """A raw disk image stream -> a new disk ``[staging_dir/0<suffix>]`` of format ``fmt``."""
    if virtual_size <= 0 or virtual_size > fmt.max_virtual_size:
        raise BundleError("raw image virtual size {} is outside 1 .. {} GiB, the {} limit; "
                          "choose another image format".format(
                              virtual_size, fmt.max_virtual_size >> 30, fmt.name.upper()))
    staging = Landing(staging_dir)
    try:
        temp, fd = staging.new_temp()
        os.close(fd)
        os.unlink(temp)  # the engine creates the file itself
        fmt.import_raw_stream(reader, temp, virtual_size)
        fsync_file(temp)
        path = staging.publish(temp, fmt.file_name(0))
        staging.sync()
        return [path]
    except BaseException:
        staging.discard()
        raise
