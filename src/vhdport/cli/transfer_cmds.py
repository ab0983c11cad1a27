"""``vhdport download`` and ``vhdport upload``: the two pipelines between a store and an SR."""

import os

import click

from vhdport.cli.common import (UUID, json_option, parse_properties, print_json,
                                property_option)
from vhdport.cli.import_opts import apply_import_options, import_options
from vhdport.cli.progress import progress_option, reporter
from vhdport.cli.storeopts import store_options

#: ``upload --as`` (vhdport.transfer.flat.AS_FORMATS, spelled here so that --help needs no
#: disk engine imported)
UPLOAD_AS = ("bundle", "qcow2", "raw")


def image_formats():
    """Names of the disk formats an SR holds (the disk face's registry)."""
    from vhdport import disk
    return sorted(disk.FORMATS)


def refuse_overlap(store, sr_path):
    """A local store and an SR must be separate trees: an SR is scanned and garbage-collected
    by XenServer, a store holds image files and records; either one inside the other mixes
    them (e.g. the store's files would show up as SR content, or the SR's GC would see them)."""
    root = getattr(store, "root", None)
    if root is None:            # a Glance store: nothing on this machine to collide with
        return
    store_dir, sr_dir = os.path.realpath(root), os.path.realpath(sr_path)
    if store_dir == sr_dir:
        why = "are the same directory"
    elif store_dir.startswith(sr_dir.rstrip(os.sep) + os.sep):
        why = "overlap: the store is inside the SR"
    elif sr_dir.startswith(store_dir.rstrip(os.sep) + os.sep):
        why = "overlap: the SR is inside the store"
    else:
        return
    raise click.UsageError("--store {} and --sr {} {}; keep the image store and the SR in "
                           "separate directories".format(root, sr_path, why))


@click.command()
@click.argument("image")
@click.option("--sr", "sr_path", required=True, type=click.Path(exists=True, file_okay=False),
              help="Storage repository directory (one <uuid> disk file per VDI).")
@click.option("--uuid", "uuids", multiple=True, type=UUID,
              help="UUID for the arriving VDIs, leaf first (repeatable; default: fresh ones).")
@click.option("--no-verify-contents", "verify_contents", is_flag=True, default=True,
              flag_value=False,
              help="Do not read the landed disk back to compare it with the image's recorded "
                   "content digest (vhdport_content_digest); the stream hashes still apply.")
@click.option("--image-format", type=click.Choice(image_formats()), default=None,
              help="Disk format a raw or QCOW2 image lands as (default: a QCOW2 stays one, a "
                   "raw image becomes a VHD up to 2040 GiB and a QCOW2 above, as SM picks).")
@store_options
@json_option
@progress_option
def download(image, sr_path, uuids, verify_contents, image_format, store, as_json,
             progress_mode):
    """Download IMAGE from the store into the SR; print the leaf VDI uuid."""
    from vhdport import transfer

    refuse_overlap(store, sr_path)
    with reporter(progress_mode, "download") as progress:
        result = transfer.download(store, image, sr_path, uuids=list(uuids) or None,
                                   progress=progress, verify_contents=verify_contents,
                                   image_format=image_format)
    if as_json:
        print_json(result)
    else:
        click.echo(result["root"]["uuid"])


@click.command()
@click.argument("vdi_uuid", type=UUID)
@click.option("--sr", "sr_path", required=True, type=click.Path(exists=True, file_okay=False),
              help="Storage repository directory holding the VDI.")
@click.option("--image", "image_id", help="Upload into this existing (queued) image.")
@click.option("--name", help="Create a new image with this name.")
@property_option
@click.option("--as", "as_format", type=click.Choice(UPLOAD_AS), default="bundle",
              show_default=True,
              help="bundle: the chain's files, layers kept (for an SR); qcow2 or raw: one flat "
                   "image (container bare) that any KVM host boots.")
@click.option("--compression-level", type=click.IntRange(1, 9), default=6, show_default=True,
              help="gzip level of the bundle (bundle only).")
@click.option("--threads", type=click.IntRange(1, 256), default=None,
              help="Compression threads (bundle only; default: one per usable core).")
@click.option("--no-record-contents", "record_contents", is_flag=True, default=True,
              flag_value=False,
              help="Do not compute the content digest (vhdport_content_digest) beside the "
                   "stream: about 1 CPU-second per GiB saved, but a download cannot then prove "
                   "the disk it lands is the one that left.")
@import_options
@store_options
@json_option
@progress_option
def upload(vdi_uuid, sr_path, image_id, name, properties, as_format, compression_level, threads,
           record_contents, store, as_json, progress_mode, use_import, target_stores,
           all_stores):
    """Upload VDI_UUID's chain from the SR to the store; print the image id.

    With --image, the queued image must already carry the formats --as sends
    (bundle: the disk format and ovf; qcow2 or raw: that and bare).
    """
    from vhdport import transfer

    if bool(image_id) == bool(name):
        raise click.UsageError("give exactly one of --image ID or --name NAME")
    refuse_overlap(store, sr_path)
    apply_import_options(store, use_import, target_stores, all_stores)
    props = parse_properties(properties)
    with reporter(progress_mode, "upload") as progress:
        new_id = transfer.upload(sr_path, vdi_uuid, store, image_id=image_id, name=name,
                                 properties=props or None,
                                 compression_level=compression_level, progress=progress,
                                 threads=threads, as_format=as_format,
                                 record_contents=record_contents)
    if as_json:
        print_json(store.get(new_id))
    else:
        click.echo(new_id)
