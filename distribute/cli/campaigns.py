"""``distribute send`` and ``status``: run a campaign's steps and report what went out."""

from __future__ import annotations

import contextlib
import shlex
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any
from zoneinfo import ZoneInfo

import click

from distribute.cli.common import console, settings_of, start_up
from distribute.errors import CampaignError, LedgerError, WorkspaceError
from distribute.words import agree, plural

if TYPE_CHECKING:
    from distribute.config import Settings


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


def _problem_line(step: str, problem: dict[str, Any]) -> str:
    """One failed or uncertain delivery; the reply code only when the reply does not start
    with it already ("550 5.1.1 ...", not "(550): 550 5.1.1 ...")."""
    code, text = problem["code"], problem["text"] or ""
    shown = f" ({code})" if code and not text.startswith(str(code)) else ""
    return f"  {step}: {problem['state']} {problem['address']}{shown}: {text}"


@contextlib.contextmanager
def _progress_bar(con: Any, name: str) -> Iterator[Any]:
    """A progress bar on a terminal, None elsewhere (a log or a pipe gets the table only)."""
    if not con.is_terminal:
        yield None
        return
    from rich.progress import (
        BarColumn,
        MofNCompleteColumn,
        Progress,
        TextColumn,
        TimeRemainingColumn,
    )

    with Progress(
        TextColumn(f"{name}"),
        BarColumn(),
        MofNCompleteColumn(),
        TextColumn("{task.fields[rate]}"),
        TimeRemainingColumn(),
        console=con,
        transient=True,
    ) as bar:
        yield _progress(bar, bar.add_task(name, total=None, rate=""))


def _progress(bar: Any, task: Any) -> Any:
    started = datetime.now(UTC)

    def update(done: int, total: int) -> None:
        elapsed = (datetime.now(UTC) - started).total_seconds() or 1e-9
        bar.update(task, completed=done, total=total, rate=f"{done / elapsed:.1f}/s")

    return update


def _outcome(report: Any) -> str | None:
    """What a step that sent nothing this time amounts to, or None when it sent something."""
    counts = report.counts
    if report.attempted or counts.get("pending"):
        return None
    if not any(counts.values()):
        return "nothing to send: the step selects nobody (check its lists, where and tags)."
    if counts.get("failed") or counts.get("uncertain"):
        left = ", ".join(
            f"{counts[state]} {state}" for state in ("failed", "uncertain") if counts.get(state)
        )
        retry = (
            " (--retry-uncertain sends the uncertain ones again)" if counts.get("uncertain") else ""
        )
        return f"nothing sent this time: {left}, listed below{retry}."
    if not counts.get("sent"):
        return (
            "nothing to send: every recipient the step selects is skipped (see distribute status)."
        )
    return "nothing left to send (every recipient is already done)."


def _problem_lines(step: str, problems: list[dict[str, Any]]) -> None:
    con = console()
    for failure in problems:
        con.print(_problem_line(step, failure))


def _database_error(exc: Exception) -> LedgerError:
    """A database failure as one line: the driver's first line only, because the lines after
    it (and SQLAlchemy's own text) quote the statement's parameters: addresses."""
    reason = str(getattr(exc, "orig", None) or type(exc).__name__).strip().splitlines()
    return LedgerError(f"the state database failed: {reason[0] if reason else exc}")


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
    rest: str | None = None,
) -> list[Any]:
    """Dispatch ``steps`` now with a progress bar; print what needs attention and a table.

    ``rest`` is the command that sends what ``limit`` left pending, shown after a canary.
    SIGTERM and SIGHUP stop a step as Ctrl-C does (see :func:`dispatch.stop_on_signals`).
    """
    from rich.text import Text
    from sqlalchemy.exc import SQLAlchemyError

    from distribute.dispatch import Dispatcher, StepStopped, stop_on_signals
    from distribute.ledger import Ledger

    _setup_log(settings)
    con = console()
    ledger = Ledger(settings.database_url)
    dispatcher = Dispatcher(settings, ledger, live=live)
    reports: list[Any] = []
    try:
        with stop_on_signals():
            for step in steps:
                with _progress_bar(con, step.name) as progress:
                    try:
                        report = dispatcher.run(
                            loaded,
                            check,
                            step,
                            limit=limit,
                            retry_uncertain=retry_uncertain,
                            progress=progress,
                        )
                    except StepStopped as exc:
                        # What the stop left uncertain is known now: say it now, not next run.
                        _problem_lines(step.name, exc.report.problems)
                        _report_table([*reports, exc.report], loaded.timezone)
                        raise
                reports.append(report)
                states = ledger.states(loaded.name)
                if states.get((step.name, report.mode)) in ("missed", "failed", "cancelled"):
                    ledger.sent_by_hand(
                        ledger.step(
                            loaded.name,
                            str(loaded.path),
                            loaded.timezone,
                            step.name,
                            step.channel,
                            report.mode,
                            step.at,
                        )
                    )
                for note in report.notes:
                    con.print(Text.assemble(("Note: ", "yellow"), note))
                if report.recovered:
                    count = report.recovered
                    con.print(
                        f"{step.name}: {plural(count, 'message')} {agree(count, 'was', 'were')} "
                        "being sent when a previous run stopped; "
                        f"{agree(count, 'it is', 'they are')} marked uncertain and not resent "
                        "(--retry-uncertain sends them again)."
                    )
                if outcome := _outcome(report):
                    con.print(f"{step.name}: {outcome}")
                _problem_lines(step.name, report.problems)
    except SQLAlchemyError as exc:
        raise _database_error(exc) from None
    finally:
        ledger.close()
    _report_table(reports, loaded.timezone)
    pending = {r.step: r.counts.get("pending", 0) for r in reports if r.counts.get("pending")}
    if limit is not None and pending and rest:
        left = ", ".join(f"{count} in {name}" for name, count in pending.items())
        con.print(f"--limit {limit}: {sum(pending.values())} still pending ({left}).")
        con.print(f"Send the rest with: {rest}")
    if not live:
        con.print(
            f"This was a dry run: nothing was sent. The messages are in "
            f"{settings.workspace / 'outbox' / loaded.name}{hint}."
        )
    return reports


