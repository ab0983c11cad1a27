"""``vhdport vhd ...`` (also ``vhdport disk ...``): disk files and chains, vhd-util's verbs.

Every verb goes through the disk face, for any format it knows (VHD, QCOW2): how a
verb picks the format, and where it may follow parents, is :mod:`vhdport.cli.disk_cmds`.
"""

import sys

import click

from vhdport.cli.common import (BLOCK_SIZE, SIZE, UUID_RE, OperationFailed, human_size,
                                json_option, print_digest, print_fields, print_json)
from vhdport.cli.disk_cmds import (BACKING, DISK_SIZE, check_block_size, check_size,
                                   for_new_file, for_snapshot, format_option, new_disk_name,
                                   of_file)

#: bytes moved per Chain.read / Chain.write call when streaming (memory stays flat)
CHUNK = 4 << 20


def warn(text):
    click.echo("vhdport: warning: {}".format(text), err=True)


def file_uuid(path):
    """The uuid in a ``<uuid>.vhd`` file name (the VDI uuid of an SR), or None."""
    import os

    from vhdport import disk

    stem = disk.stem_of(os.path.basename(str(path)))
    return stem if stem is not None and UUID_RE.match(stem) else None


def note_two_uuids(fmt, path, disk_uuid):
    """Two uuids name a VHD in an SR: the file name (the VDI uuid XenServer and `sr ls` use)
    and the disk's own uuid in its footer (what a child records as its parent uuid).  They
    usually differ; when a command prints one and the file name shows the other, say which.
    (A format whose uuid is its file name has only one.)"""
    if fmt.uuid_is_file_name:
        return
    named = file_uuid(path)
    if named is not None and named != str(disk_uuid):
        click.echo("vhdport: note: printed the disk uuid {} (in the VHD footer); the file name "
                   "uuid {} is the VDI uuid that `sr ls` shows".format(disk_uuid, named), err=True)


@click.group()
def vhd():
    """Create, inspect, check, read and write VHD (and QCOW2) files and chains."""


@vhd.command()
@click.argument("path", type=click.Path(dir_okay=False))
@click.option("--size", required=True, type=DISK_SIZE,
              help="Virtual size: bytes, or 20M, 2G, ... (a multiple of 512; a VHD at most "
                   "2040G)")
@click.option("--fixed", is_flag=True, help="A fixed disk (all space allocated) instead of dynamic.")
@click.option("--block-size", type=BLOCK_SIZE, default=None,
              help="Block (QCOW2: cluster) size, a power of two (default 2M; QCOW2 64K).")
@format_option
def create(path, size, fixed, block_size, disk_format):
    """Create a new disk at PATH; print its uuid (a QCOW2: its path)."""
    fmt = for_new_file(path, disk_format)
    check_size(fmt, size)
    check_block_size(fmt, fixed, block_size)
    uuid = fmt.create(path, size, fixed=fixed, block_size=block_size)
    click.echo(new_disk_name(fmt, path, uuid))
    note_two_uuids(fmt, path, uuid)


@vhd.command()
@click.argument("child", type=click.Path(dir_okay=False))
@click.option("--parent", required=True,
              help="Parent disk, relative to CHILD's directory or absolute.")
@format_option
def snapshot(child, parent, disk_format):
    """Create CHILD, a differencing disk on top of PARENT; print its uuid (a QCOW2: its path)."""
    fmt = for_snapshot(child, parent, disk_format)
    uuid = fmt.snapshot(child, parent, backing=BACKING)
    click.echo(new_disk_name(fmt, child, uuid))
    note_two_uuids(fmt, child, uuid)


#: labels of the table rows whose key alone would not say which uuid it is
_INFO_LABELS = {"uuid": "uuid (VHD footer)", "parent_uuid": "parent_uuid (parent's footer)"}


def _info_rows(fmt, doc, path):
    rows = []
    for key in fmt.info_fields:
        value = doc.get(key)
        if key in ("virtual_size", "physical_size", "block_size", "cluster_size") \
                and value is not None:
            value = "{} ({})".format(human_size(value), value)
        rows.append((_INFO_LABELS.get(key, key), value))
        if key == "uuid" and file_uuid(path) is not None:
            rows.append(("file_uuid (VDI uuid, file name)", file_uuid(path)))
    return rows


