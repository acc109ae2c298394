"""A campaign file (TOML) turned into a :class:`Campaign`: a release and the steps that send it.

::

    name = "hydrogen-platform"          # defaults to the file's stem
    release = "hydrogen.md"             # relative to the campaign file
    timezone = "Europe/Paris"           # how the times below are read (and shown)
    late_grace = "1h"                   # a step found later than this is not sent

    [[email]]
    name = "science-desk"
    lists = ["science-press", "tech-press"]
    where = { language = "en" }         # optional: recipient fields to match
    tags = ["science"]                  # optional: at least one of these tags
    template = "press-release"          # optional: templates/email/{template}.{html,txt}.j2
    subject = "{{ release.title }}"     # optional Jinja; the headline when absent
    embargoed = false                   # true: sent before the embargo, under its banner
    at = "2027-03-10 08:00"

    [[post]]
    name = "announce"
    channel = "x"
    template = "x"                      # or text = "...", an inline template
    thread = false
    numbered = false
    at = "2027-03-10 08:05"

Loading (:func:`load_campaign`) checks the file itself: structure, keys, types, times,
that the lists and templates exist, and reads the release. Checking
(:func:`check_campaign`) does the expensive part before anything is scheduled: reads every
audience, renders every draft for every recipient and every post, and holds posts to the
embargo. Every problem in the file is one :class:`CampaignError` naming ``file:line``;
tomllib keeps no positions, so lines are found again by scanning the text.
"""

from __future__ import annotations

import dataclasses
import hashlib
import re
import tomllib
from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, time, timedelta, timezone
from pathlib import Path
from typing import TYPE_CHECKING, Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import jinja2

from distribute.config import Settings
from distribute.errors import (
    CampaignError,
    HeaderError,
    RecipientError,
    TemplateError,
)
from distribute.recipients import (
    SUPPRESSED,
    Audience,
    Problem,
    Suppressions,
    column_field,
    display_path,
    filter_recipients,
    invalid_rows_error,
    known_list,
    list_file,
    list_names,
    load_audience,
    misnamed_suppression_notes,
    problem_lines,
    recipients_dir,
    suppressions_of,
)
from distribute.release import Release, parse_release, read_release
from distribute.render.templates import instant, template_dirs
from distribute.textfile import long_number_line, read_text
from distribute.words import agree, plural

if TYPE_CHECKING:
    from distribute.render.email import EmailDraft
    from distribute.render.social import PostSet

DEFAULT_EMAIL_TEMPLATE = "press-release"

TOP_KEYS = ("name", "release", "timezone", "late_grace", "email", "post")
EMAIL_KEYS = ("name", "lists", "where", "tags", "template", "subject", "embargoed", "at")
POST_KEYS = ("name", "channel", "template", "text", "thread", "numbered", "at")

# Step names end up in ledger keys, Message-IDs and on the command line (``--step NAME``).
_STEP_NAME = re.compile(r"[^\W_][\w.-]*")
# A campaign's and a step's name each name a folder of the outbox (file names stop at 255
# bytes) and the campaign's goes into the List-Id header of every message.
MAX_NAME_LENGTH = 64
_LOCAL_TIME = re.compile(r"\d{4}-\d{2}-\d{2}[T ]\d{2}:\d{2}(:\d{2}(\.\d+)?)?")
_TIME_HINT = '"2027-03-10 08:00" (in the campaign\'s time zone) or "2027-03-10T08:00+01:00"'
_DURATION = re.compile(r"(\d+)\s*([smhd]?)")
_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400}
_DURATION_HINT = '3600, "90s", "15m" or "1h"'
DEFAULT_LATE_GRACE = timedelta(hours=1)
MAX_LATE_GRACE = timedelta(days=365)
_TOML_POSITION = re.compile(r"\s*\(at line (\d+), column (\d+)\)\s*$")


@dataclass(frozen=True)
class EmailStep:
    name: str
    lists: tuple[str, ...]
    where: Mapping[str, str | list[str]] | None
    tags: tuple[str, ...]
    template: str
    subject: str | None
    at: datetime
    channel: str = "email"
    embargoed: bool = False
    line: int | None = field(default=None, compare=False)


@dataclass(frozen=True)
class PostStep:
    name: str
    channel: str
    template: str | None
    text: str | None
    thread: bool
    numbered: bool
    at: datetime
    line: int | None = field(default=None, compare=False)


Step = EmailStep | PostStep


@dataclass(frozen=True)
class Campaign:
    name: str
    path: Path
    release_path: Path
    release: Release
    timezone: str
    steps: tuple[Step, ...]
    # A short hash of the release's text: which version of it a message carried.
    release_version: str = ""
    late_grace: timedelta = DEFAULT_LATE_GRACE

    @property
    def zone(self) -> ZoneInfo:
        return ZoneInfo(self.timezone)

    def step(self, name: str) -> Step:
        for step in self.steps:
            if step.name == name:
                return step
        known = ", ".join(step.name for step in self.steps)
        raise CampaignError(f"no step named {name!r} (steps: {known})", path=self.path)

    def show(self, moment: datetime) -> str:
        """An instant as the press office reads it: in the campaign's zone."""
        return instant(moment, self.zone)


