"""Journalist lists: CSV files in ``recipients/`` turned into validated :class:`Recipient`s.

Each ``*.csv`` file in the recipients folder is a list named after its file name;
``suppressed.csv`` is reserved for the addresses that must never be mailed. Lists are read
as a stream, row by row, so a list costs the memory of the recipients it yields and no more.

Reading accepts what spreadsheets actually write: UTF-8 with or without a BOM, ``,`` ``;``
or tab as the delimiter (read from the header line), CRLF or LF, quoted fields holding
delimiters and line breaks, blank lines. Every row is validated (address syntax, language,
time zone), deduplicated on its normalised address across all the lists read together (the
first occurrence wins), and checked against the suppression list.

A misplaced quote must not hide journalists inside someone's name: a quote never closed
refuses the file, and a field whose later lines look like rows makes its row invalid.
"""

from __future__ import annotations

import codecs
import contextlib
import csv
import functools
import io
import itertools
import os
import re
import threading
import unicodedata
from collections.abc import Collection, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import date
from pathlib import Path
from types import MappingProxyType
from typing import Literal
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from email_validator import EmailNotValidError, validate_email

from distribute import config
from distribute.config import Settings
from distribute.errors import RecipientError
from distribute.headers import header_text_problem

SUPPRESSED = "suppressed"
SUPPRESSION_HEADER = ("email", "reason", "date")
STANDARD_FIELDS = (
    "email",
    "first_name",
    "last_name",
    "name",
    "outlet",
    "beat",
    "language",
    "timezone",
    "tags",
)
_DELIMITERS = (",", ";", "\t")
_UTF16 = (
    "is UTF-16 text, not UTF-8: save it as CSV UTF-8 "
    "(Excel: File > Save As > 'CSV UTF-8 (Comma delimited)')"
)
_NOT_UTF8 = (
    "is not UTF-8 text: save it as CSV UTF-8 "
    "(Excel: File > Save As > 'CSV UTF-8 (Comma delimited)')"
)
# C0 and C1 controls plus the Unicode line and paragraph separators: any of them could
# end a header line or break a log line, so they become a space.
_BREAKING = re.compile(r"[\x00-\x1f\x7f-\x9f\u2028\u2029]+")
# Bidirectional overrides and isolates can make a name display as something else
# (CVE-2021-42574 "Trojan Source"); a stray BOM mid-field is invisible noise.
_INVISIBLE = re.compile(r"[\u202a-\u202e\u2066-\u2069\ufeff]")
_TAG_SPLIT = re.compile(r"[;|]")
_FORMULA = ("=", "+", "-", "@")
_LANGUAGE = re.compile(r"[a-z]{2}")
_NO_EXTRA: Mapping[str, str] = MappingProxyType({})
# The csv module (non-strict) ends a quoted field left open at the end of the file without a
# word; fed after the last line, this marker lands inside such a field, or alone in a record
# of its own when every quote was closed. Private-use characters: no list holds them.
_END = "\uf8ff distribute: end of file \uf8ff"
_LINE_BREAK = re.compile(r"\r\n?|\n")
# "@" with a dot somewhere after it, as in any deliverable address.
_ADDRESS_LIKE = re.compile(r"@[^@\s]*\.")
_SWALLOWED = (
    "a field spans several lines and holds what looks like another row: "
    "check the quotes near line {}"
)
_NO_SUSPECTS: tuple[tuple[int, int], ...] = ()


@dataclass(frozen=True, slots=True)
class Recipient:
    """One journalist, as read from a list; names are already free of control characters."""

    email: str
    first_name: str = ""
    last_name: str = ""
    name: str = ""
    outlet: str = ""
    beat: str = ""
    language: str = ""
    timezone: str = ""
    tags: tuple[str, ...] = ()
    extra: Mapping[str, str] = field(default_factory=dict)
    list_name: str = ""
    line: int = 0

    @property
    def display_name(self) -> str:
        """The name shown in the To header and greetings: first + last, else ``name``."""
        full = " ".join(part for part in (self.first_name, self.last_name) if part)
        return full or self.name

    @property
    def key(self) -> str:
        """The normalised address used for deduplication and suppression."""
        return address_key(self.email)


def address_key(address: str) -> str:
    """The form every spelling of one address shares, for deduplication and suppression.

    Case and surrounding spaces never matter; for internationalised addresses neither do
    Unicode composition (an "é" pasted from a Mac is two code points), width variants, or
    writing the domain in Unicode or in punycode. Over-matching can only suppress.
    """
    text = address.strip()
    if text.isascii():
        lowered = text.lower()
        if "xn--" not in lowered:
            # The address itself when it is its own key (most are): a large list then holds
            # one string per address, not two.
            return text if lowered == text else lowered
    text = unicodedata.normalize("NFKC", text).casefold()
    local, at, domain = text.rpartition("@")
    # A domain in punycode is read back as Unicode first: mail programs write it with
    # IDNA2008 (RFC 5891), where "straße" is "xn--strae-oqa", while Python's codec below is
    # IDNA2003, where it is "strasse"; both spellings must give one key.
    domain = ".".join(_unicode_label(label) for label in _IDNA_DOTS.split(domain))
    domain = unicodedata.normalize("NFKC", domain).casefold()
    # A domain IDNA refuses is reported by validation; the key stays comparable meanwhile.
    with contextlib.suppress(UnicodeError):
        domain = domain.encode("idna").decode("ascii")
    return f"{local}{at}{domain}"


# The label separators IDNA accepts (RFC 3490 section 3.1).
_IDNA_DOTS = re.compile("[.\u3002\uff0e\uff61]")


def _unicode_label(label: str) -> str:
    if label.startswith("xn--"):
        with contextlib.suppress(UnicodeError):
            return label[4:].encode("ascii").decode("punycode")
    return label


@dataclass(frozen=True)
class Problem:
    """A row that will not be mailed, and why: an invalid row, or a duplicate of an earlier one;
    or a suppression entry that names no address distribute can read.

    Duplicates are information, not errors: the first occurrence is still mailed.
    """

    file: Path
    line: int
    email: str
    reason: str
    kind: Literal["invalid", "duplicate", "suppression"] = "invalid"


