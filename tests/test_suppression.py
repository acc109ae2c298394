"""The suppression list: every spelling of an entry is read as an address or reported, in any
file name's letter case, and honoured at the moment each message is claimed."""

from __future__ import annotations

import csv
import io
import tempfile
from collections.abc import Callable
from datetime import UTC, date, datetime
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from test_dispatch import Harness, RecordingChannel, address

from distribute.campaign import check_campaign, load_campaign
from distribute.channels.base import Aside, Envelope, Outcome
from distribute.config import load_settings
from distribute.dispatch import Dispatcher
from distribute.errors import DeliveryError, RecipientError
from distribute.ledger import Ledger
from distribute.recipients import (
    Problem,
    SuppressionWatch,
    _records,
    add_suppression,
    address_key,
    address_problem,
    list_file,
    list_names,
    load_audience,
    load_suppressions,
    suppression_addresses,
)

SPELLINGS = "write jo@example.org, Jo Doe <jo@example.org> or mailto:jo@example.org"


def write(folder: Path, name: str, text: str) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / name
    path.write_text(text, encoding="utf-8")
    return path


def csv_row(*cells: str) -> str:
    out = io.StringIO()
    csv.writer(out, lineterminator="\n").writerow(cells)
    return out.getvalue()


# --- spellings -----------------------------------------------------------------------------

UNDERSTOOD = [
    ("j1@example.com", ["j1@example.com"]),
    ("Jo Doe <j1@example.com>", ["j1@example.com"]),
    ("<j1@example.com>", ["j1@example.com"]),
    ('"Doe, Jo" <j1@example.com>', ["j1@example.com"]),
    ("Doe, Jo <j1@example.com>", ["j1@example.com"]),
    ("Jo<j1@example.com>", ["j1@example.com"]),
    ("j1@example.com (Jo Doe)", ["j1@example.com"]),
    ("mailto:j2@example.com", ["j2@example.com"]),
    ("MAILTO:j2@example.com", ["j2@example.com"]),
    ("MailTo:j2@example.com?subject=Unsubscribe&body=x,y", ["j2@example.com"]),
    ("mailto:j2%40example.com", ["j2@example.com"]),
    ("mailto:?to=j2@example.com&subject=stop", ["j2@example.com"]),
    ("<mailto:j2@example.com>", ["j2@example.com"]),
    ("Jo <mailto:j2@example.com?subject=x>", ["j2@example.com"]),
    ("mailto://j2@example.com", ["j2@example.com"]),
    ("SMTP:j2@example.com", ["j2@example.com"]),
    ("j2\uff20example.com", ["j2@example.com"]),
    ('  "j3@example.com"  ', ["j3@example.com"]),
    ("'j3@example.com'", ["j3@example.com"]),
    ("« j3@example.com »", ["j3@example.com"]),
    ("\u201cj3@example.com\u201d", ["j3@example.com"]),
    ("\u200bj3@example.com\u00a0", ["j3@example.com"]),
    ("'=j4@example.com", ["=j4@example.com"]),
    ("'-j4@example.com", ["-j4@example.com"]),
    ("j5@example.com; j6@example.com", ["j5@example.com", "j6@example.com"]),
    ("mailto:j5@example.com,j6@example.com", ["j5@example.com", "j6@example.com"]),
    ('"j7@example.com" <j8@example.com>', ["j7@example.com", "j8@example.com"]),
]


@pytest.mark.parametrize(("entry", "addresses"), UNDERSTOOD, ids=[e for e, _ in UNDERSTOOD])
def test_understood_spellings(entry: str, addresses: list[str]) -> None:
    assert suppression_addresses(entry) == (addresses, None)


NOT_UNDERSTOOD = [
    ("Jo Doe", "invalid address 'Jo Doe': An email address must have an @-sign."),
    (
        "jo@example",
        "invalid address 'jo@example': The part after the @-sign is not valid. "
        "It should have a period.",
    ),
    ("mailto:", "no address in 'mailto:'"),
    (
        "j1@example.com Jo",
        "invalid address 'j1@example.com Jo': The part after the @-sign contains invalid "
        "characters: SPACE.",
    ),
    ("   ", "empty email"),
]


@pytest.mark.parametrize(("entry", "reason"), NOT_UNDERSTOOD, ids=[e for e, _ in NOT_UNDERSTOOD])
def test_entries_not_understood_say_why(entry: str, reason: str) -> None:
    assert suppression_addresses(entry) == ([], reason)


