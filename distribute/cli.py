"""The command line: parses options, calls the core, turns errors into one clear line."""

from __future__ import annotations

import json
import sys
from dataclasses import replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import click
from rich.console import Console
from rich.text import Text

from distribute import __version__
from distribute.config import Settings, bundled, load_settings
from distribute.errors import DistributeError, WorkspaceError
from distribute.recipients import Recipient
from distribute.release import load_release
from distribute.render.email import draft_email
from distribute.render.message import build_message, message_bytes, recipient_values
from distribute.render.social import PostSet, render_posts


class DistributeGroup(click.Group):
    """A group that reports :class:`DistributeError` as one line on stderr, never a traceback."""

    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except DistributeError as exc:
            click.echo(f"Error: {exc.format()}", err=True)
            ctx.exit(exc.exit_code)
        except KeyboardInterrupt as exc:
            from distribute.dispatch import Interrupted

            if isinstance(exc, Interrupted):
                click.echo(
                    f"Interrupted after {exc.done} of {exc.total} messages; each one under way "
                    "was finished and recorded. Run the same command again to send the rest.",
                    err=True,
                )
            else:
                click.echo("Interrupted.", err=True)
            ctx.exit(130)
        except OSError as exc:
            # A folder that cannot be created or a file that cannot be written (a full disk,
            # a read-only workspace, a file where a folder should be): say which, no traceback.
            where = f"{exc.filename}: " if exc.filename else ""
            click.echo(f"Error: {where}{exc.strerror or exc}", err=True)
            ctx.exit(1)


def console() -> Console:
    """A console on the current stdout (so click's CliRunner captures it).

    Piped output gets 120 columns rather than rich's 80, so tables stay readable in logs.
    """
    width = None if sys.stdout.isatty() else 120
    # No markup: what is printed quotes releases, lists and server replies, where a "[/x]"
    # is text, not a style tag. Styles are given with rich.text.Text instead.
    return Console(file=sys.stdout, highlight=False, soft_wrap=True, width=width, markup=False)


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


# --- recipients ---


@cli.group()
def recipients() -> None:
    """Check journalist lists and manage the suppression list."""


@recipients.command("check")
@click.argument("files", nargs=-1, type=click.Path(path_type=Path, dir_okay=False))
@click.option("--json", "as_json", is_flag=True, help="Print the counts and problems as JSON.")
@click.pass_context
def recipients_check(ctx: click.Context, files: tuple[Path, ...], as_json: bool) -> None:
    """Validate lists (all of them when no FILE is named); exit 1 if any row is invalid."""
    import json

    from rich.table import Table
    from rich.text import Text

    from distribute import recipients as lists

    folder = lists.recipients_dir(settings_of(ctx))
    if files:
        paths = list(files)
    else:
        paths = [lists.list_file(folder, name) for name in lists.list_names(folder)]
    audience = lists.read_lists(paths, lists.load_suppressions(folder))
    invalid = sum(stats.invalid for stats in audience.lists)
    if as_json:
        report = {
            "lists": [
                {
                    "name": s.name,
                    "file": lists.display_path(s.file),
                    "rows": s.rows,
                    "valid": s.valid,
                    "invalid": s.invalid,
                    "duplicates": s.duplicates,
                    "suppressed": s.suppressed,
                }
                for s in audience.lists
            ],
            "problems": [
                {
                    "file": lists.display_path(p.file),
                    "line": p.line,
                    "email": p.email,
                    "reason": p.reason,
                }
                for p in audience.problems
            ],
            "unique": len(audience.recipients),
        }
        click.echo(json.dumps(report, indent=2, ensure_ascii=False))
    elif not paths:
        click.echo(f"No lists in {lists.display_path(folder)}.")
    else:
        table = Table(title="Journalist lists")
        table.add_column("list")
        for column in ("rows", "valid", "invalid", "duplicates", "suppressed"):
            table.add_column(column, justify="right")
        for s in audience.lists:
            counts = (s.rows, s.valid, s.invalid, s.duplicates, s.suppressed)
            table.add_row(Text(s.name), *(str(n) for n in counts))
        console().print(table)
        for p in audience.problems:
            click.echo(f"{lists.display_path(p.file)}:{p.line}: {p.reason}")
        duplicates = sum(s.duplicates for s in audience.lists)
        suppressed = sum(s.suppressed for s in audience.lists)
        click.echo(
            f"{len(audience.recipients)} unique addresses to mail; {invalid} invalid rows, "
            f"{duplicates} duplicates, {suppressed} suppressed."
        )
    if invalid:
        ctx.exit(1)