@dataclass
class ListStats:
    """Counts for one list. ``rows`` = ``valid`` + ``invalid``; duplicates and suppressed
    rows are valid rows that are not mailed, so a list sends ``valid - duplicates -
    suppressed`` messages."""

    name: str
    file: Path
    rows: int = 0
    valid: int = 0
    invalid: int = 0
    duplicates: int = 0
    suppressed: int = 0
    # The header as written, each cell with the field it was read as ("Prénom", "first_name").
    columns: tuple[tuple[str, str], ...] = ()
    # Columns (numbered from 1) whose header cell is empty but which hold values: not read.
    unnamed: tuple[int, ...] = ()

    def unnamed_note(self) -> str | None:
        """The warning for :attr:`unnamed`, or None."""
        if not self.unnamed:
            return None
        numbers = ", ".join(str(n) for n in self.unnamed)
        many = len(self.unnamed) > 1
        return (
            f"{display_path(self.file)}: column{'s' if many else ''} {numbers} "
            f"{'have' if many else 'has'} no header, so {'their' if many else 'its'} values are "
            f"not read: give {'each' if many else 'it'} a name in the header line"
        )


@dataclass
class Audience:
    """The recipients of some lists read together: sendable, suppressed, and what went wrong."""

    recipients: list[Recipient] = field(default_factory=list)
    suppressed: list[Recipient] = field(default_factory=list)
    problems: list[Problem] = field(default_factory=list)
    lists: list[ListStats] = field(default_factory=list)
    # The recipients as read, by key (reading needs it to deduplicate): see :meth:`by_key`.
    read_by_key: dict[str, Recipient] = field(default_factory=dict, repr=False)

    def by_key(self) -> dict[str, Recipient]:
        """:attr:`recipients` by :attr:`Recipient.key`: the dictionary reading built when
        nothing was filtered out since (on a large list, a second one costs megabytes)."""
        # A selection only ever leaves recipients out, so one as long is all of them.
        if len(self.read_by_key) == len(self.recipients):
            return self.read_by_key
        return {recipient.key: recipient for recipient in self.recipients}

    @property
    def invalid(self) -> list[Problem]:
        return [p for p in self.problems if p.kind == "invalid"]

    def raise_for_invalid(self) -> None:
        """Raise every invalid row (the first :data:`SHOWN` of them) as one error."""
        if self.invalid:
            raise invalid_rows_error(self.invalid)


SHOWN = 20


def problem_lines(problems: Sequence[Problem], shown: int = SHOWN) -> list[str]:
    """``file:line: reason`` for the first ``shown`` problems, then how many more there are."""
    lines = [f"{display_path(p.file)}:{p.line}: {p.reason}" for p in problems[:shown]]
    if len(problems) > shown:
        lines.append(f"... and {len(problems) - shown} more")
    return lines


def invalid_rows_error(problems: Sequence[Problem]) -> RecipientError:
    """One error listing the invalid rows, with where to see them all and how to go on."""
    count = f"{len(problems)} invalid row{'s' if len(problems) != 1 else ''}"
    lines = "\n".join(f"  {line}" for line in problem_lines(problems))
    return RecipientError(
        f"{count} in the journalist lists:\n{lines}\n"
        "`distribute recipients check` shows them all; "
        "`distribute send --skip-invalid` sends to the valid rows and lists the others."
    )


def clean_text(value: str) -> str:
    """``value`` without control characters, so it can go into a header or a log line as is."""
    # Every character removed below is non-printable, so most values skip the regexes.
    if not value.isprintable():
        value = " ".join(_BREAKING.sub(" ", _INVISIBLE.sub("", value)).split())
    return value.strip()


def recipients_dir(settings: Settings) -> Path:
    """``[paths] recipients``, else the workspace's ``recipients/`` when it holds a list, else
    the sample lists. A workspace folder holding only its suppression list (``suppress``
    creates one) does not hide the sample lists: the two do not depend on each other."""
    if settings.recipients is not None:
        return settings.recipients
    local = settings.workspace / "recipients"
    if local.is_dir() and _list_paths(local):
        return local
    return config.bundled("recipients")


def suppression_folders(settings: Settings) -> list[Path]:
    """Where suppression lists are read from: the lists' folder, and the workspace's own
    ``recipients/`` too, whether the lists are the bundled samples or a folder named in
    ``[paths]``: ``suppress`` may have written there before the lists moved, and a
    suppression list left unread would mail the people it names."""
    folders = [recipients_dir(settings)]
    local = settings.workspace / "recipients"
    if local.resolve() != folders[0].resolve():
        folders.append(local)
    return folders


def suppression_file(settings: Settings) -> Path:
    """Where ``suppress`` writes: the configured or workspace ``recipients/`` folder (never the
    sample lists shipped with distribute), in the suppression list already there, whatever
    its letter case."""
    folder = settings.recipients or settings.workspace / "recipients"
    return _suppression_target(folder)


def suppressions_of(settings: Settings) -> Suppressions:
    """Every suppression entry that applies to the lists of ``settings``."""
    return load_suppressions(*suppression_folders(settings))


def is_suppression_file(path: Path) -> bool:
    """``suppressed.csv`` in any letter case (a spreadsheet may save ``Suppressed.CSV``)."""
    return _suppression_name(path.name)


def _name_key(name: str) -> str:
    """A list name as compared: letter case and Unicode composition never matter (macOS
    writes "é" in file names as two code points)."""
    return unicodedata.normalize("NFC", name).strip().casefold()


def _list_paths(folder: Path) -> list[Path]:
    return sorted(
        path
        for path in folder.iterdir()
        if path.suffix.lower() == ".csv"
        # Hidden files and editor lock files ("~$list.csv") are not lists.
        and not path.name.startswith((".", "~"))
        and not is_suppression_file(path)
        and path.is_file()
    )


def misnamed_suppression_notes(folder: Path) -> list[str]:
    """A warning for each list in ``folder`` named like a suppression list ("suppression.csv",
    "Suppressed (1).csv", "suppressed.csv.csv"): read as a mailing list, its addresses are
    not suppressed, and no campaign may ever name it."""
    if not folder.is_dir():
        return []
    return [
        f"{display_path(path)} is read as a mailing list, not as the suppression list: to "
        f"suppress its addresses, move them into {display_path(folder / (SUPPRESSED + '.csv'))}"
        for path in _list_paths(folder)
        if _name_key(path.stem).startswith("suppress")
    ]


def list_names(folder: Path) -> list[str]:
    """The lists in ``folder``: the stems of its CSV files, except the suppression list."""
    if not folder.is_dir():
        raise RecipientError("the recipients folder does not exist", path=folder)
    return [path.stem for path in _list_paths(folder)]


