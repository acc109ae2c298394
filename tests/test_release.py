from __future__ import annotations

import codecs
import re
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from markupsafe import Markup

from distribute import release as release_module
from distribute.config import Settings
from distribute.errors import ReleaseError, TemplateError
from distribute.release import Block, Release, Section, load_release, parse_release
from distribute.render.email import draft_email


def test_seed_parses_as_is(seed_path: Path) -> None:
    release = load_release(seed_path)
    assert release.title == "Institut Mines-Télécom among the Top 50 patent applicants"
    assert release.subtitle is not None and release.subtitle.startswith("INPI has ranked IMT")
    assert release.lead is not None
    assert release.lead.text.startswith("Institut Mines-Télécom (IMT) puts its research")
    assert "**" not in release.lead.text
    assert [s.heading for s in release.sections] == [
        None,
        "Research partnerships, a key model for IMT",
        "Spreading innovation beyond collaboration with a third party",
    ]


def test_seed_split_quote_is_one_paragraph(seed_path: Path) -> None:
    release = load_release(seed_path)
    quotes = [b for b in release.body_blocks if b.kind == "quote"]
    assert len(quotes) == 1
    quote = quotes[0]
    assert quote.attribution is not None and quote.attribution.startswith("Christian Picory-Donné")
    assert "label. The growth of our research partnerships" in quote.text
    assert quote.text.endswith("industrial property assets.")
    # One italic run across the former page break, not two.
    assert str(quote.html).count("<em>") == 1
    assert "The growth of our research" in str(quote.html)


def test_seed_boilerplate_contact_handle(seed_path: Path) -> None:
    release = load_release(seed_path)
    assert release.boilerplate is not None
    assert release.boilerplate.heading == "About Institut Mines-Télécom"
    assert release.boilerplate.blocks[0].text.startswith("Institut Mines-Télécom is a public")
    assert release.website == "http://www.imt.fr/en"
    assert release.handle == "@IMTFrance"
    assert release.handle_url == "https://twitter.com/IMTFrance"
    assert release.contact_heading == "Press contact"
    assert len(release.contacts) == 1
    contact = release.contacts[0]
    assert contact.organisation == "Institut Mines-Télécom"
    assert contact.name and contact.phones and contact.emails
    assert len(contact.phones) == 2
    # The handle paragraph is not body text.
    assert all("@IMTFrance" not in b.text for b in release.body_blocks)


def test_sup_kept_in_html_plain_in_text(seed_path: Path) -> None:
    block = load_release(seed_path).sections[0].blocks[0]
    assert "21<sup>st</sup> century" in str(block.html)
    assert "21st century" in block.text
    assert "<sup>" not in block.text


def test_example_release_front_matter(example_path: Path) -> None:
    release = load_release(example_path)
    assert release.title.startswith("Valmont Institute opens a hydrogen test platform")
    assert release.embargo == datetime(2027, 3, 10, 7, 0, tzinfo=UTC)
    assert release.hashtags == ("#hydrogen", "#research", "#industry")
    assert release.url == "https://www.example.org/press/hydrogen-platform"
    assert release.summary and release.summary.startswith("The Valmont Institute")
    # The body's heading repeats the front matter title: not a section.
    assert release.sections[0].heading is None
    assert [b.kind for b in release.body_blocks].count("quote") == 1
    assert [b.kind for b in release.body_blocks].count("list") == 1
    assert release.handle == "@ValmontTech"
    assert release.contacts[0].emails == ("press@example.org",)


@pytest.mark.parametrize(
    ("before", "after", "joined"),
    [
        ('A: *"It is also a*', '*commitment to all."*', 'A: "It is also a commitment to all."'),
        (
            "Prose that stops at a",
            "page break and goes on.",
            "Prose that stops at a page break and",
        ),
    ],
    ids=["italic-quote", "plain-prose"],
)
def test_page_break_repair(before: str, after: str, joined: str) -> None:
    blocks = parse_release(f"# T\n\n{before}\n\n{after}\n").body_blocks
    assert len(blocks) == 1
    assert joined in blocks[0].text


