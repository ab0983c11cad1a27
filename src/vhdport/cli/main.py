"""Entry point of the ``vhdport`` command: the top-level group, --debug, and error handling.

Any exception escaping a command becomes one ``vhdport: error: <message>`` line on
stderr and exit status 1 (other than VhdportError, the class name is shown too);
usage errors keep click's exit status 2.  ``--debug`` shows the traceback instead.
"""

import logging

import click

from vhdport import __version__
from vhdport.cli.common import OperationFailed, describe_exception


class VhdportGroup(click.Group):
    """The root group: turns library exceptions into one-line errors."""

    def invoke(self, ctx):
        try:
            return super().invoke(ctx)
        except (click.exceptions.ClickException, click.exceptions.Exit,
                click.exceptions.Abort, KeyboardInterrupt):
            raise
        except BrokenPipeError:
            # the reader went away (``vhdport vhd read ... | head``): not our failure to report
            _silence_stdout()
            ctx.exit(1)
        except Exception as exc:
            if ctx.params.get("debug"):
                raise
            raise OperationFailed(describe_exception(exc)) from None


def _silence_stdout():
    """After EPIPE, point stdout at /dev/null so the interpreter's final flush stays quiet."""
    import os
    import sys

    try:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
    except (OSError, ValueError):
        pass


def _print_version(ctx, _param, value):
    """The version and what makes transfers fast or slow here: codec, threads, Python."""
    if not value or ctx.resilient_parsing:
        return
    import platform

    from vhdport.bundle import codec

    click.echo("vhdport, version {}\n{}; Python {}".format(
        __version__, codec.describe(), platform.python_version()))
    ctx.exit()


@click.group(cls=VhdportGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.option("--debug", is_flag=True, help="Show tracebacks and debug logging.")
@click.option("--version", is_flag=True, expose_value=False, is_eager=True,
              callback=_print_version,
              help="Show the version, the gzip codec (isal / zlib) and threads, and exit.")
@click.pass_context
def cli(ctx, debug):
    """Move XenServer VHD chains between image stores and storage repositories."""
    ctx.obj = {"debug": debug}
    logging.basicConfig(level=logging.DEBUG if debug else logging.WARNING,
                        format="vhdport: %(levelname)s: %(name)s: %(message)s")


def _register():
    from vhdport.cli import extra_cmds, image_cmds, sr_cmds, transfer_cmds, vhd_cmds

    cli.add_command(vhd_cmds.vhd)
    cli.add_command(vhd_cmds.vhd, name="disk")     # the same verbs, for VHD and QCOW2
    cli.add_command(vhd_cmds.digest)               # also at the top: any disk, any format
    cli.add_command(sr_cmds.sr)
    cli.add_command(image_cmds.image)
    cli.add_command(transfer_cmds.download)
    cli.add_command(transfer_cmds.upload)
    cli.add_command(extra_cmds.plugin)
    cli.add_command(extra_cmds.demo)


_register()


def main(argv=None):
    """Console-script entry point (``vhdport = vhdport.cli.main:main``)."""
    return cli.main(args=argv, prog_name="vhdport")


if __name__ == "__main__":
    main()
