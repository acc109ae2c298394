"""Journalist lists: reading, validation, deduplication, suppression and filters."""

from __future__ import annotations

import csv
import tempfile
import unicodedata
from datetime import date
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from distribute import config, recipients
from distribute.config import load_settings
from distribute.errors import RecipientError
from distribute.recipients import (
    Problem,
    Recipient,
    add_suppression,
    clean_text,
    filter_recipients,
    list_names,
    load_audience,
    load_suppressions,
    read_lists,
    recipients_dir,
)

DATA = Path(__file__).parent / "data" / "lists"
HEADER = "email,first_name,last_name,outlet,language,timezone,tags\n"
EXPECTED = (
    "expected columns: email (or E-mail, Email Address, Courriel, Adresse e-mail), first_name "
    "(Prénom, First Name), last_name (Nom, Last Name), name, outlet (Média), beat (Rubrique), "
    "language (Langue), timezone, tags"
)
HINT = (
    "`distribute recipients check` shows them all; "
    "`distribute send --skip-invalid` sends to the valid rows and lists the others."
)


def write(folder: Path, name: str, text: str, *, encoding: str = "utf-8") -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / name
    path.write_bytes(text.encode(encoding))
    return path


def emails(people: list[Recipient]) -> list[str]:
    return [person.email for person in people]


# --- reading -------------------------------------------------------------------------------


def test_excel_file_loads_with_right_values() -> None:
    """UTF-8 BOM, ';', CRLF, a quoted field holding ';', header in odd case and spacing."""
    audience = read_lists([DATA / "excel-fr.csv"], set())

    assert audience.problems == []
    camille, jean = audience.recipients
    assert camille == Recipient(
        email="camille.roche@example.org",
        first_name="Camille",
        last_name="Roche",
        outlet="Sciences; Avenir",
        language="fr",
        timezone="Europe/Paris",
        tags=("sciences", "régional"),
        extra={"téléphone": "+33 1 23 45 67 89"},
        list_name="excel-fr",
        line=2,
    )
    # The address is sent as written, only trimmed; the blank line 3 is skipped.
    assert (jean.email, jean.line, jean.tags, jean.timezone) == (
        "Jean.Martin@Example.com",
        4,
        ("tech", "ia"),
        "",
    )
    assert jean.extra == {"téléphone": ""}


@pytest.mark.parametrize(
    ("delimiter", "newline"),
    [(",", "\n"), (";", "\n"), ("\t", "\n"), (",", "\r\n"), (";", "\r\n"), ("\t", "\r\n")],
    ids=["comma-lf", "semicolon-lf", "tab-lf", "comma-crlf", "semicolon-crlf", "tab-crlf"],
)
@pytest.mark.parametrize("bom", ["", "\ufeff"], ids=["no-bom", "bom"])
def test_delimiters_line_endings_and_bom(
    tmp_path: Path, delimiter: str, newline: str, bom: str
) -> None:
    rows = [
        ["email", "name", "outlet"],
        ["a@example.org", "Ann Lee", '"Lee, Lee; and\tLee"'],
        ["b@example.org", "Bo", "Wire"],
    ]
    text = bom + newline.join(delimiter.join(row) for row in rows) + newline
    path = write(tmp_path, "list.csv", text)

    audience = read_lists([path], set())

    assert [(r.email, r.name, r.outlet, r.line) for r in audience.recipients] == [
        ("a@example.org", "Ann Lee", "Lee, Lee; and Lee", 2),
        ("b@example.org", "Bo", "Wire", 3),
    ]


def test_line_numbers_count_physical_lines(tmp_path: Path) -> None:
    """A record's line is where it starts, after blank lines and multi-line quoted fields."""
    text = (
        "\n"  # 1: blank before the header
        f"{HEADER}"  # 2
        'a@example.org,"Ann\nMarie",Lee,,,,\n'  # 3-4
        "\n"  # 5
        ",,,,,,\n"  # 6: empty cells only, a blank row for a spreadsheet
        "bad@,,,,,,\n"  # 7
        'b@example.org,Bo,"Multi\r\nline\r\nsurname",,,,\n'  # 8-10
        "c@example.org,Cy,,,,,\n"  # 11
    )
    path = write(tmp_path, "list.csv", text)

    audience = read_lists([path], set())

    assert [(r.email, r.line) for r in audience.recipients] == [
        ("a@example.org", 3),
        ("b@example.org", 8),
        ("c@example.org", 11),
    ]
    assert [(p.line, p.email) for p in audience.problems] == [(7, "bad@")]
    assert audience.lists[0].rows == 4


