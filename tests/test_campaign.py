"""Campaign files: loading, every bad-file message, times across DST, and the full check."""

from __future__ import annotations

import re
import shutil
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from distribute.campaign import (
    Campaign,
    EmailStep,
    PostStep,
    check_campaign,
    load_campaign,
    parse_at,
    parse_duration,
)
from distribute.config import Settings, load_settings
from distribute.errors import CampaignError, RecipientError, TemplateError

ROOT = Path(__file__).resolve().parents[1]
EXAMPLE_RELEASE = ROOT / "releases" / "hydrogen.md"
EXAMPLE_CAMPAIGN = ROOT / "releases" / "hydrogen.toml"
BEFORE = datetime(2027, 3, 1, tzinfo=UTC)

# Line numbers matter: the bad-file cases below point into this text.
BASE = """\
name = "launch"
release = "hydrogen.md"
timezone = "Europe/Paris"

[[email]]
name = "science-desk"
lists = ["science-press"]
where = { language = "en" }
at = "2027-03-10 08:00"

[[post]]
name = "announce"
channel = "x"
at = "2027-03-10 08:05"
"""


@pytest.fixture
def ws(workspace: Path) -> Path:
    """A workspace with the sample lists, the example release and ``[paths] recipients``."""
    shutil.copytree(ROOT / "recipients", workspace / "recipients")
    shutil.copy(EXAMPLE_RELEASE, workspace / "hydrogen.md")
    (workspace / "distribute.toml").write_text(
        '[paths]\nrecipients = "recipients"\n', encoding="utf-8"
    )
    return workspace


@pytest.fixture
def cfg(ws: Path) -> Settings:
    return load_settings(workspace=ws)


# The sample lists hold columns the bundled template does not show.
UNUSED = "no template or filter of this campaign uses the columns"
SCIENCE_UNUSED = f"recipients/science-press.csv: {UNUSED} outlet, beat, timezone, tags"


def write(ws: Path, text: str, name: str = "campaign.toml") -> Path:
    path = ws / name
    path.write_text(text, encoding="utf-8")
    return path


def edit(old: str, new: str) -> str:
    assert old in BASE, old
    return BASE.replace(old, new, 1)


# --------------------------------------------------------------------------- the example


def test_example_campaign_loads_and_checks(ws: Path, cfg: Settings) -> None:
    shutil.copy(EXAMPLE_CAMPAIGN, ws / "hydrogen.toml")
    campaign = load_campaign(ws / "hydrogen.toml", cfg)

    assert campaign.name == "hydrogen-platform"
    assert campaign.release_path == ws / "hydrogen.md"
    assert campaign.timezone == "Europe/Paris"
    assert [(type(s).__name__, s.name, s.at) for s in campaign.steps] == [
        ("EmailStep", "science-desk", datetime(2027, 3, 9, 17, 0, tzinfo=UTC)),
        ("EmailStep", "presse-regionale", datetime(2027, 3, 10, 7, 0, tzinfo=UTC)),
        ("PostStep", "announce-x", datetime(2027, 3, 10, 7, 5, tzinfo=UTC)),
    ]
    release = campaign.release
    assert release.embargo is not None
    # Only the step that says so goes out before the embargo.
    assert [s.name for s in campaign.steps if s.at < release.embargo] == ["science-desk"]
    assert isinstance(campaign.steps[0], EmailStep) and campaign.steps[0].embargoed

    check = check_campaign(campaign, cfg, now=BEFORE)

    # Isabelle Fournier reads both the English and the French version.
    assert check.warnings == [
        SCIENCE_UNUSED,
        f"recipients/tech-press.csv: {UNUSED} outlet, beat, timezone, tags",
        f"recipients/presse-regionale.csv: {UNUSED} outlet, beat, language, timezone, tags",
        "1 journalist is in more than one email step and gets one message per step "
        "(e.g. isabelle.fournier@example.com: science-desk, presse-regionale)",
    ]
    english = check.audiences["science-desk"].recipients
    assert english and {r.language for r in english} == {"en"}
    # The suppressed journalist of science-press is reported, not mailed.
    assert [r.email for r in check.audiences["science-desk"].suppressed] == [
        "henry.walsh@example.org"
    ]
    french = check.audiences["presse-regionale"].recipients
    assert {r.list_name for r in french} == {"presse-regionale"}
    assert set(check.drafts) == {"science-desk", "presse-regionale"}
    # The evening before, under the banner; 08:00 is the embargo itself: public.
    assert check.drafts["science-desk"].embargoed
    assert not check.drafts["presse-regionale"].embargoed
    posts = check.posts["announce-x"]
    assert len(posts.parts) == 1
    assert release.url is not None and release.url in posts.parts[0].text