def known_list(name: str, known: Iterable[str]) -> bool:
    """Whether list ``name`` is among ``known``, in any letter case."""
    return _name_key(name) in {_name_key(other) for other in known}


def list_file(folder: Path, name: str) -> Path:
    """The CSV file of list ``name`` in ``folder``, whatever its letter case.

    Unknown names name the known lists; two files differing only in case (``Science-Press.csv``
    beside ``science-press.csv``) are refused rather than one of them silently left out.
    """
    if _name_key(name) == SUPPRESSED:
        raise RecipientError(
            f"{SUPPRESSED!r} is the suppression list, not a mailing list", path=folder
        )
    if not folder.is_dir():
        raise RecipientError("the recipients folder does not exist", path=folder)
    paths = _list_paths(folder)
    found = [path for path in paths if _name_key(path.stem) == _name_key(name)]
    if not found:
        listed = ", ".join(path.stem for path in paths) or "none"
        raise RecipientError(f"no list named {name!r} (known lists: {listed})", path=folder)
    if len(found) > 1:
        if len({unicodedata.normalize("NFC", path.name) for path in found}) == len(found):
            files, differ = " and ".join(path.name for path in found), "letter case"
        else:
            # Names that print alike ("é" as one code point or as "e" and an accent).
            files = " and ".join(ascii(path.name) for path in found)
            differ = "how an accent is encoded"
        raise RecipientError(
            f"{files} are one list (their names differ only in {differ}): merge them into one file",
            path=folder,
        )
    return found[0]


def load_audience(
    folder: Path, lists: Sequence[str], suppressions: Suppressions | None = None
) -> Audience:
    """Read the named lists of ``folder`` in that order, deduplicated and suppressed (by
    ``folder``'s own suppression list unless ``suppressions`` are given)."""
    files = [list_file(folder, name) for name in dict.fromkeys(lists)]
    if suppressions is None:
        suppressions = load_suppressions(folder)
    return read_lists(files, suppressions.keys)


def read_lists(files: Sequence[Path], suppressions: Collection[str]) -> Audience:
    """Read CSV ``files`` (anywhere; each list is named after its file's stem) as one audience.

    ``suppressions`` holds normalised addresses (see :func:`load_suppressions`).
    """
    audience = Audience()
    sendable = audience.read_by_key
    suppressed: dict[str, Recipient] = {}
    files_by_list: dict[str, Path] = {}
    for path in files:
        if is_suppression_file(path):
            raise RecipientError(
                "is the suppression list, not a mailing list: it cannot be read as one", path=path
            )
        stats = ListStats(name=path.stem, file=path)
        audience.lists.append(stats)
        files_by_list.setdefault(stats.name, path)
        for item in _read_list(path, stats):
            stats.rows += 1
            if isinstance(item, Problem):
                stats.invalid += 1
                audience.problems.append(item)
                continue
            stats.valid += 1
            key = item.key
            first = sendable.get(key) or suppressed.get(key)
            if first is not None:
                stats.duplicates += 1
                where = files_by_list.get(first.list_name, path).name
                audience.problems.append(
                    Problem(
                        path,
                        item.line,
                        item.email,
                        f"duplicate of {first.email} ({where}:{first.line}), not mailed twice",
                        kind="duplicate",
                    )
                )
            elif key in suppressions:
                suppressed[key] = item
                stats.suppressed += 1
                audience.suppressed.append(item)
            else:
                sendable[key] = item
                audience.recipients.append(item)
    return audience


def filter_recipients(
    recipients: Iterable[Recipient],
    where: Mapping[str, str | list[str]] | None = None,
    tags: Sequence[str] | None = None,
) -> list[Recipient]:
    """The recipients matching every ``where`` field (a list means any of its values) and,
    if ``tags`` is given, holding at least one of them. Field names and values are compared
    case-insensitively; a field is either standard or an extra column of the lists."""
    selected = list(recipients)
    if where:
        # Every field is checked against all the lists' columns first, so a misspelt one
        # is an error whatever the other filters select.
        extras = {_standard_name(column) for r in selected for column in r.extra}
        for name in where:
            standard = _standard_name(name)
            if selected and standard not in {*STANDARD_FIELDS, "tags", *extras}:
                raise RecipientError(
                    f"unknown recipient field {name!r} "
                    f"(fields: {', '.join([*STANDARD_FIELDS, *sorted(extras)])})"
                )
        for name, wanted in where.items():
            values = [wanted] if isinstance(wanted, str) else list(wanted)
            wanted_set = {_fold(str(value)) for value in values}
            selected = _match_field(selected, name, wanted_set)
    if tags is not None:
        wanted_tags = {_fold(tag) for tag in tags}
        selected = [r for r in selected if any(_fold(tag) in wanted_tags for tag in r.tags)]
    return selected


def _fold(value: str) -> str:
    return value.strip().casefold()


def _match_field(selected: list[Recipient], name: str, wanted: set[str]) -> list[Recipient]:
    standard = _standard_name(name)
    if standard == "tags":
        return [r for r in selected if any(_fold(tag) in wanted for tag in r.tags)]
    if standard in STANDARD_FIELDS:
        return [r for r in selected if _fold(getattr(r, standard)) in wanted]
    matched: list[Recipient] = []
    for recipient in selected:
        for column, value in recipient.extra.items():
            if _standard_name(column) == standard:
                if _fold(value) in wanted:
                    matched.append(recipient)
                break
    return matched


# --------------------------------------------------------------------------- suppression

# What str.strip() removes, plus the zero-width characters a copy from a web page brings.
_EDGE = " \t\r\n\x0b\x0c\u00a0\u2007\u202f\u200b\u200c\u200d\u2060\ufeff"
_QUOTES = {
    '"': '"',
    "'": "'",
    "`": "`",
    "\u201c": "\u201d",
    "\u201e": "\u201c",
    "\u2018": "\u2019",
    "\u00ab": "\u00bb",
}
# RFC 6068; "mailto://" is wrong but written; Exchange and Outlook export "SMTP:jo@...".
_MAILTO = re.compile(r"\s*(?:mailto:(?://)?|smtp:)", re.IGNORECASE)
_ANGLE = re.compile(r"<([^<>]*)>$")
# An old-style comment after the address: "jo@example.org (Jo Doe)".
_COMMENT = re.compile(r"\s*\([^()]*\)$")
_SPELLINGS = "write jo@example.org, Jo Doe <jo@example.org> or mailto:jo@example.org"
# A suppression entry written by `suppress` starts with "'" when the address starts with one
# of these, so that a spreadsheet shows it as text (OWASP "CSV Injection").
_FORMULA_START = (*_FORMULA, "\t", "\r")