@vhd.command()
@click.argument("path", type=click.Path(exists=True, dir_okay=False))
@json_option
def info(path, as_json):
    """Show type, sizes, uuid, hidden flag, parent and chain depth of PATH."""
    fmt = of_file(path)
    doc = fmt.info(path, backing=BACKING)
    if as_json:
        if file_uuid(path) is not None and not fmt.uuid_is_file_name:
            doc = dict(doc, file_uuid=file_uuid(path))
        print_json(doc)
    else:
        print_fields(path, _info_rows(fmt, doc, path))


def _defect_doc(defect):
    return {"field": defect.field, "offset": defect.offset, "message": str(defect)}


@vhd.command()
@click.argument("path", type=click.Path(exists=True, dir_okay=False))
@click.option("--chain", is_flag=True, help="Check every file of the chain and their links.")
@json_option
@click.pass_context
def check(ctx, path, chain, as_json):
    """Validate PATH (exit 0), or list its defects (exit 1)."""
    fmt = of_file(path)
    defects = fmt.check_chain(path, backing=BACKING) if chain else \
        fmt.check_file(path, backing=BACKING)
    if as_json:
        print_json({"path": path, "chain": chain, "valid": not defects,
                    "defects": [_defect_doc(d) for d in defects]})
        ctx.exit(1 if defects else 0)
    if not defects:
        click.echo("{}: valid{}".format(path, " (whole chain)" if chain else ""))
        return
    for defect in defects:
        click.echo(str(defect))
    raise OperationFailed("{}: {} defect{} found".format(
        path, len(defects), "" if len(defects) == 1 else "s"))


@vhd.command("set-hidden")
@click.argument("path", type=click.Path(exists=True, dir_okay=False))
@click.argument("value", type=click.Choice(["0", "1"]))
def set_hidden(path, value):
    """Set (1) or clear (0) the hidden flag of PATH."""
    of_file(path).set_hidden(path, value == "1")


@vhd.command("set-parent")
@click.argument("path", type=click.Path(exists=True, dir_okay=False))
@click.argument("parent")
def set_parent(path, parent):
    """Point differencing disk PATH at PARENT (relative to PATH's directory or absolute)."""
    of_file(path).relink(path, parent, backing=BACKING)


def _regular_file_size(stream):
    """Bytes left in ``stream`` if it is a regular file (so a too-large write is refused up front)."""
    import os
    import stat

    try:
        st = os.fstat(stream.fileno())
        if stat.S_ISREG(st.st_mode):
            return st.st_size - stream.tell()
    except (AttributeError, OSError, ValueError):
        pass
    return None


@vhd.command()
@click.argument("path", type=click.Path(exists=True, dir_okay=False))
@click.option("--offset", type=SIZE, default=0, show_default=True, help="Virtual byte offset.")
@click.option("--from", "source", required=True, type=click.File("rb"),
              help="File whose bytes to write ('-' for stdin).")
def write(path, offset, source):
    """Write the bytes of a file into PATH at --offset (through the chain); print the count.

    All or nothing for the length: a regular file is measured first; a pipe (stdin) is
    staged into an anonymous temporary file beside PATH, at most as many bytes as fit,
    so input running past the end is refused before anything is written.
    """
    import os
    import tempfile

    with of_file(path).open_chain(path, writable=True, backing=BACKING) as chain:
        room = max(0, chain.virtual_size - offset)
        size = _regular_file_size(source)
        staged = None
        if size is None:
            staged = tempfile.SpooledTemporaryFile(max_size=CHUNK,
                                                   dir=os.path.dirname(os.path.abspath(path)))
            size = _stage(source, staged, room)
        try:
            if size > room:
                raise OperationFailed("{}: {} bytes at offset {} do not fit in the virtual size "
                                      "{}; nothing written".format(
                                          path, size if staged is None else
                                          "more than {}".format(room), offset,
                                          chain.virtual_size))
            done = _copy_exactly(staged if staged is not None else source, chain, offset, size)
            chain.flush()
        finally:
            if staged is not None:
                staged.close()
    click.echo(str(done))