def test_excel_sep_line_sets_the_delimiter(tmp_path: Path) -> None:
    path = write(tmp_path, "list.csv", "sep=;\nemail;name\na@example.org;Lee, Ann\n")

    (ann,) = read_lists([path], set()).recipients

    assert (ann.name, ann.line) == ("Lee, Ann", 3)


def test_headers_match_case_and_spaces_and_extra_columns_are_kept(tmp_path: Path) -> None:
    text = " EMAIL , First-Name ,Beat,Desk Phone,Language\na@example.org,Ann,AI,+33 1,EN\n"
    path = write(tmp_path, "list.csv", text)

    (ann,) = read_lists([path], set()).recipients

    assert (ann.first_name, ann.beat, ann.language) == ("Ann", "AI", "en")
    assert dict(ann.extra) == {"desk_phone": "+33 1"}


def test_not_utf8_names_the_file(tmp_path: Path) -> None:
    path = write(tmp_path, "latin.csv", "email,name\nh@example.org,Hélène\n", encoding="latin-1")

    with pytest.raises(RecipientError) as caught:
        read_lists([path], set())

    assert caught.value.format() == (
        f"{path}:2: is not UTF-8 text: save it as CSV UTF-8 "
        "(Excel: File > Save As > 'CSV UTF-8 (Comma delimited)')"
    )


@pytest.mark.parametrize("encoding", ["utf-16", "utf-16-le", "utf-16-be"])
@pytest.mark.parametrize("name", ["desk.csv", "suppressed.csv"])
def test_utf16_is_named_as_such(tmp_path: Path, encoding: str, name: str) -> None:
    """Excel's "Unicode Text" is UTF-16: before, without a BOM it read as a header of
    'e\\x00m\\x00a\\x00i\\x00l\\x00', "no email column"."""
    path = write(tmp_path, name, "email,name\nh@example.org,Hélène\n", encoding=encoding)

    with pytest.raises(RecipientError) as caught:
        if name == "desk.csv":
            read_lists([path], set())
        else:
            recipients.load_suppressions(tmp_path)

    assert caught.value.format() == (
        f"{path}:1: is UTF-16 text, not UTF-8: save it as CSV UTF-8 "
        "(Excel: File > Save As > 'CSV UTF-8 (Comma delimited)')"
    )


def test_not_utf8_names_the_line_far_into_a_large_file(tmp_path: Path) -> None:
    path = tmp_path / "big.csv"
    path.write_bytes(b"email\n" + b"a@example.org\n" * 300_000 + b"h\xe9l@example.org\n")

    with pytest.raises(RecipientError) as caught:
        read_lists([path], set())

    assert caught.value.line == 300_002


@pytest.mark.parametrize(
    ("text", "message"),
    [
        (
            "name,outlet\nAnn,Wire\n",
            f"1: no email column in the header line (found: 'name', 'outlet'); {EXPECTED}",
        ),
        ("", "1: the file is empty: it needs a header line with an email column"),
        ("\n\ncontact\n", f"3: no email column in the header line (found: 'contact'); {EXPECTED}"),
        (
            "email,Email\n",
            "1: columns 'email' and 'Email' are both read as the email column: "
            "keep one, or rename the other",
        ),
        (
            "Email,Prénom,E-mail\n",
            "1: columns 'Email' and 'E-mail' are both read as the email "
            "column: keep one, or rename the other",
        ),
        (
            "email,Nom,Last Name\n",
            "1: columns 'Nom' and 'Last Name' are both read as the "
            "last_name column: keep one, or rename the other",
        ),
    ],
    ids=["no-email-column", "empty-file", "after-blank-lines", "twice", "two-spellings", "nom"],
)
def test_bad_header(tmp_path: Path, text: str, message: str) -> None:
    path = write(tmp_path, "list.csv", text)

    with pytest.raises(RecipientError) as caught:
        read_lists([path], set())

    assert caught.value.format() == f"{path}:{message}"


def test_missing_file(tmp_path: Path) -> None:
    with pytest.raises(RecipientError, match=r"nope\.csv: file not found$"):
        read_lists([tmp_path / "nope.csv"], set())


def test_loading_streams_rows(tmp_path: Path) -> None:
    """The first row comes out before the end of a large file has even been decoded."""
    head = HEADER + "a@example.org,Ann,,,,,\n" + "b@example.org,Bo,,,,,\n" * 20_000
    path = tmp_path / "big.csv"
    path.write_bytes(head.encode() + b"c@example.org,H\xe9l\xe8ne,,,,,\n")

    rows = recipients._read_list(path, recipients.ListStats("big", path))

    assert next(rows) == Recipient(email="a@example.org", first_name="Ann", list_name="big", line=2)
    with pytest.raises(RecipientError, match="is not UTF-8 text"):
        list(rows)


