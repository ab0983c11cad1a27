"""``vhdport sr ls|gc|snapshot``: a storage repository (a directory of <uuid>.vhd files)."""

import click

from vhdport.cli.common import human_size, json_option, print_json, print_table

SR_PATH = click.Path(exists=True, file_okay=False)


def _field(vdi, *names):
    """The first attribute (or key) of ``vdi`` among ``names``; VdiInfo is the sr layer's."""
    for name in names:
        if isinstance(vdi, dict) and name in vdi:
            return vdi[name]
        if hasattr(vdi, name):
            return getattr(vdi, name)
    return None


def vdi_doc(uuid, vdi):
    """A JSON-ready dict of one VDI, whatever shape VdiInfo has."""
    if hasattr(vdi, "_asdict"):
        doc = dict(vdi._asdict())
    elif isinstance(vdi, dict):
        doc = dict(vdi)
    else:
        doc = {k: v for k, v in vars(vdi).items() if not k.startswith("_")}
    doc.setdefault("uuid", uuid)
    for key, value in list(doc.items()):
        if isinstance(value, (set, frozenset, tuple)):
            doc[key] = sorted(value) if isinstance(value, (set, frozenset)) else list(value)
    return doc


def _role(vdi):
    children = _field(vdi, "children") or ()
    if _field(vdi, "is_leaf", "leaf") or not children:
        return "leaf"
    return "base" if _field(vdi, "hidden") else "parent"


@click.group()
def sr():
    """Inspect and maintain a storage repository directory."""


@sr.command("ls")
@click.argument("sr_path", metavar="SR", type=SR_PATH)
@json_option
def ls(sr_path, as_json):
    """List the VDIs of SR with their chain graph."""
    from vhdport.sr import SR

    vdis = SR(sr_path).vdis()
    ordered = sorted(vdis.items())
    if as_json:
        print_json([vdi_doc(uuid, vdi) for uuid, vdi in ordered])
        return
    rows = []
    for uuid, vdi in ordered:
        rows.append((uuid, _field(vdi, "parent", "parent_uuid"),
                     "yes" if _field(vdi, "hidden") else "no",
                     _field(vdi, "type", "type_name", "disk_type"),
                     human_size(_field(vdi, "virtual_size")),
                     human_size(_field(vdi, "physical_size")), _role(vdi)))
    print_table(sr_path, ("uuid", "parent", "hidden", "type", "virtual", "physical",
                          "leaf/base"), rows)


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
@click.argument("uuid")
@json_option
def snapshot(sr_path, uuid, as_json):
    """Snapshot VDI UUID like XenServer; print the new snapshot's uuid."""
    from vhdport.sr import SR

    snap_uuid, base_uuid = SR(sr_path).snapshot(uuid)
    if as_json:
        print_json({"vdi": uuid, "snapshot": str(snap_uuid), "base": str(base_uuid)})
    else:
        click.echo(str(snap_uuid))