LOCAL = st.text(alphabet="abcdefghijklmnopqrstuvwxyzABCDEFGHIJ0123456789._", min_size=1)
NAME = st.text(alphabet="abcdefghij ABCDEF,éèç'-", max_size=12)


@st.composite
def addresses(draw: st.DrawFn) -> str:
    start = draw(st.sampled_from(["", "=", "+", "-"]))
    local = draw(LOCAL.filter(lambda s: not s.startswith(".") and ".." not in s))
    local = local.rstrip(".") or "x"
    domain = draw(
        st.sampled_from(["example.com", "example.org", "Example.NET", "bücher.de", "straße.de"])
    )
    return f"{start}{local}@{domain}"


def punycode(address: str) -> str:
    """``address`` with its domain as a mail program shows it in ASCII: each label that is not
    ASCII as "xn--" and its punycode (IDNA2008, RFC 5891: "ß" stays "ß", unlike IDNA2003)."""
    local, _, domain = address.rpartition("@")
    labels = [
        label if label.isascii() else "xn--" + label.lower().encode("punycode").decode("ascii")
        for label in domain.split(".")
    ]
    return f"{local}@{'.'.join(labels)}"


SPELLERS: list[Callable[[str, str], str]] = [
    lambda a, n: a,
    lambda a, n: punycode(a),
    lambda a, n: f"{n} <{punycode(a)}>",
    lambda a, n: f"{n} <{a}>",
    lambda a, n: f'"{n}" <{a}>',
    lambda a, n: f"<{a}>",
    lambda a, n: f"mailto:{a}",
    lambda a, n: f"MAILTO:{a}?subject={n}",
    lambda a, n: f"Mailto:{a.replace('@', '%40')}",
    lambda a, n: f"<mailto:{a}>",
    lambda a, n: f"{n} <mailto:{a}?subject=x>",
    lambda a, n: f'"{a}"',
    lambda a, n: f"'{a}'",
    lambda a, n: f"« {a} »",
    lambda a, n: f"{a} ({n.replace('(', '').replace(')', '')})",
    lambda a, n: f"'{a}" if a[0] in "=+-" else a,
]


@st.composite
def spellings(draw: st.DrawFn) -> tuple[str, str]:
    """An address and one way a press office may have written it in the suppression list."""
    target = draw(addresses())
    name = draw(NAME).strip(" ,'-") or "Jo"
    speller = draw(st.sampled_from(SPELLERS))
    padding = draw(st.sampled_from(["", " ", "  ", "\t"]))
    cased = draw(st.sampled_from([target, target.upper(), target.lower()]))
    return target, f"{padding}{speller(cased, name)}{padding}"


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(entries=st.lists(spellings(), min_size=1, max_size=5))
def test_every_understood_spelling_suppresses(entries: list[tuple[str, str]]) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        listed = {target.lower(): target for target, _ in entries}
        rows = "".join(csv_row(target) for target in listed.values())
        write(folder, "desk.csv", f"email\nkeep@example.com\n{rows}")
        rows = "".join(csv_row(entry, "asked") for _, entry in entries)
        write(folder, "suppressed.csv", f"email,reason\n{rows}")

        suppressions = load_suppressions(folder)
        audience = load_audience(folder, ["desk"], suppressions)

    assert suppressions.problems == []
    assert [r.email for r in audience.recipients] == ["keep@example.com"]
    assert sorted(r.email for r in audience.suppressed) == sorted(listed.values())


@pytest.mark.parametrize(
    ("listed", "other"),
    [
        ("jo@straße.de", "jo@xn--strae-oqa.de"),
        ("JO@XN--STRAE-OQA.DE", "jo@straße.de"),
        ("jo@ς.example", "jo@xn--3xa.example"),
        ("jo@bücher.de", "jo@xn--bcher-kva.de"),
    ],
    ids=["sharp-s", "sharp-s-upper-punycode", "final-sigma", "umlaut"],
)
def test_a_domain_in_punycode_and_in_unicode_is_one_address(
    tmp_path: Path, listed: str, other: str
) -> None:
    """Mail programs write IDNA2008 punycode, where "ß" is not "ss": one person either way."""
    write(tmp_path, "a.csv", f"email\n{listed}\nkeep@example.com\n")
    write(tmp_path, "b.csv", f"email\n{other}\n")
    audience = load_audience(tmp_path, ["a", "b"])
    assert [r.email for r in audience.recipients] == [listed, "keep@example.com"]
    assert [(p.kind, p.email) for p in audience.problems] == [("duplicate", other)]
    write(tmp_path, "suppressed.csv", f"email\n{other}\n")
    audience = load_audience(tmp_path, ["a"])
    assert [r.email for r in audience.suppressed] == [listed]