def test_a_loaded_list_holds_each_value_once(tmp_path: Path) -> None:
    """An address already in its normal form is its own key, and the values that repeat
    down a list are one string: a large list costs its recipients and little more."""
    rows = "".join(f"j{n}@example.org,Jo,Doe,Daily News,en,Europe/Paris,a;b\n" for n in range(300))
    path = write(tmp_path, "big.csv", HEADER + rows + "Mixed@Example.ORG,Mo,,Daily News,,,\n")

    audience = read_lists([path], set())

    *plain, mixed = audience.recipients
    assert len(plain) == 300
    assert all(r.key is r.email for r in plain)
    assert mixed.key == "mixed@example.org"
    for name in ("outlet", "language", "timezone", "tags"):
        assert len({id(getattr(r, name)) for r in plain}) == 1, name
    assert mixed.outlet is plain[0].outlet


def test_recipients_by_key_reuse_the_dictionary_reading_built(tmp_path: Path) -> None:
    """The send finds each recipient by key; a large list is not indexed twice for it."""
    rows = "A@example.org,Ann,,,,,x\nb@example.org,Bo,,,,,y\nc@example.org,Cy,,,,,x\n"
    path = write(tmp_path, "desk.csv", HEADER + rows + "gone@example.org,Go,,,,,x\n")

    audience = read_lists([path], {"gone@example.org"})

    assert audience.by_key() is audience.read_by_key
    assert audience.by_key() == {r.key: r for r in audience.recipients}
    assert [r.key for r in audience.suppressed] == ["gone@example.org"]
    audience.recipients = filter_recipients(audience.recipients, tags=["x"])
    assert audience.by_key() == {r.key: r for r in audience.recipients}
    assert sorted(audience.by_key()) == ["a@example.org", "c@example.org"]


@pytest.mark.parametrize(
    ("text", "line"),
    [
        ('email,first_name\na@example.org,"Amélie\nb@example.org,Bob\nc@example.org,Chloé\n', 2),
        ('email,first_name\r\na@example.org,Ann\r\n\r\nb@example.org,"Bo', 4),
        ('email,outlet,note\na@example.org,"Wire\nDesk","one\ntwo\nb@example.org,Bo\n', 3),
        ('email,first_name\n"a@example.org\n', 2),
        ('email,"first_name\na@example.org,Ann\n', 1),
    ],
    ids=["middle", "last-line-no-newline", "after-a-multiline-field", "email", "header"],
)
def test_a_quote_never_closed_refuses_the_file(tmp_path: Path, text: str, line: int) -> None:
    """Everything after the quote would be one field: the rows in it are never mailed."""
    path = write(tmp_path, "list.csv", text)

    with pytest.raises(RecipientError) as caught:
        read_lists([path], set())

    assert caught.value.format() == f"{path}:{line}: a quote opened on this line is never closed"


def test_a_quote_never_closed_in_the_suppression_list_refuses_it(tmp_path: Path) -> None:
    write(tmp_path, "suppressed.csv", 'email,reason\na@example.org,"asked\nb@example.org,x\n')

    with pytest.raises(RecipientError, match=r"suppressed\.csv:2: a quote opened on this line"):
        load_suppressions(tmp_path)


@pytest.mark.parametrize(
    ("text", "near"),
    [
        # The stray quote after Amélie is closed by the one before Chloé.
        (
            'email,first_name,outlet\na@example.org,"Amélie,Wire\n'
            'b@example.org,Bob,Wire\nc@example.org,"Chloé",Wire\nz@example.org,Zoe,Wire\n',
            2,
        ),
        # No address in the swallowed row, but the shape of one.
        (
            'email,first_name,outlet\na@example.org,Ann,"Wire\n,Bob,Post\n",\n'
            "z@example.org,Zoe,Wire\n",
            2,
        ),
        # Semicolons, CRLF, in an extra column, after another multi-line field.
        (
            'email;notes;outlet\r\na@example.org;"one\r\ntwo";"Wire\r\nb@example.org;Bo;"\r\n'
            "z@example.org;Zoe;Wire\r\n",
            3,
        ),
    ],
    ids=["address", "shape", "extra-column-semicolon"],
)
def test_a_field_holding_other_rows_makes_the_row_invalid(
    tmp_path: Path, text: str, near: int
) -> None:
    path = write(tmp_path, "list.csv", text)

    audience = read_lists([path], set())

    assert emails(audience.recipients) == ["z@example.org"]
    reason = (
        "a field spans several lines and holds what looks like another row: "
        f"check the quotes near line {near}"
    )
    assert audience.problems == [Problem(path, 2, "a@example.org", reason)]
    (stats,) = audience.lists
    assert (stats.rows, stats.valid, stats.invalid) == (2, 1, 1)