@dataclass
class CampaignCheck:
    """What checking a campaign produced, so scheduling and previews need not render again.

    Keyed by step name. An audience's ``recipients`` (and ``suppressed``) are those its
    step's ``where`` and ``tags`` select; its ``lists`` still count the whole lists.
    """

    audiences: dict[str, Audience] = field(default_factory=dict)
    drafts: dict[str, EmailDraft] = field(default_factory=dict)
    posts: dict[str, PostSet] = field(default_factory=dict)
    warnings: list[str] = field(default_factory=list)
    # Read once for every step; entries not understood stop a live send (see dispatch).
    suppressions: Suppressions = field(default_factory=Suppressions)
    # Invalid rows left out with ``skip_invalid``, each once.
    skipped: list[Problem] = field(default_factory=list)
    # The steps each warning is about, in step with ``warnings``; () for the whole campaign.
    warning_steps: list[tuple[str, ...]] = field(default_factory=list)

    def warn(self, text: str, *steps: str) -> None:
        self.warnings.append(text)
        self.warning_steps.append(steps)

    def warnings_for(self, steps: Collection[str] | None = None) -> list[str]:
        """The warnings about ``steps`` (every step when None) and the whole campaign.

        A warning about several steps (journalists mailed by more than one) is worked out
        again for the selection, as running one step alone mails them once.
        """
        if steps is None:
            return list(self.warnings)
        everywhere = _overlap(self.audiences)
        kept = [
            text
            for text, about in zip(self.warnings, self.warning_steps, strict=True)
            if (not about or any(name in steps for name in about))
            and (everywhere is None or text != everywhere[0])
        ]
        chosen = {name: audience for name, audience in self.audiences.items() if name in steps}
        overlap = _overlap(chosen)
        if overlap:
            kept.append(overlap[0])
        return kept


def _overlap(audiences: dict[str, Audience]) -> tuple[str, tuple[str, ...]] | None:
    """A warning when journalists are in more than one of these email steps, and the steps."""
    if len(audiences) < 2:
        return None
    # The first step of each journalist, and the steps of those in several: a list per
    # journalist would cost more than the audience itself on a large list.
    first: dict[str, str] = {}
    repeated: dict[str, list[str]] = {}
    for name, audience in audiences.items():
        for recipient in audience.recipients:
            key = recipient.key
            was = first.setdefault(key, name)
            if was != name:
                repeated.setdefault(key, [was]).append(name)
    if not repeated:
        return None
    example = next(key for key in first if key in repeated)  # the earliest in the lists
    steps = repeated[example]
    count = len(repeated)
    involved = tuple(sorted({name for names in repeated.values() for name in names}))
    return (
        f"{plural(count, 'journalist')} {agree(count, 'is', 'are')} in more than one email "
        f"step and {agree(count, 'gets', 'get')} one message per step "
        f"(e.g. {example}: {', '.join(steps)})",
        involved,
    )


# --------------------------------------------------------------------------- lines


class _Lines:
    """Where each key of a campaign file sits, found by scanning its text.

    Sections are ``("", 0)`` for the top level and ``("email", 2)`` for the third
    ``[[email]]`` table. Good enough for the files people write by hand; when a key
    cannot be found (inline tables, odd layouts) the step's header line is used instead.
    """

    _ARRAY = re.compile(r"^\[\[\s*([^\]]+?)\s*\]\]")
    _TABLE = re.compile(r"^\[\s*([^\]]+?)\s*\]")
    _KEY = re.compile(r"""^(?:"([^"]*)"|'([^']*)'|([A-Za-z0-9_-]+))\s*[=.]""")

    def __init__(self, text: str):
        self.headers: dict[tuple[str, int], int] = {}
        self.keys: dict[tuple[str, int], dict[str, int]] = {}
        counts: dict[str, int] = {}
        section: tuple[str, int] = ("", 0)
        open_string: str | None = None
        for number, line in enumerate(text.splitlines(), start=1):
            if open_string is not None:
                if line.count(open_string) % 2 == 1:
                    open_string = None
                continue
            stripped = line.strip()
            if match := self._ARRAY.match(stripped):
                kind = _unquote(match.group(1))
                index = counts.get(kind, 0)
                counts[kind] = index + 1
                section = (kind, index)
                self.headers[section] = number
                continue
            if match := self._TABLE.match(stripped):
                parts = [_unquote(part) for part in match.group(1).split(".")]
                if len(parts) > 1 and parts[0] in counts:
                    # [email.where] after [[email]]: a key of that step, written as a table.
                    owner = (parts[0], counts[parts[0]] - 1)
                    self.keys.setdefault(owner, {}).setdefault(parts[1], number)
                    section = (".".join(parts), owner[1])
                else:
                    self.keys.setdefault(("", 0), {}).setdefault(parts[0], number)
                    section = (".".join(parts), 0)
                continue
            if match := self._KEY.match(stripped):
                key = next(group for group in match.groups() if group is not None)
                self.keys.setdefault(section, {}).setdefault(key, number)
            for quotes in ('"""', "'''"):
                if line.count(quotes) % 2 == 1:
                    open_string = quotes
                    break

    def of(self, section: tuple[str, int], key: str | None = None) -> int | None:
        if key is not None and (number := self.keys.get(section, {}).get(key)):
            return number
        return self.headers.get(section)


