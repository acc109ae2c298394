"""``distribute schedule``, ``run`` and ``cancel``: campaigns on a schedule, and the worker."""

from __future__ import annotations

import logging
import sys
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

import click

from distribute.cli.common import console, settings_of

if TYPE_CHECKING:
    from distribute.config import Settings


class _Stderr(logging.StreamHandler):  # type: ignore[type-arg]
    """Writes to whatever ``sys.stderr`` is at the time (click's CliRunner swaps it)."""

    @property
    def stream(self) -> Any:
        return sys.stderr

    @stream.setter
    def stream(self, _value: Any) -> None:
        pass


def setup_worker_log(settings: Settings) -> None:
    """One line per event to stderr; the same lines and every delivery to distribute.log."""
    from distribute.cli.campaigns import _setup_log

    _setup_log(settings)
    logger = logging.getLogger("distribute.scheduler")
    if not any(isinstance(handler, _Stderr) for handler in logger.handlers):
        handler = _Stderr()
        handler.setFormatter(logging.Formatter("%(asctime)s %(message)s", "%Y-%m-%d %H:%M:%S"))
        logger.addHandler(handler)
    logger.setLevel(logging.INFO)


def campaign_name(settings: Settings, campaign: str) -> str:
    """CAMPAIGN as a name: a campaign file is read for the name it gives."""
    if campaign.endswith(".toml") and Path(campaign).is_file():
        from distribute.campaign import load_campaign

        return load_campaign(Path(campaign), settings).name
    return campaign


def local(moment: datetime, zone: str) -> str:
    from zoneinfo import ZoneInfo

    return moment.astimezone(ZoneInfo(zone)).strftime("%Y-%m-%d %H:%M:%S %Z")


def print_timeline(title: str, zone: str, entries: list[Any]) -> None:
    from rich.table import Table

    table = Table(title=title)
    for column in ("step", "channel", "mode", "at", "recipients", "state"):
        table.add_column(column, justify="right" if column == "recipients" else "left")
    for entry in entries:
        if entry.channel == "email":
            audience = f"{entry.audience} journalist" + ("" if entry.audience == 1 else "s")
        else:
            audience = f"{entry.audience} post" + ("" if entry.audience == 1 else "s")
        state = entry.state
        if entry.sent and entry.state != "scheduled":
            state = f"{state} ({'sent' if entry.mode == 'live' else 'written'} {entry.sent})"
        table.add_row(entry.name, entry.channel, entry.mode, local(entry.at, zone), audience, state)
    console().print(table)


@click.command()
@click.argument("campaign", type=click.Path(path_type=Path))
@click.option("--live", is_flag=True, help="Send for real at each step's time.")
@click.pass_context
def schedule(ctx: click.Context, campaign: Path, live: bool) -> None:
    """Put CAMPAIGN's steps on the schedule, to be sent at their times by `distribute run`.

    Everything is checked first (the release, every template for every recipient, every
    post, the lists, times in the future, the embargo rules); then each step's time is
    written to the ledger and the timeline is printed in the campaign's time zone.
    Scheduling again after an edit replaces the pending steps; a step already sent is not
    sent again. Without --live the worker writes the messages to the outbox.
    """
    from rich.text import Text

    from distribute.campaign import check_campaign, load_campaign
    from distribute.ledger import Ledger
    from distribute.scheduler import missing_x_credentials, schedule_campaign
    from distribute.words import plural

    settings = settings_of(ctx)
    con = console()
    loaded = load_campaign(campaign, settings)
    now = datetime.now(UTC)
    check = check_campaign(loaded, settings, now=now)
    for note in check.warnings:
        con.print(Text.assemble(("Warning: ", "yellow"), note))
    mode = "live" if live else "dry"
    ledger = Ledger(settings.database_url)
    try:
        timeline = schedule_campaign(
            ledger, loaded, check, now=now, modes={step.name: mode for step in loaded.steps}
        )
    finally:
        ledger.close()
    entries = timeline.entries
    print_timeline(f"{loaded.name} ({loaded.timezone})", loaded.timezone, entries)
    for step, was_mode, was in timeline.cancelled:
        # Replacing a live schedule with a dry one (or dropping a step) must not go unseen.
        con.print(
            Text.assemble(
                ("Replaced: ", "yellow"),
                f"{step} ({was_mode}, was {was}) is no longer scheduled",
            )
        )
    posts = [e.name for e in entries if e.state == "scheduled" and e.channel == "x" and live]
    if posts and (missing := missing_x_credentials()):
        # The worker posts, so only its environment counts; this shell may not hold them.
        con.print(
            Text.assemble(
                ("Warning: ", "yellow"),
                f"{missing}: the worker that runs {', '.join(posts)} needs them in its "
                "environment (they are not set here)",
            )
        )
    waiting = sum(entry.state == "scheduled" for entry in entries)
    con.print(
        f"{plural(waiting, 'step')} scheduled. A worker sends each at its time: keep "
        "`distribute run` running here (see the README for a service)."
    )
    if not live:
        con.print(
            "This is a dry-run schedule: the worker writes the messages to the outbox and "
            "sends nothing. Schedule with --live to send for real."
        )