def test_sentences_are_not_joined() -> None:
    release = parse_release("# T\n\nOne sentence ends here.\n\nanother starts lowercase.\n")
    assert len(release.body_blocks) == 2


def test_raw_html_other_than_sup_is_escaped() -> None:
    release = parse_release("# T\n\nHello <script>alert(1)</script> 1<sup>er</sup>\n")
    html = str(release.body_blocks[0].html)
    assert "<script>" not in html
    assert "&lt;script&gt;" in html
    assert "<sup>er</sup>" in html


def test_embargo_and_preheader() -> None:
    release = parse_release(
        "---\nembargo: 2027-03-10T08:00+01:00\nsummary: One line.\n---\n# Title\n\nBody.\n"
    )
    lift = datetime(2027, 3, 10, 7, 0, tzinfo=UTC)
    assert release.embargoed_at(lift - timedelta(seconds=1))
    assert not release.embargoed_at(lift)
    assert release.preheader == "One line."


@pytest.mark.parametrize(
    ("text", "line", "message"),
    [
        ("---\ntitle: [unclosed\n---\n# T\n", 2, "bad front matter"),
        ("---\ntitle: T\ntittle: T\n---\n", 3, "unknown front matter key 'tittle'"),
        ("---\nembargo: 2027-03-10 08:00\n---\n# T\n", 2, "needs a UTC offset"),
        ("---\nembargo: soon\n---\n# T\n", 2, "is not an ISO 8601 time"),
        ("---\nurl: www.example.org\n---\n# T\n", 2, "url must be a full http(s) address"),
        ("---\ntitle: T\nurl: httpx://example.org\n---\n", 3, "url must be a full http(s)"),
        ("---\nurl: https:example.org\n---\n# T\n", 2, "url must be a full http(s) address"),
        ("---\nimage: 'https:x.png'\n---\n# T\n", 2, "image must be a full http(s)"),
        ("---\ntitle: T\n", 1, "never closed"),
        ("---\n- a\n- b\n---\n# T\n", 2, "front matter must be 'key: value' lines"),
    ],
    ids=[
        "bad-yaml",
        "unknown-key",
        "naive-embargo",
        "bad-embargo",
        "bad-url",
        "url-scheme-like-http",
        "url-without-host",
        "image-without-host",
        "unclosed",
        "list",
    ],
)
def test_front_matter_errors(tmp_path: Path, text: str, line: int, message: str) -> None:
    path = tmp_path / "release.md"
    path.write_text(text, encoding="utf-8")
    with pytest.raises(ReleaseError) as info:
        load_release(path)
    assert info.value.line == line
    assert message in info.value.message
    assert info.value.format().startswith(f"{path}:{line}: ")


def test_missing_and_unreadable_release(tmp_path: Path) -> None:
    with pytest.raises(ReleaseError, match="release file not found"):
        load_release(tmp_path / "nope.md")
    latin = tmp_path / "latin.md"
    latin.write_bytes("# Télécom\n".encode("latin-1"))
    with pytest.raises(ReleaseError, match="is not UTF-8 text"):
        load_release(latin)


def test_no_headline() -> None:
    with pytest.raises(ReleaseError, match="no headline found"):
        parse_release("just a paragraph, no heading.\n")


def _contact_block(*lines: str) -> str:
    return "# T\n\nBody.\n\n**Press contact:**\n\n" + "\n\n".join(lines) + "\n"


def test_contact_only_mailto_links_are_emails() -> None:
    release = parse_release(
        _contact_block(
            "Jane Doe",
            "[example.org/jane](https://www.example.org/jane)",
            "[@valmont](https://mastodon.social/@valmont)",
            "[valmont@mastodon.social](https://mastodon.social/@valmont)",
            "[www.example.org/press](https://www.example.org/press)",
            "@valmont@mastodon.social",
            "[Write to us](MAILTO:press@example.org?subject=Hydrogen%20platform)",
            "[Broken](mailto:not-an-address)",
            "[John Roe](https://www.example.org/team/john)",
        )
    )
    assert [c.name for c in release.contacts] == ["Jane Doe", "John Roe"]
    assert release.contacts[0].emails == ("press@example.org",)
    assert release.contacts[1].emails == ()