# A dot-atom address (RFC 5322 section 3.4.1) at a host name with an alphabetic top-level
# domain: what nearly every suppression entry is.
_ATOM = r"[A-Za-z0-9!#$%&'*+/=?^_`{|}~-]+"
_HOST_LABEL = r"[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?"
# Not starting with "'": that quote may neutralise a formula (see _FORMULA_START).
_PLAIN_ENTRY = re.compile(rf"(?!'){_ATOM}(?:\.{_ATOM})*@(?:{_HOST_LABEL}\.)+[A-Za-z]{{2,63}}")


@dataclass
class Suppressions:
    """The suppression lists read together: who must never be mailed, and the entries that
    could not be read as an address (each blocks a live send until it is fixed)."""

    keys: set[str] = field(default_factory=set)
    problems: list[Problem] = field(default_factory=list)
    files: list[Path] = field(default_factory=list)

    def __contains__(self, key: object) -> bool:
        return key in self.keys

    def raise_for_problems(self) -> None:
        """Refuse a live send while an entry is not understood: it may name someone who
        asked never to be mailed."""
        if not self.problems:
            return
        count = len(self.problems)
        lines = "\n".join(f"  {line}" for line in problem_lines(self.problems))
        raise RecipientError(
            f"{count} suppression entr{'ies are' if count != 1 else 'y is'} not understood, so "
            f"a live send cannot know who must not be mailed:\n{lines}\n"
            "`distribute recipients check` shows them all."
        )


def suppression_addresses(entry: str) -> tuple[list[str], str | None]:
    """The addresses a suppression entry names, and why (part of) it is not understood.

    Understood: a bare address; ``Jo Doe <jo@example.org>``, ``"Doe, Jo" <jo@example.org>``
    and ``<jo@example.org>``; ``jo@example.org (Jo Doe)``; a ``mailto:`` URI in any case
    (RFC 6068: percent-escapes decoded, ``to=`` read, ``?subject=`` and other fields
    dropped) or Exchange's ``SMTP:jo@example.org``; full-width characters; quotes and spaces
    around any of these; the ``'`` that keeps a spreadsheet from reading a leading ``=`` ``+``
    ``-`` ``@`` as a formula; several entries separated by ``,`` or ``;``. Anything else is
    not understood, and the reason says why.
    """
    if _PLAIN_ENTRY.fullmatch(entry):
        # Most entries: a plain address, read as it is without the full validator, which
        # costs most of a large list (an entry it would refuse matches no list row anyway).
        return [entry], None
    # Full-width "＠" and other compatibility forms pasted from elsewhere read as ASCII.
    text = clean_text(unicodedata.normalize("NFKC", entry)).strip(_EDGE)
    # "'=a@example.org" was neutralised; "'=a@example.org'" is merely quoted.
    if text[:1] == "'" and text[1:2] in _FORMULA_START and not text.endswith("'"):
        text = text[1:]
    if not text:
        return [], "empty email"
    found: list[str] = []
    reasons: list[str] = []
    for part in _entry_parts(text):
        addresses, reason = _entry_part(part, mailto=True)
        found += addresses
        if reason:
            reasons.append(reason)
    if not found and not reasons:
        reasons.append(f"no address in {text!r}")  # only separators, such as ","
    return found, "; ".join(reasons) or None


def _entry_parts(text: str) -> list[str]:
    """``text`` split on ``,`` and ``;`` outside quotes, ``<>``, ``()`` and a mailto query."""
    parts: list[str] = []
    current: list[str] = []
    quote = ""
    depth = 0
    query = False
    for char in text:
        if quote:
            quote = "" if char == quote else quote
        elif char == '"':
            quote = char
        elif char in "<(":
            depth += 1
        elif char in ">)":
            depth = max(depth - 1, 0)
        elif char == "?":
            query = True  # "?subject=a,b": the rest of this part is the query
        elif char in ",;" and not depth and not query:
            parts.append("".join(current))
            current = []
            continue
        current.append(char)
    parts.append("".join(current))
    # "Doe, Jo <jo@example.org>": a piece with no address is the start of the next one's name.
    merged: list[str] = []
    pending = ""
    for part in (p.strip(_EDGE) for p in parts):
        if not part:
            continue
        if "@" in part or "%40" in part:
            merged.append(f"{pending}, {part}" if pending else part)
            pending = ""
        else:
            pending = f"{pending}, {part}" if pending else part
    if pending:
        merged.append(pending)
    return merged


def _unquote(text: str) -> str:
    while len(text) >= 2 and _QUOTES.get(text[0]) == text[-1]:
        text = text[1:-1].strip(_EDGE)
    return text


def _entry_part(part: str, *, mailto: bool) -> tuple[list[str], str | None]:
    text = _unquote(part)
    found: list[str] = []
    angle = _ANGLE.search(text)
    if angle is None and text.endswith(")"):
        text = _COMMENT.sub("", text)
    elif angle is not None:
        name = _unquote(text[: angle.start()].strip(_EDGE))
        text = _unquote(angle.group(1).strip(_EDGE))
        # '"jo@example.org" <jo.doe@example.org>': either may be the one who asked.
        if "@" in name and address_problem(name) is None:
            found.append(name)
    head = _MAILTO.match(text)
    if head and mailto:
        from urllib.parse import unquote

        path, _, query = text[head.end() :].partition("?")
        targets = path.split(",") if path else []
        for field_ in query.split("&"):
            key, _, value = field_.partition("=")
            if unquote(key).strip().lower() == "to":
                targets += value.split(",")
        if not targets:
            return found, f"no address in {text!r}"
        reasons: list[str] = []
        for target in targets:
            addresses, reason = _entry_part(unquote(target).strip(_EDGE), mailto=False)
            found += addresses
            if reason:
                reasons.append(reason)
        return found, "; ".join(reasons) or None
    problem = address_problem(text)
    if problem:
        return found, problem
    found.append(text)
    return found, None