def test_steps_are_sorted_by_time_emails_before_posts(ws: Path, cfg: Settings) -> None:
    path = write(
        ws,
        BASE.replace('at = "2027-03-10 08:00"', 'at = "2027-03-10 09:00"')
        + '\n[[email]]\nname = "regional"\nlists = ["presse-regionale"]\n'
        'at = "2027-03-10 08:05"\n',
    )
    campaign = load_campaign(path, cfg)
    assert [s.name for s in campaign.steps] == ["regional", "announce", "science-desk"]


def test_defaults(ws: Path, cfg: Settings) -> None:
    path = write(
        ws,
        'release = "hydrogen.md"\n\n[[email]]\nname = "all"\nlists = ["tech-press"]\n'
        'at = "2027-03-10T08:00"\n\n[[post]]\nname = "x"\nchannel = "x"\n'
        "at = 2027-03-10T08:05:00+01:00\n",
        name="spring-launch.toml",
    )
    campaign = load_campaign(path, cfg)
    email, post = campaign.steps
    assert campaign.name == "spring-launch"
    assert campaign.timezone == "Europe/Paris"
    assert email == EmailStep(
        name="all",
        lists=("tech-press",),
        where=None,
        tags=(),
        template="press-release",
        subject=None,
        at=datetime(2027, 3, 10, 7, 0, tzinfo=UTC),
    )
    assert post == PostStep(
        name="x",
        channel="x",
        template="x",
        text=None,
        thread=False,
        numbered=False,
        at=datetime(2027, 3, 10, 7, 5, tzinfo=UTC),
    )


def test_step_by_name(ws: Path, cfg: Settings) -> None:
    path = write(ws, BASE)
    campaign = load_campaign(path, cfg)
    assert campaign.step("announce").channel == "x"
    with pytest.raises(CampaignError) as caught:
        campaign.step("anounce")
    assert str(caught.value) == f"{path}: no step named 'anounce' (steps: science-desk, announce)"


# --------------------------------------------------------------------------- bad files

HINT = '"2027-03-10 08:00" (in the campaign\'s time zone) or "2027-03-10T08:00+01:00"'
SD = "[[email]] 'science-desk'"
AN = "[[post]] 'announce'"