def test_a_broken_address_keeps_its_own_reason(tmp_path: Path) -> None:
    path = write(tmp_path, "list.csv", 'email,name\n"a@example.org\nb@example.org",Ann\n')

    (problem,) = read_lists([path], set()).problems

    assert problem.reason.startswith("invalid address 'a@example.org\\nb@example.org'")
    assert "spans several lines" not in problem.reason


@pytest.mark.parametrize(
    "text",
    [
        'email,first_name,address\na@example.org,Ann,"12 rue Haute,\n75001 Paris, France"\n',
        'email,name\na@example.org,"Lee,\nAnn"\n',
        'email;note\r\na@example.org;"Call before noon;\r\nnot on Fridays; ask for the desk"\r\n',
        'email,note\na@example.org,"write to press@example.org\nor call"\n',
    ],
    ids=["postal-address", "two-columns-comma", "semicolons", "address-on-first-line"],
)
def test_legitimate_multiline_fields_are_kept(tmp_path: Path, text: str) -> None:
    path = write(tmp_path, "list.csv", text + "b@example.org\n")

    audience = read_lists([path], set())

    assert audience.problems == []
    assert [(r.email, r.line) for r in audience.recipients] == [
        ("a@example.org", 2),
        ("b@example.org", 4),
    ]


def test_a_suppression_list_with_a_field_holding_other_rows_is_refused(tmp_path: Path) -> None:
    """Read as is, b@ would silently stop being suppressed."""
    write(
        tmp_path,
        "suppressed.csv",
        'email,reason,date\na@example.org,"asked,2026-01-01\nb@example.org,bounced,"\n',
    )

    with pytest.raises(RecipientError) as caught:
        load_suppressions(tmp_path)

    assert caught.value.format() == (
        f"{tmp_path / 'suppressed.csv'}:2: a field spans several lines and holds what looks "
        "like another row: check the quotes near line 2"
    )


# --- validation ----------------------------------------------------------------------------


def test_dirty_file_reports_each_bad_row_and_keeps_the_good_ones() -> None:
    audience = read_lists([DATA / "dirty.csv"], set())
    path = DATA / "dirty.csv"

    assert [(p.line, p.email, p.reason, p.kind) for p in audience.problems] == [
        (
            3,
            "pierre dupont@example.org",
            "invalid address 'pierre dupont@example.org': "
            "The email address contains invalid characters before the @-sign: SPACE.",
            "invalid",
        ),
        (
            4,
            "marie@",
            "invalid address 'marie@': There must be something after the @-sign.",
            "invalid",
        ),
        (
            5,
            "paul@@example.net",
            "invalid address 'paul@@example.net': "
            "The part after the @-sign contains invalid characters: '@'.",
            "invalid",
        ),
        (6, "", "empty email", "invalid"),
        (
            11,
            "JANE.DOE@Example.COM",
            "duplicate of jane.doe@example.com (dirty.csv:2), not mailed twice",
            "duplicate",
        ),
        (
            12,
            "ok@example.com\nBcc: x@example.org",
            "invalid address 'ok@example.com\\nBcc: x@example.org': "
            "The part after the @-sign contains invalid characters: ':', '@', SPACE, U+000A.",
            "invalid",
        ),
        (
            15,
            "frank@example.org",
            "a field spans several lines and holds what looks like another row: "
            "check the quotes near line 15",
            "invalid",
        ),
    ]
    assert all(p.file == path for p in audience.problems)
    assert [(r.email, r.line) for r in audience.recipients] == [
        ("jane.doe@example.com", 2),
        ("eve@example.org", 7),
        ("mallory@example.net", 9),
        ("zoe.last@example.org", 14),
    ]
    (stats,) = audience.lists
    assert (stats.rows, stats.valid, stats.invalid, stats.duplicates, stats.suppressed) == (
        11,
        5,
        6,
        1,
        0,
    )
    eve, mallory = audience.recipients[1:3]
    # A line break in a name could start a new header once the name is in "To:".
    assert eve.first_name == "Eve Bcc: victim"
    # Markup is text here; escaping it is the HTML renderer's job, so it is kept verbatim.
    assert mallory.first_name == "<script>alert(1)</script>"