@recipients.command("suppress")
@click.argument("address")
@click.option("--reason", default=None, help="Why, for the record (e.g. 'asked by phone').")
@click.pass_context
def recipients_suppress(ctx: click.Context, address: str, reason: str | None) -> None:
    """Never mail ADDRESS again, from any list."""
    from datetime import date

    from distribute import recipients as lists

    path = lists.suppression_file(settings_of(ctx))
    if lists.add_suppression(path.parent, address, reason, date.today()):
        click.echo(f"Suppressed {address.strip()} in {lists.display_path(path)}.")
    else:
        click.echo(f"{address.strip()} is already suppressed.")


def _sample_recipient(value: str) -> Recipient:
    from email.utils import parseaddr

    from distribute.recipients import address_problem

    name, address = parseaddr(value)
    if address_problem(address):
        raise click.BadParameter(f"{value!r} is not an address like 'Jane Doe <jane@example.com>'")
    first, _, last = name.partition(" ")
    return Recipient(email=address, first_name=first, last_name=last, list_name="sample")


def _size(data: bytes | str) -> str:
    size = len(data.encode("utf-8") if isinstance(data, str) else data)
    return f"{size / 1024:.1f} KB"


def render_release(
    settings: Settings,
    release_path: Path,
    out: Path,
    template: str,
    to: str,
    url: str | None = None,
) -> tuple[list[tuple[str, str]], PostSet]:
    """Render everything in memory first, so a failure writes nothing; then write the files."""
    recipient = _sample_recipient(to)
    release = load_release(release_path)
    if url:
        release = replace(release, url=url)
    now = datetime.now(UTC)
    posts = render_posts(release, settings, url=url)
    draft = draft_email(release, settings, at=now, template=template)
    message = build_message(draft, recipient, settings, campaign="render", step="preview", date=now)
    raw = message_bytes(message)
    _, html, text = draft.personalise(recipient_values(recipient, settings, draft.language))
    files = {"email.html": html, "email.txt": text}
    out.mkdir(parents=True, exist_ok=True)
    for name, content in files.items():
        (out / name).write_text(content, encoding="utf-8", newline="")
    (out / "email.eml").write_bytes(raw)
    (out / "posts").mkdir(exist_ok=True)
    (out / "posts" / "x.json").write_text(
        json.dumps(posts.to_json(), ensure_ascii=False, indent=2) + "\n", encoding="utf-8"
    )
    rows = [
        ("Subject", draft.subject),
        ("Preheader", draft.preheader),
        ("HTML part", _size(files["email.html"])),
        ("Text part", _size(files["email.txt"])),
        ("Message", _size(raw)),
        *(("Warning", note) for note in draft.warnings),
    ]
    return rows, posts


def _print_report(rows: list[tuple[str, str]], posts: PostSet, out: Path) -> None:
    con = console()
    for label, value in rows:
        style = "yellow" if label == "Warning" else "bold"
        con.print(Text.assemble((f"{label}:", style), f" {value}"))
    for number, post in enumerate(posts.parts, start=1):
        part = f" {number}/{len(posts.parts)}" if len(posts.parts) > 1 else ""
        click.echo(f"X post{part} ({post.length}/{posts.limit}):\n{post.text}")
    for note in posts.warnings:
        click.echo(f"Warning: {note}")
    con.print(f"Wrote email.html, email.txt, email.eml and posts/x.json to {out}")