# (campaign text, expected "file:line: message" with {f} for the file and {ws} its folder)
BAD_FILES = [
    pytest.param(
        edit('at = "2027-03-10 08:00"', 'embargoed = "yes"\nat = "2027-03-10 08:00"'),
        f"{{f}}:9: {SD}: embargoed must be true or false",
        id="embargoed-not-boolean",
    ),
    pytest.param(
        edit('release = "hydrogen.md"', 'release = "hydrogn.md"'),
        "{f}:2: release: file 'hydrogn.md' not found (looked in {ws})",
        id="release-file-missing",
    ),
    pytest.param(
        edit('release = "hydrogen.md"\n', ""),
        "{f}: missing 'release': the release file, relative to this campaign",
        id="release-key-missing",
    ),
    pytest.param(
        edit('["science-press"]', '["sciense-press"]'),
        f"{{f}}:7: {SD}: unknown list 'sciense-press' "
        "(known: presse-regionale, science-press, tech-press)",
        id="unknown-list",
    ),
    pytest.param(
        edit('["science-press"]', '["suppressed"]'),
        f"{{f}}:7: {SD}: 'suppressed' is the suppression list, not a mailing list",
        id="suppression-list",
    ),
    pytest.param(
        edit('["science-press"]', "[]"),
        f'{{f}}:7: {SD}: lists must be a non-empty list of names, like lists = ["a", "b"]',
        id="empty-lists",
    ),
    pytest.param(
        edit('["science-press"]', '"science-press"'),
        f'{{f}}:7: {SD}: lists must be a non-empty list of names, like lists = ["a", "b"]',
        id="lists-not-a-list",
    ),
    pytest.param(
        edit('at = "2027-03-10 08:00"', 'at = "10/03/2027 08:00"'),
        f"{{f}}:9: {SD}: at: '10/03/2027 08:00' is not a time like {HINT}",
        id="bad-time",
    ),
    pytest.param(
        edit('at = "2027-03-10 08:00"', 'at = "2027-03-10 25:00"'),
        f"{{f}}:9: {SD}: at: '2027-03-10 25:00' is not a time like {HINT}",
        id="impossible-time",
    ),
    pytest.param(
        edit('at = "2027-03-10 08:00"', "at = 2027-03-10"),
        f"{{f}}:9: {SD}: at: 2027-03-10 is a date without a time, like {HINT}",
        id="date-only",
    ),
    pytest.param(
        edit('at = "2027-03-10 08:00"\n', ""),
        f"{{f}}:5: {SD}: missing 'at', a time like {HINT}",
        id="missing-time",
    ),
    pytest.param(
        edit('at = "2027-03-10 08:00"', 'at = "2027-03-28 02:30"'),
        f"{{f}}:9: {SD}: at: 2027-03-28 02:30 does not exist in Europe/Paris: "
        "the clocks go from 02:00 straight to 03:00 that day; write the instant you mean with "
        "its offset, like '2027-03-28 02:30+01:00'",
        id="dst-gap",
    ),
    pytest.param(
        edit('at = "2027-03-10 08:00"', 'at = "2027-10-31 02:30"'),
        f"{{f}}:9: {SD}: at: 2027-10-31 02:30 happens twice in Europe/Paris (the clocks go "
        "back that night): write it with its offset, '2027-10-31 02:30+02:00' for the first or "
        "'2027-10-31 02:30+01:00' for the second",
        id="dst-overlap",
    ),
    pytest.param(
        edit('name = "announce"', 'name = "science-desk"'),
        "{f}:12: [[post]] 'science-desk': duplicate step name (already used by "
        f"{SD} on line 6; email and post steps share one set of names)",
        id="duplicate-step",
    ),
    pytest.param(
        edit('timezone = "Europe/Paris"\n', 'timezone = "Europe/Paris"\nsender = "me"\n'),
        "{f}:4: unknown key 'sender' (known: name, release, timezone, late_grace, email, post)",
        id="unknown-key",
    ),
    pytest.param(
        edit('where = { language = "en" }', 'subjet = "Hydrogen"'),
        f"{{f}}:8: {SD}: unknown key 'subjet' "
        "(known: name, lists, where, tags, template, subject, embargoed, at)",
        id="unknown-step-key",
    ),
    pytest.param(
        edit('timezone = "Europe/Paris"', 'timezone = "Europe/Pariss"'),
        "{f}:3: timezone: unknown time zone 'Europe/Pariss' (use a name like 'Europe/Paris')",
        id="unknown-timezone",
    ),
    pytest.param(
        edit('where = { language = "en" }', 'template = "press"'),
        f"{{f}}:8: {SD}: unknown template 'press': no email/press.html.j2 and "
        "email/press.txt.j2 in the templates (known: press-release)",
        id="unknown-template",
    ),
    pytest.param(
        edit('channel = "x"', 'channel = "x"\ntemplate = "mastodon"'),
        f"{{f}}:14: {AN}: unknown template 'mastodon': no social/mastodon.txt.j2 in the "
        "templates (known: x)",
        id="unknown-post-template",
    ),
    pytest.param(
        edit('channel = "x"', 'channel = "twitter"'),
        f"{{f}}:13: {AN}: unknown channel 'twitter' (known: x, mastodon, bluesky)",
        id="unknown-channel",
    ),
    pytest.param(
        edit('channel = "x"\n', ""),
        f"{{f}}:11: {AN}: missing 'channel', the network to post on (known: x, mastodon, bluesky)",
        id="missing-channel",
    ),
    pytest.param(
        edit('channel = "x"', 'channel = "x"\ntemplate = "x"\ntext = "New: {{ url }}"'),
        f"{{f}}:15: {AN}: give either 'template' or 'text', not both",
        id="template-and-text",
    ),
    pytest.param(
        edit('channel = "x"', 'channel = "x"\ntext = "New: {{ url }"'),
        f"{{f}}:14: {AN}: text: template syntax error: unexpected '}}'",
        id="text-syntax",
    ),
    pytest.param(
        edit('channel = "x"', 'channel = "x"\nthread = "yes"'),
        f"{{f}}:14: {AN}: thread must be true or false",
        id="thread-not-bool",
    ),
    pytest.param(
        edit('{ language = "en" }', "{ language = 1 }"),
        f"{{f}}:8: {SD}: where must be a table of recipient fields and values, "
        'like { language = "en" } or { beat = ["physics", "energy"] }',
        id="where-not-strings",
    ),
    pytest.param(
        edit('where = { language = "en" }', "tags = []"),
        f'{{f}}:8: {SD}: tags must be a non-empty list of names, like tags = ["a", "b"]',
        id="empty-tags",
    ),
    pytest.param(
        edit('name = "science-desk"\n', ""),
        "{f}:5: [[email]] #1: missing 'name'",
        id="missing-step-name",
    ),
    pytest.param(
        edit('name = "announce"', 'name = "announce now"'),
        "{f}:12: [[post]] #1: name must be letters, digits, '-', '_' or '.', starting with "
        "a letter or digit, not 'announce now'",
        id="bad-step-name",
    ),
    pytest.param(
        edit('name = "launch"', 'name = ".."'),
        "{f}:1: campaign name '..' must start with a letter or digit and hold only letters, "
        "digits, '-', '_' or '.'",
        id="campaign-name-escapes-the-outbox",
    ),
    pytest.param(
        edit('name = "launch"', f'name = "{"l" * 65}"'),
        "{f}:1: campaign name is 65 characters long; keep it to 64 (it names a folder and "
        "goes into every message's List-Id)",
        id="campaign-name-too-long",
    ),
    pytest.param(
        edit('name = "announce"', f'name = "{"a" * 65}"'),
        "{f}:12: [[post]] #1: name is 65 characters long; keep it to 64",
        id="step-name-too-long",
    ),
    pytest.param(
        edit("[[email]]", "[email]"),
        "{f}:5: email steps are written as [[email]] tables, one per step",
        id="email-not-array",
    ),
    pytest.param(
        edit('name = "science-desk"', "name = science-desk"),
        "{f}:6: invalid TOML: Invalid value (column 8)",
        id="invalid-toml",
    ),
    pytest.param(
        'name = "launch"\nrelease = "hydrogen.md"\n',
        "{f}: no steps: add an [[email]] or a [[post]] table",
        id="no-steps",
    ),
]