@pytest.mark.parametrize(
    ("cells", "reason"),
    [
        (
            "a@example.org,French,",
            "invalid language 'french': use a two-letter ISO 639-1 code such as 'fr'",
        ),
        (
            "a@example.org,fr-FR,",
            "invalid language 'fr-fr': use a two-letter ISO 639-1 code such as 'fr'",
        ),
        (
            "a@example.org,,Paris",
            "unknown time zone 'Paris': use an IANA name such as 'Europe/Paris'",
        ),
        (
            "a@example.org,,../../etc/passwd",
            "unknown time zone '../../etc/passwd': use an IANA name such as 'Europe/Paris'",
        ),
        (
            "a@,x1,Mars/Olympus",
            "invalid address 'a@': There must be something after the @-sign.; "
            "invalid language 'x1': use a two-letter ISO 639-1 code such as 'fr'; "
            "unknown time zone 'Mars/Olympus': use an IANA name such as 'Europe/Paris'",
        ),
        (
            "a@example.org,fr,Europe/Paris,extra",
            "4 fields where the header has 3 (a value holding the delimiter must be quoted)",
        ),
    ],
    ids=["language-word", "language-region", "zone-city", "zone-path", "all-at-once", "too-many"],
)
def test_invalid_fields_make_the_row_invalid(tmp_path: Path, cells: str, reason: str) -> None:
    path = write(tmp_path, "list.csv", f"email,language,timezone\n{cells}\n")

    audience = read_lists([path], set())

    assert audience.recipients == []
    assert audience.problems == [Problem(path, 2, cells.split(",")[0], reason)]
    with pytest.raises(RecipientError) as caught:
        audience.raise_for_invalid()
    assert caught.value.format() == (
        f"1 invalid row in the journalist lists:\n  {path}:2: {reason}\n{HINT}"
    )


def test_internationalised_addresses_are_accepted(tmp_path: Path) -> None:
    path = write(tmp_path, "list.csv", "email\njosé@example.com\nmüller@exämple.de\n")

    audience = read_lists([path], set())

    assert emails(audience.recipients) == ["josé@example.com", "müller@exämple.de"]


def test_all_text_fields_lose_control_characters(tmp_path: Path) -> None:
    text = (
        "email,first_name,last_name,name,outlet,beat,Notes\n"
        'a@example.org,"A\rnn","Le\x00e","X\u2028Y","Wi\x1bre","\u202eAI","one\r\ntwo"\n'
    )
    path = write(tmp_path, "list.csv", text)

    (ann,) = read_lists([path], set()).recipients

    assert (ann.first_name, ann.last_name, ann.name, ann.outlet, ann.beat) == (
        "A nn",
        "Le e",
        "X Y",
        "Wi re",
        "AI",
    )
    assert ann.extra == {"notes": "one two"}


@given(st.text())
def test_cleaned_text_has_no_control_characters(value: str) -> None:
    cleaned = clean_text(value)

    assert not any(
        unicodedata.category(char) == "Cc" or char in "\u2028\u2029\u202e\ufeff" for char in cleaned
    )
    assert cleaned == cleaned.strip()


@pytest.mark.parametrize(
    ("raw", "tags"),
    [
        ("science;health", ("science", "health")),
        ("science|health", ("science", "health")),
        (" science ; |health;science", ("science", "health")),
        ("", ()),
    ],
    ids=["semicolon", "pipe", "spaces-empties-repeats", "none"],
)
def test_tags_are_split_on_semicolon_or_pipe(
    tmp_path: Path, raw: str, tags: tuple[str, ...]
) -> None:
    path = write(tmp_path, "list.csv", f'email,tags\na@example.org,"{raw}"\n')

    (ann,) = read_lists([path], set()).recipients

    assert ann.tags == tags


# --- deduplication and suppression ---------------------------------------------------------


def test_duplicates_across_lists_keep_the_first(tmp_path: Path) -> None:
    write(tmp_path, "first.csv", "email,name\nann@example.org,Ann One\nbo@example.org,Bo\n")
    write(tmp_path, "second.csv", "email,name\n Ann@Example.ORG ,Ann Two\ncy@example.org,Cy\n")

    audience = load_audience(tmp_path, ["second", "first"])

    assert [(r.name, r.list_name) for r in audience.recipients] == [
        ("Ann Two", "second"),
        ("Cy", "second"),
        ("Bo", "first"),
    ]
    assert [(p.file.name, p.line, p.reason) for p in audience.problems] == [
        ("first.csv", 2, "duplicate of Ann@Example.ORG (second.csv:2), not mailed twice")
    ]
    assert [(s.name, s.rows, s.valid, s.duplicates) for s in audience.lists] == [
        ("second", 2, 2, 0),
        ("first", 2, 2, 1),
    ]