@pytest.mark.parametrize(
    "href",
    ["mailto:press@example.org", "Mailto:press@example.org", "mailto:press@example.org?cc=x"],
)
def test_contact_mailto_any_case_without_query(href: str) -> None:
    release = parse_release(_contact_block("Jane Doe", f"[press@example.org]({href})"))
    assert release.contacts[0].emails == ("press@example.org",)


def test_profile_link_never_becomes_reply_to(settings: Settings) -> None:
    release = parse_release(
        _contact_block(
            "Jane Doe", "[Mastodon](https://mastodon.social/@valmont)", "+33 1 23 45 67 89"
        )
    )
    assert release.contacts[0].emails == ()
    draft = draft_email(release, settings, at=datetime(2027, 1, 1, tzinfo=UTC))
    assert draft.reply_to is None


def test_html_comments_are_dropped() -> None:
    release = parse_release(
        "<!-- brouillon v2 -->\n\n# T\n\nFirst paragraph.\n\n"
        "<!-- note interne : ne pas diffuser -->\n\n"
        "Second <!-- note interne --> paragraph.\n\n"
        "Third <!-- spread\nover two lines --> paragraph.\n\n"
        "- item <!-- hidden -->\n- other\n\n"
        "<!-- multi\nline\nblock -->\nAfter a comment.\n\n"
        "**Press contact:**\n\nJane Doe <!-- mobile only -->\n"
    )
    assert release.title == "T"
    everything = [str(b.html) + b.text for b in release.body_blocks]
    assert not any("note" in part or "hidden" in part or "&lt;!--" in part for part in everything)
    assert [b.text for b in release.body_blocks] == [
        "First paragraph.",
        "Second paragraph.",
        "Third paragraph.",
        "- item\n- other",
        "After a comment.",
    ]
    assert "<!--" not in str(release.body_blocks[3].html)
    assert release.contacts[0].name == "Jane Doe"


@pytest.mark.parametrize("about", ["**About the Valmont Institute**", "## About Valmont"])
def test_an_about_heading_ends_the_contact_block(about: str) -> None:
    """Before: the boilerplate became a contact named after its first sentence."""
    release = parse_release(
        _contact_block("Claire Dumont, claire@example.org")
        + f"\n{about}\n\nThe institute is a fictional school.\n"
    )
    assert [(c.name, c.emails) for c in release.contacts] == [
        ("Claire Dumont", ("claire@example.org",))
    ]
    assert release.boilerplate is not None
    assert [b.text for b in release.boilerplate.blocks] == ["The institute is a fictional school."]


def test_a_markdown_heading_ends_the_contact_block() -> None:
    """Before: every section after a contact line in the body became a contact."""
    release = parse_release(
        "# T\n\nBody.\n\nMedia contact: Claire Dumont, claire@example.org\n\n"
        "### Second section\n\nA paragraph that must not vanish.\n\nAnother one.\n"
    )
    assert [(c.name, c.emails) for c in release.contacts] == [
        ("Claire Dumont", ("claire@example.org",))
    ]
    assert [(s.heading, [b.text for b in s.blocks]) for s in release.sections] == [
        (None, ["Body."]),
        ("Second section", ["A paragraph that must not vanish.", "Another one."]),
    ]


def test_body_kept_when_contact_block_follows_without_about() -> None:
    release = parse_release(_contact_block("Jane Doe"))
    assert [b.text for b in release.body_blocks] == ["Body."]
    assert release.contacts[0].name == "Jane Doe"