def _unquote(part: str) -> str:
    return part.strip().strip("\"'")


# --------------------------------------------------------------------------- times


def parse_at(value: object, zone: ZoneInfo) -> datetime:
    """A step's ``at`` as an aware UTC instant; ``ValueError`` says what is wrong with it.

    A time without an offset is wall-clock time in ``zone``; one with an offset (or a TOML
    offset date-time) is that instant whatever the zone.
    """
    if isinstance(value, datetime):
        moment = value
    elif isinstance(value, str):
        text = value.strip()
        if not _LOCAL_TIME.match(text):
            raise ValueError(f"{value!r} is not a time like {_TIME_HINT}")
        try:
            moment = datetime.fromisoformat(text)
        except ValueError:
            raise ValueError(f"{value!r} is not a time like {_TIME_HINT}") from None
    elif isinstance(value, date):
        raise ValueError(f"{value.isoformat()} is a date without a time, like {_TIME_HINT}")
    else:
        raise ValueError(f"must be a time like {_TIME_HINT}, not {type(value).__name__}")
    try:
        return _instant(value, moment, zone)
    except OverflowError:
        # Within a day of year 1 or 9999, the UTC instant falls outside what datetime holds.
        raise ValueError(f"{value!s} is too far in the past or the future") from None


def _instant(value: object, moment: datetime, zone: ZoneInfo) -> datetime:
    if moment.tzinfo is not None and moment.utcoffset() is not None:
        return moment.astimezone(UTC)
    local = moment.replace(tzinfo=zone, fold=0)
    if local.astimezone(UTC).astimezone(zone).replace(tzinfo=None) != moment:
        start, end = _gap(local, zone)
        raise ValueError(
            f"{value!s} does not exist in {zone.key}: the clocks go from "
            f"{start:%H:%M} straight to {end:%H:%M} that day; write the instant you mean "
            f"with its offset, like {_with_offset(moment, local.utcoffset())!r}"
        )
    later = local.replace(fold=1)
    if later.utcoffset() != local.utcoffset():
        # When the clocks go back, the hour that repeats names two instants an hour apart:
        # guessing one would send a step an hour early or late, so the file must say which.
        raise ValueError(
            f"{value!s} happens twice in {zone.key} (the clocks go back that night): write "
            f"it with its offset, {_with_offset(moment, local.utcoffset())!r} for the first "
            f"or {_with_offset(moment, later.utcoffset())!r} for the second"
        )
    return local.astimezone(UTC)


def _with_offset(moment: datetime, offset: timedelta | None) -> str:
    """``moment`` (naive) written with ``offset``, as the press office would type it."""
    text = moment.replace(tzinfo=timezone(offset or timedelta(0))).isoformat(sep=" ")
    return text.replace(":00+", "+", 1) if moment.second == 0 else text


def parse_duration(value: object) -> timedelta:
    """A duration as seconds (an integer) or a string such as ``"90s"``, ``"15m"``, ``"1h"``."""
    if isinstance(value, bool):
        raise ValueError(f"must be seconds or a duration like {_DURATION_HINT}, not {value}")
    if isinstance(value, int):
        seconds = value
    elif isinstance(value, str) and (match := _DURATION.fullmatch(value.strip())):
        seconds = int(match.group(1)) * _UNITS[match.group(2) or "s"]
    else:
        raise ValueError(f"must be seconds or a duration like {_DURATION_HINT}, not {value!r}")
    if seconds < 0:
        raise ValueError(f"must not be negative, not {value!r}")
    # Beyond this a step is never "too late", and the ledger's integer column overflows.
    if seconds > MAX_LATE_GRACE.total_seconds():
        raise ValueError(f"must be at most {MAX_LATE_GRACE.days} days, not {value!r}")
    return timedelta(seconds=seconds)


def _gap(local: datetime, zone: ZoneInfo) -> tuple[time, time]:
    """The wall-clock times a spring-forward gap around ``local`` skips, for the message."""
    before = local.utcoffset() or timedelta(0)
    after = local.replace(fold=1).utcoffset() or timedelta(0)
    naive = local.replace(tzinfo=None)
    moment = (naive - after).replace(tzinfo=UTC)
    last = (naive - before).replace(tzinfo=UTC)
    while moment < last and moment.astimezone(zone).utcoffset() != after:
        moment += timedelta(minutes=1)
    return (moment + before).time(), (moment + after).time()