def suppression_paths(folder: Path) -> list[Path]:
    """The suppression lists of ``folder``: ``suppressed.csv`` in any letter case, all of them
    (where the file system tells ``Suppressed.csv`` and ``suppressed.csv`` apart, both count)."""
    # os.scandir, not Path.iterdir: a send looks again before every message (SuppressionWatch),
    # and DirEntry knows a file's type without a stat or a Path per name.
    try:
        with os.scandir(folder) as entries:
            names = [
                entry.name
                for entry in entries
                if _suppression_name(entry.name) and (_dangling(entry) or entry.is_file())
            ]
    except (FileNotFoundError, NotADirectoryError):
        return []
    return sorted(folder / name for name in names)


def _dangling(entry: os.DirEntry[str]) -> bool:
    """A link to nothing (a share not mounted) or to itself: listed, so that reading it
    fails and says so, rather than the list it stands for being taken as empty. Asked
    before ``DirEntry.is_file``, which raises on a link loop instead of answering."""
    return entry.is_symlink() and not os.path.exists(entry.path)


def _suppression_name(name: str) -> bool:
    """:func:`is_suppression_file` of a bare file name."""
    stem, dot, suffix = name.rpartition(".")
    return bool(dot) and suffix.lower() == "csv" and _name_key(stem) == SUPPRESSED


def load_suppressions(*folders: Path) -> Suppressions:
    """Every suppression entry of ``folders``; none when they hold no suppression list."""
    seen: set[str] = set()
    paths: list[Path] = []
    for folder in folders:
        for path in suppression_paths(folder):
            # Not Path.resolve, which raises on a link loop: reading the list says what is wrong.
            real = os.path.realpath(path)
            if real not in seen:
                seen.add(real)
                paths.append(path)
    return read_suppressions(paths)


def read_suppressions(paths: Iterable[Path]) -> Suppressions:
    """Read suppression lists: an ``email`` column (a file with no header line, just
    addresses, works too), any other columns kept for people, not read."""
    result = Suppressions()
    for path in paths:
        result.files.append(path)
        _read_suppression_list(path, result)
    return result


def _read_suppression_list(path: Path, result: Suppressions) -> None:
    records = _records(path)
    header = next(records, None)
    if header is None:
        return
    columns = [_standard_name(cell) for cell in header[1]]
    width = len(columns)
    if "email" in columns:
        index = columns.index("email")
        if "email" in columns[index + 1 :]:
            # Reading one column would leave the other's addresses unsuppressed.
            other = columns.index("email", index + 1)
            raise RecipientError(
                _twice(header[1][index], header[1][other], "email"), path=path, line=header[0]
            )
    else:
        # A bare column of addresses pasted from elsewhere: its first line is an entry too.
        understood = [suppression_addresses(cell) for cell in header[1]]
        index = next((i for i, (found, why) in enumerate(understood) if found and not why), -1)
        if index < 0:
            raise RecipientError(_no_email_column(header[1]), path=path, line=header[0])
        records = itertools.chain([header], records)
    for line, cells, suspects in records:
        if suspects:
            # The swallowed addresses would silently stop being suppressed: refuse the file,
            # whatever the column, rather than mail someone who asked not to be.
            raise RecipientError(_SWALLOWED.format(suspects[0][1]), path=path, line=line)
        raw = _at(cells, index)
        found, reason = suppression_addresses(raw)
        result.keys.update(address_key(address) for address in found)
        if reason:
            # Meanwhile the entry as written counts too: over-matching can only suppress.
            if key := address_key(raw):
                result.keys.add(key)
            result.problems.append(
                Problem(
                    path,
                    line,
                    raw.strip(),
                    f"suppression entry not understood: {reason} ({_SPELLINGS})",
                    kind="suppression",
                )
            )
        beyond = [cell for cell in cells[width:] if cell.strip()]
        if beyond:
            for cell in beyond:
                result.keys.update(address_key(a) for a in suppression_addresses(cell)[0])
            result.problems.append(
                Problem(
                    path,
                    line,
                    raw.strip(),
                    f"{len(cells)} fields where the header has {width}: put one address "
                    "per row (a value holding the delimiter must be quoted)",
                    kind="suppression",
                )
            )


class SuppressionWatch:
    """The suppression lists as they are now, read again whenever one of their files changes,
    so that an address suppressed while a send runs is not mailed once the change is saved.

    Safe to share between threads: a send checks it once per message, just after claiming it.
    """

    def __init__(self, folders: Sequence[Path]):
        self.folders = list(folders)
        self._lock = threading.Lock()
        self._stamp: tuple[tuple[str, int, int, int], ...] | None = None
        self._current = Suppressions()

    def current(self) -> Suppressions:
        with self._lock:
            stamp = self._files()
            if stamp != self._stamp:
                self._current = load_suppressions(*self.folders)
                self._stamp = stamp
            return self._current

    def _files(self) -> tuple[tuple[str, int, int, int], ...]:
        stamps = []
        for folder in self.folders:
            for path in suppression_paths(folder):
                with contextlib.suppress(OSError):
                    # The inode too: an editor saves by writing a new file and renaming it.
                    info = path.stat()
                    stamps.append((str(path), info.st_ino, info.st_mtime_ns, info.st_size))
        return tuple(stamps)


def add_suppression(folder: Path, address: str, reason: str | None, when: date) -> AddedSuppression:
    """Add ``address`` to ``folder``'s suppression list (``suppressed.csv`` created if needed).

    ``address`` may be written as a suppression entry is (``Jo <jo@example.org>``,
    ``mailto:jo@example.org``); the bare address is what is written. Nothing is written
    when it was already suppressed, in any case.
    """
    found, problem = suppression_addresses(address)
    if problem:
        raise RecipientError(problem)
    if len(found) != 1:
        raise RecipientError(f"{address.strip()!r} holds {len(found)} addresses: give one")
    address = found[0]
    if address_key(address) in load_suppressions(folder):
        return AddedSuppression(address, added=False)
    path = _suppression_target(folder)
    reason = clean_text(reason or "")
    # A spreadsheet opening the file would run a leading = + - @ as a formula (OWASP "CSV
    # Injection"); the quote makes it text and reading the entry back drops it. Control
    # characters, also listed there, are gone already.
    if reason.startswith(_FORMULA):
        reason = "'" + reason
    written = "'" + address if address.startswith(_FORMULA_START) else address
    values = {"email": written, "reason": reason, "date": when.isoformat()}
    try:
        folder.mkdir(parents=True, exist_ok=True)
        # Follow the file's own layout: it may have been edited in a spreadsheet since.
        raw = path.read_bytes() if path.is_file() else b""
        delimiter, header, newline = _layout(raw)
        if not any(cell.strip() for cell in header):
            # No file, or nothing in it but blank lines (or Excel's "sep=" line), as the
            # reader saw before this was called: a new list, header first.
            with path.open("w", encoding="utf-8", newline="") as out:
                csv.writer(out, lineterminator="\n").writerows(
                    [SUPPRESSION_HEADER, [values[column] for column in SUPPRESSION_HEADER]]
                )
            return AddedSuppression(address, added=True)
        names = [_standard_name(cell) for cell in header]
        if "email" in names:
            row = [values.get(name, "") for name in names]
        else:
            # A file of bare addresses, no header line: the address goes where they are.
            row = [""] * len(header)
            at = next((i for i, cell in enumerate(header) if suppression_addresses(cell)[0]), 0)
            row[at] = written
        with path.open("a", encoding="utf-8", newline="") as out:
            if not raw.endswith((b"\n", b"\r")):
                out.write(newline)
            csv.writer(out, delimiter=delimiter, lineterminator=newline).writerow(row)
    except OSError as exc:
        raise RecipientError(
            f"cannot write the suppression list: {exc.strerror}", path=path
        ) from None
    return AddedSuppression(address, added=True)