@pytest.mark.parametrize(
    "line",
    [
        "Jane Smith, Head of Press – +44 20 7946 0000 – jane.smith@example.org",
        "Jane Smith, Head of Press - +44 20 7946 0000 - jane.smith@example.org",
        "Jane Smith | Head of Press | +44 20 7946 0000 | "
        "[jane.smith@example.org](mailto:jane.smith@example.org)",
        "Jane Smith / Head of Press / Tel.: +44 20 7946 0000 / Email: jane.smith@example.org",
    ],
    ids=["en-dash", "hyphen", "pipe-mailto", "slash-labels"],
)
def test_contact_line_holding_several_things(line: str) -> None:
    (contact,) = parse_release(_contact_block(line)).contacts
    assert contact.name == "Jane Smith"
    assert contact.role == "Head of Press"
    assert contact.phones == ("+44 20 7946 0000",)
    assert contact.emails == ("jane.smith@example.org",)


def test_contact_bullet_list_gives_one_contact_per_person() -> None:
    release = parse_release(
        _contact_block(
            "**Valmont Institute**",
            "- Jane Doe, +33 1 23 45 67 89, jane@example.org\n- John Roe, john@example.org",
        )
    )
    assert [(c.name, c.organisation, c.phones, c.emails) for c in release.contacts] == [
        ("Jane Doe", "Valmont Institute", ("+33 1 23 45 67 89",), ("jane@example.org",)),
        ("John Roe", "Valmont Institute", (), ("john@example.org",)),
    ]


def test_contact_people_on_one_line_and_autolinks() -> None:
    release = parse_release(
        _contact_block(
            "Jane Doe, jane@example.org, John Roe, +33 6 00 00 00 00",
            "Ann Poe <ann@example.org>",
            "Fax : +33 1 00 00 00 01",
        )
    )
    assert [(c.name, c.phones, c.emails) for c in release.contacts] == [
        ("Jane Doe", (), ("jane@example.org",)),
        ("John Roe", ("+33 6 00 00 00 00",), ()),
        ("Ann Poe", (), ("ann@example.org",)),
    ]


KICKER_FR = Path(__file__).parent / "data" / "releases" / "kicker-fr.md"


@pytest.mark.parametrize(
    "kicker",
    [
        "**Communiqué de presse**",
        "**COMMUNIQUÉ DE PRESSE**",
        "**Press release**",
        "**PRESS RELEASE – FOR IMMEDIATE RELEASE**",
        "**Pour diffusion immédiate**",
        "Press release",
    ],
)
def test_kicker_before_the_headline_is_dropped(kicker: str) -> None:
    release = parse_release(f"{kicker}\n\n# The real headline\n\nBody text.\n")
    assert release.title == "The real headline"
    assert release.lead is None
    assert [b.text for b in release.body_blocks] == ["Body text."]


def test_kicker_before_a_repeated_front_matter_title() -> None:
    release = parse_release(
        "---\ntitle: The real headline\n---\n**Press release**\n\n# The real headline\n\nBody.\n"
    )
    assert release.title == "The real headline"
    assert release.lead is None and release.sections[0].heading is None
    assert [b.text for b in release.body_blocks] == ["Body."]


def test_other_bold_line_before_the_headline_stays_as_lead() -> None:
    release = parse_release("**Valmont, 3 March 2027**\n\n# The real headline\n\nBody text.\n")
    assert release.title == "The real headline"
    assert release.lead is not None and release.lead.text == "Valmont, 3 March 2027"
    assert [b.text for b in release.body_blocks] == ["Body text."]


def test_bold_headline_above_section_headings_stays_the_headline() -> None:
    release = parse_release(
        "**Big news**\n\nOpening paragraph.\n\n## First part\n\nOne.\n\n## Second part\n\nTwo.\n"
    )
    assert release.title == "Big news"
    assert [s.heading for s in release.sections] == [None, "First part", "Second part"]


