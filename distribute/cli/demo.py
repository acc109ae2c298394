"""``distribute demo``: the example campaign scheduled, sent and reported, in seconds."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import click

from distribute.cli.common import console

# Steps this far apart: long enough to see them happen one after the other.
GAP = timedelta(seconds=2)


@click.command()
@click.option(
    "--out",
    type=click.Path(path_type=Path, file_okay=False),
    default=None,
    help="A new or empty folder the demo writes to. Default: a new temporary folder.",
)
@click.pass_context
def demo(ctx: click.Context, out: Path | None) -> None:
    """Run the example campaign for real, against an SMTP server of its own, in seconds.

    Copies the example workspace (release, campaign, sample lists, templates) to OUT,
    starts an SMTP server on loopback that stores what it receives in OUT/received (a
    Maildir), schedules the campaign's steps a few seconds apart from now (the embargoed
    email, the general email, then the post, as a dry run), runs the worker until they
    are done, and shows the status. Nothing leaves the machine; your own settings and
    lists are not used.
    """
    import signal
    import tempfile

    from distribute.cli.campaigns import _setup_log, status
    from distribute.cli.render import print_report, render_release
    from distribute.cli.schedule import print_timeline
    from distribute.demo import RELEASE, MaildirServer, modes, plan, prepare
    from distribute.ledger import Ledger
    from distribute.scheduler import Worker, schedule_campaign
    from distribute.words import plural

    con = console()
    if out is not None and out.is_dir() and any(out.iterdir()):
        # The demo writes a distribute.toml, lists, templates and a ledger of its own: in a
        # press office's workspace it would overwrite theirs, and in an earlier demo's folder
        # its ledger says every step is done already, so nothing would be sent.
        raise click.BadParameter(
            f"{out} is not empty; the demo writes a workspace of its own, so give it a new "
            "or empty folder",
            param_hint="--out",
        )
    folder = (out or Path(tempfile.mkdtemp(prefix="distribute-demo-"))).resolve()
    received = folder / "received"
    with MaildirServer(received) as server:
        settings, path = prepare(folder, server.port)
        ctx.ensure_object(dict)["settings"] = settings  # status below reads this workspace
        con.print(f"Example workspace: {folder}")
        con.print(f"SMTP server on 127.0.0.1:{server.port}, storing mail in {received}\n")
        # The first check reads and renders everything cold (a second or two): do it once
        # before choosing the times, so the first step is still ahead once scheduled.
        plan(path, settings, datetime.now(UTC) + timedelta(minutes=1), GAP)
        start = datetime.now(UTC).replace(microsecond=0) + GAP + timedelta(seconds=1)
        campaign, check = plan(path, settings, start, GAP)
        ledger = Ledger(settings.database_url)
        try:
            entries = schedule_campaign(
                ledger, campaign, check, now=datetime.now(UTC), modes=modes(campaign)
            ).entries
        finally:
            ledger.close()
        rows, posts = render_release(
            settings,
            folder / "releases" / RELEASE,
            folder,
            "press-release",
            "Jane Doe <jane.doe@example.com>",
        )
        print_report(rows, posts, folder)
        con.print()
        print_timeline(
            f"{campaign.name}: scheduled ({campaign.timezone})", campaign.timezone, entries
        )
        _setup_log(settings)
        worker = Worker(settings, poll=0.5, on_event=_Display(con, entries).event)
        try:
            worker.serve(until_idle=True)
        finally:
            worker.close()
        count = server.count
    if worker.signal is not None:
        # Stopped before its last step: the summary below would claim a whole campaign.
        name = signal.Signals(worker.signal).name
        click.echo(
            f"Interrupted by {name} before the last step: {plural(count, 'message')} received; "
            f"the demo's workspace is {folder}",
            err=True,
        )
        ctx.exit(128 + worker.signal)
    con.print()
    ctx.invoke(status)
    ctx.invoke(status, dry=True)
    outbox = folder / "outbox" / campaign.name
    con.print(
        "\nWhere to look:\n"
        f"  received mail ({count} messages, one per journalist per email step): "
        f"{received / 'new'}\n"
        f"  the post (dry run) and its parts: {outbox}\n"
        f"  the rendered email: {folder / 'email.html'} (open it in a browser), "
        f"{folder / 'email.eml'} (in a mail client)\n"
        f"  the log: {folder / 'distribute.log'}\n"
        f"  the ledger: cd {folder} && distribute status"
    )


class _Display:
    """One line per event, and each email step's count as it goes."""

    def __init__(self, con: Any, entries: list[Any]):
        self.con = con
        self.sizes = {entry.name: entry.audience for entry in entries}
        self.shown: dict[str, int] = {}

    def event(self, event: Any) -> None:
        from rich.text import Text

        step = event.step
        label = f"{step.name} ({step.channel}, {'dry run' if step.mode == 'dry' else 'live'})"
        now = datetime.now(ZoneInfo(step.timezone)).strftime("%H:%M:%S")
        if event.kind == "progress":
            # A line every quarter of the step, so a terminal and a log read the same.
            quarter = max(1, event.total // 4)
            if event.done == event.total or event.done - self.shown.get(step.name, 0) >= quarter:
                self.shown[step.name] = event.done
                self.con.print(f"{now}   {step.name}: {event.done}/{event.total}")
            return
        style = {"failed": "red", "missed": "red", "finished": "green"}.get(event.kind, "")
        text = f" {event.text}" if event.text else ""
        self.con.print(Text.assemble(f"{now} ", (event.kind, style), f" {label}{text}"))
