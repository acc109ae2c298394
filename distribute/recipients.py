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

import contextlib
import csv
import functools
import itertools
import re
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
        return text.lower()
    text = unicodedata.normalize("NFKC", text).casefold()
    local, at, domain = text.rpartition("@")
    # A domain IDNA refuses is reported by validation; the key stays comparable meanwhile.
    with contextlib.suppress(UnicodeError):
        domain = domain.encode("idna").decode("ascii")
    return f"{local}{at}{domain}"


@dataclass(frozen=True)
class Problem:
    """A row that will not be mailed, and why: an invalid row, or a duplicate of an earlier one.

    Duplicates are information, not errors: the first occurrence is still mailed.
    """

    file: Path
    line: int
    email: str
    reason: str
    kind: Literal["invalid", "duplicate"] = "invalid"


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


@dataclass
class Audience:
    """The recipients of some lists read together: sendable, suppressed, and what went wrong."""

    recipients: list[Recipient] = field(default_factory=list)
    suppressed: list[Recipient] = field(default_factory=list)
    problems: list[Problem] = field(default_factory=list)
    lists: list[ListStats] = field(default_factory=list)

    @property
    def invalid(self) -> list[Problem]:
        return [p for p in self.problems if p.kind == "invalid"]

    def raise_for_invalid(self) -> None:
        """Raise the first invalid row as a :class:`RecipientError` naming its file and line."""
        for problem in self.problems:
            if problem.kind == "invalid":
                raise RecipientError(problem.reason, path=problem.file, line=problem.line)


def clean_text(value: str) -> str:
    """``value`` without control characters, so it can go into a header or a log line as is."""
    # Every character removed below is non-printable, so most values skip the regexes.
    if not value.isprintable():
        value = " ".join(_BREAKING.sub(" ", _INVISIBLE.sub("", value)).split())
    return value.strip()


def recipients_dir(settings: Settings) -> Path:
    """``[paths] recipients``, else the workspace's ``recipients/``, else the sample lists."""
    if settings.recipients is not None:
        return settings.recipients
    local = settings.workspace / "recipients"
    if local.is_dir():
        return local
    return config.bundled("recipients")


def suppression_file(settings: Settings) -> Path:
    """Where ``suppress`` writes: the lists' own ``suppressed.csv``, except that the sample
    lists shipped with distribute are never written to; the workspace gets its own folder."""
    if settings.recipients is None and not (settings.workspace / "recipients").is_dir():
        return settings.workspace / "recipients" / f"{SUPPRESSED}.csv"
    return recipients_dir(settings) / f"{SUPPRESSED}.csv"


def list_names(folder: Path) -> list[str]:
    """The lists in ``folder``: the stems of its CSV files, except the suppression list."""
    if not folder.is_dir():
        raise RecipientError("the recipients folder does not exist", path=folder)
    return sorted(
        path.stem
        for path in folder.iterdir()
        if path.suffix.lower() == ".csv"
        and path.is_file()
        # Hidden files and editor lock files ("~$list.csv") are not lists.
        and not path.name.startswith((".", "~"))
        and path.stem.lower() != SUPPRESSED
    )


def list_file(folder: Path, name: str) -> Path:
    """The CSV file of list ``name`` in ``folder``; unknown names name the known lists."""
    if name.lower() == SUPPRESSED:
        raise RecipientError(
            f"{SUPPRESSED!r} is the suppression list, not a mailing list", path=folder
        )
    known = list_names(folder)
    if name not in known:
        listed = ", ".join(known) if known else "none"
        raise RecipientError(f"no list named {name!r} (known lists: {listed})", path=folder)
    for path in folder.iterdir():
        if path.stem == name and path.suffix.lower() == ".csv":
            return path
    raise AssertionError(f"{name} vanished from {folder}")  # pragma: no cover


def load_audience(folder: Path, lists: Sequence[str]) -> Audience:
    """Read the named lists of ``folder`` in that order, deduplicated and suppressed."""
    files = [list_file(folder, name) for name in dict.fromkeys(lists)]
    return read_lists(files, load_suppressions(folder))


def read_lists(files: Sequence[Path], suppressions: Collection[str]) -> Audience:
    """Read CSV ``files`` (anywhere; each list is named after its file's stem) as one audience.

    ``suppressions`` holds normalised addresses (see :func:`load_suppressions`).
    """
    audience = Audience()
    first_seen: dict[str, Recipient] = {}
    files_by_list: dict[str, Path] = {}
    for path in files:
        if path.stem.lower() == SUPPRESSED:
            raise RecipientError(
                "is the suppression list, not a mailing list: it cannot be read as one", path=path
            )
        stats = ListStats(name=path.stem, file=path)
        audience.lists.append(stats)
        files_by_list.setdefault(stats.name, path)
        for item in _read_list(path, stats.name):
            stats.rows += 1
            if isinstance(item, Problem):
                stats.invalid += 1
                audience.problems.append(item)
                continue
            stats.valid += 1
            key = item.key
            if key == item.email:
                key = item.email  # one string instead of two when the address is lowercase
            first = first_seen.get(key)
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
            else:
                first_seen[key] = item
                if key in suppressions:
                    stats.suppressed += 1
                    audience.suppressed.append(item)
                else:
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


