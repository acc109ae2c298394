"""``distribute x``: the institution's account on X."""

from __future__ import annotations

import click

from distribute.cli.common import settings_of


@click.group()
def x() -> None:
    """The account on X that post steps publish to."""


@x.command()
@click.pass_context
def whoami(ctx: click.Context) -> None:
    """Check the X credentials in the environment and print the account they post as.

    Makes one request (GET /2/users/me); exits 1 when the account is not [x] account,
    since a live post step would then be refused.
    """
    from distribute.channels.x import Credentials, XChannel
    from distribute.posting import same_account

    settings = settings_of(ctx)
    handle = XChannel(settings.x, Credentials.from_env()).whoami()
    click.echo(handle)
    if not same_account(handle, settings.x.account):
        click.echo(
            f"Error: [x] account is {settings.x.account}, not {handle}: live post steps "
            "would be refused",
            err=True,
        )
        ctx.exit(1)