def test_suppressed_addresses_never_reach_a_step(tmp_path: Path) -> None:
    write(
        tmp_path,
        "science.csv",
        "email,language,tags\n"
        "ann@example.org,fr,science\n"
        "BO@EXAMPLE.ORG,fr,science\n"
        "bo@example.org,fr,science\n"
        "cy@example.org,fr,science\n",
    )
    write(tmp_path, "tech.csv", "email,language,tags\nBo@Example.org,fr,science\n")
    write(tmp_path, "suppressed.csv", "email,reason,date\n  Bo@example.ORG ,asked,2026-01-02\n")

    audience = load_audience(tmp_path, ["science", "tech"])
    step = filter_recipients(audience.recipients, where={"language": "fr"}, tags=["science"])

    assert emails(step) == ["ann@example.org", "cy@example.org"]
    assert emails(audience.suppressed) == ["BO@EXAMPLE.ORG"]
    assert [(s.name, s.valid, s.duplicates, s.suppressed) for s in audience.lists] == [
        ("science", 4, 1, 1),
        ("tech", 1, 1, 0),
    ]


ADDRESS = "jeanne.durand@example.org"


@st.composite
def case_variants(draw: st.DrawFn, address: str = ADDRESS) -> str:
    upper = draw(st.lists(st.booleans(), min_size=len(address), max_size=len(address)))
    padding = draw(st.sampled_from(["", " ", "  ", "\t"]))
    flipped = "".join(c.upper() if up else c for c, up in zip(address, upper, strict=True))
    return padding + flipped + padding


@given(variants=st.lists(case_variants(), min_size=1, max_size=4), suppressed=case_variants())
def test_any_case_variant_is_deduplicated_and_suppressed(
    variants: list[str], suppressed: str
) -> None:
    rows = "".join(f'"{variant}"\n' for variant in variants)
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        write(folder, "list.csv", f"email\nother@example.org\n{rows}")
        write(folder, "suppressed.csv", f'email\n"{suppressed}"\n')

        audience = load_audience(folder, ["list"])

    assert emails(audience.recipients) == ["other@example.org"]
    assert emails(audience.suppressed) == [variants[0].strip()]
    assert audience.lists[0].duplicates == len(variants) - 1


def test_case_variants_in_files_are_suppressed(tmp_path: Path) -> None:
    write(tmp_path, "list.csv", "email\nJeanne.Durand@Example.org\njeanne.durand@example.ORG\n")
    write(tmp_path, "suppressed.csv", "email\nJEANNE.durand@example.org\n")

    audience = load_audience(tmp_path, ["list"])

    assert audience.recipients == []
    assert emails(audience.suppressed) == ["Jeanne.Durand@Example.org"]


def test_load_suppressions_normalises_and_reads_excel_layout(tmp_path: Path) -> None:
    write(tmp_path, "suppressed.csv", "\ufeffDate;EMAIL;Reason\r\n2026-01-01; A@Example.org ;x\r\n")

    assert load_suppressions(tmp_path).keys == {"a@example.org"}
    assert load_suppressions(tmp_path / "missing").keys == set()


def test_add_suppression_creates_then_appends(tmp_path: Path) -> None:
    folder = tmp_path / "recipients"

    assert add_suppression(folder, " Ann@Example.org ", "asked\r\nby phone", date(2026, 3, 4)).added
    assert add_suppression(folder, "bo@example.org", None, date(2026, 3, 5)).added
    assert not add_suppression(folder, "ANN@example.ORG", "again", date(2026, 3, 6)).added

    assert (folder / "suppressed.csv").read_text(encoding="utf-8") == (
        "email,reason,date\nAnn@Example.org,asked by phone,2026-03-04\nbo@example.org,,2026-03-05\n"
    )
    assert load_suppressions(folder).keys == {"ann@example.org", "bo@example.org"}


def test_add_suppression_follows_a_spreadsheet_layout(tmp_path: Path) -> None:
    path = write(tmp_path, "suppressed.csv", "\ufeffdate;email\r\n2026-01-01;a@example.org")

    assert add_suppression(tmp_path, "b@example.org", "gone", date(2026, 2, 3))

    assert path.read_bytes().decode("utf-8") == (
        "\ufeffdate;email\r\n2026-01-01;a@example.org\r\n2026-02-03;b@example.org\r\n"
    )
    assert load_suppressions(tmp_path).keys == {"a@example.org", "b@example.org"}