@cli.command()
@click.argument("release", type=click.Path(path_type=Path))
@click.option("--template", default="press-release", show_default=True, help="Email template name.")
@click.option(
    "--to",
    "to",
    default="Jane Doe <jane.doe@example.com>",
    show_default=True,
    help="Sample recipient the preview message is addressed to.",
)
@click.option(
    "--out",
    type=click.Path(path_type=Path, file_okay=False),
    default=None,
    help="Output folder. Default: out/ beside the release.",
)
@click.option(
    "--url",
    default=None,
    help="The release's web page, linked from the post. Default: 'url' in the front matter.",
)
@click.pass_context
def render(
    ctx: click.Context, release: Path, template: str, to: str, out: Path | None, url: str | None
) -> None:
    """Render RELEASE (Markdown) into the email a journalist would receive, and the X post.

    Writes email.html (CSS inlined), email.txt (the plain-text part) and email.eml (the whole
    message, openable in a mail client), then prints the subject, preheader and sizes.
    Writes posts/x.json (the post, or thread, each part with its weighted length) and prints
    each part with its count against X's limit. Nothing is sent.
    """
    settings = settings_of(ctx)
    out = out or release.parent / "out"
    rows, posts = render_release(settings, release, out, template, to, url)
    _print_report(rows, posts, out)


@cli.command()
@click.option(
    "--out",
    type=click.Path(path_type=Path, file_okay=False),
    default=Path("distribute-demo"),
    show_default=True,
    help="Folder the demo writes to.",
)
@click.pass_context
def demo(ctx: click.Context, out: Path) -> None:
    """Run the bundled example campaign as a dry run, on built-in defaults. Sends nothing.

    Renders the example release (email and X post) into OUT, then plans and dry-runs its
    campaign against the sample journalist lists: every message lands in OUT/outbox, the
    ledger in OUT/distribute.db. Your own distribute.toml and lists are not used.
    """
    from distribute.campaign import check_campaign, load_campaign

    out.mkdir(parents=True, exist_ok=True)
    settings = load_settings(workspace=out.resolve())
    examples = bundled("releases")
    rows, posts = render_release(
        settings, examples / "hydrogen.md", out, "press-release", "Jane Doe <jane.doe@example.com>"
    )
    _print_report(rows, posts, out)
    console().print(
        f"Open {out / 'email.html'} in a browser, or {out / 'email.eml'} in a mail client.\n"
    )
    campaign = load_campaign(examples / "hydrogen.toml", settings)
    check = check_campaign(campaign, settings, now=datetime.now(UTC), send_now=True)
    run_steps(settings, campaign, check, list(campaign.steps), live=False, hint="")


# --- campaigns ---


def _setup_log(settings: Settings) -> None:
    """An audit trail of every delivery in the workspace (addresses and outcomes only)."""
    import logging

    logger = logging.getLogger("distribute")
    path = settings.workspace / "distribute.log"
    if any(getattr(h, "baseFilename", None) == str(path) for h in logger.handlers):
        return
    # Opened now, not at the first message: a log that cannot be written must stop the run
    # before anything is sent, not after the first journalist.
    try:
        handler = logging.FileHandler(path, encoding="utf-8")
    except OSError as exc:
        raise WorkspaceError(f"cannot write the delivery log: {exc.strerror}", path=path) from None
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(message)s"))
    logger.addHandler(handler)
    logger.setLevel(logging.INFO)


def _report_table(reports: list[Any], zone: str) -> None:
    from rich.table import Table

    table = Table(title="Delivery")
    table.add_column("step")
    table.add_column("mode")
    # In a dry run nothing is sent: the messages are written to the outbox.
    first = "sent" if any(r.mode == "live" for r in reports) else "written"
    for column in (first, "failed", "uncertain", "skipped", "pending"):
        table.add_column(column, justify="right")
    for report in reports:
        counts = report.counts
        table.add_row(
            report.step,
            report.mode,
            *(
                str(counts.get(state, 0))
                for state in ("sent", "failed", "uncertain", "skipped", "pending")
            ),
        )
    console().print(table)


def _progress(bar: Any, task: Any) -> Any:
    started = datetime.now(UTC)

    def update(done: int, total: int) -> None:
        elapsed = (datetime.now(UTC) - started).total_seconds() or 1e-9
        bar.update(task, completed=done, total=total, rate=f"{done / elapsed:.1f}/s")

    return update