# --------------------------------------------------------------------------- loading


def release_version(text: str) -> str:
    """A release's version: the first 8 hex digits of the SHA-256 of its text (as git shows
    commits), enough to tell the versions of one release apart."""
    return hashlib.sha256(text.encode("utf-8")).hexdigest()[:8]


def load_campaign(path: Path, settings: Settings) -> Campaign:
    """Read and validate campaign file ``path``, and the release it names."""
    text = read_text(path, CampaignError, "campaign")
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        message = str(exc)
        line = None
        if match := _TOML_POSITION.search(message):
            line = int(match.group(1))
            message = f"{message[: match.start()]} (column {match.group(2)})"
        raise CampaignError(f"invalid TOML: {message}", path=path, line=line) from None
    except ValueError:
        line = long_number_line(text)
        raise CampaignError(
            "invalid TOML: a number too long to read", path=path, line=line
        ) from None
    return _Loader(path, text, settings).campaign(data)


class _Loader:
    def __init__(self, path: Path, text: str, settings: Settings):
        self.path = path
        self.lines = _Lines(text)
        self.settings = settings
        self._lists: list[str] | None = None
        self._templates: dict[str, set[str]] = {}

    def fail(
        self, message: str, section: tuple[str, int] = ("", 0), key: str | None = None
    ) -> CampaignError:
        return CampaignError(message, path=self.path, line=self.lines.of(section, key))

    def campaign(self, data: dict[str, Any]) -> Campaign:
        top = ("", 0)
        for key in data:
            if key not in TOP_KEYS:
                raise self.fail(f"unknown key {key!r} (known: {', '.join(TOP_KEYS)})", top, key)
        name = data.get("name", self.path.stem)
        if not isinstance(name, str) or not name.strip():
            raise self.fail("name must be a non-empty string", top, "name")
        # The name becomes a folder of the outbox, a ledger key and part of Message-IDs.
        if len(name) > MAX_NAME_LENGTH:
            raise self.fail(
                f"campaign name is {len(name)} characters long; keep it to {MAX_NAME_LENGTH} "
                "(it names a folder and goes into every message's List-Id)",
                top,
                "name",
            )
        if not _STEP_NAME.fullmatch(name):
            raise self.fail(
                f"campaign name {name!r} must start with a letter or digit and hold only "
                "letters, digits, '-', '_' or '.'"
                + ("" if "name" in data else ' (set name = "..." in the file)'),
                top,
                "name",
            )

        timezone = data.get("timezone", self.settings.timezone)
        if not isinstance(timezone, str):
            raise self.fail("timezone must be a string like 'Europe/Paris'", top, "timezone")
        try:
            zone = ZoneInfo(timezone)
        except (ZoneInfoNotFoundError, ValueError):
            raise self.fail(
                f"timezone: unknown time zone {timezone!r} (use a name like 'Europe/Paris')",
                top,
                "timezone",
            ) from None

        try:
            late_grace = parse_duration(data.get("late_grace", 3600))
        except ValueError as exc:
            raise self.fail(f"late_grace {exc}", top, "late_grace") from None

        if "release" not in data:
            raise self.fail("missing 'release': the release file, relative to this campaign")
        release_name = data["release"]
        if not isinstance(release_name, str) or not release_name.strip():
            raise self.fail("release must be the release file's name, a string", top, "release")
        release_path = self.path.parent / release_name
        if not release_path.is_file():
            raise self.fail(
                f"release: file {release_name!r} not found (looked in {self.path.parent})",
                top,
                "release",
            )

        steps: list[Step] = []
        seen: dict[str, str] = {}
        for kind in ("email", "post"):
            tables = data.get(kind, [])
            if not isinstance(tables, list) or not all(isinstance(t, dict) for t in tables):
                raise self.fail(
                    f"{kind} steps are written as [[{kind}]] tables, one per step", top, kind
                )
            for index, table in enumerate(tables):
                section = (kind, index)
                step_name = self.step_name(table, section)
                if step_name in seen:
                    raise self.fail(
                        f"[[{kind}]] {step_name!r}: duplicate step name (already used by "
                        f"{seen[step_name]}; email and post steps share one set of names)",
                        section,
                        "name",
                    )
                where = f"[[{kind}]] {step_name!r}"
                seen[step_name] = f"{where} on line {self.lines.of(section, 'name')}"
                if kind == "email":
                    steps.append(self.email(table, section, step_name, zone))
                else:
                    steps.append(self.post(table, section, step_name, zone))
        if not steps:
            raise self.fail("no steps: add an [[email]] or a [[post]] table")

        release_text = read_release(release_path)
        release = parse_release(release_text, source=release_path)
        # Stable: steps due at the same time keep their order in the file.
        steps.sort(key=lambda step: step.at)
        return Campaign(
            name=name.strip(),
            path=self.path,
            release_path=release_path,
            release=release,
            timezone=timezone,
            steps=tuple(steps),
            release_version=release_version(release_text),
            late_grace=late_grace,
        )

    def step_name(self, table: dict[str, Any], section: tuple[str, int]) -> str:
        kind, index = section
        name = table.get("name")
        if name is None:
            raise self.fail(f"[[{kind}]] #{index + 1}: missing 'name'", section)
        if isinstance(name, str) and len(name) > MAX_NAME_LENGTH:
            raise self.fail(
                f"[[{kind}]] #{index + 1}: name is {len(name)} characters long; keep it to "
                f"{MAX_NAME_LENGTH}",
                section,
                "name",
            )
        if not isinstance(name, str) or not _STEP_NAME.fullmatch(name):
            raise self.fail(
                f"[[{kind}]] #{index + 1}: name must be letters, digits, '-', '_' or '.', "
                f"starting with a letter or digit, not {name!r}",
                section,
                "name",
            )
        return name

    def common(
        self,
        table: dict[str, Any],
        section: tuple[str, int],
        where: str,
        keys: tuple[str, ...],
        zone: ZoneInfo,
    ) -> datetime:
        for key in table:
            if key not in keys:
                raise self.fail(
                    f"{where}: unknown key {key!r} (known: {', '.join(keys)})", section, key
                )
        if "at" not in table:
            raise self.fail(f"{where}: missing 'at', a time like {_TIME_HINT}", section)
        try:
            return parse_at(table["at"], zone)
        except ValueError as exc:
            raise self.fail(f"{where}: at: {exc}", section, "at") from None

    def string(
        self, table: dict[str, Any], section: tuple[str, int], where: str, key: str
    ) -> str | None:
        value = table.get(key)
        if value is not None and (not isinstance(value, str) or not value.strip()):
            raise self.fail(f"{where}: {key} must be a non-empty string", section, key)
        return value

    def strings(
        self, table: dict[str, Any], section: tuple[str, int], where: str, key: str
    ) -> tuple[str, ...] | None:
        value = table.get(key)
        if value is None:
            return None
        if (
            not isinstance(value, list)
            or not value
            or not all(isinstance(item, str) and item.strip() for item in value)
        ):
            raise self.fail(
                f'{where}: {key} must be a non-empty list of names, like {key} = ["a", "b"]',
                section,
                key,
            )
        return tuple(value)

    def email(
        self, table: dict[str, Any], section: tuple[str, int], name: str, zone: ZoneInfo
    ) -> EmailStep:
        where = f"[[email]] {name!r}"
        at = self.common(table, section, where, EMAIL_KEYS, zone)
        if "lists" not in table:
            raise self.fail(f"{where}: missing 'lists', the journalist lists to mail", section)
        lists = self.strings(table, section, where, "lists")
        assert lists is not None
        known = self.known_lists()
        for list_name in lists:
            if list_name.lower() == SUPPRESSED:
                raise self.fail(
                    f"{where}: {list_name!r} is the suppression list, not a mailing list",
                    section,
                    "lists",
                )
            if not known_list(list_name, known):
                raise self.fail(
                    f"{where}: unknown list {list_name!r} "
                    f"(known: {', '.join(known) if known else 'none'})",
                    section,
                    "lists",
                )
        filters = self.where(table, section, where)
        tags = self.strings(table, section, where, "tags") or ()
        template = self.string(table, section, where, "template") or DEFAULT_EMAIL_TEMPLATE
        self.template(template, "email", section, where)
        subject = self.string(table, section, where, "subject")
        if subject is not None:
            self.syntax(subject, section, where, "subject")
        embargoed = table.get("embargoed", False)
        if not isinstance(embargoed, bool):
            raise self.fail(f"{where}: embargoed must be true or false", section, "embargoed")
        return EmailStep(
            name=name,
            lists=lists,
            where=filters,
            tags=tags,
            template=template,
            subject=subject,
            at=at,
            embargoed=embargoed,
            line=self.lines.of(section),
        )

    def where(
        self, table: dict[str, Any], section: tuple[str, int], where: str
    ) -> Mapping[str, str | list[str]] | None:
        value = table.get("where")
        if value is None:
            return None
        good = isinstance(value, dict) and all(
            isinstance(item, str)
            or (isinstance(item, list) and item and all(isinstance(v, str) for v in item))
            for item in value.values()
        )
        if not good:
            raise self.fail(
                f"{where}: where must be a table of recipient fields and values, "
                'like { language = "en" } or { beat = ["physics", "energy"] }',
                section,
                "where",
            )
        return dict(value)

    def post(
        self, table: dict[str, Any], section: tuple[str, int], name: str, zone: ZoneInfo
    ) -> PostStep:
        from distribute.render.social import NETWORKS

        where = f"[[post]] {name!r}"
        at = self.common(table, section, where, POST_KEYS, zone)
        channel = table.get("channel")
        if channel is None:
            raise self.fail(
                f"{where}: missing 'channel', the network to post on "
                f"(known: {', '.join(NETWORKS)})",
                section,
            )
        if channel not in NETWORKS:
            raise self.fail(
                f"{where}: unknown channel {channel!r} (known: {', '.join(NETWORKS)})",
                section,
                "channel",
            )
        template = self.string(table, section, where, "template")
        text = self.string(table, section, where, "text")
        if template is not None and text is not None:
            # Point at whichever of the two the reader reaches second.
            later = max(("template", "text"), key=lambda key: self.lines.of(section, key) or 0)
            raise self.fail(f"{where}: give either 'template' or 'text', not both", section, later)
        if text is not None:
            self.syntax(text, section, where, "text")
        else:
            template = template or channel
            self.template(template, "social", section, where)
        flags: dict[str, bool] = {}
        for key in ("thread", "numbered"):
            value = table.get(key, False)
            if not isinstance(value, bool):
                raise self.fail(f"{where}: {key} must be true or false", section, key)
            flags[key] = value
        return PostStep(
            name=name,
            channel=channel,
            template=template,
            text=text,
            thread=flags["thread"],
            numbered=flags["numbered"],
            at=at,
            line=self.lines.of(section),
        )

    def known_lists(self) -> list[str]:
        if self._lists is None:
            self._lists = list_names(recipients_dir(self.settings))
        return self._lists

    def template(self, name: str, kind: str, section: tuple[str, int], where: str) -> None:
        if kind not in self._templates:
            self._templates[kind] = _template_names(self.settings, kind)
        known = self._templates[kind]
        if name not in known:
            files = (
                f"email/{name}.html.j2 and email/{name}.txt.j2"
                if kind == "email"
                else f"social/{name}.txt.j2"
            )
            raise self.fail(
                f"{where}: unknown template {name!r}: no {files} in the templates "
                f"(known: {', '.join(sorted(known)) or 'none'})",
                section,
                "template",
            )

    def syntax(self, source: str, section: tuple[str, int], where: str, key: str) -> None:
        try:
            jinja2.Environment(autoescape=False).parse(source)  # noqa: S701 (parsed only)
        except jinja2.TemplateSyntaxError as exc:
            raise self.fail(
                f"{where}: {key}: template syntax error: {exc.message}", section, key
            ) from None


