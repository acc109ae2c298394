"""``distribute preview``: a release or campaign in one browser page, as it will be received."""

from __future__ import annotations

from pathlib import Path

import click

from distribute.cli.common import console, settings_of


def default_out(source: Path) -> Path:
    """Beside ``render``'s files: out/ next to the release or campaign."""
    return (
        source.parent
        / "out"
        / f"preview-{source.stem}{'-campaign' if source.suffix.lower() == '.toml' else ''}.html"
    )


@click.command()
@click.argument("source", metavar="RELEASE|CAMPAIGN", type=click.Path(path_type=Path))
@click.option(
    "--out",
    type=click.Path(path_type=Path, dir_okay=False),
    default=None,
    help="Page to write. Default: out/preview-NAME.html beside the release or campaign.",
)
@click.option("--serve", is_flag=True, help="Serve the page on 127.0.0.1; it reloads on edits.")
@click.option(
    "--port",
    type=click.IntRange(0, 65535),
    default=8025,
    show_default=True,
    help="Port for --serve (0 picks a free one).",
)
@click.option("--open", "open_browser", is_flag=True, help="Open the page in the default browser.")
@click.option(
    "--recipient",
    metavar="ADDRESS",
    default=None,
    help="Show the messages exactly as this journalist gets them (for a release: the sample "
    "recipient, 'Name <address>').",
)
@click.option(
    "--allow-remote",
    is_flag=True,
    help="Load the release's remote images instead of showing a box with their alt text.",
)
@click.pass_context
def preview(
    ctx: click.Context,
    source: Path,
    out: Path | None,
    serve: bool,
    port: int,
    open_browser: bool,
    recipient: str | None,
    allow_remote: bool,
) -> None:
    """Build one page showing RELEASE (Markdown) or CAMPAIGN (.toml) as it will be received.

    The envelope (From, To, Subject, preheader, List-Unsubscribe), the HTML part at 600 and
    375 px in light and dark, the plain-text part, each post as the network shows it with its
    count, a campaign's timeline, and warnings with what to do. Built from the exact bytes a
    send would write; nothing is sent and the page makes no request off the machine.
    """
    import webbrowser
    from datetime import UTC, datetime

    from distribute.config import load_settings
    from distribute.preview import build_preview, render_page

    if serve and out is not None:
        raise click.UsageError("--out writes a file and --serve serves the page: give one")
    if recipient is not None:
        from email.utils import parseaddr

        from distribute.recipients import address_problem

        if address_problem(parseaddr(recipient)[1]):
            raise click.BadParameter(
                f"{recipient!r} is not an address like 'Jane Doe <jane@example.com>'",
                param_hint="--recipient",
            )
    config = ctx.ensure_object(dict).get("config")
    settings = settings_of(ctx)

    con = console()
    if serve:
        from distribute.preview_server import preview_server

        try:
            server = preview_server(
                source,
                lambda: load_settings(config),
                recipient=recipient,
                port=port,
                allow_remote=allow_remote,
                report=lambda line: click.echo(line, err=True),
            )
        except OSError as exc:
            raise click.ClickException(
                f"cannot serve on 127.0.0.1:{port}: {exc.strerror}; choose another --port"
            ) from None
        con.print(f"Serving the preview of {source} on {server.url} (Ctrl-C to stop)")
        if open_browser:
            webbrowser.open(server.url)
        try:
            server.serve_forever()
        except KeyboardInterrupt:
            con.print("Stopped.")
        finally:
            server.server_close()
        return

    built = build_preview(source, settings, now=datetime.now(UTC), recipient=recipient)
    html = render_page(built, allow_remote=allow_remote)
    target = out or default_out(source)
    target.parent.mkdir(parents=True, exist_ok=True)
    target.write_text(html, encoding="utf-8")
    for notice in built.notices:
        where = f"{notice.where}: " if notice.where else ""
        click.echo(f"Warning: {where}{notice.message} ({notice.fix})")
    con.print(f"Wrote the preview to {target}; open {target.resolve().as_uri()} in a browser")
    if open_browser:
        webbrowser.open(target.resolve().as_uri())