def _layout(raw: bytes) -> tuple[str, list[str], str]:
    """The delimiter, header cells and line ending of a CSV file, read as :func:`_records`
    reads them: a byte-order mark, blank lines and Excel's ``sep=;`` line come first."""
    # Split as the reader's text stream splits (CR, LF, CRLF), not at U+2028 and its kin.
    text = raw[: 1 << 16].decode("utf-8-sig", errors="replace")
    lines = io.StringIO(text, newline="").readlines()
    delimiter = ""
    header_line = ""
    for line in lines:
        hint = line.strip()
        if not hint:
            continue
        if hint.lower().startswith("sep=") and len(hint) == 5 and not delimiter:
            delimiter = hint[4]
            continue
        header_line = line
        break
    newline = "\r\n" if header_line.endswith("\r\n") else "\n"
    header_line = header_line.rstrip("\r\n")
    delimiter = delimiter or _delimiter(header_line)
    return delimiter, next(csv.reader([header_line], delimiter=delimiter), []), newline


@dataclass(frozen=True)
class AddedSuppression:
    """The address ``add_suppression`` read, and whether it was new."""

    address: str
    added: bool


def _suppression_target(folder: Path) -> Path:
    """The suppression list to append to: the one already there, whatever its letter case
    (``suppressed.csv`` itself when there are several), else a new ``suppressed.csv``."""
    exact = folder / f"{SUPPRESSED}.csv"
    existing = suppression_paths(folder)
    if not existing or exact in existing:
        return exact
    return existing[0]


# The usual spellings of the standard columns in English and French lists, compared by
# _header_key: no accents, any case, spaces, underscores, hyphens and dots alike.
_ALIASES = {
    "email": (
        "email",
        "e_mail",
        "mail",
        "email_address",
        "e_mail_address",
        "mail_address",
        "courriel",
        "adresse_courriel",
        "adresse_e_mail",
        "adresse_email",
        "adresse_mail",
        "adresse_electronique",
        "mel",
    ),
    "first_name": ("first_name", "firstname", "first", "given_name", "forename", "prenom"),
    "last_name": (
        "last_name",
        "lastname",
        "last",
        "surname",
        "family_name",
        "nom",
        "nom_de_famille",
    ),
    "name": ("name", "full_name", "fullname", "display_name", "nom_complet", "prenom_nom"),
    "outlet": (
        "outlet",
        "media",
        "media_outlet",
        "publication",
        "newspaper",
        "journal",
        "organisation",
        "organization",
        "company",
        "societe",
        "redaction",
    ),
    "beat": ("beat", "topic", "section", "rubrique", "thematique", "specialite"),
    "language": ("language", "lang", "langue"),
    "timezone": ("timezone", "time_zone", "tz", "fuseau_horaire", "fuseau"),
    "tags": ("tags", "tag", "labels", "etiquettes", "etiquette", "mots_cles"),
}
_FIELD_OF = {alias: name for name, aliases in _ALIASES.items() for alias in aliases}
_SEPARATORS = re.compile(r"[\s_.\-]+")
# Shown when a list has no address column: the names to use, and a few others understood.
_EXPECTED = (
    "email (or E-mail, Email Address, Courriel, Adresse e-mail), first_name (Prénom, "
    "First Name), last_name (Nom, Last Name), name, outlet (Média), beat (Rubrique), "
    "language (Langue), timezone, tags"
)


def _header_key(header: str) -> str:
    decomposed = unicodedata.normalize("NFKD", header.strip())
    bare = "".join(char for char in decomposed if not unicodedata.combining(char))
    return _SEPARATORS.sub("_", bare.casefold()).strip("_")


@functools.lru_cache(maxsize=256)
def _standard_name(header: str) -> str:
    """A header cell as a field name: ``" First Name "``, ``first-name`` and ``Prénom`` are
    ``first_name``; a column that is no standard field keeps its name, lowercased, with
    ``_`` for spaces and hyphens (``Desk Phone`` is ``desk_phone``)."""
    known = _FIELD_OF.get(_header_key(header))
    if known:
        return known
    return header.strip().lower().replace(" ", "_").replace("-", "_")


def column_field(header: str) -> str:
    """The field a column header (or a ``where`` key) stands for: see :func:`_standard_name`."""
    return _standard_name(header)


def _twice(first: str, second: str, field_name: str) -> str:
    """Two header cells read as one field ("Email" and "E-mail"): which one was meant is a
    guess, and the values of the other would be silently left out."""
    return (
        f"columns {first.strip()!r} and {second.strip()!r} are both read as the {field_name} "
        "column: keep one, or rename the other"
    )


def _no_email_column(header: Sequence[str]) -> str:
    found = ", ".join(repr(cell.strip()) for cell in header if cell.strip()) or "nothing"
    return f"no email column in the header line (found: {found}); expected columns: {_EXPECTED}"


def _delimiter(header_line: str) -> str:
    """The delimiter the header line uses most outside quotes; ``,`` for a single column."""
    counts = dict.fromkeys(_DELIMITERS, 0)
    quoted = False
    for char in header_line:
        if char == '"':
            quoted = not quoted
        elif not quoted and char in counts:
            counts[char] += 1
    best = max(_DELIMITERS, key=lambda d: counts[d])
    return best if counts[best] else ","