def _template_names(settings: Settings, kind: str) -> set[str]:
    """Templates of ``kind`` the loader can find: for email, both the HTML and the text part."""
    found: dict[str, set[str]] = {}
    suffixes = (".html.j2", ".txt.j2") if kind == "email" else (".txt.j2",)
    for folder in template_dirs(settings):
        sub = folder / kind
        if not sub.is_dir():
            continue
        for path in sub.iterdir():
            for suffix in suffixes:
                if path.name.endswith(suffix) and path.is_file():
                    found.setdefault(path.name.removesuffix(suffix), set()).add(suffix)
    return {name for name, parts in found.items() if len(parts) == len(suffixes)}


# --------------------------------------------------------------------------- checking


def _refused_rows_error(problems: list[Problem]) -> RecipientError:
    count = f"{len(problems)} row{'s' if len(problems) != 1 else ''}"
    lines = "\n".join(f"  {line}" for line in problem_lines(problems))
    return RecipientError(
        f"{count} of the journalist lists cannot be written into this step's headers:\n"
        f"{lines}\n"
        "`distribute send --skip-invalid` sends to the other rows and lists these."
    )


def check_campaign(
    campaign: Campaign,
    settings: Settings,
    *,
    now: datetime,
    send_now: bool = False,
    skip_invalid: bool = False,
) -> CampaignCheck:
    """Render everything the campaign will send, so a failure surfaces before scheduling.

    ``now`` is passed in (rendering never reads the clock); steps already past are warned
    about, not refused, so a campaign interrupted halfway can be checked again. With
    ``send_now`` the steps are about to run at ``now`` whatever their ``at``: emails are
    rendered for that instant, so one sent before the embargo lifts says so.

    Invalid rows in the lists are all reported in one error; with ``skip_invalid`` they are
    left out instead and listed in the warnings.
    """
    from distribute.render.email import RECIPIENT_FIELDS, draft_email
    from distribute.render.message import check_headers
    from distribute.render.templates import environment

    release = campaign.release
    result = CampaignCheck()
    env = environment(settings)
    lines = _campaign_lines(campaign)
    folder = recipients_dir(settings)
    for note in release.warnings:
        result.warn(note)
    result.suppressions = suppressions_of(settings)
    for note in misnamed_suppression_notes(folder):
        result.warn(note)
    # Steps naming the same lists (an English and a French version) share one reading of
    # them: each step's audience is its own, its recipients the same objects.
    loaded: dict[tuple[Path, ...], Audience] = {}
    audiences: dict[str, Audience] = {}
    for step in campaign.steps:
        if isinstance(step, EmailStep):
            lists = tuple(dict.fromkeys(list_file(folder, name) for name in step.lists))
            if lists not in loaded:
                loaded[lists] = load_audience(folder, step.lists, result.suppressions)
            audiences[step.name] = dataclasses.replace(loaded[lists])
    # Every invalid row at once, each once however many steps mail its list.
    invalid = list({(p.file, p.line): p for a in audiences.values() for p in a.invalid}.values())
    if invalid and not skip_invalid:
        raise invalid_rows_error(invalid)
    result.skipped = invalid
    for p in invalid:
        result.warn(f"{display_path(p.file)}:{p.line}: not mailed: {p.reason}")
    if result.suppressions.problems:
        for problem in problem_lines(result.suppressions.problems):
            result.warn(problem)
        result.warn("a live send refuses to run until every suppression entry is understood")
    columns_read: dict[Path, set[str]] = {}

    for step in campaign.steps:
        kind = "email" if isinstance(step, EmailStep) else "post"
        where = f"[[{kind}]] {step.name!r}"
        section = _section_of(lines, step)

        def line(key: str, section: tuple[str, int] = section, step: Step = step) -> int | None:
            return (lines.of(section, key) if lines else None) or step.line

        if step.at < now and not send_now:
            result.warn(
                f"{where}: {campaign.show(step.at)} is already past (now {campaign.show(now)})",
                step.name,
            )
        if isinstance(step, EmailStep):
            embargo = release.embargo
            if embargo is not None and step.at < embargo and not step.embargoed:
                raise CampaignError(
                    f"{where}: at {campaign.show(step.at)} is before the release embargo "
                    f"({campaign.show(embargo)}); add embargoed = true to this step to send "
                    "it under embargo (with the banner and the subject prefix), or move it",
                    path=campaign.path,
                    line=line("at"),
                )
            if step.embargoed and (embargo is None or step.at >= embargo):
                lifted = (
                    "the release has no embargo"
                    if embargo is None
                    else f"the embargo lifts at {campaign.show(embargo)}"
                )
                result.warnings.append(
                    f"{where}: embargoed = true, but {lifted}: it goes out without the banner"
                )
            audience = audiences[step.name]
            tags = step.tags or None
            try:
                selected = filter_recipients(audience.recipients, step.where, tags)
                suppressed = filter_recipients(audience.suppressed, step.where, tags)
            except RecipientError as exc:
                raise CampaignError(
                    f"{where}: where: {exc.message}", path=campaign.path, line=line("where")
                ) from None
            # The audience a step mails is the filtered one; the list counts stay whole.
            audience.recipients = selected
            audience.suppressed = suppressed
            if not selected:
                result.warn(f"{where}: selects no recipient", step.name)
            extras = sorted({column for r in selected for column in r.extra})
            try:
                draft = draft_email(
                    release,
                    settings,
                    at=now if send_now else step.at,
                    template=step.template,
                    subject=step.subject,
                    extra_fields=extras,
                    env=env,
                )
            except TemplateError as exc:
                raise _inline_error(exc, "subject", where, campaign, line("subject")) from None
            used = draft.slots() - set(RECIPIENT_FIELDS)
            lacking: dict[str, set[str]] = {}
            files = {stats.name: stats.file for stats in audience.lists}
            refused: list[Problem] = []
            for recipient in selected:
                # The same headers the send writes: a row they refuse is named here, before
                # anything is sent, not after the first messages went out.
                try:
                    check_headers(
                        draft, recipient, settings, campaign=campaign.name, step=step.name, date=now
                    )
                except HeaderError as exc:
                    path = files.get(recipient.list_name) or campaign.path
                    refused.append(
                        Problem(path, recipient.line, recipient.email, f"{where}: {exc.message}")
                    )
                    continue
                for field_name in used - recipient.extra.keys():
                    lacking.setdefault(recipient.list_name, set()).add(field_name)
            if refused:
                # Every row at once, as for invalid rows; --skip-invalid leaves them out.
                if not skip_invalid:
                    raise _refused_rows_error(refused)
                gone = {(p.file, p.line) for p in refused}
                selected = [r for r in selected if (files.get(r.list_name), r.line) not in gone]
                audience.recipients = selected
                result.skipped += refused
                for p in refused:
                    result.warn(
                        f"{display_path(p.file)}:{p.line}: not mailed: {p.reason}", step.name
                    )
            # A column some lists lack renders empty for their journalists: say which.
            for list_name, fields in sorted(lacking.items()):
                result.warn(
                    f"{where}: list {list_name!r} has no column {', '.join(sorted(fields))}: "
                    "its journalists get an empty value there",
                    step.name,
                )
            # The To header shows the name, whatever the templates do.
            read = draft.slots() | {"email", "first_name", "last_name", "name"}
            read |= {column_field(key) for key in step.where or {}}
            if step.tags:
                read.add("tags")
            for stats in audience.lists:
                columns_read.setdefault(stats.file, set()).update(read)
            result.audiences[step.name] = audience
            result.drafts[step.name] = draft
            for note in draft.warnings:
                result.warn(f"{where}: {note}", step.name)
        else:
            from distribute.render.social import render_posts

            if release.embargo is not None and step.at < release.embargo:
                raise CampaignError(
                    f"{where}: at {campaign.show(step.at)} is before the release embargo "
                    f"({campaign.show(release.embargo)}); a post is public at once",
                    path=campaign.path,
                    line=line("at"),
                )
            if send_now and release.embargo is not None and now < release.embargo:
                result.warn(
                    f"{where}: the release is under embargo until "
                    f"{campaign.show(release.embargo)}; this post could not go out now",
                    step.name,
                )
            try:
                posts = render_posts(
                    release,
                    settings,
                    network=step.channel,
                    template=step.template,
                    text=step.text,
                    thread=step.thread,
                    numbered=step.numbered,
                    env=env,
                )
            except TemplateError as exc:
                raise _inline_error(exc, "text", where, campaign, line("text")) from None
            result.posts[step.name] = posts
            for note in posts.warnings:
                result.warn(f"{where}: {note}", step.name)
            if step.channel == "x" and release.image:
                from distribute.posting import load_image

                # A missing or oversized image must stop the campaign before any step runs,
                # not between the mail and the post (a URL is fetched only when posting).
                load_image(release, fetch=False, root=settings.workspace)
    for note, about in _unused_columns(audiences, columns_read):
        result.warn(note, *about)
    # Legitimate (an English and a French version), but worth knowing before it happens.
    overlap = _overlap(result.audiences)
    if overlap:
        result.warn(overlap[0], *overlap[1])
    return result


