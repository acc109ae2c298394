"""``distribute demo``: the bundled example campaign, on built-in defaults."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import click

from distribute.cli.common import console


@click.command()
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
    from distribute.cli.campaigns import run_steps
    from distribute.cli.render import print_report, render_release
    from distribute.config import bundled, load_settings

    out.mkdir(parents=True, exist_ok=True)
    settings = load_settings(workspace=out.resolve())
    examples = bundled("releases")
    rows, posts = render_release(
        settings, examples / "hydrogen.md", out, "press-release", "Jane Doe <jane.doe@example.com>"
    )
    print_report(rows, posts, out)
    console().print(
        f"Open {out / 'email.html'} in a browser, or {out / 'email.eml'} in a mail client.\n"
    )
    campaign = load_campaign(examples / "hydrogen.toml", settings)
    check = check_campaign(campaign, settings, now=datetime.now(UTC), send_now=True)
    run_steps(settings, campaign, check, list(campaign.steps), live=False, hint="")