@pytest.mark.parametrize(
    ("reason", "written"),
    [
        ('=HYPERLINK("http://evil.example","x")', '\'=HYPERLINK("http://evil.example","x")'),
        ("+33 1 23", "'+33 1 23"),
        ("-1+1", "'-1+1"),
        ("@SUM(A1)", "'@SUM(A1)"),
        ("\t=1+1", "'=1+1"),
        ("asked = 2", "asked = 2"),
    ],
    ids=["equals", "plus", "minus", "at", "after-a-tab", "not-first"],
)
def test_add_suppression_writes_a_formula_as_text(
    tmp_path: Path, reason: str, written: str
) -> None:
    """OWASP CSV injection: a spreadsheet opening the list must not evaluate the reason."""
    assert add_suppression(tmp_path, "a@example.org", reason, date(2026, 1, 2))

    rows = (tmp_path / "suppressed.csv").read_text(encoding="utf-8").splitlines()
    assert next(csv.reader(rows[1:])) == ["a@example.org", written, "2026-01-02"]


def test_add_suppression_guards_a_formula_in_a_spreadsheet_layout(tmp_path: Path) -> None:
    path = write(tmp_path, "suppressed.csv", "reason;email\r\n")

    assert add_suppression(tmp_path, "a@example.org", "=1+1", date(2026, 1, 2))

    assert path.read_bytes() == b"reason;email\r\n'=1+1;a@example.org\r\n"


@pytest.mark.parametrize(
    ("address", "message"),
    [
        ("", "empty email"),
        ("ann@", "invalid address 'ann@': There must be something after the @-sign."),
    ],
    ids=["empty", "no-domain"],
)
def test_add_suppression_rejects_invalid_addresses(
    tmp_path: Path, address: str, message: str
) -> None:
    with pytest.raises(RecipientError) as caught:
        add_suppression(tmp_path, address, None, date(2026, 1, 1))

    assert caught.value.format() == message
    assert not (tmp_path / "suppressed.csv").exists()


# --- lists and folders ---------------------------------------------------------------------


def test_list_names_exclude_the_suppression_list(tmp_path: Path) -> None:
    for name in ("b.csv", "a.CSV", "suppressed.csv", "notes.txt", ".hidden.csv", "~$lock.csv"):
        write(tmp_path, name, "email\n")
    (tmp_path / "folder.csv").mkdir()

    assert list_names(tmp_path) == ["a", "b"]


def test_unknown_list_names_the_folder_and_the_known_lists(tmp_path: Path) -> None:
    write(tmp_path, "science.csv", "email\n")
    write(tmp_path, "tech.csv", "email\n")

    with pytest.raises(RecipientError) as caught:
        load_audience(tmp_path, ["science", "sport"])

    assert caught.value.format() == (
        f"{tmp_path}: no list named 'sport' (known lists: science, tech)"
    )


def test_the_suppression_list_is_not_a_mailing_list(tmp_path: Path) -> None:
    write(tmp_path, "suppressed.csv", "email\na@example.org\n")

    with pytest.raises(RecipientError) as caught:
        load_audience(tmp_path, ["suppressed"])

    assert caught.value.format() == (
        f"{tmp_path}: 'suppressed' is the suppression list, not a mailing list"
    )


def test_missing_folder(tmp_path: Path) -> None:
    with pytest.raises(RecipientError) as caught:
        list_names(tmp_path / "nope")

    assert caught.value.format() == f"{tmp_path / 'nope'}: the recipients folder does not exist"


def test_recipients_dir_prefers_settings_then_workspace_then_bundled(tmp_path: Path) -> None:
    assert recipients_dir(load_settings(workspace=tmp_path)) == config.bundled("recipients")

    # A folder with no list in it (only its suppression list) does not hide the samples.
    write(tmp_path / "recipients", "Suppressed.csv", "email\na@example.org\n")
    assert recipients_dir(load_settings(workspace=tmp_path)) == config.bundled("recipients")

    write(tmp_path / "recipients", "desk.csv", "email\nb@example.org\n")
    assert recipients_dir(load_settings(workspace=tmp_path)) == tmp_path.resolve() / "recipients"

    (tmp_path / "distribute.toml").write_text('[paths]\nrecipients = "lists"\n', encoding="utf-8")
    settings = load_settings(tmp_path / "distribute.toml")
    assert recipients_dir(settings) == tmp_path.resolve() / "lists"


# --- filters -------------------------------------------------------------------------------

PEOPLE = [
    Recipient(
        "a@example.org",
        language="fr",
        beat="Space",
        tags=("Science", "radio"),
        extra={"home_region": "Bretagne"},
    ),
    Recipient(
        "b@example.org",
        language="en",
        beat="space",
        tags=("tech",),
        extra={"home_region": "Alsace"},
    ),
    Recipient(
        "c@example.org", language="fr", beat="health", tags=(), extra={"home_region": "alsace"}
    ),
]