def test_french_release_with_kicker_comment_and_contact_list() -> None:
    release = load_release(KICKER_FR)
    assert release.title == "L'Institut de Valmont ouvre une plateforme d'essais hydrogène"
    assert release.subtitle is not None and release.subtitle.startswith("Quarante entreprises")
    assert release.lead is not None and release.lead.text.startswith("L'Institut de Valmont")
    assert [s.heading for s in release.sections] == [None, "Un pont entre laboratoire et usine"]
    assert all("note" not in b.text and "COMMUNIQUÉ" not in b.text for b in release.body_blocks)
    assert release.boilerplate is not None
    assert release.contact_heading == "Contacts presse"
    assert [(c.name, c.role, c.phones, c.emails) for c in release.contacts] == [
        (
            "Claire Dumont",
            "responsable presse",
            ("+33 1 00 00 00 00",),
            ("claire.dumont@example.org",),
        ),
        ("Marc Petit", None, ("+33 6 00 00 00 00",), ("marc.petit@example.org",)),
    ]
    assert {c.organisation for c in release.contacts} == {"Institut de Valmont"}


def test_plain_line_above_the_headline_is_kept() -> None:
    release = parse_release("Valmont, 3 March 2027\n\n# The real headline\n\nBody text.\n")
    assert release.title == "The real headline"
    assert [b.text for b in release.body_blocks] == ["Valmont, 3 March 2027", "Body text."]


@pytest.mark.parametrize("word", ["yes", "No", "on", "OFF", "true"])
def test_yaml_1_1_booleans_stay_text(word: str) -> None:
    release = parse_release(
        f"---\ntitle: {word}\nsubtitle: {word}\nhashtags: [{word}, hydrogen]\n---\nBody.\n"
    )
    assert release.title == word
    assert release.subtitle == word
    assert release.hashtags == (f"#{word}", "#hydrogen")


@pytest.mark.parametrize(
    ("text", "line"),
    [
        ('---\ntitle: ""\n---\n# T\n', 2),
        ("---\ndate: 2027-03-10\ntitle: '   '\n---\n# T\n", 3),
        ("---\ntitle:\n---\n# T\n", 2),
        ("---\ndate: 2027-03-10\n---\n#\n\nBody.\n", 4),
        ("Intro line.\n\n# **  **\n\nBody.\n", 3),
    ],
    ids=["empty", "blank", "null", "empty-heading", "blank-bold-heading"],
)
def test_empty_title_is_an_error(tmp_path: Path, text: str, line: int) -> None:
    path = tmp_path / "release.md"
    path.write_text(text, encoding="utf-8")
    with pytest.raises(ReleaseError, match="title is empty") as info:
        load_release(path)
    assert info.value.line == line
    assert info.value.format().startswith(f"{path}:{line}: ")


TABLE_RELEASE = (
    "# T\n\nIntro.\n\n"
    "| Year | Patents |\n"
    "| --- | ---: |\n"
    "| 2020 | **33** |\n"
    "| 2021 <script>x</script> | [40](https://www.example.org/2021) |\n"
)


def test_pipe_table_is_a_table_block() -> None:
    blocks = parse_release(TABLE_RELEASE).body_blocks
    assert [b.kind for b in blocks] == ["paragraph", "table"]
    table = blocks[1]
    assert table.text == "Year | Patents\n2020 | 33\n2021 x | 40"
    html = str(table.html)
    assert html.startswith('<table role="table" cellpadding="6" border="1">')
    assert "<th>Year</th>" in html
    assert '<td align="right"><strong>33</strong></td>' in html
    assert "<script>" not in html and "&lt;script&gt;" in html
    assert "| ---" not in html
    assert table.urls == ("https://www.example.org/2021",)


def test_table_in_the_email(settings: Settings) -> None:
    draft = draft_email(parse_release(TABLE_RELEASE), settings, at=datetime(2027, 1, 1, tzinfo=UTC))
    assert '<table role="table" cellpadding="6" border="1"' in draft.html
    assert "<p><table" not in draft.html
    assert "Year | Patents\n2020 | 33\n2021 x | 40\n" in draft.text


SCRIPT_DIGITS = {"sup": "⁰¹²³⁴⁵⁶⁷⁸⁹", "sub": "₀₁₂₃₄₅₆₇₈₉"}


