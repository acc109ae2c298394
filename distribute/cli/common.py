"""What every command module shares: the console and the settings of the invocation."""

from __future__ import annotations

import sys
from typing import TYPE_CHECKING

import click

if TYPE_CHECKING:
    from rich.console import Console

    from distribute.config import Settings


def console() -> Console:
    """A console on the current stdout (so click's CliRunner captures it).

    Piped output gets 120 columns rather than rich's 80, so tables stay readable in logs.
    """
    from rich.console import Console

    width = None if sys.stdout.isatty() else 120
    # No markup: what is printed quotes releases, lists and server replies, where a "[/x]"
    # is text, not a style tag. Styles are given with rich.text.Text instead.
    return Console(file=sys.stdout, highlight=False, soft_wrap=True, width=width, markup=False)


def settings_of(ctx: click.Context) -> Settings:
    from distribute.config import load_settings

    obj = ctx.ensure_object(dict)
    if "settings" not in obj:
        obj["settings"] = load_settings(obj.get("config"))
    settings: Settings = obj["settings"]
    return settings
