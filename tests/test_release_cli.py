"""How a release's structure reaches the journalist, read through ``distribute render``."""

from __future__ import annotations

import email
import email.policy
import json
from pathlib import Path

import pytest
from click.testing import CliRunner

from distribute.cli import cli

URL = "https://www.example.org/press/hall"


def render(workspace: Path, source: str) -> tuple[str, str, str, list[str]]:
    """Render ``source``; (stdout, text part, Reply-To, post parts)."""
    (workspace / "release.md").write_text(source, encoding="utf-8")
    result = CliRunner().invoke(cli, ["render", "release.md", "--out", "out", "--url", URL])
    assert result.exit_code == 0, result.stderr
    out = workspace / "out"
    message = email.message_from_bytes(
        (out / "email.eml").read_bytes(), policy=email.policy.default
    )
    posts = json.loads((out / "posts" / "x.json").read_text(encoding="utf-8"))
    return (
        result.stdout,
        (out / "email.txt").read_text(encoding="utf-8"),
        str(message["Reply-To"] or ""),
        [part["text"] for part in posts["parts"]],
    )


@pytest.mark.parametrize(
    "opening",
    [
        "Media contact: Jane Smith, Head of Press, +44 20 0000 0000, jane@example.org",
        "**Media contact:** Jane Smith, Head of Press, +44 20 0000 0000, jane@example.org",
        "Media contact:\nJane Smith, Head of Press\n+44 20 0000 0000\njane@example.org",
        "Press contacts:\n\nJane Smith, Head of Press, +44 20 0000 0000, jane@example.org",
        "Media enquiries: Jane Smith, Head of Press, +44 20 0000 0000, jane@example.org",
        "**Contact presse :**\n\nJane Smith, Head of Press, +44 20 0000 0000, jane@example.org",
        "Contacts presse : Jane Smith, Head of Press, +44 20 0000 0000, jane@example.org",
    ],
    ids=["inline", "bold-inline", "lines", "press-contacts", "enquiries", "fr-bold", "fr-inline"],
)
def test_contact_block_opens_on_every_usual_label(workspace: Path, opening: str) -> None:
    _, text, reply_to, _ = render(workspace, f"# Big hall opens\n\nThe hall opens.\n\n{opening}\n")
    body, _, end = text.partition("\n###\n")
    assert "jane@example.org" not in body  # not a paragraph of the release
    label = opening.split(":")[0].strip("* ").rstrip()
    assert f"{label}:\nJane Smith, Head of Press\n+44 20 0000 0000\njane@example.org\n" in end
    assert reply_to == "jane@example.org"


def test_a_longer_first_heading_than_the_title_is_left_out_with_a_warning(
    workspace: Path,
) -> None:
    source = (
        "---\ntitle: Big hall opens\n---\n"
        "# The Valmont Institute opens its big test hall to regional companies\n\nThe hall opens.\n"
    )
    out, text, _, posts = render(workspace, source)
    assert (
        "Warning: release.md:4: the heading 'The Valmont Institute opens its big test hall to "
        "regional companies' is not the front matter's title 'Big hall opens'; the title is "
        "the headline and the heading is left out\n"
    ) in out
    assert "regional companies" not in text
    assert posts == [f"Big hall opens.\n{URL}"]


def test_a_shorter_first_heading_is_the_subtitle_and_reads_as_its_own_sentence(
    workspace: Path,
) -> None:
    source = (
        "---\ntitle: The Valmont Institute opens its big test hall\n---\n# For industry\n\nOk.\n"
    )
    out, text, _, posts = render(workspace, source)
    assert "Warning: release.md" not in out
    assert "The Valmont Institute opens its big test hall\n" in text
    assert "\nFor industry\n" in text
    assert posts == [f"The Valmont Institute opens its big test hall. For industry.\n{URL}"]


def test_a_numbered_list_stays_numbered_in_the_text_part(workspace: Path) -> None:
    source = (
        "# Big hall opens\n\nNext steps:\n\n"
        "1. Open a second bench.\n1. Publish the data:\n   - yields\n   - ageing\n1. Train.\n\n"
        "Then:\n\n3) Three\n4) Four\n"
    )
    _, text, _, _ = render(workspace, source)
    assert (
        "1. Open a second bench.\n2. Publish the data:\n   - yields\n   - ageing\n3. Train.\n"
    ) in text
    assert "3. Three\n4. Four\n" in text


def test_superscripts_become_unicode_and_the_headline_keeps_its_case(workspace: Path) -> None:
    source = (
        "# A 1,200 m<sup>2</sup> hall cuts CO<sub>2</sub> by 10<sup>3</sup> t\n\n"
        "**The hall covers 1,200 m<sup>2</sup> in the 21<sup>st</sup> century.**\n\nMore.\n"
    )
    _, text, _, _ = render(workspace, source)
    assert "A 1,200 m² hall cuts CO₂ by 10³ t\n=====" in text
    assert "The hall covers 1,200 m² in the 21st century." in text
    assert "M²" not in text and "<sup>" not in text
