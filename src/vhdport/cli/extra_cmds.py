"""``vhdport plugin install`` and ``vhdport demo``."""

import os
import shutil
import tempfile

import click

from vhdport.cli.common import OperationFailed, print_table, stderr_console


@click.group()
def plugin():
    """The XenServer / XCP-ng XAPI plugin."""


@plugin.command()
@click.option("--root", type=click.Path(file_okay=False), default="/",
              show_default=True, help="Install under this root directory (for packaging).")
def install(root):
    """Install the XAPI plugin and the vhdport core it needs; print the installed paths."""
    from vhdport.plugin_install import install as do_install

    for path in do_install(root):
        click.echo(str(path))


@click.command()
@click.option("--dir", "workdir", type=click.Path(file_okay=False),
              help="Work in this directory and keep it (default: a fresh temp dir, removed on success).")
@click.option("--keep", is_flag=True, help="Keep the work directory afterwards (and say where).")
def demo(workdir, keep):
    """The main job on the embedded default: SR -> snapshot -> local store -> second SR, verified."""
    from vhdport import demo as scenario

    console = stderr_console()
    keep = keep or workdir is not None
    if workdir is None:
        workdir = tempfile.mkdtemp(prefix="vhdport-demo-")
    else:
        os.makedirs(workdir, exist_ok=True)
    console.print("vhdport demo in [bold]{}[/bold]".format(workdir))

    def live(step):
        mark = "[green]ok[/green]" if step["ok"] else "[red]FAILED[/red]"
        console.print("  {:<6} {} ({:.2f} s)".format(mark, step["step"], step["seconds"]))

    steps = scenario.run(workdir, report=live)
    failed = [s for s in steps if not s["ok"]]
    if failed:
        keep = True  # leave the evidence
    else:
        if not keep:
            shutil.rmtree(workdir, ignore_errors=True)
    print_table("vhdport demo", ("#", "step", "result", "detail", "seconds"),
                [(i + 1, s["step"], "ok" if s["ok"] else "FAILED", s["detail"],
                  "{:.2f}".format(s.get("seconds", 0.0))) for i, s in enumerate(steps)])
    if failed:
        raise OperationFailed("demo failed at step {!r}: {} (files kept in {})".format(
            failed[0]["step"], failed[0]["detail"], workdir))
    click.echo("demo passed: {} steps; {}".format(
        len(steps), "files kept in " + workdir if keep
        else "work directory removed (--keep keeps it)"))