@settings(max_examples=300, deadline=None)
@given(entries=st.lists(st.text(max_size=30), min_size=1, max_size=6))
def test_every_entry_is_understood_or_reported(entries: list[str]) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        rows = "".join(csv_row(entry, "x") for entry in entries)
        path = write(folder, "suppressed.csv", f"email,reason\n{rows}")
        try:
            suppressions = load_suppressions(folder)
        except RecipientError as exc:
            # Refused whole (a field spanning lines that look like rows): not ignored either.
            assert exc.path == path
            return
        records = [(line, cells) for line, cells, _ in _records(path)][1:]
    reported = {p.line for p in suppressions.problems}
    for line, cells in records:
        if line not in reported:
            found, why = suppression_addresses(cells[0])
            assert found and why is None, cells
            assert {address_key(a) for a in found} <= suppressions.keys


def test_a_file_of_problems_names_each_line(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        "suppressed.csv",
        "email,reason\nJo Doe <j1@example.com>,asked\nJo Doe,asked\n,no address\n"
        "a@example.org,x,b@example.org\n",
    )

    suppressions = load_suppressions(tmp_path)

    assert suppressions.problems == [
        Problem(
            path,
            3,
            "Jo Doe",
            "suppression entry not understood: invalid address 'Jo Doe': An email address "
            f"must have an @-sign. ({SPELLINGS})",
            kind="suppression",
        ),
        Problem(
            path,
            4,
            "",
            f"suppression entry not understood: empty email ({SPELLINGS})",
            kind="suppression",
        ),
        Problem(
            path,
            5,
            "a@example.org",
            "3 fields where the header has 2: put one address per row (a value holding the "
            "delimiter must be quoted)",
            kind="suppression",
        ),
    ]
    # What can be read is suppressed meanwhile, the stray third field too.
    assert {"j1@example.com", "a@example.org", "b@example.org"} <= suppressions.keys


def test_a_file_of_bare_addresses_needs_no_header(tmp_path: Path) -> None:
    write(tmp_path, "suppressed.csv", "Jo <a@example.org>\nmailto:b@example.org\n")

    suppressions = load_suppressions(tmp_path)

    assert (suppressions.keys, suppressions.problems) == ({"a@example.org", "b@example.org"}, [])
    assert add_suppression(tmp_path, "c@example.org", "x", date(2026, 1, 2)).added
    assert load_suppressions(tmp_path).keys == {"a@example.org", "b@example.org", "c@example.org"}


def test_a_header_without_an_address_column_is_refused(tmp_path: Path) -> None:
    write(tmp_path, "suppressed.csv", "who,why\nJo,asked\n")

    with pytest.raises(RecipientError, match=r"suppressed\.csv:1: no email column"):
        load_suppressions(tmp_path)


@pytest.mark.parametrize(
    "header", ["Email,E-mail", "email;Courriel", "E-Mail,reason,Email Address"], ids=str
)
def test_two_address_columns_are_refused_not_one_ignored(tmp_path: Path, header: str) -> None:
    """Before: the first column was read and the addresses in the other silently ignored."""
    delimiter = ";" if ";" in header else ","
    cells = header.split(delimiter)
    row = ["x@example.com"] + [""] * (len(cells) - 2) + ["jo@example.com"]
    write(tmp_path, "suppressed.csv", f"{header}\n{delimiter.join(row)}\n")
    first, *_, last = cells

    with pytest.raises(RecipientError) as caught:
        load_suppressions(tmp_path)

    assert caught.value.format() == (
        f"{tmp_path / 'suppressed.csv'}:1: columns {first!r} and {last!r} are both read as "
        "the email column: keep one, or rename the other"
    )


def test_french_and_english_headers_name_the_address_column(tmp_path: Path) -> None:
    write(tmp_path, "suppressed.csv", "Raison;Adresse e-mail\nparti;a@example.org\n")
    write(tmp_path / "b", "Suppressed.csv", "Courriel,Motif\nb@example.org,parti\n")

    assert load_suppressions(tmp_path, tmp_path / "b").keys == {"a@example.org", "b@example.org"}