@pytest.mark.parametrize(("text", "expected"), BAD_FILES)
def test_bad_campaign_file(ws: Path, cfg: Settings, text: str, expected: str) -> None:
    path = write(ws, text)
    with pytest.raises(CampaignError) as caught:
        load_campaign(path, cfg)
    assert str(caught.value) == expected.replace("{f}", str(path)).replace("{ws}", str(ws))


def test_missing_campaign_file(ws: Path, cfg: Settings) -> None:
    with pytest.raises(CampaignError) as caught:
        load_campaign(ws / "nowhere.toml", cfg)
    assert str(caught.value) == f"{ws / 'nowhere.toml'}: campaign file not found"


# Errors only a full check finds: each names the campaign (or list) file and line.
BAD_CHECKS = [
    pytest.param(
        edit('at = "2027-03-10 08:05"', 'at = "2027-03-10 07:55"'),
        CampaignError,
        f"{{f}}:14: {AN}: at 10 March 2027 07:55 CET is before the release embargo "
        "(10 March 2027 08:00 CET); a post is public at once",
        id="post-before-embargo",
    ),
    pytest.param(
        edit('at = "2027-03-10 08:05"', 'at = "2027-03-10T06:59Z"'),
        CampaignError,
        f"{{f}}:14: {AN}: at 10 March 2027 07:59 CET is before the release embargo "
        "(10 March 2027 08:00 CET); a post is public at once",
        id="post-before-embargo-utc",
    ),
    pytest.param(
        edit('at = "2027-03-10 08:00"', 'at = "2027-03-09 18:00"'),
        CampaignError,
        f"{{f}}:9: {SD}: at 9 March 2027 18:00 CET is before the release embargo "
        "(10 March 2027 08:00 CET); add embargoed = true to this step to send it under "
        "embargo (with the banner and the subject prefix), or move it",
        id="unflagged-email-before-embargo",
    ),
    pytest.param(
        edit('at = "2027-03-10 08:00"', 'at = "2027-03-10T06:59:59Z"'),
        CampaignError,
        f"{{f}}:9: {SD}: at 10 March 2027 07:59 CET is before the release embargo "
        "(10 March 2027 08:00 CET); add embargoed = true to this step to send it under "
        "embargo (with the banner and the subject prefix), or move it",
        id="unflagged-email-a-second-before-embargo",
    ),
    pytest.param(
        edit('{ language = "en" }', '{ desk = "science" }'),
        CampaignError,
        f"{{f}}:8: {SD}: where: unknown recipient field 'desk' (fields: email, first_name, "
        "last_name, name, outlet, beat, language, timezone, tags)",
        id="unknown-where-field",
    ),
    pytest.param(
        edit('where = { language = "en" }', 'subject = "{{ release.headline }}"'),
        TemplateError,
        f"{{f}}:8: {SD}: subject: undefined variable: "
        "'distribute.release.Release object' has no attribute 'headline'",
        id="subject-undefined",
    ),
]