def run_steps(
    settings: Settings,
    loaded: Any,
    check: Any,
    steps: list[Any],
    *,
    live: bool,
    limit: int | None = None,
    retry_uncertain: bool = False,
    hint: str = "; add --live to send",
) -> list[Any]:
    """Dispatch ``steps`` now with a progress bar; print what needs attention and a table."""
    from rich.progress import (
        BarColumn,
        MofNCompleteColumn,
        Progress,
        TextColumn,
        TimeRemainingColumn,
    )

    from distribute.dispatch import Dispatcher
    from distribute.ledger import Ledger

    _setup_log(settings)
    con = console()
    ledger = Ledger(settings.database_url)
    dispatcher = Dispatcher(settings, ledger, live=live)
    reports = []
    try:
        for step in steps:
            with Progress(
                TextColumn(f"{step.name}"),
                BarColumn(),
                MofNCompleteColumn(),
                TextColumn("{task.fields[rate]}"),
                TimeRemainingColumn(),
                console=con,
                transient=True,
                disable=not con.is_terminal,
            ) as bar:
                progress = _progress(bar, bar.add_task(step.name, total=None, rate=""))

                report = dispatcher.run(
                    loaded,
                    check,
                    step,
                    limit=limit,
                    retry_uncertain=retry_uncertain,
                    progress=progress,
                )
            reports.append(report)
            for note in report.notes:
                con.print(Text.assemble(("Note: ", "yellow"), note))
            if report.recovered:
                con.print(
                    f"{step.name}: {report.recovered} message(s) were being sent when a "
                    "previous run stopped; they are marked uncertain and not resent "
                    "(--retry-uncertain sends them again)."
                )
            if report.attempted == 0 and not report.counts.get("pending"):
                con.print(f"{step.name}: nothing left to send (every recipient is already done).")
            for failure in report.problems:
                con.print(
                    f"  {step.name}: {failure['state']} {failure['address']}: {failure['text']}"
                )
    finally:
        ledger.close()
    _report_table(reports, loaded.timezone)
    if not live:
        con.print(
            f"This was a dry run: nothing was sent. The messages are in "
            f"{settings.workspace / 'outbox' / loaded.name}{hint}."
        )
    return reports


@cli.command()
@click.argument("campaign", type=click.Path(path_type=Path))
@click.option("--step", "step_names", multiple=True, help="Run only this step (repeatable).")
@click.option("--live", is_flag=True, help="Send for real. Without it, messages go to the outbox.")
@click.option(
    "--limit",
    type=click.IntRange(min=1),
    default=None,
    help="Send at most N messages per step (a canary).",
)
@click.option(
    "--test",
    "test_address",
    default=None,
    metavar="ADDRESS",
    help="Send each email step's message to ADDRESS only, subject prefixed [TEST]; not recorded.",
)
@click.option(
    "--retry-uncertain",
    is_flag=True,
    help="Send again to recipients whose delivery is uncertain after a crash "
    "(they may get it twice).",
)
@click.pass_context
def send(
    ctx: click.Context,
    campaign: Path,
    step_names: tuple[str, ...],
    live: bool,
    limit: int | None,
    test_address: str | None,
    retry_uncertain: bool,
) -> None:
    """Run CAMPAIGN's steps now, whatever their scheduled time.

    Everything is checked first (lists, templates for every recipient, posts, embargo);
    then each step is planned in the ledger and sent. Without --live this is a dry run:
    the exact messages are written to outbox/CAMPAIGN/STEP/new and nothing leaves the
    machine. A journalist is never sent the same step twice: running a finished step
    again sends nothing.
    """
    from distribute.campaign import EmailStep, check_campaign, hold_embargo, load_campaign
    from distribute.channels.outbox import OutboxChannel
    from distribute.channels.smtp import SmtpChannel
    from distribute.config import SMTP_PASSWORD_ENV, secret
    from distribute.dispatch import outbox_folder, send_test

    settings = settings_of(ctx)
    con = console()
    loaded = load_campaign(campaign, settings)
    now = datetime.now(UTC)
    check = check_campaign(loaded, settings, now=now, send_now=True)
    for note in check.warnings:
        # Notes quote releases and lists: print them as text, never as rich markup.
        con.print(Text.assemble(("Warning: ", "yellow"), note))
    steps = [loaded.step(name) for name in step_names] if step_names else list(loaded.steps)

    if test_address:
        from distribute.recipients import address_problem

        address = test_address.strip()
        if problem := address_problem(address):
            raise click.BadParameter(problem, param_hint="--test")
        for email_step in (s for s in steps if isinstance(s, EmailStep)):
            folder = outbox_folder(settings, loaded.name, "test")
            channel = (
                SmtpChannel(settings.smtp, secret(SMTP_PASSWORD_ENV))
                if live
                else OutboxChannel(folder)
            )
            outcome = send_test(settings, loaded, check, email_step, address, channel, date=now)
            where = f"to {address}" if live else f"to {folder / 'new'}"
            con.print(f"{email_step.name}: test message {outcome.state} {where} ({outcome.text})")
        if not live:
            con.print("This was a dry run: nothing was sent. Add --live to send the test message.")
        return

    if live:
        hold_embargo(loaded, steps, now)
    reports = run_steps(
        settings, loaded, check, steps, live=live, limit=limit, retry_uncertain=retry_uncertain
    )
    if any(r.counts.get("failed") or r.counts.get("uncertain") for r in reports):
        ctx.exit(1)


