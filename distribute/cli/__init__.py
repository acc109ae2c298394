"""The command line: parses options, calls the core, turns errors into one clear line.

Each command group lives in its own module and is imported only when it runs (click's
"Lazily Loading Subcommands" pattern), so ``distribute --help`` loads no heavy library.
"""

from __future__ import annotations

import importlib
from pathlib import Path
from typing import Any

import click

from distribute import __version__
from distribute.errors import DistributeError
from distribute.words import plural

# name -> "module:attribute"; the module is imported the first time the command is needed.
COMMANDS = {
    "cancel": "distribute.cli.schedule:cancel",
    "demo": "distribute.cli.demo:demo",
    "preview": "distribute.cli.preview:preview",
    "recipients": "distribute.cli.recipients:recipients",
    "render": "distribute.cli.render:render",
    "run": "distribute.cli.schedule:run",
    "schedule": "distribute.cli.schedule:schedule",
    "send": "distribute.cli.campaigns:send",
    "status": "distribute.cli.campaigns:status",
    "x": "distribute.cli.x:x",
}


class DistributeGroup(click.Group):
    """A lazy group that reports :class:`DistributeError` as one line, never a traceback."""

    def list_commands(self, ctx: click.Context) -> list[str]:
        return sorted({*super().list_commands(ctx), *COMMANDS})

    def get_command(self, ctx: click.Context, cmd_name: str) -> click.Command | None:
        if cmd_name in COMMANDS and cmd_name not in self.commands:
            module, _, attribute = COMMANDS[cmd_name].partition(":")
            command = getattr(importlib.import_module(module), attribute)
            self.add_command(command, cmd_name)
        return super().get_command(ctx, cmd_name)

    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except DistributeError as exc:
            click.echo(f"Error: {exc.format()}", err=True)
            ctx.exit(exc.exit_code)
        except KeyboardInterrupt as exc:
            import signal

            from distribute.dispatch import Interrupted, Stop

            # Exit 128 + the signal's number, as a shell reports a process a signal stopped.
            signum = exc.signum if isinstance(exc, Interrupted | Stop) else signal.SIGINT
            what = (
                "Interrupted"
                if signum == signal.SIGINT
                else f"Stopped by {signal.Signals(signum).name}"
            )
            if isinstance(exc, Interrupted):
                click.echo(
                    f"{what} after {exc.done} of {plural(exc.total, 'message')}; "
                    "each one under way was finished and recorded. "
                    "Run the same command again to send the rest.",
                    err=True,
                )
            else:
                click.echo(f"{what}.", err=True)
            ctx.exit(128 + signum)
        except OSError as exc:
            # A folder that cannot be created or a file that cannot be written (a full disk,
            # a read-only workspace, a file where a folder should be): say which, no traceback.
            where = f"{exc.filename}: " if exc.filename else ""
            click.echo(f"Error: {where}{exc.strerror or exc}", err=True)
            ctx.exit(1)


@click.group(cls=DistributeGroup)
@click.option(
    "--config",
    type=click.Path(path_type=Path, dir_okay=False),
    default=None,
    help="Settings file. Default: distribute.toml in the current folder, if any.",
)
@click.version_option(__version__, prog_name="distribute")
@click.pass_context
def cli(ctx: click.Context, config: Path | None) -> None:
    """Render press releases into email and social posts, then schedule and send them.

    Nothing leaves the machine unless a command is given --live: without it, every send is a
    dry run that writes the exact messages to an outbox.
    """
    ctx.ensure_object(dict)["config"] = config


def main() -> None:
    cli(prog_name="distribute")
