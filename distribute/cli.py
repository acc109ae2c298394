"""The command line: parses options, calls the core, turns errors into one clear line."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import click
from rich.console import Console

from distribute import __version__
from distribute.config import Settings, load_settings
from distribute.errors import DistributeError


class DistributeGroup(click.Group):
    """A group that reports :class:`DistributeError` as one line on stderr, never a traceback."""

    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except DistributeError as exc:
            click.echo(f"Error: {exc.format()}", err=True)
            ctx.exit(exc.exit_code)


def console() -> Console:
    """A console on the current stdout (so click's CliRunner captures it)."""
    return Console(file=sys.stdout, highlight=False, soft_wrap=True)


def settings_of(ctx: click.Context) -> Settings:
    obj = ctx.ensure_object(dict)
    if "settings" not in obj:
        obj["settings"] = load_settings(obj.get("config"))
    settings: Settings = obj["settings"]
    return settings


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
