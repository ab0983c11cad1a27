"""``vhdport image ls|show|rm|import``: the images of a store (local directory or Glance)."""

import click

from vhdport.cli.common import (human_size, json_option, parse_properties, print_fields,
                                print_json, print_table, property_option)
from vhdport.cli.import_opts import (apply_import_options, import_options, say,
                                     split_stores)
from vhdport.cli.progress import progress_option, reporter
from vhdport.cli.storeopts import store_options


@click.group()
def image():
    """List, show, delete and import images of a store."""


@image.command("ls")
@store_options
@json_option
def ls(store, as_json):
    """List the images of the store."""
    records = sorted(store.list(), key=lambda r: (r.get("created_at") or "", r.get("id") or ""))
    if as_json:
        print_json(records)
        return
    print_table(store.display, ("id", "name", "status", "disk", "container", "size"),
                [(r.get("id"), r.get("name"), r.get("status"), r.get("disk_format"),
                  r.get("container_format"), human_size(r.get("size"))) for r in records])


@image.command()
@click.argument("image_id")
@store_options
@json_option
def show(image_id, store, as_json):
    """Show the record of one image."""
    record = store.get(image_id)
    if as_json:
        print_json(record)
        return
    rows = [(key, ", ".join(value) if key == "stores" and isinstance(value, list) else value)
            for key, value in sorted(record.items()) if key != "properties"]
    rows += [("property " + key, value)
             for key, value in sorted((record.get("properties") or {}).items())]
    print_fields(image_id, rows)


@image.command()
@click.argument("image_ids", nargs=-1, required=True, metavar="IMAGE_ID...")
@store_options
def rm(image_ids, store):
    """Delete images; print each deleted id."""
    for image_id in image_ids:
        store.delete(image_id)
        click.echo(image_id)


@image.command("import")
@click.argument("file", type=click.Path(exists=True, dir_okay=False))
@click.option("--name", required=True, help="Name of the new image.")
@click.option("--disk-format", default="vhd", show_default=True,
              help="Glance disk_format (vhd, raw, ...).")
@click.option("--container-format", default="ovf", show_default=True,
              help="Glance container_format (ovf for a tgz bundle, bare for a lone disk).")
@property_option
@import_options
@store_options
@progress_option
def import_cmd(file, name, disk_format, container_format, properties, store, progress_mode,
               use_import, target_stores, all_stores):
    """Store FILE as a new image (like `openstack image create --file`); print its id."""
    from vhdport import transfer

    apply_import_options(store, use_import, target_stores, all_stores)
    with reporter(progress_mode, "import") as progress:
        image_id = transfer.import_image(store, file, name, disk_format=disk_format,
                                         container_format=container_format,
                                         properties=parse_properties(properties) or None,
                                         progress=progress)
    click.echo(image_id)


@image.command("gc")
@click.option("--min-age", type=float, default=3600.0, show_default=True, metavar="SECONDS",
              help="Keep leftovers younger than this: they may belong to a running upload.")
@store_options
@json_option
def gc_cmd(min_age, store, as_json):
    """Remove what killed uploads left in an s3:// or swift:// store (multipart uploads,
    segments, orphan data objects, records stuck in saving); print what went."""
    if not hasattr(store, "gc"):
        raise click.UsageError("image gc is for s3:// and swift:// stores; other stores clean "
                               "up after themselves")
    removed = store.gc(min_age=min_age)
    if as_json:
        print_json(removed)
        return
    for line in removed:
        click.echo(line)


@image.command()
@click.argument("image_id")
@click.option("--stores", "target_stores", metavar="ID,ID",
              help="Copy into these stores of a multi-store Glance.")
@click.option("--all-stores", is_flag=True, help="Copy into every store it is not in yet.")
@store_options
@json_option
def copy(image_id, target_stores, all_stores, store, as_json):
    """Copy an image into more Glance stores (copy-image; admin-only by default)."""
    stores = split_stores(target_stores)
    if bool(stores) == bool(all_stores):
        raise click.UsageError("give --stores ID,ID or --all-stores")
    if getattr(store, "api_version", None) != 2:
        raise click.UsageError("image copy needs a Glance store (API v2), not {}".format(
            store.display))
    record = store.copy_to_stores(image_id, stores, all_stores)
    if as_json:
        print_json(record)
    else:
        say("image {} is in stores {}".format(image_id, ", ".join(record.get("stores") or [])))
        click.echo(image_id)