def _records(path: Path) -> Iterator[tuple[int, list[str], tuple[tuple[int, int], ...]]]:
    """The non-blank records of a CSV file, header first, each with the line it starts on and
    its suspects: ``(index, line)`` of each field that spans several lines and holds what looks
    like another record (see :func:`_swallowed`), usually none.

    A quote still open at the end of the file is an error: everything after it is ambiguous.
    """
    offset = 0
    previous = 0
    reader = None
    try:
        with path.open(encoding="utf-8-sig", newline="") as stream:
            first = stream.readline()
            while first and not first.strip():
                offset += 1
                first = stream.readline()
            if not first:
                return
            if "\x00" in first:
                # UTF-16 without a BOM decodes as UTF-8 with a NUL after every ASCII letter.
                raise RecipientError(_UTF16, path=path, line=offset + 1)
            # Excel writes this line when asked to keep the delimiter of another locale.
            hint = first.strip()
            if hint.lower().startswith("sep=") and len(hint) == 5:
                offset += 1
                delimiter = hint[4]
                first = stream.readline()
            else:
                delimiter = _delimiter(first)
            lines = itertools.chain([first], stream, ["\n", _END])
            reader = csv.reader(lines, delimiter=delimiter)
            width = 0
            for cells in reader:
                start = offset + previous + 1
                multiline = reader.line_num - previous > 1
                previous = reader.line_num
                if cells and cells[-1].endswith(_END):
                    if len(cells) == 1 and cells[0] == _END:
                        return
                    opened = start + _breaks(cells[:-1])
                    raise RecipientError(
                        "a quote opened on this line is never closed", path=path, line=opened
                    )
                if any(cell.strip() for cell in cells):
                    suspects = _NO_SUSPECTS
                    if multiline and width:
                        suspects = _swallowed(cells, start, delimiter, width)
                    width = width or len(cells)
                    yield start, cells, suspects
    except UnicodeDecodeError:
        line, utf16 = _first_undecodable(path)
        raise RecipientError(_UTF16 if utf16 else _NOT_UTF8, path=path, line=line) from None
    except csv.Error as exc:
        if "field larger than field limit" in str(exc):
            # csv stops at 128 KiB in one field, long before an unclosed quote reaches the
            # end of a large file: point at the record where that field began.
            raise RecipientError(
                "a field starting on this line runs on for more than 128 KB: most likely a "
                "quote opened here is never closed",
                path=path,
                line=offset + previous + 1,
            ) from None
        line = offset + reader.line_num if reader is not None else None
        raise RecipientError(f"cannot parse the CSV: {exc}", path=path, line=line) from None
    except FileNotFoundError:
        raise RecipientError("file not found", path=path) from None
    except OSError as exc:
        raise RecipientError(f"cannot read the file: {exc.strerror}", path=path) from None


def _first_undecodable(path: Path) -> tuple[int | None, bool]:
    """The line of the first byte that is not UTF-8, and whether the file is UTF-16 (by its
    byte-order mark, or the NUL bytes it puts beside ASCII letters); read again in chunks, as
    the file may be large."""
    decoder = codecs.getincrementaldecoder("utf-8")()
    line = 1
    try:
        with path.open("rb") as stream:
            head = stream.read(4096)
            if head.startswith((codecs.BOM_UTF16_LE, codecs.BOM_UTF16_BE)) or b"\x00" in head:
                return 1, True
            stream.seek(0)
            for chunk in iter(lambda: stream.read(1 << 20), b""):
                pending = len(decoder.getstate()[0])
                try:
                    decoder.decode(chunk)
                except UnicodeDecodeError as exc:
                    return line + chunk[: max(exc.start - pending, 0)].count(b"\n"), False
                line += chunk.count(b"\n")
    except OSError:
        pass
    return None, False


def _breaks(cells: Iterable[str]) -> int:
    """How many physical lines the csv module counted inside ``cells``."""
    return sum(len(_LINE_BREAK.findall(cell)) for cell in cells)


def _swallowed(
    cells: list[str], start: int, delimiter: str, width: int
) -> tuple[tuple[int, int], ...]:
    """The fields of a record starting on line ``start`` that look like they swallowed rows.

    A quote opened by mistake and closed by another row's quote makes one field of the rows
    in between, with no parse error. Their lines still look like records: each holds an
    address, or as many delimiters as the header (with at least three columns: with two, a
    comma in a postal address would look like a record). The first line of the field is
    the row's own text, so only the lines after a break count.
    """
    suspects: list[tuple[int, int]] = []
    line = start
    for index, cell in enumerate(cells):
        parts = _LINE_BREAK.split(cell)
        for part in parts[1:]:
            if _ADDRESS_LIKE.search(part) or (width >= 3 and part.count(delimiter) >= width - 1):
                suspects.append((index, line))
                break
        line += len(parts) - 1
    return tuple(suspects)


class _Columns:
    """Where each field sits in a list's rows, read from its header line."""

    def __init__(self, header: list[str], path: Path, line: int):
        self.standard: dict[str, int] = {}
        self.extra: list[tuple[str, int]] = []
        self.named: list[tuple[str, str]] = []
        self.unnamed: list[int] = []
        seen: dict[str, str] = {}
        for index, cell in enumerate(header):
            name = _standard_name(cell)
            if not name:
                # Spreadsheets leave empty header cells after the last column; one with
                # values under it is reported (see ListStats.unnamed).
                self.unnamed.append(index)
                continue
            if name in seen:
                raise RecipientError(_twice(seen[name], cell, name), path=path, line=line)
            seen[name] = cell
            self.named.append((cell.strip(), name))
            if name in STANDARD_FIELDS:
                self.standard[name] = index
            else:
                # Keyed like the standard fields so templates can say {{ desk_phone }}.
                self.extra.append((name, index))
        if "email" not in self.standard:
            raise RecipientError(_no_email_column(header), path=path, line=line)
        self.width = len(header)


