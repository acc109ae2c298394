"""``distribute render``: a release rendered to files, as one journalist would receive it."""

from __future__ import annotations

import json
from dataclasses import replace
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING

import click

from distribute.cli.common import console, settings_of

if TYPE_CHECKING:
    from distribute.config import Settings
    from distribute.recipients import Recipient
    from distribute.render.social import PostSet


def _sample_recipient(value: str) -> Recipient:
    import re

    from distribute.config import MAILBOX, SPECIALS
    from distribute.headers import header_text_problem
    from distribute.recipients import Recipient, address_problem, clean_text
    from distribute.render.templates import single_line

    # Exactly one mailbox, nothing left over: parseaddr keeps the first address it finds in
    # "a@example.com, b@example.com" or "Jo <a@example.com> trailing" and drops the rest.
    match = MAILBOX.fullmatch(value)
    name = (match.group("name") or "") if match else ""
    address = ((match.group("inner") or match.group("bare") or "") if match else "").strip()
    quoted = name.startswith('"')
    # As a list's name column is read: bidi overrides and controls are dropped.
    name = clean_text(re.sub(r"\\(.)", r"\1", name[1:-1]) if quoted else name)
    if (
        match is None
        or address_problem(address)
        or (not quoted and SPECIALS.search("".join(name.split())))
    ):
        raise click.BadParameter(
            f"{value!r} is not one address like 'Jane Doe <jane@example.com>' "
            "(a name holding , ; : ( ) goes in double quotes)"
        )
    # The name goes into the To header as a list's name column would.
    problem = header_text_problem(single_line(name))
    if problem:
        raise click.BadParameter(f"{value!r}: the name {problem}")
    first, _, last = name.partition(" ")
    return Recipient(email=address, first_name=first, last_name=last, list_name="sample")


def _web_address(_ctx: click.Context, _param: click.Parameter, value: str | None) -> str | None:
    from distribute.links import web_address

    if value is not None and not web_address(value):
        raise click.BadParameter(f"{value!r} is not a full address like https://example.org/news")
    return value


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
    from distribute.release import load_release
    from distribute.render.email import draft_email
    from distribute.render.message import build_message, message_bytes, recipient_values
    from distribute.render.social import render_posts

    recipient = _sample_recipient(to)
    release = load_release(release_path)
    if url:
        release = replace(release, url=url)
    now = datetime.now(UTC)
    hint = "give one with --url or 'url:' in the release's front matter"
    posts = render_posts(release, settings, url=url, url_hint=hint)
    draft = draft_email(release, settings, at=now, template=template, url_hint=hint)
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
        *(("Warning", note) for note in (*release.warnings, *draft.warnings)),
    ]
    return rows, posts


def print_report(rows: list[tuple[str, str]], posts: PostSet, out: Path) -> None:
    from rich.text import Text

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


@click.command()
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
    callback=_web_address,
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
    print_report(rows, posts, out)
    console().print(f"See it as received, in a browser: distribute preview {release} --open")