def _unused_columns(
    audiences: Mapping[str, Audience], used: Mapping[Path, set[str]]
) -> list[tuple[str, tuple[str, ...]]]:
    """A warning per list holding columns that no template or filter of the campaign reads,
    so a column under a name distribute does not know is not silently left out; each with
    the steps that mail the list, so ``--step`` shows only the lists it sends to."""
    steps_of: dict[Path, list[str]] = {}
    stats_of: dict[Path, Any] = {}
    for step_name, audience in audiences.items():
        for stats in audience.lists:
            steps_of.setdefault(stats.file, []).append(step_name)
            stats_of.setdefault(stats.file, stats)
    notes: list[tuple[str, tuple[str, ...]]] = []
    for file, stats in stats_of.items():
        if unnamed := stats.unnamed_note():
            notes.append((unnamed, tuple(steps_of[file])))
        unused = [
            cell if cell == name else f"{cell} (read as {name})"
            for cell, name in stats.columns
            if name not in used.get(file, set())
        ]
        if unused:
            notes.append(
                (
                    f"{display_path(file)}: no template or filter of this campaign uses "
                    f"the column{'s' if len(unused) != 1 else ''} {', '.join(unused)}",
                    tuple(steps_of[file]),
                )
            )
    return notes


def hold_embargo(campaign: Campaign, steps: Sequence[Step], now: datetime) -> None:
    """Refuse to post now, whatever a step's ``at``, while the release is under embargo.

    A scheduled post is checked against the embargo by its time; a post sent now (``send``
    ignores ``at``) must be checked against the clock.
    """
    embargo = campaign.release.embargo
    if embargo is None or now >= embargo:
        return
    lines = _campaign_lines(campaign)
    for step in steps:
        if isinstance(step, PostStep):
            line = (lines.of(_section_of(lines, step), "at") if lines else None) or step.line
            raise CampaignError(
                f"[[post]] {step.name!r}: the release is under embargo until "
                f"{campaign.show(embargo)}; a post is public at once, so it cannot go out "
                "now (leave this step out with --step, or send it after the embargo)",
                path=campaign.path,
                line=line,
            )


def _inline_error(
    exc: TemplateError, key: str, where: str, campaign: Campaign, line: int | None
) -> TemplateError:
    """An inline template (``subject``, ``text``) lives in the campaign file: point there."""
    if exc.path != key:
        return exc
    return TemplateError(f"{where}: {key}: {exc.message}", path=campaign.path, line=line)


def _campaign_lines(campaign: Campaign) -> _Lines | None:
    try:
        return _Lines(campaign.path.read_text(encoding="utf-8-sig"))
    except (OSError, UnicodeDecodeError):
        return None


def _section_of(lines: _Lines | None, step: Step) -> tuple[str, int]:
    """The step's table in the file, found by its header line (steps are sorted by time)."""
    kind = "email" if isinstance(step, EmailStep) else "post"
    if lines is not None:
        for section, number in lines.headers.items():
            if section[0] == kind and number == step.line:
                return section
    return kind, -1
