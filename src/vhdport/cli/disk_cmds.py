"""QCOW2 behind the ``vhdport vhd ...`` verbs: a file is picked by its magic when read, and by
``--format`` or its extension (``.qcow2``) when created.

``install(group)`` wraps each verb of the vhd group: for a QCOW2 target the QCOW2 handler
below runs, for anything else the VHD verb runs unchanged.  Backing files are followed
relative to the child's directory (these are the user's own local files).
"""

import sys

import click

from vhdport.cli.common import (OperationFailed, human_size, print_digest, print_fields,
                                print_json)

QCOW2_MAGIC = b"QFI\xfb"
CHUNK = 4 << 20
FORMATS = ("vhd", "qcow2")


def is_qcow2(path):
    try:
        with open(path, "rb") as f:
            return f.read(4) == QCOW2_MAGIC
    except OSError:
        return False


def wants_qcow2(path, fmt):
    if fmt:
        return fmt == "qcow2"
    return str(path).lower().endswith(".qcow2")


# ------------------------------------------------------------------ handlers


def _create(path, size, fixed, block_size, **_):
    from vhdport.qcow2 import create

    kwargs = {"cluster_size": block_size} if block_size else {}
    create(path, size, preallocate=fixed, **kwargs)
    click.echo(str(path))


def _snapshot(child, parent, **_):
    from vhdport.qcow2 import create_snapshot

    create_snapshot(child, parent)
    click.echo(str(child))


def _info_rows(doc):
    rows = []
    for key in ("format", "type", "virtual_size", "physical_size", "cluster_size",
                "refcount_bits", "hidden", "backing_file", "parent", "depth"):
        value = doc.get(key)
        if key in ("virtual_size", "physical_size", "cluster_size") and value is not None:
            value = "{} ({})".format(human_size(value), value)
        rows.append((key, value))
    return rows


def _info(path, as_json, **_):
    from vhdport.qcow2.info import info

    doc = info(path)
    if as_json:
        print_json(doc)
    else:
        print_fields(path, _info_rows(doc))


def _check(path, chain, as_json, **_):
    from vhdport.qcow2 import check_chain, check_image

    defects = check_chain(path) if chain else check_image(path)
    if as_json:
        print_json({"path": path, "chain": chain, "valid": not defects,
                    "defects": [{"field": d.field, "offset": d.offset, "message": str(d)}
                                for d in defects]})
        click.get_current_context().exit(1 if defects else 0)
    if not defects:
        click.echo("{}: valid{}".format(path, " (whole chain)" if chain else ""))
        return
    for defect in defects:
        click.echo(str(defect))
    raise OperationFailed("{}: {} defect{} found".format(
        path, len(defects), "" if len(defects) == 1 else "s"))


def _set_hidden(path, value, **_):
    from vhdport.qcow2 import set_hidden

    set_hidden(path, value == "1")


def _set_parent(path, parent, **_):
    from vhdport.qcow2 import set_parent

    set_parent(path, parent)


def _write(path, offset, source, **_):
    from vhdport.qcow2 import Qcow2Chain, local_backing

    done = 0
    with Qcow2Chain.open(path, writable=True, backing=local_backing) as chain:
        while True:
            data = source.read(CHUNK)
            if not data:
                break
            if offset + done + len(data) > chain.virtual_size:
                raise OperationFailed("{}: write past the virtual size {} after {} bytes".format(
                    path, chain.virtual_size, done))
            chain.write(offset + done, data)
            done += len(data)
        chain.flush()
    click.echo(str(done))


def _read(path, offset, length, out, **_):
    from vhdport.qcow2 import Qcow2Chain, local_backing

    if out == "-" and sys.stdout.isatty():
        raise click.UsageError("refusing to write binary disk data to a terminal; "
                               "use --out FILE or redirect stdout")
    with Qcow2Chain.open(path, backing=local_backing) as chain:
        end = chain.virtual_size if length is None else offset + length
        if offset > chain.virtual_size or end > chain.virtual_size:
            raise OperationFailed("{}: range {}..{} is outside the virtual size {}".format(
                path, offset, end, chain.virtual_size))
        with click.open_file(out, "wb") as sink:
            for _, data in chain.iter_blocks(CHUNK, start=offset, end=end):
                sink.write(data)