@pytest.mark.parametrize(("text", "error", "expected"), BAD_CHECKS)
def test_bad_campaign_check(
    ws: Path, cfg: Settings, text: str, error: type[Exception], expected: str
) -> None:
    path = write(ws, text)
    campaign = load_campaign(path, cfg)
    with pytest.raises(error) as caught:
        check_campaign(campaign, cfg, now=BEFORE)
    assert str(caught.value) == expected.replace("{f}", str(path))


def test_post_too_long_points_at_the_text(ws: Path, cfg: Settings) -> None:
    path = write(ws, edit('channel = "x"', 'channel = "x"\ntext = "' + "word " * 80 + '"'))
    with pytest.raises(TemplateError) as caught:
        check_campaign(load_campaign(path, cfg), cfg, now=BEFORE)
    assert str(caught.value) == (
        f"{path}:14: {AN}: text: post is 399 weighted characters, over X's limit of 280; "
        "shorten it or post it as a thread"
    )


def test_post_thread_splits_what_does_not_fit(ws: Path, cfg: Settings) -> None:
    text = "Long sentence number one is here. " * 12
    path = write(
        ws, edit('channel = "x"', f'channel = "x"\ntext = "{text}"\nthread = true\nnumbered = true')
    )
    check = check_campaign(load_campaign(path, cfg), cfg, now=BEFORE)
    parts = check.posts["announce"].parts
    assert len(parts) > 1
    assert all(part.length <= 280 for part in parts)


def test_invalid_list_rows_stop_the_check_all_named(ws: Path, cfg: Settings) -> None:
    lists = ws / "recipients" / "science-press.csv"
    with lists.open("a", encoding="utf-8") as out:
        out.write("not-an-address,Ann,Example,Nowhere,physics,en,Europe/Paris,science\n")
        out.write(",Bo,Example,Nowhere,physics,en,Europe/Paris,science\n")
    path = write(ws, BASE)
    with pytest.raises(RecipientError) as caught:
        check_campaign(load_campaign(path, cfg), cfg, now=BEFORE)
    assert str(caught.value) == (
        "2 invalid rows in the journalist lists:\n"
        "  recipients/science-press.csv:16: invalid address 'not-an-address': "
        "An email address must have an @-sign.\n"
        "  recipients/science-press.csv:17: empty email\n"
        "`distribute recipients check` shows them all; "
        "`distribute send --skip-invalid` sends to the valid rows and lists the others."
    )


def test_skip_invalid_leaves_the_invalid_rows_out_and_lists_them(ws: Path, cfg: Settings) -> None:
    lists = ws / "recipients" / "science-press.csv"
    with lists.open("a", encoding="utf-8") as out:
        out.write("not-an-address,Ann,Example,Nowhere,physics,en,Europe/Paris,science\n")
    path = write(ws, BASE)
    check = check_campaign(load_campaign(path, cfg), cfg, now=BEFORE, skip_invalid=True)
    assert [(p.file, p.line) for p in check.skipped] == [(lists, 16)]
    assert check.warnings[0] == (
        "recipients/science-press.csv:16: not mailed: invalid address 'not-an-address': "
        "An email address must have an @-sign."
    )
    assert "not-an-address" not in {r.email for r in check.audiences["science-desk"].recipients}


def test_past_steps_warn(ws: Path, cfg: Settings) -> None:
    path = write(ws, BASE)
    now = datetime(2027, 3, 10, 7, 3, tzinfo=UTC)
    check = check_campaign(load_campaign(path, cfg), cfg, now=now)
    assert check.warnings == [
        f"{SD}: 10 March 2027 08:00 CET is already past (now 10 March 2027 08:03 CET)",
        SCIENCE_UNUSED,
    ]


def test_steps_naming_the_same_lists_share_one_reading(ws: Path, cfg: Settings) -> None:
    """A second version of a release to the same lists does not hold them a second time."""
    second = '[[email]]\nname = "all"\nlists = ["Science-Press"]\nat = "2027-03-10 09:00"\n'
    path = write(ws, edit('where = { language = "en" }', 'tags = ["health"]') + second)
    check = check_campaign(load_campaign(path, cfg), cfg, now=BEFORE)

    english = check.audiences["science-desk"].recipients
    everyone = check.audiences["all"].recipients
    assert english and len(everyone) > len(english)
    assert all("health" in r.tags for r in english)
    by_key = check.audiences["all"].by_key()
    assert all(by_key[r.key] is r for r in english)
    assert check.audiences["all"].suppressed == check.audiences["science-desk"].suppressed
    assert any("more than one email step" in text for text in check.warnings)


