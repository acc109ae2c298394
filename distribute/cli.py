"""The command line: parses options, calls the core, turns errors into one clear line."""

from __future__ import annotations

import sys
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import click
from rich.console import Console

from distribute import __version__
from distribute.config import Settings, bundled, load_settings
from distribute.errors import DistributeError
from distribute.recipients import Recipient
from distribute.release import load_release
from distribute.render.email import draft_email
from distribute.render.message import build_message, message_bytes, recipient_values


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

    name, address = parseaddr(value)
    if "@" not in address:
        raise click.BadParameter(f"{value!r} is not an address like 'Jane Doe <jane@example.com>'")
    first, _, last = name.partition(" ")
    return Recipient(email=address, first_name=first, last_name=last, list_name="sample")


def _size(data: bytes | str) -> str:
    size = len(data.encode("utf-8") if isinstance(data, str) else data)
    return f"{size / 1024:.1f} KB"


def render_release(
    settings: Settings, release_path: Path, out: Path, template: str, to: str
) -> list[tuple[str, str]]:
    """Render everything in memory first, so a failure writes nothing; then write the files."""
    recipient = _sample_recipient(to)
    release = load_release(release_path)
    now = datetime.now(UTC)
    draft = draft_email(release, settings, at=now, template=template)
    message = build_message(draft, recipient, settings, campaign="render", step="preview", date=now)
    raw = message_bytes(message)
    _, html, text = draft.personalise(recipient_values(recipient, settings, draft.language))
    files = {"email.html": html, "email.txt": text}
    out.mkdir(parents=True, exist_ok=True)
    for name, content in files.items():
        (out / name).write_text(content, encoding="utf-8", newline="")
    (out / "email.eml").write_bytes(raw)
    return [
        ("Subject", draft.subject),
        ("Preheader", draft.preheader),
        ("HTML part", _size(files["email.html"])),
        ("Text part", _size(files["email.txt"])),
        ("Message", _size(raw)),
        *(("Warning", note) for note in draft.warnings),
    ]


def _print_report(rows: list[tuple[str, str]], out: Path) -> None:
    con = console()
    for label, value in rows:
        style = "yellow" if label == "Warning" else "bold"
        con.print(f"[{style}]{label}:[/{style}] {value}", markup=True, highlight=False)
    con.print(f"Wrote email.html, email.txt and email.eml to {out}")


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
@click.pass_context
def render(ctx: click.Context, release: Path, template: str, to: str, out: Path | None) -> None:
    """Render RELEASE (Markdown) into the email a journalist would receive.

    Writes email.html (CSS inlined), email.txt (the plain-text part) and email.eml (the whole
    message, openable in a mail client), then prints the subject, preheader and sizes.
    Nothing is sent.
    """
    settings = settings_of(ctx)
    out = out or release.parent / "out"
    rows = render_release(settings, release, out, template, to)
    _print_report(rows, out)


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
    """Render the bundled example release, to see what distribute produces. Sends nothing."""
    settings = settings_of(ctx)
    release = bundled("releases") / "hydrogen.md"
    rows = render_release(
        settings, release, out, "press-release", "Jane Doe <jane.doe@example.com>"
    )
    _print_report(rows, out)
    console().print(
        f"Open {out / 'email.html'} in a browser, or {out / 'email.eml'} in a mail client."
    )


def main() -> None:
    cli(prog_name="distribute")
