"""What every command module shares: the console and the settings of the invocation."""

from __future__ import annotations

import contextlib
import gc
import sys
from collections.abc import Iterator
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


@contextlib.contextmanager
def start_up() -> Iterator[None]:
    """Imports, the campaign check and the drafts: what a run builds once and keeps.

    The cyclic garbage collector would walk all of it again and again while it is built
    (some 70,000 objects for a list of a thousand, more for longer lists, of which it finds
    about two thousand to free, whatever the lists' length), and again in every full
    collection while the messages go out.
    So it waits, and what was built is then left out of its walks (``gc.freeze``).
    """
    # A caller that runs with the collector off (a host embedding the command, a test)
    # keeps it off: what is turned back on is what was on.
    was_enabled = gc.isenabled()
    gc.disable()
    try:
        yield
        gc.freeze()
    finally:
        if was_enabled:
            gc.enable()
