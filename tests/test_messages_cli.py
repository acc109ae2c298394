"""What the command line says: only about what it runs, with flags it has, in good English."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from click.testing import CliRunner, Result
from smtp_double import Faults, SmtpServer

from distribute.cli import cli
from distribute.cli.campaigns import send
from distribute.cli.render import render
from distribute.words import agree, plural

RELEASE = "---\ntitle: Big hall opens\nlanguage: en\n---\n# Big hall opens\n\n**It opens.**\n"


def run(*args: str) -> Result:
    return CliRunner().invoke(cli, list(args))


def workspace_with(workspace: Path, port: int = 25, *, url: bool = False) -> Path:
    (workspace / "distribute.toml").write_text(
        '[sender]\nfrom = "Press Office <press@example.org>"\n'
        f'[smtp]\nhost = "127.0.0.1"\nport = {port}\nsecurity = "none"\n'
        "max_retries = 0\n"
        '[paths]\nrecipients = "lists"\n',
        encoding="utf-8",
    )
    (workspace / "lists").mkdir()
    (workspace / "lists" / "desk.csv").write_text(
        "email,first_name,language\nann@example.com,Ann,en\nbob@example.com,Bob,fr\n", "utf-8"
    )
    (workspace / "lists" / "extra.csv").write_text(
        "email,first_name,language\nann@example.com,Ann,en\n", "utf-8"
    )
    front = RELEASE.replace("language: en\n", "language: en\nurl: https://e.org/hall\n")
    (workspace / "hall.md").write_text(front if url else RELEASE, encoding="utf-8")
    campaign = workspace / "hall.toml"
    campaign.write_text(
        'name = "hall"\nrelease = "hall.md"\n'
        '[[email]]\nname = "desk"\nlists = ["desk"]\nwhere = { language = "en" }\n'
        'at = "2027-03-10 08:00"\n'
        '[[email]]\nname = "extra"\nlists = ["extra"]\nat = "2027-03-10 08:00"\n'
        '[[email]]\nname = "nobody"\nlists = ["desk"]\nwhere = { language = "de" }\n'
        'at = "2027-03-10 08:00"\n',
        encoding="utf-8",
    )
    return campaign


def warnings(output: str) -> list[str]:
    return [line for line in output.splitlines() if line.startswith("Warning: ")]


def test_step_option_hides_warnings_about_other_steps(workspace: Path) -> None:
    campaign = workspace_with(workspace, url=True)
    everything = run("send", str(campaign))
    assert everything.exit_code == 0, everything.output
    assert warnings(everything.stdout) == [
        "Warning: [[email]] 'nobody': selects no recipient",
        "Warning: lists/extra.csv: no template or filter of this campaign uses the column language",
        "Warning: 1 journalist is in more than one email step and gets one message per step "
        "(e.g. ann@example.com: desk, extra)",
    ]
    one = run("send", str(campaign), "--step", "desk")
    assert one.exit_code == 0, one.output
    assert warnings(one.stdout) == []
    two = run("send", str(campaign), "--step", "nobody", "--step", "extra")
    assert warnings(two.stdout) == [
        "Warning: [[email]] 'nobody': selects no recipient",
        "Warning: lists/extra.csv: no template or filter of this campaign uses the column language",
    ]


def test_no_url_warning_suggests_only_what_the_command_offers(workspace: Path) -> None:
    campaign = workspace_with(workspace)
    sent = run("send", str(campaign), "--step", "desk")
    assert sent.exit_code == 0, sent.output
    assert warnings(sent.stdout) == [
        "Warning: [[email]] 'desk': the release has no url: the email has no 'read online' "
        "link (add 'url:' to the release's front matter)"
    ]
    rendered = run("render", "hall.md", "--out", "out")
    assert rendered.exit_code == 0, rendered.output
    assert "(give one with --url or 'url:' in the release's front matter)" in rendered.stdout
    # Every flag a warning suggests is one the command has.
    for command, output in ((send, sent.stdout), (render, rendered.stdout)):
        offered = {opt for param in command.params for opt in getattr(param, "opts", [])}
        suggested = set(re.findall(r"(?<![\w-])--[a-z][a-z-]+", "\n".join(warnings(output))))
        assert suggested <= offered, (command.name, suggested - offered)


def test_unknown_setting_names_its_line_and_its_table(workspace: Path) -> None:
    (workspace / "distribute.toml").write_text(
        '[sender]\nfrom = "Press Office <press@example.org>"\n\n[x]\naccount = "@Valmont"\n'
        "max_retries = 5\n",
        encoding="utf-8",
    )
    result = run("status")
    assert result.exit_code == 1
    assert result.stderr == (
        f"Error: {workspace / 'distribute.toml'}:6: unknown setting [x] 'max_retries' "
        "(known: account, api_url, timeout); 'max_retries' goes in [smtp]\n"
    )


@pytest.mark.parametrize(
    ("count", "expected"),
    [(0, "0 duplicates are"), (1, "1 duplicate is"), (2, "2 duplicates are")],
)
def test_counted_words_agree(count: int, expected: str) -> None:
    assert f"{plural(count, 'duplicate')} {agree(count, 'is', 'are')}" == expected
    assert plural(count, "reply", "replies").endswith("reply" if count == 1 else "replies")


def test_a_refusal_shows_its_code_once_in_send_and_status(workspace: Path) -> None:
    with SmtpServer(Faults(permanent={"ann@example.com"})) as server:
        campaign = workspace_with(workspace, server.port, url=True)
        sent = run("send", str(campaign), "--step", "desk", "--live")
    assert sent.exit_code == 1
    line = "  desk: failed ann@example.com: 550 5.1.1 <ann@example.com>: mailbox unavailable"
    assert line in sent.stdout.splitlines()
    shown = run("status", "hall")
    assert shown.exit_code == 0, shown.output
    assert line in shown.stdout.splitlines()
    assert "(550)" not in sent.stdout + shown.stdout