def _coalesce(path, **_):
    from vhdport.qcow2 import commit, local_backing
    from vhdport.qcow2.image import Qcow2File

    with Qcow2File.open(path) as image:
        if not image.backing_name:
            raise OperationFailed("{}: has no backing file to coalesce into".format(path))
        parent = local_backing(path, image.backing_name, image.backing_format)
    commit(path)
    click.echo(parent)


def _export(path, out, **_):
    from vhdport.qcow2 import export_raw, local_backing

    export_raw(path, out, backing=local_backing)


def _import(raw, out, fixed, **_):
    from vhdport.qcow2 import import_raw

    import_raw(raw, out, preallocate=fixed)
    click.echo(str(out))


def _digest(path, as_json, **_):
    from vhdport.disk import content_digest
    from vhdport.qcow2 import Qcow2Chain, local_backing

    with Qcow2Chain.open(path, backing=local_backing) as chain:
        print_digest(content_digest(chain), as_json)


#: verb -> (argument naming the file to look at, reading? (magic) else creating, handler)
HANDLERS = {
    "create": ("path", False, _create),
    "snapshot": ("child", False, _snapshot),
    "info": ("path", True, _info),
    "check": ("path", True, _check),
    "set-hidden": ("path", True, _set_hidden),
    "set-parent": ("path", True, _set_parent),
    "write": ("path", True, _write),
    "read": ("path", True, _read),
    "coalesce": ("path", True, _coalesce),
    "export": ("path", True, _export),
    "import": ("out", False, _import),
    "digest": ("path", True, _digest),
}


class AnyDiskSize(click.ParamType):
    """--size before the format is known: a positive multiple of 512 up to QCOW2's limit;
    a VHD's own (smaller) limit is applied by the VHD verb's original type afterwards."""

    name = "SIZE"

    def convert(self, value, param, ctx):
        from vhdport.cli.common import SIZE
        from vhdport.qcow2.create import MAX_VIRTUAL_SIZE

        size = SIZE.convert(value, param, ctx)
        if size <= 0 or size % 512:
            self.fail("{!r} is not a usable virtual size: give a positive multiple of 512 "
                      "bytes, e.g. 20M or 2G".format(value), param, ctx)
        if size > MAX_VIRTUAL_SIZE:
            self.fail("{!r} exceeds the QCOW2 limit of {} bytes (SM's)".format(
                value, MAX_VIRTUAL_SIZE), param, ctx)
        return size


def _wrap(name, original, vhd_types):
    target, reading, handler = HANDLERS[name]

    def callback(**kwargs):
        fmt = kwargs.pop("disk_format", None)
        path = kwargs[target]
        if name == "snapshot" and fmt is None and not wants_qcow2(path, None):
            qcow2 = is_qcow2(_parent_path(path, kwargs["parent"]))
        else:
            qcow2 = is_qcow2(path) if reading else wants_qcow2(path, fmt)
        if qcow2:
            return handler(**kwargs)
        if fmt not in ("vhd", None):
            raise click.UsageError("unknown format {!r}".format(fmt))
        ctx = click.get_current_context()
        for param, vhd_type in vhd_types:           # the VHD verb's own checks, unchanged
            if kwargs.get(param.name) is not None:
                kwargs[param.name] = vhd_type.convert(kwargs[param.name], param, ctx)
        return original(**kwargs)

    return callback


def _parent_path(child, parent):
    import os

    return os.path.join(os.path.dirname(os.path.abspath(child)), parent)


def install(group):
    """Route every verb of ``group`` (``vhdport vhd``) to QCOW2 when the file is one."""
    for name, command in group.commands.items():
        if name not in HANDLERS:
            continue
        if not HANDLERS[name][1]:
            command.params.append(click.Option(
                ["--format", "disk_format"], type=click.Choice(FORMATS), default=None,
                help="vhd or qcow2 (default: from the file name's extension, .qcow2 or else vhd)."))
        vhd_types = []
        for param in command.params:
            if name == "create" and param.name == "size":
                vhd_types.append((param, param.type))
                param.type = AnyDiskSize()
        command.callback = _wrap(name, command.callback, vhd_types)
