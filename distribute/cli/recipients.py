"""``distribute recipients``: check journalist lists and manage the suppression list."""

from __future__ import annotations

from pathlib import Path

import click

from distribute.cli.common import console, settings_of


@click.group()
def recipients() -> None:
    """Check journalist lists and manage the suppression list."""


@recipients.command("check")
@click.argument("files", nargs=-1, type=click.Path(path_type=Path, dir_okay=False))
@click.option("--json", "as_json", is_flag=True, help="Print the counts and problems as JSON.")
@click.pass_context
def recipients_check(ctx: click.Context, files: tuple[Path, ...], as_json: bool) -> None:
    """Validate lists (all of them when no FILE is named) and the suppression list; exit 1 if
    a row is invalid or a suppression entry is not understood."""
    import json

    from rich.table import Table
    from rich.text import Text

    from distribute import recipients as lists

    settings = settings_of(ctx)
    folder = lists.recipients_dir(settings)
    if files:
        paths = list(files)
    else:
        paths = [lists.list_file(folder, name) for name in lists.list_names(folder)]
    suppressions = lists.suppressions_of(settings)
    audience = lists.read_lists(paths, suppressions.keys)
    problems = [*audience.problems, *suppressions.problems]
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
                    "kind": p.kind,
                }
                for p in problems
            ],
            "unique": len(audience.recipients),
        }
        click.echo(json.dumps(report, indent=2, ensure_ascii=False))
    elif not paths:
        click.echo(f"No lists in {lists.display_path(folder)}.")
        for p in suppressions.problems:
            click.echo(f"{lists.display_path(p.file)}:{p.line}: {p.reason}")
    else:
        table = Table(title="Journalist lists")
        table.add_column("list")
        for column in ("rows", "valid", "invalid", "duplicates", "suppressed"):
            table.add_column(column, justify="right")
        for s in audience.lists:
            counts = (s.rows, s.valid, s.invalid, s.duplicates, s.suppressed)
            table.add_row(Text(s.name), *(str(n) for n in counts))
        console().print(table)
        for p in problems:
            click.echo(f"{lists.display_path(p.file)}:{p.line}: {p.reason}")
        for s in audience.lists:
            if note := s.unnamed_note():
                click.echo(f"Warning: {note}")
        for note in lists.misnamed_suppression_notes(folder):
            click.echo(f"Warning: {note}")
        duplicates = sum(s.duplicates for s in audience.lists)
        suppressed = sum(s.suppressed for s in audience.lists)
        click.echo(
            f"{len(audience.recipients)} unique addresses to mail; {invalid} invalid rows, "
            f"{duplicates} duplicates, {suppressed} suppressed."
        )
        if suppressions.problems:
            count = len(suppressions.problems)
            are, they = ("ies are", "they are") if count != 1 else ("y is", "it is")
            click.echo(
                f"{count} suppression entr{are} not understood: "
                f"a live send refuses to run until {they} fixed."
            )
    if invalid or suppressions.problems:
        ctx.exit(1)


@recipients.command("suppress")
@click.argument("address")
@click.option("--reason", default=None, help="Why, for the record (e.g. 'asked by phone').")
@click.pass_context
def recipients_suppress(ctx: click.Context, address: str, reason: str | None) -> None:
    """Never mail ADDRESS again, from any list.

    ADDRESS may be written as copied from a mail client (Jo Doe <jo@example.org>,
    mailto:jo@example.org): the bare address is what is kept.
    """
    from datetime import date

    from distribute import recipients as lists

    path = lists.suppression_file(settings_of(ctx))
    result = lists.add_suppression(path.parent, address, reason, date.today())
    if result.added:
        click.echo(f"Suppressed {result.address} in {lists.display_path(path)}.")
    else:
        click.echo(f"{result.address} is already suppressed.")
