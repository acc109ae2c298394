"""The README is part of the product: its commands, options and settings must stay true."""

from __future__ import annotations

import re
from pathlib import Path

import click
import pytest

from distribute.cli import cli
from distribute.config import _SECTIONS

ROOT = Path(__file__).resolve().parents[1]
README = (ROOT / "README.md").read_text(encoding="utf-8")


def commands(group: click.Group, prefix: str = "distribute") -> list[tuple[str, click.Command]]:
    found: list[tuple[str, click.Command]] = []
    ctx = click.Context(group)
    for name in group.list_commands(ctx):
        command = group.get_command(ctx, name)
        assert command is not None, name
        path = f"{prefix} {name}"
        if isinstance(command, click.Group):
            found.extend(commands(command, path))
        else:
            found.append((path, command))
    return found


def quick_start() -> list[str]:
    section = README.split("## Quick start", 1)[1].split("\n## ", 1)[0]
    block = re.search(r"```sh\n(.*?)```", section, re.DOTALL)
    assert block, "Quick start needs one fenced sh block"
    return [line for line in block.group(1).splitlines() if line.strip()]


def test_quick_start_has_two_commands() -> None:
    assert README.startswith("# distribute\n")
    lines = quick_start()
    assert len(lines) == 2
    assert lines[0].endswith("distribute demo")
    assert "pip install -e ." in lines[0]
    assert 'pip install -e ".[test]"' in lines[1] and lines[1].endswith("pytest")


def test_ci_runs_the_readme_test_command() -> None:
    ci = (ROOT / ".ci" / "run").read_text(encoding="utf-8")
    test_command = quick_start()[1].rsplit("&&", 1)[1].strip()
    assert re.search(rf"^{re.escape(test_command)}$", ci, re.MULTILINE)
    assert 'pip install --quiet --disable-pip-version-check -e ".[test]"' in ci


@pytest.mark.parametrize(
    ("path", "command"), commands(cli), ids=[path for path, _ in commands(cli)]
)
def test_every_command_and_option_is_documented(path: str, command: click.Command) -> None:
    assert f"### `{path}" in README, f"no section for {path}"
    for param in command.params:
        if isinstance(param, click.Option):
            assert any(f"`{opt}" in README for opt in param.opts), f"{path} {param.opts}"


@pytest.mark.parametrize("section", sorted(_SECTIONS), ids=lambda s: s or "top")
def test_every_setting_is_documented(section: str) -> None:
    settings = README.split("## Settings", 1)[1].split("\n## ", 1)[0]
    if section:
        assert f"[{section}]" in settings
    for key in _SECTIONS[section]:
        if key not in _SECTIONS:
            assert re.search(rf"^{key} = ", settings, re.MULTILINE), f"[{section}] {key}"