@cli.command()
@click.argument("campaign", required=False)
@click.option("--json", "as_json", is_flag=True, help="Print the status as JSON.")
@click.pass_context
def status(ctx: click.Context, campaign: str | None, as_json: bool) -> None:
    """Show, per step, how many deliveries are pending, sent, failed, uncertain or skipped.

    CAMPAIGN is a campaign name or campaign file; all campaigns when absent.
    """
    import json

    from rich.table import Table

    from distribute.ledger import STATES, Ledger

    settings = settings_of(ctx)
    name = campaign
    if campaign and campaign.endswith(".toml") and Path(campaign).is_file():
        from distribute.campaign import load_campaign

        name = load_campaign(Path(campaign), settings).name
    entries: list[dict[str, Any]] = []
    # Looking must not create: a workspace where nothing was planned has no database yet.
    if settings.state_url or (settings.workspace / "distribute.db").exists():
        ledger = Ledger(settings.database_url)
        try:
            entries = ledger.status(name)
        finally:
            ledger.close()
    if name and not entries:
        raise click.ClickException(f"no campaign named {name!r} has been planned yet")
    if as_json:
        data = {
            "campaigns": [
                {
                    "name": c["name"],
                    "steps": [
                        {
                            "name": s["name"],
                            "channel": s["channel"],
                            "at": s["at"].isoformat(),
                            "mode": s["mode"],
                            "counts": s["counts"],
                        }
                        for s in c["steps"]
                    ],
                }
                for c in entries
            ]
        }
        click.echo(json.dumps(data, indent=2))
        return
    con = console()
    if not entries:
        con.print("No campaign has been planned yet.")
    for entry in entries:
        table = Table(title=f"{entry['name']} ({entry['timezone']})")
        table.add_column("step")
        table.add_column("channel")
        table.add_column("at")
        table.add_column("mode")
        for state in STATES:
            table.add_column(state, justify="right")
        for s in entry["steps"]:
            table.add_row(
                s["name"],
                s["channel"],
                s["at"].astimezone(ZoneInfo(entry["timezone"])).strftime("%Y-%m-%d %H:%M %Z"),
                s["mode"],
                *(str(s["counts"][state]) for state in STATES),
            )
        con.print(table)
        for s in entry["steps"]:
            if s["counts"]["sending"] and not s["running"]:
                con.print(
                    f"  {s['name']}: {s['counts']['sending']} message(s) were being sent by a "
                    "process that stopped; the next send reports them as uncertain and does "
                    "not resend them."
                )
            for bad in s["problems"]:
                code = f" ({bad['code']})" if bad["code"] else ""
                con.print(f"  {s['name']}: {bad['state']} {bad['address']}{code}: {bad['text']}")


def main() -> None:
    cli(prog_name="distribute")