def _read_list(path: Path, stats: ListStats) -> Iterator[Recipient | Problem]:
    """Each data row of a list, as a valid :class:`Recipient` or as the :class:`Problem`;
    the header's columns go into ``stats``."""
    list_name = stats.name
    records = _records(path)
    header = next(records, None)
    if header is None:
        raise RecipientError(
            "the file is empty: it needs a header line with an email column", path=path, line=1
        )
    columns = _Columns(header[1], path, header[0])
    stats.columns = tuple(columns.named)
    at = columns.standard.get
    i_email, i_first, i_last, i_name, i_outlet, i_beat, i_language, i_timezone, i_tags = (
        at(name, -1) for name in STANDARD_FIELDS
    )
    # Outlets, beats, languages, zones, tag sets and many names repeat over thousands of
    # rows: sharing one string or tuple per distinct value keeps a large list small.
    shared: dict[str, str] = {}
    tag_sets: dict[str, tuple[str, ...]] = {}

    unnamed = set(columns.unnamed)
    for line, cells, suspects in records:
        if unnamed:
            found = {index for index in unnamed if _at(cells, index).strip()}
            if found:
                unnamed -= found
                stats.unnamed = tuple(sorted({*stats.unnamed, *(i + 1 for i in found)}))
        email = _at(cells, i_email).strip()
        reasons: list[str] = []
        problem = address_problem(email)
        if problem:
            reasons.append(problem)
        # A broken address already makes the row invalid, with its own reason.
        near = next((line_at for index, line_at in suspects if index != i_email), None)
        if near is not None:
            reasons.append(_SWALLOWED.format(near))
        if len(cells) > columns.width and any(c.strip() for c in cells[columns.width :]):
            reasons.append(
                f"{len(cells)} fields where the header has {columns.width}"
                " (a value holding the delimiter must be quoted)"
            )
        language = clean_text(_at(cells, i_language)).lower()
        if language and not _LANGUAGE.fullmatch(language):
            reasons.append(
                f"invalid language {language!r}: use a two-letter ISO 639-1 code such as 'fr'"
            )
        timezone = clean_text(_at(cells, i_timezone))
        if timezone and not _known_zone(timezone):
            reasons.append(
                f"unknown time zone {timezone!r}: use an IANA name such as 'Europe/Paris'"
            )
        if reasons:
            yield Problem(path, line, email, "; ".join(reasons))
            continue

        raw_tags = _at(cells, i_tags)
        tags = tag_sets.get(raw_tags)
        if tags is None:
            parts = (clean_text(tag) for tag in _TAG_SPLIT.split(raw_tags))
            tags = tag_sets[raw_tags] = tuple(dict.fromkeys(tag for tag in parts if tag))
        extra = (
            {column: clean_text(_at(cells, index)) for column, index in columns.extra}
            if columns.extra
            else _NO_EXTRA
        )
        outlet = clean_text(_at(cells, i_outlet))
        beat = clean_text(_at(cells, i_beat))
        first_name = clean_text(_at(cells, i_first))
        last_name = clean_text(_at(cells, i_last))
        name = clean_text(_at(cells, i_name))
        # Any of these can reach a header (the To name, a step's subject): refuse here what
        # the message would refuse, so the list check and the campaign check both name it.
        encoded = _encoded_field(
            (("first_name", first_name), ("last_name", last_name), ("name", name)),
            # The To header joins the two names: each may hold half of an encoded-word.
            (("first_name + last_name (the To name)", f"{first_name} {last_name}"),),
            (("outlet", outlet), ("beat", beat)),
            extra.items(),
        )
        if encoded:
            yield Problem(path, line, email, encoded)
            continue
        yield Recipient(
            email=email,
            first_name=shared.setdefault(first_name, first_name),
            last_name=shared.setdefault(last_name, last_name),
            name=shared.setdefault(name, name),
            outlet=shared.setdefault(outlet, outlet),
            beat=shared.setdefault(beat, beat),
            language=shared.setdefault(language, language),
            timezone=shared.setdefault(timezone, timezone),
            tags=tags,
            extra=extra,
            list_name=list_name,
            line=line,
        )


def _encoded_field(*groups: Iterable[tuple[str, str]]) -> str | None:
    """The first field holding RFC 2047 encoded text, as a reason, or None."""
    for group in groups:
        for column, value in group:
            if "=?" in value and (problem := header_text_problem(value)):
                return f"{column} {problem}"
    return None


def _at(cells: list[str], index: int) -> str:
    """The cell at ``index``; short rows (a spreadsheet drops trailing empty cells) read as ''."""
    return cells[index] if 0 <= index < len(cells) else ""


def address_problem(email: str) -> str | None:
    """Why ``email`` cannot be mailed (syntax only: no DNS look-up), or None."""
    if not email:
        return "empty email"
    if "=?" in email and (problem := header_text_problem(email)):
        # "=" and "?" are allowed in an address, but the email package decodes such text
        # into something else in the To header than the address the server is given.
        return f"invalid address {email!r}: it {problem}"
    if _plainly_valid(email):
        return None
    try:
        validate_email(email, check_deliverability=False)
    except EmailNotValidError as exc:
        return f"invalid address {email!r}: {exc}"
    return None


# email_validator's limit on a whole address (RFC 3696 errata 1690, RFC 5321 4.5.3.1.3).
_ADDRESS_MAX = 254
# Its dot-atom-text (RFC 5322 section 3.2.3), the ASCII local parts it accepts as they are.
_DOT_ATOM = re.compile(rf"{_ATOM}(?:\.{_ATOM})*")


def _plainly_valid(address: str) -> bool:
    """Whether email_validator accepts ``address``, told without running it in full on the
    addresses nearly every list holds: ASCII, a dot-atom local part, a domain it already
    accepted once (its checks of the domain do not depend on the local part). Anything else
    is left to it, for its exact reason.

    A domain in punycode is left to it too: its Unicode form, not the address as written,
    is what it measures against the length limit.
    """
    if len(address) > _ADDRESS_MAX or not address.isascii():
        return False
    local, at, domain = address.partition("@")
    return (
        bool(at)
        and _DOT_ATOM.fullmatch(local) is not None
        and "xn--" not in domain.lower()
        and _accepted_domain(domain)
    )


@functools.lru_cache(maxsize=4096)
def _accepted_domain(domain: str) -> bool:
    """Whether email_validator accepts ``domain`` after the shortest local part."""
    try:
        validate_email(f"a@{domain}", check_deliverability=False)
    except EmailNotValidError:
        return False
    return True


@functools.lru_cache(maxsize=512)
def _known_zone(name: str) -> bool:
    try:
        ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError):
        return False
    return True


def display_path(path: Path) -> str:
    """``path`` relative to the current folder when it is inside it, else as given."""
    try:
        return str(path.resolve().relative_to(Path.cwd().resolve()))
    except (ValueError, OSError):
        return str(path)