# --- file names in any letter case ---------------------------------------------------------


@pytest.mark.parametrize(
    "names",
    [
        ["Suppressed.csv"],
        ["SUPPRESSED.CSV"],
        ["suppressed.CSV"],
        ["SUPPRESSED.CSV", "suppressed.csv"],
    ],
    ids=["capitalised", "upper", "upper-suffix", "beside-lowercase"],
)
def test_a_suppression_list_in_any_case_is_read(tmp_path: Path, names: list[str]) -> None:
    write(tmp_path, "desk.csv", "email\na@example.org\nb@example.org\nc@example.org\n")
    for n, name in enumerate(names):
        write(tmp_path, name, f"email\n{'ab'[n]}@example.org\n")

    audience = load_audience(tmp_path, ["desk"])

    assert list_names(tmp_path) == ["desk"]
    expected = ["a@example.org", "b@example.org"][: len(names)]
    assert [r.email for r in audience.suppressed] == expected


def test_a_suppression_list_linked_to_a_missing_file_is_refused(tmp_path: Path) -> None:
    """``suppressed.csv`` a link to a file that is not there (a share not mounted): the
    people on it must not be mailed as if it were empty."""
    write(tmp_path, "desk.csv", "email\na@example.org\n")
    (tmp_path / "Suppressed.csv").symlink_to(tmp_path / "elsewhere" / "suppressed.csv")

    with pytest.raises(RecipientError) as raised:
        load_audience(tmp_path, ["desk"])
    assert raised.value.format() == f"{tmp_path / 'Suppressed.csv'}: file not found"


def test_a_suppression_list_that_is_a_link_loop_is_refused_in_one_line(tmp_path: Path) -> None:
    """``suppressed.csv`` a link that leads back to itself: refused as unreadable, in one
    line naming it, neither a traceback nor taken as empty."""
    write(tmp_path, "desk.csv", "email\na@example.org\n")
    (tmp_path / "suppressed.csv").symlink_to("suppressed.csv")

    with pytest.raises(RecipientError) as raised:
        load_audience(tmp_path, ["desk"])
    assert raised.value.format() == (
        f"{tmp_path / 'suppressed.csv'}: cannot read the file: Too many levels of symbolic links"
    )


def test_suppress_appends_to_the_list_already_there_in_any_case(tmp_path: Path) -> None:
    path = write(tmp_path, "Suppressed.csv", "email,reason,date\na@example.org,x,2026-01-01\n")

    assert add_suppression(tmp_path, "b@example.org", None, date(2026, 1, 2)).added
    assert not add_suppression(tmp_path, "A@EXAMPLE.ORG", None, date(2026, 1, 2)).added

    assert sorted(p.name for p in tmp_path.iterdir()) == ["Suppressed.csv"]
    assert path.read_text("utf-8").splitlines()[-1] == "b@example.org,,2026-01-02"


@pytest.mark.parametrize(
    ("text", "last"),
    [
        ("sep=;\nemail;reason;date\na@example.org;x;2026-01-01\n", "b@example.org;;2026-01-02"),
        ("\n\nemail,reason\na@example.org,x\n", "b@example.org,"),
        ("\ufeff\r\n\r\nEmail;Raison\r\na@example.org;x\r\n", "b@example.org;"),
        ("a@example.org\n", "b@example.org"),
        ("Name,E-mail\nAnn,a@example.org", ",b@example.org"),
    ],
    ids=[
        "excel-sep-line",
        "blank-lines",
        "bom-blank-lines-crlf",
        "bare",
        "no-final-newline",
    ],
)
def test_suppress_follows_the_layout_the_reader_understands(
    tmp_path: Path, text: str, last: str
) -> None:
    """Before: a file opening with Excel's "sep=;" line or with blank lines made `suppress`
    die with a StopIteration traceback."""
    path = write(tmp_path, "suppressed.csv", text)

    assert add_suppression(tmp_path, "b@example.org", None, date(2026, 1, 2)).added

    assert path.read_text("utf-8-sig").splitlines()[-1] == last
    suppressions = load_suppressions(tmp_path)
    assert suppressions.problems == []
    assert suppressions.keys == {"a@example.org", "b@example.org"}


