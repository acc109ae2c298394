"""A French release reads French: the templates' own words, their typography, the end mark."""

from __future__ import annotations

import email
import email.policy
import re
from pathlib import Path

import pytest
from click.testing import CliRunner

from distribute.cli import cli
from distribute.config import bundled
from distribute.render.email import LABELS, NBSP

DATA = Path(__file__).resolve().parent / "data" / "releases"
FRENCH = DATA / "plateforme-fr.md"
ENGLISH = Path(__file__).resolve().parents[1] / "releases" / "hydrogen.md"


def render(release: Path, out: str) -> tuple[str, str, str]:
    """(subject, HTML part, text part) of ``distribute render`` for a sample journalist."""
    result = CliRunner().invoke(cli, ["render", str(release), "--out", out])
    assert result.exit_code == 0, result.output
    folder = Path(out)
    message = email.message_from_bytes(
        (folder / "email.eml").read_bytes(), policy=email.policy.default
    )
    return (
        str(message["Subject"]),
        (folder / "email.html").read_text(encoding="utf-8"),
        (folder / "email.txt").read_text(encoding="utf-8"),
    )


def test_french_release_gets_french_words_typography_and_end_mark(workspace: Path) -> None:
    subject, html, text = render(FRENCH, "fr")
    assert subject == (
        f"SOUS EMBARGO jusqu’au 10 mars 2027 08:00 CET{NBSP}: "
        "L’Institut de Valmont ouvre une plateforme d’essais hydrogène"
    )
    for line in (
        f"Lire le communiqué en ligne{NBSP}:",
        "-fin-",
        f"Contact presse{NBSP}:",
        f"Suivez-nous sur X{NBSP}: @ValmontTech",
        f"Se désinscrire de ces communiqués{NBSP}:",
    ):
        assert line in text.splitlines(), line
    assert "###" not in text
    assert f"Suivez-nous sur X{NBSP}:" in html and "Contact presse</h2>" in html


def test_english_release_keeps_english_words_and_end_mark(workspace: Path) -> None:
    subject, _, text = render(ENGLISH, "en")
    assert subject.startswith("EMBARGOED until 10 March 2027 08:00 CET: ")
    for line in ("Read the release online:", "###", "Press contact:"):
        assert line in text.splitlines(), line
    assert "-fin-" not in text and NBSP not in text


def test_no_label_leaks_into_the_other_language(workspace: Path) -> None:
    emails = {"fr": render(FRENCH, "fr"), "en": render(ENGLISH, "en")}
    for language, other in (("fr", "en"), ("en", "fr")):
        subject, html, text = emails[language]
        for key, value in LABELS[other].items():
            words = value.split("{")[0].strip(f" :,{NBSP}")
            if key in {"colon", "hello", "dear"} or words == LABELS[language][key].split("{")[0]:
                continue  # punctuation, or a greeting filled in per journalist below
            for part in (subject, html, text):
                assert words not in part, (language, key, words)
    assert "Bonjour Jane," in emails["fr"][2] and "Dear Jane," in emails["en"][2]


def test_both_languages_have_every_label_the_templates_use() -> None:
    assert LABELS["en"].keys() == LABELS["fr"].keys()
    used: set[str] = set()
    for path in (bundled("templates") / "email").glob("*.j2"):
        source = path.read_text(encoding="utf-8")
        used |= set(re.findall(r"\bt\.(\w+)", source))
        # What the template prints itself, outside Jinja and markup: no words, only marks.
        bare = re.sub(r"\{#.*?#\}|\{%.*?%\}|\{\{.*?\}\}", " ", source, flags=re.DOTALL)
        if path.name.endswith(".html.j2"):
            bare = re.sub(r"<style>.*?</style>|<[^>]+>|&\w+;", " ", bare, flags=re.DOTALL)
        assert not re.search(r"[^\W\d_]", bare), (path.name, re.findall(r"[^\W\d_]+", bare))
    assert used <= LABELS["fr"].keys()


@pytest.mark.parametrize("key", sorted(LABELS["fr"]))
def test_french_labels_put_a_no_break_space_before_high_punctuation(key: str) -> None:
    value = LABELS["fr"][key]
    assert not re.search(rf"(?<!{NBSP})[:;!?»]", value), value
    assert not re.search(rf"«(?!{NBSP})", value), value
