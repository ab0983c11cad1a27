"""``vhdport sr ls|gc|snapshot``: a storage repository (a directory of VDI files, VHD or QCOW2)."""

import click

from vhdport.cli.common import UUID, human_size, json_option, print_json, print_table

SR_PATH = click.Path(exists=True, file_okay=False)


def vdi_doc(vdi, coalesce=()):
    """A JSON-ready dict of one VdiInfo; ``coalesce``: uuids SM's GC would coalesce."""
    doc = vdi.to_dict()
    doc["children"] = sorted(doc.get("children") or ())
    doc["role"] = vdi_role(vdi)
    doc["coalesceable"] = vdi.uuid in coalesce
    return doc


def vdi_role(vdi):
    """leaf / base copy / garbage (hidden, childless) / parent (visible with children)."""
    if vdi.error:
        return "unreadable"
    if vdi.children:
        return "base" if vdi.hidden else "parent"
    return "garbage" if vdi.hidden else "leaf"


@click.group()
def sr():
    """Inspect and maintain a storage repository directory."""


@sr.command("ls")
@click.argument("sr_path", metavar="SR", type=SR_PATH)
@json_option
def ls(sr_path, as_json):
    """List the VDIs of SR with their chain graph."""
    from vhdport.sr import SR

    from vhdport.sr import coalesceable, leaf_coalesceable

    vdis = SR(sr_path).vdis()
    ordered = [vdis[uuid] for uuid in sorted(vdis)]
    if as_json:
        coalesce = set(coalesceable(vdis)) | set(leaf_coalesceable(vdis))
        print_json([vdi_doc(vdi, coalesce) for vdi in ordered])
        return
    rows = [(vdi.uuid, vdi.format, vdi.parent_uuid, "yes" if vdi.hidden else "no", vdi.type,
             human_size(vdi.virtual_size), human_size(vdi.physical_size), vdi_role(vdi))
            for vdi in ordered]
    print_table(sr_path, ("uuid", "format", "parent", "hidden", "type", "virtual", "physical",
                          "leaf/base"), rows)
    for vdi in ordered:
        if vdi.error:
            click.echo("{}: {}".format(vdi.uuid, vdi.error), err=True)


@sr.command()
@click.argument("sr_path", metavar="SR", type=SR_PATH)
@click.option("--dry-run", is_flag=True, help="Only print what would be deleted.")
@json_option
def gc(sr_path, dry_run, as_json):
    """Delete hidden VDIs no leaf needs (XenServer's rule); print each uuid removed."""
    from vhdport.sr import SR

    removed = SR(sr_path).gc(dry_run=dry_run)
    removed = [str(u) for u in (removed or ())]
    if as_json:
        print_json({"dry_run": dry_run, "removed": removed})
        return
    for uuid in removed:
        click.echo(uuid)
    if not removed:
        click.echo("nothing to collect", err=True)
    elif dry_run:
        click.echo("dry run: {} VDI(s) would be removed".format(len(removed)), err=True)


@sr.command()
@click.argument("sr_path", metavar="SR", type=SR_PATH)
@click.argument("uuid", type=UUID)
@json_option
def snapshot(sr_path, uuid, as_json):
    """Snapshot VDI UUID like XenServer; print the new snapshot's uuid."""
    from vhdport.sr import SR

    snap_uuid, base_uuid = SR(sr_path).snapshot(uuid)
    if as_json:
        print_json({"vdi": uuid, "snapshot": str(snap_uuid), "base": str(base_uuid)})
    else:
        click.echo(str(snap_uuid))