def test_filter_selecting_nobody_warns(ws: Path, cfg: Settings) -> None:
    path = write(ws, edit('{ language = "en" }', '{ language = "de" }'))
    check = check_campaign(load_campaign(path, cfg), cfg, now=BEFORE)
    assert check.audiences["science-desk"].recipients == []
    assert check.warnings == [f"{SD}: selects no recipient", SCIENCE_UNUSED]


def test_every_recipient_is_personalised_with_extra_columns(ws: Path, cfg: Settings) -> None:
    (ws / "recipients" / "desk.csv").write_text(
        "email,first_name,language,desk\nann@example.org,Ann,en,energy\n", encoding="utf-8"
    )
    templates = ws / "templates" / "email"
    templates.mkdir(parents=True)
    for suffix in ("html", "txt"):
        (templates / f"desk.{suffix}.j2").write_text(
            "{{ recipient.greeting }} ({{ recipient.desk }}) {{ release.title }}\n",
            encoding="utf-8",
        )
    path = write(
        ws,
        edit('["science-press"]', '["desk"]').replace(
            'where = { language = "en" }', 'template = "desk"\nsubject = "For {{ sender.name }}"'
        ),
    )
    check = check_campaign(load_campaign(path, cfg), cfg, now=BEFORE)
    draft = check.drafts["science-desk"]
    assert draft.template == "desk"
    assert draft.subject == "For Press Office"
    assert draft.slot("desk") in draft.text


def test_a_column_missing_from_one_list_is_named(ws: Path, cfg: Settings) -> None:
    (ws / "recipients" / "desk.csv").write_text(
        "email,first_name,desk\nann@example.org,Ann,energy\n", encoding="utf-8"
    )
    (ws / "recipients" / "other.csv").write_text(
        "email,first_name\ncarol@example.org,Carol\n", encoding="utf-8"
    )
    templates = ws / "templates" / "email"
    templates.mkdir(parents=True)
    for suffix in ("html", "txt"):
        (templates / f"desk.{suffix}.j2").write_text(
            "Desk: {{ recipient.desk }}\n{{ release.title }}\n", encoding="utf-8"
        )
    path = write(
        ws,
        edit('["science-press"]', '["desk", "other"]').replace(
            'where = { language = "en" }', 'template = "desk"'
        ),
    )
    check = check_campaign(load_campaign(path, cfg), cfg, now=BEFORE)
    assert (
        f"{SD}: list 'other' has no column desk: its journalists get an empty value there"
        in check.warnings
    )


# --------------------------------------------------------------------------- times

DST = [
    pytest.param("Europe/Paris", "2027-03-10 08:00", datetime(2027, 3, 10, 7, 0), id="winter"),
    pytest.param("Europe/Paris", "2027-03-10T08:00", datetime(2027, 3, 10, 7, 0), id="T"),
    pytest.param("Europe/Paris", "2027-06-10 08:00", datetime(2027, 6, 10, 6, 0), id="summer"),
    pytest.param("Europe/Paris", "2027-03-28 02:30", None, id="paris-spring-gap"),
    pytest.param("Europe/Paris", "2027-03-28 08:00", datetime(2027, 3, 28, 6, 0), id="spring-day"),
    # The repeated hour names two instants: the file must say which (see DST_ERRORS).
    pytest.param("Europe/Paris", "2027-10-31 02:30", None, id="paris-overlap"),
    pytest.param("Europe/Paris", "2027-10-31 08:00", datetime(2027, 10, 31, 7, 0), id="fall-day"),
    pytest.param(
        "Europe/Paris",
        "2027-10-31T02:30+02:00",
        datetime(2027, 10, 31, 0, 30),
        id="overlap-first-by-offset",
    ),
    pytest.param(
        "Europe/Paris",
        "2027-10-31T02:30+01:00",
        datetime(2027, 10, 31, 1, 30),
        id="overlap-second-by-offset",
    ),
    pytest.param(
        "Europe/Paris", "2027-10-31 03:00", datetime(2027, 10, 31, 2, 0), id="after-overlap"
    ),
    pytest.param(
        "Europe/Paris",
        "2027-03-28T02:30+01:00",
        datetime(2027, 3, 28, 1, 30),
        id="offset-kept-in-gap",
    ),
    pytest.param(
        "America/New_York",
        "2027-03-10T08:00+01:00",
        datetime(2027, 3, 10, 7, 0),
        id="offset-kept-other-zone",
    ),
    pytest.param(
        "Europe/Paris", "2027-03-10T07:00Z", datetime(2027, 3, 10, 7, 0), id="utc-designator"
    ),
    pytest.param("America/New_York", "2027-03-14 02:30", None, id="new-york-spring-gap"),
    pytest.param("America/New_York", "2027-11-07 01:30", None, id="new-york-overlap"),
    pytest.param(
        "America/New_York", "2027-03-10 08:00", datetime(2027, 3, 10, 13, 0), id="new-york"
    ),
]


