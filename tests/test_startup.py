"""Start-up: ``distribute --help`` loads the command modules but none of the heavy libraries;
``send`` builds what it keeps with the cyclic collector waiting."""

from __future__ import annotations

import gc
import json
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from click.testing import CliRunner

from distribute.cli import cli

ROOT = Path(__file__).resolve().parents[1]

# What the commands need and --help does not: each costs tens of milliseconds to import
# (twitter_text alone reads its configuration through pkg_resources).
HEAVY = (
    "twitter_text",
    "premailer",
    "sqlalchemy",
    "rich",
    "jinja2",
    "tweepy",
    "apscheduler",
    "pkg_resources",
    "markdown_it",
    "yaml",
)

PROBE = """
import json, sys
sys.argv = ["distribute"] + sys.argv[1:]
from distribute.cli import COMMANDS, cli
try:
    cli(prog_name="distribute")
except SystemExit as exc:
    code = exc.code
print(json.dumps({"code": code, "modules": sorted(sys.modules), "commands": sorted(COMMANDS)}))
"""


def _run(*args: str) -> dict[str, object]:
    # A fresh interpreter: the test process has imported everything already.
    done = subprocess.run(
        [sys.executable, "-c", PROBE, *args], capture_output=True, text=True, check=True
    )
    result: dict[str, object] = json.loads(done.stdout.strip().splitlines()[-1])
    return result


def _heavy(modules: object) -> list[str]:
    assert isinstance(modules, list)
    return sorted({name for name in modules if name.split(".")[0] in HEAVY})


def test_help_imports_no_heavy_library() -> None:
    result = _run("--help")
    assert result["code"] == 0
    # --help lists every command with its summary, so every command module is imported:
    # their heavy imports must wait inside the command functions.
    modules = result["modules"]
    assert isinstance(modules, list)
    assert "distribute.cli.campaigns" in modules
    assert _heavy(modules) == []


def test_each_command_help_imports_no_heavy_library() -> None:
    commands = _run("--version")["commands"]
    assert isinstance(commands, list)
    assert {"send", "status", "render"} <= set(commands)
    for command in commands:
        result = _run(command, "--help")
        assert result["code"] == 0, command
        assert _heavy(result["modules"]) == [], command


def _dry_run_workspace(root: Path, count: int = 3, *, front_matter: bool = True) -> Path:
    (root / "distribute.toml").write_text(
        '[sender]\nfrom = "Valmont Press Office <press@example.org>"\n'
        '[unsubscribe]\nurl = "https://www.example.org/unsubscribe?email={email}"\n'
        '[paths]\nrecipients = "recipients"\n',
        encoding="utf-8",
    )
    (root / "recipients").mkdir()
    rows = ["email,first_name,last_name"] + [f"j{n}@example.com,Jo{n},Doe" for n in range(count)]
    (root / "recipients" / "desk.csv").write_text("\n".join(rows) + "\n", "utf-8")
    if front_matter:
        shutil.copy(ROOT / "releases" / "hydrogen.md", root / "hydrogen.md")
    else:
        (root / "hydrogen.md").write_text(PLAIN_RELEASE, "utf-8")
    campaign = root / "launch.toml"
    campaign.write_text(
        'name = "launch"\nrelease = "hydrogen.md"\n'
        '[[email]]\nname = "desk"\nlists = ["desk"]\nat = "2027-03-10 08:00"\n',
        encoding="utf-8",
    )
    return campaign


@pytest.fixture
def collector() -> Iterator[None]:
    """The collector as the test process had it: frozen objects are handed back after."""
    gc.unfreeze()
    yield
    gc.unfreeze()
    gc.enable()


def test_send_freezes_what_it_built_and_leaves_the_collector_on(
    workspace: Path, collector: None
) -> None:
    campaign = _dry_run_workspace(workspace)
    result = CliRunner().invoke(cli, ["send", str(campaign)])
    assert result.exit_code == 0, result.output
    assert gc.isenabled()
    # The modules, the drafts and the lists: out of the collector's walks while sending.
    assert gc.get_freeze_count() > 10_000


def test_a_send_that_fails_its_check_leaves_the_collector_on(
    workspace: Path, collector: None
) -> None:
    campaign = _dry_run_workspace(workspace)
    (workspace / "recipients" / "desk.csv").write_text("email\nnot-an-address\n", "utf-8")
    result = CliRunner().invoke(cli, ["send", str(campaign)])
    assert result.exit_code == 1
    assert gc.isenabled()
    assert gc.get_freeze_count() == 0


@pytest.mark.parametrize(
    ("rows", "code"), [("email\njo@example.org\n", 0), ("email\nnot-an-address\n", 1)]
)
def test_a_send_leaves_a_collector_that_was_off_off(
    workspace: Path, collector: None, rows: str, code: int
) -> None:
    campaign = _dry_run_workspace(workspace)
    (workspace / "recipients" / "desk.csv").write_text(rows, "utf-8")
    gc.disable()
    result = CliRunner().invoke(cli, ["send", str(campaign)])
    assert result.exit_code == code, result.output
    assert not gc.isenabled()


# A release as a PDF converter leaves it: no front matter.
PLAIN_RELEASE = """# Valmont Institute opens a hydrogen test bench

Forty companies will test electrolysers on site from spring 2027.

The bench runs on the campus in Valmont and is open to any company of the region.

## About Valmont Institute

Valmont Institute is a fictional engineering school.

Press contact: Jo Doe, press@example.org
"""


def test_a_send_after_a_dry_run_imports_only_what_it_uses(workspace: Path) -> None:
    """The dry run kept premailer's result: the send that follows reads it. Neither needs a
    progress bar off a terminal, nor PyYAML for a release without front matter."""
    campaign = _dry_run_workspace(workspace, front_matter=False)
    first = _run("send", str(campaign))
    assert first["code"] == 0
    assert isinstance(first["modules"], list) and "premailer" in first["modules"]
    again = _run("send", str(campaign))
    assert again["code"] == 0
    modules = again["modules"]
    assert isinstance(modules, list)
    unused = (
        "premailer",
        "cssutils",
        "requests",
        "yaml",
        "rich.progress",
        "tweepy",
        "twitter_text",
    )
    unused += ("apscheduler",)
    assert [m for m in modules if m.startswith(unused)] == []
    assert "jinja2" in modules and "sqlalchemy" in modules