@click.command()
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
@click.option(
    "--skip-invalid",
    is_flag=True,
    help="Send to the valid rows of the lists; the invalid ones are listed and not mailed.",
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
    skip_invalid: bool,
) -> None:
    """Run CAMPAIGN's steps now, whatever their scheduled time.

    Everything is checked first (lists, templates for every recipient, posts, embargo);
    then each step is planned in the ledger and sent. Without --live this is a dry run:
    the exact messages are written to outbox/CAMPAIGN/STEP/new and nothing leaves the
    machine. A journalist is never sent the same step twice: running a finished step
    again sends nothing.
    """
    with start_up():
        from rich.text import Text

        from distribute.campaign import EmailStep, check_campaign, hold_embargo, load_campaign
        from distribute.channels.outbox import OutboxChannel
        from distribute.channels.smtp import SmtpChannel
        from distribute.config import SMTP_PASSWORD_ENV, secret
        from distribute.dispatch import outbox_folder, send_test

        settings = settings_of(ctx)
        con = console()
        loaded = load_campaign(campaign, settings)
        now = datetime.now(UTC)
        check = check_campaign(loaded, settings, now=now, send_now=True, skip_invalid=skip_invalid)
    steps = [loaded.step(name) for name in step_names] if step_names else list(loaded.steps)
    # With --step, what concerns the other steps is not this run's business.
    for note in check.warnings_for([s.name for s in steps] if step_names else None):
        # Notes quote releases and lists: print them as text, never as rich markup.
        con.print(Text.assemble(("Warning: ", "yellow"), note))

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
        if any(getattr(s, "channel", None) == "x" for s in steps):
            from distribute.channels.x import Credentials

            # Before any step runs: a missing key must not surface after the mail went out.
            Credentials.from_env()
    rest = shlex.join(
        [
            "distribute",
            *(["--config", str(ctx.obj["config"])] if ctx.obj.get("config") else []),
            "send",
            str(campaign),
            *(option for name in step_names for option in ("--step", name)),
            *(["--live"] if live else []),
        ]
    )
    reports = run_steps(
        settings,
        loaded,
        check,
        steps,
        live=live,
        limit=limit,
        retry_uncertain=retry_uncertain,
        hint=f"; add --live to send. See them as received: distribute preview {campaign} --open",
        rest=rest,
    )
    if any(r.counts.get("failed") or r.counts.get("uncertain") for r in reports):
        ctx.exit(1)


def _when(moment: datetime, zone: ZoneInfo) -> str:
    local = moment.astimezone(zone)
    return local.strftime("%Y-%m-%d %H:%M:%S %Z" if local.second else "%Y-%m-%d %H:%M %Z")


def _until(moment: datetime, now: datetime) -> str:
    from distribute.scheduler import span

    return f"in {span(moment - now)}" if moment > now else "due now"


def step_state(step: dict[str, Any]) -> str:
    """A step's state: its place on the schedule, or for a step run by `send`, how far it got."""
    if step["state"]:
        return str(step["state"])
    if step["running"]:
        return "running"
    counts = step["counts"]
    return "pending" if counts["pending"] or counts["sending"] else "done"


def shown_counts(step: dict[str, Any]) -> dict[str, int]:
    """The counts under their names: a dry run wrote its messages, it never sent one."""
    counts = dict(step["counts"])
    if step["mode"] == "dry":
        counts = {("written" if key == "sent" else key): value for key, value in counts.items()}
    return counts