@pytest.mark.parametrize("text", ["\n", " \r\n", "\u2028", "sep=;\n", "\ufeff\n\n"], ids=repr)
def test_suppress_into_a_file_with_no_header_line_starts_the_list(
    tmp_path: Path, text: str
) -> None:
    """Before: an IndexError traceback."""
    path = write(tmp_path, "suppressed.csv", text)

    assert add_suppression(tmp_path, "b@example.org", "asked", date(2026, 1, 2)).added

    assert path.read_text("utf-8") == "email,reason,date\nb@example.org,asked,2026-01-02\n"
    assert load_suppressions(tmp_path).keys == {"b@example.org"}


def test_two_lists_differing_only_in_case_are_refused(tmp_path: Path) -> None:
    write(tmp_path, "science-press.csv", "email\na@example.org\n")
    write(tmp_path, "Science-Press.csv", "email\nb@example.org\n")

    with pytest.raises(RecipientError) as caught:
        load_audience(tmp_path, ["science-press"])

    assert caught.value.format() == (
        f"{tmp_path}: Science-Press.csv and science-press.csv are one list (their names "
        "differ only in letter case): merge them into one file"
    )


def test_two_lists_differing_only_in_accent_encoding_are_told_apart(tmp_path: Path) -> None:
    """A Mac writes "é" in a file name as "e" and a combining accent; a copy from elsewhere
    has the one code point. Before: "presse-régionale.csv and presse-régionale.csv"."""
    write(tmp_path, "presse-r\u00e9gionale.csv", "email\na@example.org\n")
    write(tmp_path, "presse-re\u0301gionale.csv", "email\nb@example.org\n")

    with pytest.raises(RecipientError) as caught:
        load_audience(tmp_path, ["presse-régionale"])

    assert caught.value.format() == (
        f"{tmp_path}: 'presse-re\\u0301gionale.csv' and 'presse-r\\xe9gionale.csv' are one list "
        "(their names differ only in how an accent is encoded): merge them into one file"
    )


def test_a_list_is_found_in_any_case(tmp_path: Path) -> None:
    path = write(tmp_path, "Science-Press.csv", "email\na@example.org\n")

    assert list_file(tmp_path, "science-press") == path
    assert list_file(tmp_path, "SCIENCE-PRESS") == path


# --- formula characters --------------------------------------------------------------------


@settings(max_examples=100, deadline=None)
@given(target=addresses().filter(lambda a: a[0] in "=+-"), reason=st.sampled_from(["", "=1"]))
def test_an_address_starting_with_a_formula_character_round_trips(target: str, reason: str) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        assert add_suppression(folder, target, reason, date(2026, 1, 2)).added
        text = (folder / "suppressed.csv").read_text("utf-8")
        suppressions = load_suppressions(folder)
        again = add_suppression(folder, target, None, date(2026, 1, 3))

    row = next(csv.reader(text.splitlines()[1:]))
    assert row[0] == f"'{target}"
    assert row[1] == (f"'{reason}" if reason else "")
    assert suppressions.problems == []
    assert address_key(target) in suppressions
    assert not again.added


# --- at the moment a message is claimed ----------------------------------------------------


@settings(max_examples=15, deadline=None, suppress_health_check=list(HealthCheck))
@given(spelt=st.lists(st.sampled_from(SPELLERS), min_size=1, max_size=4))
def test_a_suppression_saved_mid_send_wins_at_the_claim(
    spelt: list[Callable[[str, str], str]],
) -> None:
    """Written after the check and after the first message: only the claim can honour it."""
    with tempfile.TemporaryDirectory() as tmp:
        workspace = Path(tmp)
        ledger = Ledger(f"sqlite:///{workspace / 'distribute.db'}")
        try:
            harness = Harness(workspace, ledger)
            harness.write(len(spelt) + 1)
            settings_ = load_settings(workspace=workspace)
            campaign = load_campaign(workspace / "launch.toml", settings_)
            check = check_campaign(campaign, settings_, now=harness.clock(), send_now=True)
            rows = "".join(
                csv_row(speller(address(n + 1).upper(), "Jo Doe"), "by phone")
                for n, speller in enumerate(spelt)
            )

            class Suppressing(RecordingChannel):
                def deliver(self, envelope: Envelope, meanwhile: Aside | None = None) -> Outcome:
                    write(workspace / "recipients", "SUPPRESSED.csv", f"email,reason\n{rows}")
                    return super().deliver(envelope, meanwhile)

            dispatcher = Dispatcher(
                settings_,
                ledger,
                live=True,
                channel_factory=lambda: Suppressing(harness.script, harness.clock),
                clock=harness.clock,
                sleep=harness.sleep,
            )
            report = dispatcher.run(campaign, check, campaign.step("desk"))
            states = {a: row["state"] for a, row in harness.rows().items()}
        finally:
            ledger.close()

    assert harness.script.per_recipient() == {address(0): 1}
    assert states == {address(n): "sent" if n == 0 else "skipped" for n in range(len(spelt) + 1)}
    assert report.counts["skipped"] == len(spelt)