def _stage(source, staged, room):
    """Copy ``source`` into ``staged`` until EOF, or stop once more than ``room`` bytes came
    (returned as room + 1: too long).  Returns the byte count."""
    total = 0
    while True:
        data = source.read(CHUNK)
        if not data:
            break
        total += len(data)
        if total > room:
            return room + 1
        staged.write(data)
    staged.seek(0)
    return total


def _copy_exactly(stream, chain, offset, size):
    done = 0
    while done < size:
        data = stream.read(min(CHUNK, size - done))
        if not data:
            break
        chain.write(offset + done, data)
        done += len(data)
    return done


@vhd.command()
@click.argument("path", type=click.Path(exists=True, dir_okay=False))
@click.option("--offset", type=SIZE, default=0, show_default=True, help="Virtual byte offset.")
@click.option("--length", type=SIZE, default=None,
              help="Bytes to read (default: to the end of the virtual disk).")
@click.option("--out", type=click.Path(dir_okay=False, allow_dash=True), default="-",
              help="Output file (default: stdout).")
def read(path, offset, length, out):
    """Read virtual bytes of PATH as the VM sees them (through the chain)."""
    if out == "-" and sys.stdout.isatty():
        raise click.UsageError("refusing to write binary disk data to a terminal; "
                               "use --out FILE or redirect stdout")
    with of_file(path).open_chain(path, backing=BACKING) as chain:
        end = chain.virtual_size if length is None else offset + length
        if offset > chain.virtual_size or end > chain.virtual_size:
            raise OperationFailed("{}: range {}..{} is outside the virtual size {}".format(
                path, offset, end, chain.virtual_size))
        with click.open_file(out, "wb") as sink:
            for _, data in chain.iter_blocks(CHUNK, start=offset, end=end):
                sink.write(data)


@vhd.command()
@click.argument("path", type=click.Path(exists=True, dir_okay=False))
def coalesce(path):
    """Merge differencing disk PATH into its parent; print the parent's path."""
    click.echo(str(of_file(path).coalesce(path, backing=BACKING)))


@vhd.command("export")
@click.argument("path", type=click.Path(exists=True, dir_okay=False))
@click.argument("out", type=click.Path(dir_okay=False))
def export_cmd(path, out):
    """Write the virtual contents of PATH (through its chain) to the raw file OUT (sparse)."""
    of_file(path).export_raw(path, out, backing=BACKING)


@vhd.command("import")
@click.argument("raw", type=click.Path(exists=True, dir_okay=False))
@click.argument("out", type=click.Path(dir_okay=False))
@click.option("--fixed", is_flag=True, help="Make a fixed (preallocated) disk, not a dynamic one.")
@format_option
def import_cmd(raw, out, fixed, disk_format):
    """Convert the raw disk image RAW to the disk OUT; print its uuid (a QCOW2: its path).

    A raw size that is not a multiple of 512 is padded with zeros up to the next sector
    (as qemu-img does); a warning says so.
    """
    import os

    fmt = for_new_file(out, disk_format)
    uuid = fmt.import_raw(raw, out, fixed=fixed)
    size = os.path.getsize(raw)
    if size % 512:
        padded = size + 512 - size % 512
        warn("{}: {} bytes is not a multiple of 512; the virtual disk is {} bytes, the last "
             "{} bytes zeros".format(raw, size, padded, padded - size))
    click.echo(new_disk_name(fmt, out, uuid))
    note_two_uuids(fmt, out, uuid)


@vhd.command()
@click.argument("path", type=click.Path(exists=True, dir_okay=False))
@json_option
def digest(path, as_json):
    """Print a digest of PATH's virtual contents (through its chain).

    blake2b-256 over 4 MiB blocks: the same for a raw file, a VHD chain and a QCOW2 chain
    holding the same contents; holes are not read.  A file of no known format is raw.
    """
    from vhdport import disk

    print_digest(disk.content_digest(path, backing=BACKING), as_json)