@click.command()
@click.option(
    "--until-idle",
    is_flag=True,
    help="Exit once no step is scheduled or running (instead of waiting for new ones).",
)
@click.pass_context
def run(ctx: click.Context, until_idle: bool) -> None:
    """The worker: send every scheduled step of every campaign at its time.

    Reads the schedule from the ledger every 2 seconds, so steps scheduled or cancelled
    from another terminal are picked up. One line per event (started, finished with
    counts, missed, failed) goes to stderr and distribute.log. SIGTERM, SIGINT (Ctrl-C)
    and SIGHUP finish the messages under way, leave the rest pending and exit; the next
    worker resumes. Several workers may share one state database.
    """
    from distribute.scheduler import Worker

    settings = settings_of(ctx)
    setup_worker_log(settings)
    worker = Worker(settings)
    try:
        worker.serve(until_idle=until_idle)
    finally:
        worker.close()


@click.command()
@click.argument("campaign")
@click.option("--step", "step_names", multiple=True, help="Cancel only this step (repeatable).")
@click.pass_context
def cancel(ctx: click.Context, campaign: str, step_names: tuple[str, ...]) -> None:
    """Take CAMPAIGN's scheduled steps off the schedule; nothing more of them is sent.

    CAMPAIGN is a campaign name or file. A step under way finishes the messages in flight
    and stops; what it had not sent stays pending (`distribute status` shows it).
    """
    from distribute.ledger import Ledger

    settings = settings_of(ctx)
    if not (settings.state_url or (settings.workspace / "distribute.db").exists()):
        name = campaign_name(settings, campaign)
        raise click.ClickException(f"no campaign named {name!r} has been scheduled")
    ledger = Ledger(settings.database_url)
    try:
        # A file the ledger knows is found by its path: stopping a campaign must work when
        # its file or its release is broken, or gone.
        as_file = campaign.endswith(".toml") or Path(campaign).is_file()
        known_file = as_file and ledger.campaign_of(str(Path(campaign).resolve()))
        name = known_file or campaign_name(settings, campaign)
        known = {step for step, _mode in ledger.states(name)}
        if not known:
            raise click.ClickException(f"no campaign named {name!r} has been scheduled")
        for step in step_names:
            if step not in known:
                raise click.BadParameter(
                    f"{name!r} has no step {step!r} (steps: {', '.join(sorted(known))})",
                    param_hint="--step",
                )
        cancelled = ledger.cancel(name, list(step_names) if step_names else None)
    finally:
        ledger.close()
    con = console()
    if not cancelled:
        con.print(f"Nothing to cancel: no step of {name} is scheduled.")
    for step, mode, was in cancelled:
        if was == "running":
            con.print(
                f"{step} ({mode}): cancelled while running; its worker stops after the "
                "messages under way, and the rest stay pending."
            )
        else:
            con.print(f"{step} ({mode}): cancelled (was {was}).")
