"""Start-up: ``distribute --help`` loads the command modules but none of the heavy libraries."""

from __future__ import annotations

import json
import subprocess
import sys

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