@settings(deadline=None, max_examples=50)
@given(st.sampled_from(["sup", "sub"]), st.text(alphabet="0123456789", min_size=1, max_size=6))
def test_script_digits_read_as_unicode_in_the_text_part(tag: str, digits: str) -> None:
    block = parse_release(f"# T\n\nA m<{tag}>{digits}</{tag}> hall.\n").body_blocks[0]
    expected = "".join(SCRIPT_DIGITS[tag][int(d)] for d in digits)
    assert block.text == f"A m{expected} hall."
    assert f"<{tag}>{digits}</{tag}>" in str(block.html)


@settings(deadline=None, max_examples=50)
@given(
    st.text(alphabet="abcdefghijklmnopqrstuvwxyz0123456789", min_size=1, max_size=6).filter(
        lambda word: not word.isdigit()
    )
)
def test_script_with_letters_stays_as_written_in_the_text_part(word: str) -> None:
    block = parse_release(f"# T\n\nThe 21<sup>{word}</sup> century.\n").body_blocks[0]
    assert block.text == f"The 21{word} century."


def test_release_over_the_size_limit_is_refused(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    assert release_module.MAX_RELEASE_BYTES == 2 * 1024 * 1024
    monkeypatch.setattr(release_module, "MAX_RELEASE_BYTES", 2000)
    path = tmp_path / "release.md"
    body = "# A fictional headline\n\n"
    path.write_text(body + "x" * (2000 - len(body)), encoding="utf-8")
    assert load_release(path).title == "A fictional headline"
    path.write_text(body + "x" * (2001 - len(body)), encoding="utf-8")
    with pytest.raises(ReleaseError) as info:
        load_release(path)
    assert info.value.format() == (
        f"{path}: the release is 2,001 bytes; a release may be at most 0 MB (2,000 bytes) "
        "of Markdown"
    )
    # Bytes, not characters: 1,000 "é" are 2,000 bytes of UTF-8.
    with pytest.raises(ReleaseError, match="the release is 2,0"):
        parse_release(body + "é" * 1000)


def _reference_repair(blocks: list[Any]) -> list[tuple[str, str]]:
    """The page-break repair as first written: joining into one growing string."""
    out: list[Any] = []
    for block in blocks:
        previous = out[-1] if out else None
        if (
            previous is not None
            and previous.kind == block.kind == "paragraph"
            and not release_module._ends_sentence(previous.source)
            and release_module._starts_lower(block.source)
            and not release_module._WHOLLY_BOLD.match(previous.source)
        ):
            left, right = previous.source.rstrip(), block.source.lstrip()
            italic_left = left.endswith("*") and not left.endswith("**")
            if italic_left and right.startswith("*") and not right.startswith("**"):
                left, right = left[:-1].rstrip(), right[1:].lstrip()
            previous.source = f"{left} {right}"
            continue
        out.append(replace(block))
    return [(raw.kind, raw.source) for raw in out]


_PIECE = st.text(alphabet="ab *_.:\n", min_size=1, max_size=8)


@settings(max_examples=500, deadline=None)
@given(st.lists(st.tuples(st.sampled_from(["paragraph", "heading"]), _PIECE), max_size=12))
def test_linear_page_break_repair_joins_as_before(pieces: list[tuple[str, str]]) -> None:
    def blocks() -> list[Any]:
        return [
            release_module._Raw(kind, source, line) for line, (kind, source) in enumerate(pieces)
        ]

    repaired = release_module._repair_page_breaks(blocks())
    assert [(raw.kind, raw.source) for raw in repaired] == _reference_repair(blocks())


def test_page_break_repair_reads_each_piece_a_bounded_number_of_times(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Joining a paragraph split n times reads O(n) text, not O(n²): the work is counted."""
    read = [0]

    def counting(function: Any) -> Any:
        def wrapper(text: str) -> Any:
            read[0] += len(text)
            return function(text)

        return wrapper

    class CountingPattern:
        def __init__(self, pattern: re.Pattern[str]) -> None:
            self.pattern = pattern

        def match(self, text: str) -> re.Match[str] | None:
            read[0] += len(text)
            return self.pattern.match(text)

        def search(self, text: str) -> re.Match[str] | None:
            read[0] += len(text)
            return self.pattern.search(text)

    for name in ("_ends_sentence", "_starts_lower"):
        monkeypatch.setattr(release_module, name, counting(getattr(release_module, name)))
    for name in ("_WHOLLY_BOLD", "_BOLD_END"):
        if hasattr(release_module, name):
            monkeypatch.setattr(
                release_module, name, CountingPattern(getattr(release_module, name))
            )

    def work(splits: int) -> int:
        read[0] = 0
        blocks = [release_module._Raw("paragraph", "**Bold start and", 1)] + [
            release_module._Raw("paragraph", f"more words {n} and", n + 2) for n in range(splits)
        ]
        repaired = release_module._repair_page_breaks(blocks)
        assert len(repaired) == 1
        return read[0]

    size = sum(len(f"more words {n} and") for n in range(4000))
    assert work(4000) < 4 * size
    # Four times the pieces is four times the reading (sixteen if it were quadratic).
    assert work(4000) < 5 * work(1000)


def test_html_part_that_lost_its_body_is_refused(settings: Settings) -> None:
    # Over 10 MB in one text node, libxml2 (under premailer) drops the rest of the page.
    words = "word " * 2_100_000
    lead = Block("paragraph", Markup(words), words)
    release = Release(title="A fictional launch", sections=(Section(None, (lead,)),))
    with pytest.raises(TemplateError) as info:
        draft_email(release, settings, at=datetime(2027, 3, 1, tzinfo=UTC))
    assert info.value.message == (
        "inlining the CSS lost the email's text from 'word word word word word word word word "
        "word word word word ' on; nothing was written"
    )
    assert str(info.value.path).endswith("press-release.html.j2")


def test_web_link_in_capitals_is_kept_in_the_text_part() -> None:
    block = parse_release("# T\n\nSee [the page](HTTPS://WWW.EXAMPLE.ORG/A).\n").body_blocks[0]
    assert block.urls == ("HTTPS://WWW.EXAMPLE.ORG/A",)


def test_a_release_at_the_limit_with_a_byte_order_mark_is_read(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The limit is on the Markdown: the three bytes of a BOM an editor adds do not count."""
    monkeypatch.setattr(release_module, "MAX_RELEASE_BYTES", 2000)
    path = tmp_path / "release.md"
    body = "# A fictional headline\n\n"
    path.write_bytes(codecs.BOM_UTF8 + (body + "é" * ((2000 - len(body)) // 2)).encode())
    assert path.stat().st_size == 2003
    assert load_release(path).title == "A fictional headline"


def test_a_campaign_refuses_a_huge_release_before_reading_it(
    workspace: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A campaign naming a video by mistake: refused from its size, never loaded into memory."""
    from click.testing import CliRunner

    from distribute.cli import cli

    huge = workspace / "film.md"
    with huge.open("wb") as sparse:
        sparse.truncate(8 * 1024**3)  # no disk used: a sparse file
    (workspace / "launch.toml").write_text(
        'release = "film.md"\n[[email]]\nname = "desk"\nlists = ["science-press"]\n'
        'at = "2027-03-10 08:00"\n',
        encoding="utf-8",
    )
    read = Path.read_bytes

    def guarded(self: Path) -> bytes:
        assert self.name != huge.name, "the huge release was read"
        return read(self)

    monkeypatch.setattr(Path, "read_bytes", guarded)
    result = CliRunner().invoke(cli, ["send", "launch.toml"])
    assert (result.exit_code, result.stdout) == (1, "")
    assert result.stderr == (
        "Error: film.md: the release is 8,589,934,592 bytes; a release may be at most 2 MB "
        "(2,097,152 bytes) of Markdown\n"
    )