@pytest.mark.parametrize(("zone", "at", "expected"), DST)
def test_times_across_dst(
    ws: Path, cfg: Settings, zone: str, at: str, expected: datetime | None
) -> None:
    path = write(
        ws,
        f'release = "hydrogen.md"\ntimezone = "{zone}"\n\n'
        f'[[email]]\nname = "step"\nlists = ["tech-press"]\nat = "{at}"\n',
    )
    if expected is None:
        pattern = rf"^{re.escape(str(path))}:7: .* (does not exist|happens twice) in {zone}"
        with pytest.raises(CampaignError, match=pattern):
            load_campaign(path, cfg)
        return
    campaign = load_campaign(path, cfg)
    (step,) = campaign.steps
    assert step.at == expected.replace(tzinfo=UTC)
    assert step.at.tzinfo is UTC


DST_ERRORS = [
    pytest.param(
        "2027-03-28 02:30",
        "2027-03-28 02:30 does not exist in Europe/Paris: the clocks go from 02:00 straight to "
        "03:00 that day; write the instant you mean with its offset, like "
        "'2027-03-28 02:30+01:00'",
        id="gap",
    ),
    pytest.param(
        "2027-10-31 02:30",
        "2027-10-31 02:30 happens twice in Europe/Paris (the clocks go back that night): write "
        "it with its offset, '2027-10-31 02:30+02:00' for the first or "
        "'2027-10-31 02:30+01:00' for the second",
        id="overlap",
    ),
]


@pytest.mark.parametrize(("at", "message"), DST_ERRORS)
def test_dst_errors_ask_for_an_offset(at: str, message: str) -> None:
    from zoneinfo import ZoneInfo

    zone = ZoneInfo("Europe/Paris")
    with pytest.raises(ValueError) as caught:
        parse_at(at, zone)
    assert str(caught.value) == message
    # Both suggested spellings are accepted and name different instants.
    offsets = re.findall(r"'([^']+)'", message)
    assert len({parse_at(text, zone) for text in offsets}) == len(offsets)


@given(
    st.datetimes(
        min_value=datetime(2026, 1, 1), max_value=datetime(2030, 12, 31), timezones=st.none()
    ).map(lambda moment: moment.replace(second=0, microsecond=0)),
    st.sampled_from(["Europe/Paris", "America/New_York", "Australia/Sydney", "UTC"]),
)
def test_every_accepted_local_time_is_the_instant_shown_back(moment: datetime, name: str) -> None:
    from zoneinfo import ZoneInfo

    zone = ZoneInfo(name)
    try:
        instant = parse_at(moment.isoformat(sep=" "), zone)
    except ValueError as exc:
        # Refused only for a time the zone skips or repeats.
        first, second = moment.replace(tzinfo=zone, fold=0), moment.replace(tzinfo=zone, fold=1)
        assert first.utcoffset() != second.utcoffset(), exc
        return
    assert instant.astimezone(zone).replace(tzinfo=None) == moment
    assert instant.tzinfo is UTC


@given(
    st.one_of(
        st.datetimes(timezones=st.none()),
        # The edges, where a zone's offset carries the instant out of datetime's range.
        st.datetimes(min_value=datetime(9999, 12, 30), timezones=st.none()),
        st.datetimes(max_value=datetime(1, 1, 2), timezones=st.none()),
    ),
    st.sampled_from(
        ["Europe/Paris", "America/New_York", "Australia/Lord_Howe", "Pacific/Kiritimati", "UTC"]
    ),
    st.sampled_from(["", "Z", "+14:00", "-12:00", "+05:30"]),
)
def test_any_time_of_any_year_is_an_instant_or_a_clear_refusal(
    moment: datetime, name: str, offset: str
) -> None:
    """Near year 1 or 9999 the UTC instant may not exist: refused in words, never a crash."""
    from zoneinfo import ZoneInfo

    text = moment.isoformat(sep=" ") + offset
    try:
        instant = parse_at(text, ZoneInfo(name))
    except ValueError as exc:
        assert text in str(exc) or repr(text) in str(exc)
        return
    assert instant.tzinfo is UTC


def test_a_time_beyond_year_9999_in_utc_names_its_line(ws: Path, cfg: Settings) -> None:
    path = write(ws, edit('at = "2027-03-10 08:00"', 'at = "9999-12-31T23:59-05:00"'))
    with pytest.raises(CampaignError) as caught:
        load_campaign(path, cfg)
    assert re.fullmatch(
        rf"{re.escape(str(path))}:\d+: .*9999-12-31T23:59-05:00 is too far in the past or "
        "the future",
        str(caught.value),
    )