@click.command()
@click.argument("campaign", required=False)
@click.option("--json", "as_json", is_flag=True, help="Print the status as JSON.")
@click.option(
    "--dry",
    is_flag=True,
    help="Show the dry runs (messages written to the outbox) instead of what was sent.",
)
@click.pass_context
def status(ctx: click.Context, campaign: str | None, as_json: bool, dry: bool) -> None:
    """Show, per step, its state, its next run and what was sent, failed or is pending.

    CAMPAIGN is a campaign name or campaign file; all campaigns when absent. The table
    shows what went out for real; --dry shows the dry runs instead.
    """
    import json

    from rich.table import Table
    from sqlalchemy.exc import SQLAlchemyError

    from distribute.ledger import Ledger, identity_problem, same_file
    from distribute.scheduler import send_hint

    settings = settings_of(ctx)
    name = campaign
    path: Path | None = None
    as_file = bool(campaign and campaign.endswith(".toml") and Path(campaign).is_file())

    def name_in_file() -> str:
        from distribute.campaign import load_campaign

        return load_campaign(Path(str(campaign)), settings).name

    entries: list[dict[str, Any]] = []
    # Looking must not create: a workspace where nothing was planned has no database yet.
    if not (settings.state_url or (settings.workspace / "distribute.db").exists()):
        name = name_in_file() if as_file else name
    else:
        ledger = Ledger(settings.database_url)
        try:
            if as_file:
                path = Path(str(campaign)).resolve()
                # Known by its path, a campaign is shown even when its file or release no
                # longer loads (what was sent matters most then).
                name = ledger.campaign_of(str(path)) or name_in_file()
            recorded = ledger.campaign_path(name) if path and name else None
            if path and recorded and not same_file(recorded, path):
                raise CampaignError(identity_problem(str(name), recorded), path=campaign)
            entries = ledger.status(name)
        except SQLAlchemyError as exc:
            raise _database_error(exc) from None
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
                            "state": step_state(s),
                            "next_run": (
                                s["at"].isoformat() if s["state"] == "scheduled" else None
                            ),
                            "counts": shown_counts(s),
                            "releases": s["releases"],
                        }
                        for s in c["steps"]
                        if s["mode"] == ("dry" if dry else "live")
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
    mode = "dry" if dry else "live"
    first = "written" if dry else "sent"
    now = datetime.now(UTC)
    for entry in entries:
        zone = ZoneInfo(entry["timezone"])
        shown = [s for s in entry["steps"] if s["mode"] == mode]
        others = len(entry["steps"]) - len(shown)
        if not shown:
            con.print(
                f"{entry['name']}: nothing {'rehearsed' if dry else 'sent or scheduled live'} "
                f"yet"
                + (
                    f"; {plural(others, 'live step' if dry else 'dry-run step')} "
                    f"{agree(others, 'is', 'are')} recorded "
                    f"(distribute status{'' if dry else ' --dry'})."
                    if others
                    else "."
                )
            )
            continue
        title = f"{entry['name']} ({entry['timezone']})"
        table = Table(title=title if not dry else f"{title}: dry runs, nothing sent")
        # Columns that are empty for every step are left out, so the table fits 120 columns:
        # the release version appears once something was sent, the rare states when needed.
        versioned = any(s["releases"] for s in shown)
        states = ["sent", "failed", "skipped", "pending"]
        for rare in ("uncertain", "sending"):
            if any(s["counts"][rare] for s in shown):
                states.append(rare)
        # No channel column: the schedule's timeline and --json give it, and without it the
        # table fits 120 columns with a step scheduled and a release version.
        table.add_column("step", no_wrap=True)
        table.add_column("at", no_wrap=True)
        table.add_column("state", no_wrap=True)
        if versioned:
            # Which version of the release (a hash of its text) the messages carried.
            table.add_column("release", no_wrap=True)
        for state in states:
            table.add_column(first if state == "sent" else state, justify="right")
        for s in shown:
            versions = s["releases"]
            release = ", ".join(
                version if len(versions) == 1 else f"{version} ({count})"
                for version, count in versions.items()
            )
            table.add_row(
                s["name"],
                _when(s["at"], zone),
                step_state(s) + (f" ({_until(s['at'], now)})" if s["state"] == "scheduled" else ""),
                *([release] if versioned else []),
                *(str(s["counts"][state]) for state in states),
            )
        con.print(table)
        for s in shown:
            if s["state"] in ("missed", "failed") and s["note"]:
                con.print(f"  {s['name']}: {s['state']}: {s['note']}")
            elif s["state"] == "cancelled" and s["counts"]["pending"]:
                con.print(
                    f"  {s['name']}: cancelled with {plural(s['counts']['pending'], 'message')} "
                    f"pending; to send them: {send_hint(entry['path'], s['name'], s['mode'])}"
                )
            elif s["note"] and s["state"] in ("running", "done"):
                con.print(f"  {s['name']}: {s['note']}")
            if s["counts"]["sending"] and not s["running"] and s["state"] != "running":
                count = s["counts"]["sending"]
                con.print(
                    f"  {s['name']}: {plural(count, 'message')} {agree(count, 'was', 'were')} "
                    "being sent by a process that stopped; the next send reports "
                    f"{agree(count, 'it', 'them')} as uncertain and does not resend "
                    f"{agree(count, 'it', 'them')}."
                )
            for bad in s["problems"]:
                con.print(_problem_line(s["name"], bad))
            for skipped in s["skipped"]:
                con.print(f"  {s['name']}: skipped {skipped['address']}: {skipped['reason']}")
        if others and not dry:
            con.print(f"  ({plural(others, 'dry-run step')} not shown: distribute status --dry)")