def test_an_entry_not_understood_saved_mid_send_stops_a_live_send(workspace: Path) -> None:
    ledger = Ledger(f"sqlite:///{workspace / 'distribute.db'}")
    try:
        harness = Harness(workspace, ledger)
        harness.write(3)
        settings_ = load_settings(workspace=workspace)
        campaign = load_campaign(workspace / "launch.toml", settings_)
        check = check_campaign(campaign, settings_, now=datetime.now(UTC), send_now=True)

        class Suppressing(RecordingChannel):
            def deliver(self, envelope: Envelope, meanwhile: Aside | None = None) -> Outcome:
                write(workspace / "recipients", "suppressed.csv", "email\nJo Doe\n")
                return super().deliver(envelope, meanwhile)

        dispatcher = Dispatcher(
            settings_,
            ledger,
            live=True,
            channel_factory=lambda: Suppressing(harness.script, harness.clock),
            clock=harness.clock,
            sleep=harness.sleep,
        )
        with pytest.raises(DeliveryError) as caught:
            dispatcher.run(campaign, check, campaign.step("desk"))
        states = sorted(row["state"] for row in harness.rows().values())
    finally:
        ledger.close()

    assert caught.value.format().startswith(
        "1 suppression entry is not understood, so a live send cannot know who must not be "
        "mailed:\n  recipients/suppressed.csv:2: suppression entry not understood: "
    )
    assert caught.value.format().endswith(
        "; stopped after 1 of 3 messages. Nothing was lost: run the same command again to "
        "send the rest"
    )
    assert harness.script.per_recipient() == {address(0): 1}
    assert states == ["pending", "pending", "sent"]


def test_the_watch_reads_again_only_when_a_file_changes(tmp_path: Path) -> None:
    path = write(tmp_path, "suppressed.csv", "email\na@example.org\n")
    watch = SuppressionWatch([tmp_path])

    first = watch.current()
    assert watch.current() is first
    path.write_text("email\na@example.org\nb@example.org\n", encoding="utf-8")
    assert watch.current().keys == {"a@example.org", "b@example.org"}
    path.unlink()
    assert watch.current().keys == set()


# --- large lists ---------------------------------------------------------------------------


def test_plain_entries_skip_the_full_validator(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The validator cost ~100 µs an entry: 200,000 entries took 19 s to read, at every
    command and whenever the list changed during a send. A plain address needs none of it."""
    import distribute.recipients as recipients

    def refuse(*args: object, **kwargs: object) -> None:
        raise AssertionError("validate_email called for a plain entry")

    monkeypatch.setattr(recipients, "validate_email", refuse)
    rows = "".join(f"user{n}@example.com,asked\n" for n in range(50))
    write(tmp_path, "suppressed.csv", f"email,reason\n{rows}O'Brien.J+x@Mail.Example.co.uk,\n")

    suppressions = load_suppressions(tmp_path)

    assert suppressions.problems == []
    assert len(suppressions.keys) == 51 and "o'brien.j+x@mail.example.co.uk" in suppressions


@settings(max_examples=300, deadline=None)
@given(
    st.from_regex(
        r"[A-Za-z0-9!#$%&'*+/=?^_`{|}~.-]{1,12}@[A-Za-z0-9.-]{1,20}\.[A-Za-z]{2,6}",
        fullmatch=True,
    )
)
def test_the_plain_entry_shortcut_reads_as_the_full_path_does(entry: str) -> None:
    """What the shortcut takes as is, the full path (reached here through the surrounding
    spaces it strips) takes as the same address; it may take more, never something else."""
    fast = suppression_addresses(entry)
    full = suppression_addresses(f" {entry} ")
    if full[1] is None:
        assert fast == full
    elif fast[1] is None:
        # An entry the validator refuses (a label starting with "-", say): kept as written,
        # it matches no list row, as the list reader refuses such an address too.
        assert fast == ([entry], None)
        assert address_problem(entry) is not None