def load_suppressions(folder: Path) -> set[str]:
    """The normalised addresses of ``folder/suppressed.csv``; empty when there is none."""
    path = folder / f"{SUPPRESSED}.csv"
    if not path.is_file():
        return set()
    records = _records(path)
    header = next(records, None)
    if header is None:
        return set()
    columns = [_standard_name(cell) for cell in header[1]]
    if "email" not in columns:
        raise RecipientError(_no_email_column(header[1]), path=path, line=header[0])
    index = columns.index("email")
    # Any non-empty entry counts, even a malformed one: refusing to mail is the safe side.
    keys: set[str] = set()
    for line, cells, suspects in records:
        if suspects:
            # The swallowed addresses would silently stop being suppressed: refuse the file,
            # whatever the column, rather than mail someone who asked not to be.
            raise RecipientError(_SWALLOWED.format(suspects[0][1]), path=path, line=line)
        if index < len(cells) and (key := address_key(cells[index])):
            keys.add(key)
    return keys


def add_suppression(folder: Path, address: str, reason: str | None, when: date) -> bool:
    """Add ``address`` to ``folder/suppressed.csv`` (created if needed).

    Returns False when it was already suppressed, in any case.
    """
    address = address.strip()
    problem = address_problem(address)
    if problem:
        raise RecipientError(problem)
    if address_key(address) in load_suppressions(folder):
        return False
    path = folder / f"{SUPPRESSED}.csv"
    reason = clean_text(reason or "")
    if reason.startswith(_FORMULA):
        # A spreadsheet opening the file would run it as a formula (OWASP "CSV Injection");
        # the quote makes it text. Control characters, also listed there, are gone already.
        reason = "'" + reason
    values = {"email": address, "reason": reason, "date": when.isoformat()}
    try:
        folder.mkdir(parents=True, exist_ok=True)
        if not path.is_file() or path.stat().st_size == 0:
            with path.open("w", encoding="utf-8", newline="") as out:
                csv.writer(out, lineterminator="\n").writerows(
                    [SUPPRESSION_HEADER, [values[column] for column in SUPPRESSION_HEADER]]
                )
            return True
        # Follow the file's own layout: it may have been edited in a spreadsheet since.
        raw = path.read_bytes()
        header_line = raw.split(b"\n", 1)[0].decode("utf-8-sig", errors="replace")
        delimiter = _delimiter(header_line)
        header = next(csv.reader([header_line.rstrip("\r\n")], delimiter=delimiter))
        row = [values.get(_standard_name(cell), "") for cell in header]
        newline = "\r\n" if header_line.endswith("\r") else "\n"
        with path.open("a", encoding="utf-8", newline="") as out:
            if not raw.endswith((b"\n", b"\r")):
                out.write(newline)
            csv.writer(out, delimiter=delimiter, lineterminator=newline).writerow(row)
    except OSError as exc:
        raise RecipientError(
            f"cannot write the suppression list: {exc.strerror}", path=path
        ) from None
    return True


def _standard_name(header: str) -> str:
    """A header cell as a field name: ``" First Name "`` and ``first-name`` are ``first_name``."""
    return header.strip().lower().replace(" ", "_").replace("-", "_")


def _no_email_column(header: Sequence[str]) -> str:
    found = ", ".join(repr(cell.strip()) for cell in header if cell.strip()) or "nothing"
    return f"no 'email' column in the header line (found: {found})"


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
        raise RecipientError(_NOT_UTF8, path=path) from None
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
        seen: set[str] = set()
        for index, cell in enumerate(header):
            name = _standard_name(cell)
            if not name:
                continue  # spreadsheets leave empty header cells after the last column
            if name in seen:
                raise RecipientError(
                    f"column {cell.strip()!r} appears twice in the header", path=path, line=line
                )
            seen.add(name)
            if name in STANDARD_FIELDS:
                self.standard[name] = index
            else:
                # Keyed like the standard fields so templates can say {{ desk_phone }}.
                self.extra.append((name, index))
        if "email" not in self.standard:
            raise RecipientError(_no_email_column(header), path=path, line=line)
        self.width = len(header)


def _read_list(path: Path, list_name: str) -> Iterator[Recipient | Problem]:
    """Each data row of a list, as a valid :class:`Recipient` or as the :class:`Problem`."""
    records = _records(path)
    header = next(records, None)
    if header is None:
        raise RecipientError(
            "the file is empty: it needs a header line with an 'email' column", path=path, line=1
        )
    columns = _Columns(header[1], path, header[0])
    at = columns.standard.get
    i_email, i_first, i_last, i_name, i_outlet, i_beat, i_language, i_timezone, i_tags = (
        at(name, -1) for name in STANDARD_FIELDS
    )
    # Outlets, beats, languages, zones and tag sets repeat over thousands of rows:
    # sharing one string or tuple per distinct value keeps a large list small.
    shared: dict[str, str] = {}
    tag_sets: dict[str, tuple[str, ...]] = {}

    for line, cells, suspects in records:
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
            (("outlet", outlet), ("beat", beat)),
            extra.items(),
        )
        if encoded:
            yield Problem(path, line, email, encoded)
            continue
        yield Recipient(
            email=email,
            first_name=first_name,
            last_name=last_name,
            name=name,
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
    try:
        validate_email(email, check_deliverability=False)
    except EmailNotValidError as exc:
        return f"invalid address {email!r}: {exc}"
    return None


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