GRACES = [
    pytest.param(None, timedelta(hours=1), id="default"),
    pytest.param("90", timedelta(seconds=90), id="integer"),
    pytest.param('"90s"', timedelta(seconds=90), id="seconds"),
    pytest.param('"15m"', timedelta(minutes=15), id="minutes"),
    pytest.param('"1h"', timedelta(hours=1), id="hours"),
    pytest.param('"2 h"', timedelta(hours=2), id="space"),
    pytest.param('"0"', timedelta(0), id="zero"),
]


@pytest.mark.parametrize(("value", "expected"), GRACES)
def test_late_grace(ws: Path, cfg: Settings, value: str | None, expected: timedelta) -> None:
    text = BASE if value is None else f"late_grace = {value}\n{BASE}"
    assert load_campaign(write(ws, text), cfg).late_grace == expected


@given(st.integers(min_value=0, max_value=10**6), st.sampled_from(["", "s", "m", "h", "d"]))
def test_every_duration_spelling_means_what_it_says(count: int, unit: str) -> None:
    seconds = {"": 1, "s": 1, "m": 60, "h": 3600, "d": 86400}[unit]
    if count * seconds > 365 * 86400:
        with pytest.raises(ValueError, match="must be at most 365 days"):
            parse_duration(f"{count}{unit}")
        return
    assert parse_duration(f"{count}{unit}") == timedelta(seconds=count * seconds)
    assert parse_duration(f" {count} {unit} ".replace("  ", " ")) == parse_duration(
        f"{count}{unit}"
    )
    if not unit:
        assert parse_duration(count) == timedelta(seconds=count)


@given(
    st.integers(min_value=-(10**40), max_value=10**40),
    st.sampled_from(["", "s", "m", "h", "d"]),
    st.booleans(),
)
def test_any_duration_is_at_most_a_year_or_refused(count: int, unit: str, text: bool) -> None:
    """However large, a late_grace is a duration the ledger can store, or a ValueError."""
    value: object = f"{count}{unit}" if text or unit else count
    try:
        grace = parse_duration(value)
    except ValueError as exc:
        assert str(exc).startswith("must ")
        return
    assert timedelta(0) <= grace <= timedelta(days=365)


@pytest.mark.parametrize(
    "value",
    [
        '"soon"',
        "-5",
        '"15 minutes"',
        "true",
        "1.5",
        '"1H"',
        '"1e9s"',
        '"-1h"',
        "10000000000000000000",
        '"366d"',
    ],
)
def test_bad_late_grace_names_its_line(ws: Path, cfg: Settings, value: str) -> None:
    path = write(ws, f"late_grace = {value}\n{BASE}")
    with pytest.raises(CampaignError) as caught:
        load_campaign(path, cfg)
    assert str(caught.value).startswith(f"{path}:1: late_grace must ")


def test_embargoed_email_step_is_sent_under_the_banner(ws: Path, cfg: Settings) -> None:
    text = edit('at = "2027-03-10 08:00"', 'embargoed = true\nat = "2027-03-09 18:00"')
    check = check_campaign(load_campaign(write(ws, text), cfg), cfg, now=BEFORE)
    draft = check.drafts["science-desk"]
    assert draft.embargoed
    assert draft.subject.startswith("EMBARGOED until 10 March 2027 08:00 CET: ")


def test_embargoed_flag_after_the_embargo_is_a_warning(ws: Path, cfg: Settings) -> None:
    path = write(ws, edit('at = "2027-03-10 08:00"', 'embargoed = true\nat = "2027-03-10 08:00"'))
    check = check_campaign(load_campaign(path, cfg), cfg, now=BEFORE)
    assert not check.drafts["science-desk"].embargoed
    assert (
        f"{SD}: embargoed = true, but the embargo lifts at 10 March 2027 08:00 CET: it goes "
        "out without the banner"
    ) in check.warnings


def test_gap_message_names_the_jump() -> None:
    from zoneinfo import ZoneInfo

    with pytest.raises(ValueError, match="clocks go from 02:00 straight to 03:00"):
        parse_at("2027-03-14 02:30", ZoneInfo("America/New_York"))


def test_campaign_shows_times_in_its_zone(ws: Path, cfg: Settings) -> None:
    campaign: Campaign = load_campaign(write(ws, BASE), cfg)
    assert campaign.show(campaign.steps[0].at) == "10 March 2027 08:00 CET"