@pytest.mark.parametrize(
    ("where", "tags", "expected"),
    [
        (None, None, ["a", "b", "c"]),
        ({"language": "fr"}, None, ["a", "c"]),
        ({" Language ": "FR"}, None, ["a", "c"]),
        ({"beat": ["space", "HEALTH"]}, None, ["a", "b", "c"]),
        ({"language": "fr", "beat": "space"}, None, ["a"]),
        ({"home_region": "ALSACE"}, None, ["b", "c"]),
        ({" Home Region ": "alsace"}, None, ["b", "c"]),
        ({"tags": "science"}, None, ["a"]),
        (None, ["RADIO", "tech"], ["a", "b"]),
        ({"language": "fr"}, ["tech"], []),
        ({"beat": []}, None, []),
        (None, [], []),
    ],
    ids=[
        "nothing",
        "field",
        "field-name-case",
        "any-of",
        "all-fields",
        "extra-column",
        "extra-column-as-in-header",
        "tags-as-field",
        "tags",
        "field-and-tags",
        "empty-any-of",
        "no-tags",
    ],
)
def test_filter_recipients(
    where: dict[str, str | list[str]] | None, tags: list[str] | None, expected: list[str]
) -> None:
    selected = filter_recipients(iter(PEOPLE), where=where, tags=tags)

    assert [r.email[0] for r in selected] == expected


def test_filter_on_an_unknown_field_names_the_known_ones() -> None:
    with pytest.raises(RecipientError) as caught:
        filter_recipients(PEOPLE, where={"country": "fr"})

    assert caught.value.format() == (
        "unknown recipient field 'country' (fields: email, first_name, last_name, name, outlet,"
        " beat, language, timezone, tags, home_region)"
    )


def test_a_misspelt_field_is_an_error_even_after_a_filter_that_selects_nobody() -> None:
    with pytest.raises(RecipientError, match="unknown recipient field 'langage'"):
        filter_recipients(PEOPLE, where={"language": "de", "langage": "en"})


# --- sample lists --------------------------------------------------------------------------


def test_sample_lists_are_valid_fictional_and_overlap() -> None:
    folder = config.bundled("recipients")
    names = list_names(folder)

    audience = load_audience(folder, names)

    assert {"science-press", "presse-regionale"} <= set(names)
    assert audience.invalid == []
    assert any(p.kind == "duplicate" for p in audience.problems)
    assert audience.suppressed
    everyone = audience.recipients + audience.suppressed
    assert len(everyone) >= 24
    assert {r.email.rpartition("@")[2].lower() for r in everyone} <= {
        "example.com",
        "example.org",
        "example.net",
    }
    assert {r.language for r in everyone} == {"en", "fr"}
    assert all(r.tags for r in everyone)


@pytest.mark.parametrize(
    ("listed", "suppressed"),
    [
        ("élodie@example.fr", "e\u0301lodie@example.fr"),
        ("karl@bücher.de", "karl@xn--bcher-kva.de"),
        ("max@ｅxample.com", "max@example.com"),
        ("Jane.Doe@Example.COM", " jane.doe@example.com "),
    ],
    ids=["nfd-accent", "punycode-domain", "full-width", "case-and-spaces"],
)
def test_every_spelling_of_a_suppressed_address_is_suppressed(
    tmp_path: Path, listed: str, suppressed: str
) -> None:
    folder = tmp_path / "recipients"
    folder.mkdir()
    (folder / "desk.csv").write_text(f"email\n{listed}\nzoe@example.com\n", encoding="utf-8")
    (folder / "suppressed.csv").write_text(f"email\n{suppressed}\n", encoding="utf-8")
    audience = load_audience(folder, ["desk"])
    assert [r.email for r in audience.recipients] == ["zoe@example.com"]
    assert [r.email for r in audience.suppressed] == [listed]


def test_an_unclosed_quote_in_a_large_list_points_at_its_line(tmp_path: Path) -> None:
    rows = ["email,first_name,outlet"]
    rows += [f"p{n}@example.com,Person {n},Outlet {n}" for n in range(5)]
    rows.append('p5@example.com,"Person 5,Outlet')
    rows += [f"p{n}@example.com,Person {n},Outlet {n} with a longer name" for n in range(6, 6000)]
    path = tmp_path / "big.csv"
    path.write_text("\n".join(rows) + "\n", encoding="utf-8")
    with pytest.raises(RecipientError) as caught:
        read_lists([path], set())
    assert caught.value.line == 7
    assert "most likely a quote opened here is never closed" in caught.value.message
