"""The preview: every email and post of a release or campaign as its recipients will see it.

A preview is built from the exact bytes that would be sent: each message goes through
:func:`~distribute.render.message.build_message` (the function a dry-run or live send
calls), and what the page shows is that message parsed back with the ``email`` package.
For a campaign the step's message is byte-for-byte its dry-run outbox file, Date aside.

The page (:func:`render_page`) is one self-contained HTML file: the email's HTML part sits
in ``srcdoc`` iframes sandboxed without ``allow-scripts``, remote images are replaced by a
box holding their alt text, and a Content-Security-Policy lets no request leave the machine
(``--allow-remote`` lets images load). Building reads no clock: ``now`` is passed in.
"""

from __future__ import annotations

import base64
import functools
import hashlib
import html as html_lib
import re
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field, replace
from datetime import datetime
from email import policy
from email.message import EmailMessage
from email.parser import BytesParser
from html.parser import HTMLParser
from pathlib import Path
from typing import Literal
from urllib.parse import urlsplit

import jinja2
from markupsafe import Markup
from twitter_text import extract_urls_with_indices

from distribute.config import Settings
from distribute.errors import CampaignError, DistributeError
from distribute.recipients import Audience, Recipient, address_key, display_path
from distribute.release import Release
from distribute.render.email import GMAIL_CLIP_BYTES
from distribute.render.social import NETWORKS, PostSet

# Inbox list views cut subjects long before this; RFC 5322 section 2.1.1 recommends
# header lines of at most 78 characters, and most clients show about that many at best.
SUBJECT_LIMIT = 78
# A post this close to its limit leaves no room for a last-minute correction.
POST_MARGIN = 10
# X shows a link as its address without the scheme, cut to the 23 characters it counts.
LINK_SHOWN = 23
SAMPLE_RECIPIENT = Recipient(
    email="jane.doe@example.com", first_name="Jane", last_name="Doe", list_name="sample"
)


@dataclass(frozen=True)
class Notice:
    """Something worth fixing before sending, and how to fix it."""

    message: str
    fix: str
    where: str = ""


@dataclass(frozen=True)
class MessageView:
    """One message as built for the wire, and its parts as an inbox reads them."""

    step: str | None
    at: str | None
    data: bytes
    headers: dict[str, str]
    preheader: str
    html: str
    text: str

    @property
    def subject(self) -> str:
        return self.headers.get("Subject", "")

    @property
    def html_size(self) -> int:
        return len(self.html.encode("utf-8"))


@dataclass(frozen=True)
class PostView:
    step: str | None
    at: str | None
    network: str
    posts: PostSet
    image: str | None
    image_alt: str | None


@dataclass(frozen=True)
class ListCount:
    name: str
    recipients: int
    rows: int
    suppressed: int
    duplicates: int


@dataclass(frozen=True)
class TimelineEntry:
    step: str
    channel: str
    at: str
    lists: tuple[ListCount, ...] = ()
    recipients: int | None = None
    suppressed: int = 0
    embargo: str = ""


@dataclass
class Preview:
    kind: Literal["release", "campaign"]
    title: str
    source: Path
    messages: list[MessageView] = field(default_factory=list)
    posts: list[PostView] = field(default_factory=list)
    timeline: list[TimelineEntry] = field(default_factory=list)
    embargo: str | None = None
    notices: list[Notice] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)
    recipient: str | None = None
    account: str = ""


# --------------------------------------------------------------------------- building


def is_campaign(path: Path) -> bool:
    return path.suffix.lower() == ".toml"


def build_preview(
    path: Path,
    settings: Settings,
    *,
    now: datetime,
    recipient: str | None = None,
    send_now: bool = False,
) -> Preview:
    """The preview of a release (Markdown) or a campaign (``.toml``)."""
    if is_campaign(path):
        return preview_campaign(path, settings, now=now, recipient=recipient, send_now=send_now)
    sample = SAMPLE_RECIPIENT if recipient is None else sample_recipient(recipient)
    return preview_release(path, settings, now=now, recipient=sample)


def sample_recipient(value: str) -> Recipient:
    """``"Jane Doe <jane@example.com>"`` or a bare address as a recipient of a release."""
    from email.utils import parseaddr

    from distribute.recipients import address_problem

    name, address = parseaddr(value)
    problem = address_problem(address) if address else "no address"
    if problem:
        raise DistributeError(
            f"recipient {value!r} is not an address like 'Jane Doe <jane@example.com>'"
        )
    first, _, last = name.partition(" ")
    return Recipient(email=address, first_name=first, last_name=last, list_name="sample")


def preview_release(
    path: Path,
    settings: Settings,
    *,
    now: datetime,
    recipient: Recipient = SAMPLE_RECIPIENT,
    template: str = "press-release",
    url: str | None = None,
) -> Preview:
    """A release as ``distribute render`` builds it: one sample message and the X post."""
    from distribute.release import load_release
    from distribute.render.email import draft_email
    from distribute.render.message import build_message, message_bytes
    from distribute.render.social import render_posts

    release = load_release(path)
    if url:
        release = replace(release, url=url)
    posts = render_posts(release, settings, url=url)
    draft = draft_email(release, settings, at=now, template=template)
    message = build_message(draft, recipient, settings, campaign="render", step="preview", date=now)
    view = parse_message(message_bytes(message), step=None, at=None)
    preview = Preview(
        "release",
        release.title,
        path,
        recipient=view.headers.get("To"),
        account=settings.x.account,
    )
    preview.messages.append(view)
    preview.posts.append(_post_view(None, None, "x", posts, release))
    if release.embargo is not None:
        preview.embargo = _embargo_state(release, now, settings.timezone)
    preview.notices += message_notices(view, "email")
    preview.notices += post_notices(preview.posts[-1], "X post")
    preview.notices += release_notices(release)
    preview.notices += [
        Notice(note, _fix_for(note), "X post")
        for note in posts.warnings
        if not note.startswith("the release has no url")
    ]
    return preview


def preview_campaign(
    path: Path,
    settings: Settings,
    *,
    now: datetime,
    recipient: str | None = None,
    send_now: bool = False,
) -> Preview:
    """Every step of a campaign: each email step's message, each post, the timeline.

    Checked as ``schedule`` checks it (each step rendered for its own time) or, with
    ``send_now``, as ``send`` does (every step rendered for ``now``). Each email step shows
    the message its first journalist gets, or, given ``recipient``, the one that address
    gets; the Date header is the step's time (``now`` with ``send_now``).
    """
    from distribute.campaign import EmailStep, check_campaign, load_campaign
    from distribute.render.message import build_message, message_bytes

    campaign = load_campaign(path, settings)
    check = check_campaign(campaign, settings, now=now, send_now=send_now)
    release = campaign.release
    preview = Preview(
        "campaign",
        f"{campaign.name}: {release.title}",
        path,
        recipient=recipient,
        account=settings.x.account,
    )
    if release.embargo is not None:
        preview.embargo = _embargo_state(release, now, campaign.timezone)
    wanted = address_key(recipient) if recipient else None
    found = False
    for step in campaign.steps:
        where = f"{'email' if isinstance(step, EmailStep) else 'post'} step {step.name!r}"
        at = campaign.show(step.at)
        embargo = ""
        if release.embargo is not None:
            lifts = campaign.show(release.embargo)
            embargo = (
                f"under embargo (lifts {lifts})" if step.at < release.embargo else "embargo lifted"
            )
        if isinstance(step, EmailStep):
            audience = check.audiences[step.name]
            preview.timeline.append(_timeline_email(step.name, at, audience, embargo))
            chosen = _choose(audience, wanted)
            if isinstance(chosen, str):
                preview.skipped.append(f"{step.name}: {chosen}")
            else:
                found = True
                message = build_message(
                    check.drafts[step.name],
                    chosen,
                    settings,
                    campaign=campaign.name,
                    step=step.name,
                    date=now if send_now else step.at,
                    release=campaign.release_version,
                )
                view = parse_message(message_bytes(message), step=step.name, at=at)
                preview.messages.append(view)
                preview.notices += message_notices(view, where)
            if audience.problems:
                preview.notices.append(_list_notice(audience, where))
        else:
            posts = check.posts[step.name]
            preview.timeline.append(TimelineEntry(step.name, step.channel, at, embargo=embargo))
            view_post = _post_view(step.name, at, step.channel, posts, release)
            preview.posts.append(view_post)
            preview.notices += post_notices(view_post, where)
    if wanted and not found:
        raise CampaignError(
            f"{recipient} gets no email from this campaign (" + "; ".join(preview.skipped) + ")",
            path=path,
        )
    preview.notices += release_notices(release)
    for note in check.warnings:
        if "the release has no url" in note or "the HTML part is " in note:
            continue  # said above, with what to do
        place, text = ("", note)
        if match := _STEP_NOTE.match(note):
            place, text = f"{match['kind']} step {match['name']}", note[match.end() :]
        preview.notices.append(Notice(text, _fix_for(text), place))
    return preview


# How check_campaign names a step in its warnings: "[[email]] 'science-desk': ...".
_STEP_NOTE = re.compile(r"\[\[(?P<kind>email|post)\]\] (?P<name>'[^']*'): ")


def _choose(audience: Audience, wanted: str | None) -> Recipient | str:
    """The journalist whose message is shown, or why the wanted one gets none."""
    if wanted is None:
        if audience.recipients:
            return audience.recipients[0]
        return "selects no recipient"
    for recipient in audience.recipients:
        if recipient.key == wanted:
            return recipient
    if any(r.key == wanted for r in audience.suppressed):
        return "suppressed, gets nothing"
    return "not on this step's lists"


def _timeline_email(name: str, at: str, audience: Audience, embargo: str) -> TimelineEntry:
    counts = []
    for stats in audience.lists:
        counts.append(
            ListCount(
                stats.name,
                sum(1 for r in audience.recipients if r.list_name == stats.name),
                stats.rows,
                sum(1 for r in audience.suppressed if r.list_name == stats.name),
                stats.duplicates,
            )
        )
    return TimelineEntry(
        name,
        "email",
        at,
        tuple(counts),
        len(audience.recipients),
        len(audience.suppressed),
        embargo,
    )


def _list_notice(audience: Audience, where: str) -> Notice:
    invalid = len(audience.invalid)
    duplicates = len(audience.problems) - invalid
    kinds = ", ".join(
        f"{count} {what}"
        for count, what in ((invalid, "invalid"), (duplicates, "duplicate"))
        if count
    )
    paths = sorted({p.file for p in audience.problems})
    files = ", ".join(path.name for path in paths)
    # Every list of the step: a duplicate is one only when its first row is read with it.
    check = " ".join(display_path(stats.file) for stats in audience.lists)
    return Notice(
        f"{len(audience.problems)} row(s) of its lists are not mailed ({kinds}; in {files})",
        f"run 'distribute recipients check {check}' to see each row and fix it",
        where,
    )


def _embargo_state(release: Release, now: datetime, zone: str) -> str:
    from distribute.render.templates import instant

    assert release.embargo is not None
    when = instant(release.embargo, zone)
    if now < release.embargo:
        return f"until {when}: in force now"
    return f"until {when}: lifted"


def _post_view(
    step: str | None, at: str | None, network: str, posts: PostSet, release: Release
) -> PostView:
    return PostView(step, at, network, posts, release.image, release.image_alt)


def parse_message(data: bytes, *, step: str | None, at: str | None) -> MessageView:
    """A message's bytes read back as a mail client reads them."""
    message = BytesParser(policy=policy.default).parsebytes(data)
    assert isinstance(message, EmailMessage)
    headers = {name: str(value) for name, value in message.items()}
    html_part = message.get_body(("html",))
    text_part = message.get_body(("plain",))
    html = html_part.get_content() if isinstance(html_part, EmailMessage) else ""
    text = text_part.get_content() if isinstance(text_part, EmailMessage) else ""
    # The wire's CRLF line endings (RFC 5322 section 2.1) read as plain line breaks.
    html, text = html.replace("\r\n", "\n"), text.replace("\r\n", "\n")
    return MessageView(step, at, data, headers, _preheader(html, text), html, text)


class _Scan(HTMLParser):
    """Images, links and the preheader of an HTML part, with each image's place in it."""

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.images: list[tuple[int, int, dict[str, str]]] = []
        self.links: list[str] = []
        self.preheader: list[str] = []
        self._depth = 0
        self._lines = [0]

    def scan(self, html: str) -> _Scan:
        # Where each line starts as the parser counts them: at "\n" only (ParserBase
        # .updatepos), where str.splitlines() also breaks at "\r", U+2028 and others.
        for line in html.split("\n")[:-1]:
            self._lines.append(self._lines[-1] + len(line) + 1)
        self.feed(html)
        self.close()
        return self

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        values = {name: value or "" for name, value in attrs}
        if tag == "img":
            line, column = self.getpos()
            start = self._lines[line - 1] + column
            self.images.append((start, len(self.get_starttag_text() or ""), values))
        for name in ("href", "src"):
            if values.get(name):
                self.links.append(values[name].strip())
        if self._depth:
            self._depth += tag not in {"br", "img", "meta", "hr"}
        elif "preheader" in values.get("class", "").split():
            self._depth = 1

    def handle_endtag(self, tag: str) -> None:
        if self._depth:
            self._depth -= 1

    def handle_data(self, data: str) -> None:
        if self._depth:
            self.preheader.append(data)


def _preheader(html: str, text: str) -> str:
    """What an inbox shows after the subject: the hidden preheader, else the text's start."""
    found = " ".join("".join(_Scan().scan(html).preheader).split())
    return found or " ".join(text.split())[:140]


# --------------------------------------------------------------------------- notices


def message_notices(view: MessageView, where: str) -> list[Notice]:
    notices: list[Notice] = []
    if view.html_size > GMAIL_CLIP_BYTES:
        notices.append(
            Notice(
                f"the HTML part is {view.html_size / 1024:.0f} KB: Gmail clips messages over "
                "102 KB, hiding the end of the release and the unsubscribe link",
                "shorten the release (move annexes to the web page), or trim the template",
                where,
            )
        )
    scan = _Scan().scan(view.html)
    bare = [attrs.get("src", "") for _, _, attrs in scan.images if not attrs.get("alt", "").strip()]
    if bare:
        notices.append(
            Notice(
                f"{len(bare)} image(s) without alt text ({_few(bare)}): many mail clients "
                "block images, and screen readers say nothing",
                "give the image a description: image_alt in the front matter, or ![text](...) "
                "in the Markdown",
                where,
            )
        )
    insecure = list(dict.fromkeys(link for link in scan.links if _is_http(link)))
    insecure += [
        u for u in dict.fromkeys(re.findall(r"http://\S+", view.text)) if u not in insecure
    ]
    if insecure:
        notices.append(
            Notice(
                f"{len(insecure)} http:// link(s) ({_few(insecure)}): clients warn about or "
                "block unencrypted links",
                "write them with https:// in the release or the template",
                where,
            )
        )
    if len(view.subject) > SUBJECT_LIMIT:
        notices.append(
            Notice(
                f"the subject is {len(view.subject)} characters: inboxes cut it after about "
                f"{SUBJECT_LIMIT}",
                "shorten the title, or give the step a shorter 'subject'",
                where,
            )
        )
    return notices


def post_notices(view: PostView, where: str) -> list[Notice]:
    notices: list[Notice] = []
    limit = view.posts.limit
    for number, post in enumerate(view.posts.parts, start=1):
        what = where if len(view.posts.parts) == 1 else f"{where}, part {number}"
        if limit - post.length <= POST_MARGIN:
            notices.append(
                Notice(
                    f"{post.length} of {limit} weighted characters: within {POST_MARGIN} of "
                    "the limit, so a last correction will not fit",
                    "shorten the text (or the summary the template uses)",
                    what,
                )
            )
        insecure = [u for u in _urls(post.text) if _is_http(u)]
        if insecure:
            notices.append(
                Notice(
                    f"http:// link in the post ({_few(insecure)})",
                    "use the https:// address of the release",
                    what,
                )
            )
    return notices


def release_notices(release: Release) -> list[Notice]:
    if release.url:
        return []
    return [
        Notice(
            "the release has no url: the email has no 'read online' link and the post no link",
            "add url: https://... to the release's front matter (or --url to render)",
            str(release.source or "release"),
        )
    ]


_FIXES = (
    ("already past", "change its 'at', or send it now with 'distribute send --step NAME'"),
    ("selects no recipient", "check the step's lists, where and tags"),
    ("has no column", "add the column to the list, or stop using the field in the template"),
    ("more than one email step", "narrow the steps' where or tags so each gets one message"),
    ("shortened to fit", "read the shortened post; shorten the text yourself if it reads badly"),
    ("under embargo", "leave the post out until the embargo lifts"),
)


def _fix_for(note: str) -> str:
    return next((fix for key, fix in _FIXES if key in note), "check the campaign file")


def _few(items: list[str]) -> str:
    shown = ", ".join(items[:3])
    return shown + (f" and {len(items) - 3} more" if len(items) > 3 else "")


def _is_http(link: str) -> bool:
    return link.lower().startswith("http://")


def _urls(text: str) -> list[str]:
    return [str(entity["url"]) for entity in extract_urls_with_indices(text)]


# --------------------------------------------------------------------------- the page


def shown_link(url: str) -> str:
    """A link as X shows it: no scheme, cut to the 23 characters it counts."""
    shown = re.sub(r"^https?://", "", url, flags=re.IGNORECASE)
    return shown if len(shown) <= LINK_SHOWN else shown[: LINK_SHOWN - 1] + "…"


_TAG = re.compile(r"(?<![\w&])[#＃][^\W_][\w]*|(?<![\w@])[@＠][A-Za-z0-9_]{1,15}")


def post_markup(text: str) -> str:
    """A post's text as the network shows it: links shortened, hashtags and handles marked."""
    spans: list[tuple[int, int, str]] = []
    for entity in extract_urls_with_indices(text):
        start, end = entity["indices"]
        url = str(entity["url"])
        spans.append(
            (
                start,
                end,
                f'<span class="link" title="{html_lib.escape(url)}">'
                f"{html_lib.escape(shown_link(url))}</span>",
            )
        )
    for match in _TAG.finditer(text):
        if not any(s <= match.start() < e for s, e, _ in spans):
            spans.append(
                (
                    match.start(),
                    match.end(),
                    f'<span class="tag">{html_lib.escape(match[0])}</span>',
                )
            )
    out: list[str] = []
    position = 0
    for start, end, markup in sorted(spans):
        out.append(html_lib.escape(text[position:start]))
        out.append(markup)
        position = end
    out.append(html_lib.escape(text[position:]))
    return "".join(out)


def _placeholder(attrs: dict[str, str]) -> str:
    alt = attrs.get("alt", "").strip()
    host = urlsplit(attrs.get("src", "")).hostname or ""
    width = attrs.get("width", "")
    size = f"width:{int(width)}px;" if width.isdigit() else ""
    label = html_lib.escape(alt) if alt else "(image without alt text)"
    return (
        f'<span role="img" aria-label="{html_lib.escape(alt)}" style="display:inline-block;'
        f"{size}max-width:100%;box-sizing:border-box;min-height:80px;padding:16px;"
        "border:2px dashed #9ca3af;background:#f3f4f6;color:#374151;font:14px/1.4 sans-serif;"
        f'text-align:center">{label}<br><small>remote image from {html_lib.escape(host)} '
        "not loaded</small></span>"
    )


def local_only(html: str) -> str:
    """The HTML part with each remote image replaced by a box holding its alt text."""
    out: list[str] = []
    position = 0
    for start, length, attrs in _Scan().scan(html).images:
        if urlsplit(attrs.get("src", "")).scheme.lower() not in {"http", "https", ""}:
            continue  # data: and cid: images are in the message itself
        out.append(html[position:start])
        out.append(_placeholder(attrs))
        position = start + length
    out.append(html[position:])
    return "".join(out)


# The outer page's only script (the email frames run none): each frame as tall as its
# email, so it has no scroll bar of its own and its viewport is exactly 600 or 375 px wide.
FIT_SCRIPT = (
    "(function(){function fit(f){var d=f.contentDocument;"
    "if(d&&d.documentElement){f.style.height=d.documentElement.scrollHeight+'px';}}"
    "document.querySelectorAll('iframe').forEach(function(f){"
    "f.addEventListener('load',function(){fit(f);});fit(f);});})();"
)
# Served pages also ask the server whether a watched file changed, and reload if so.
RELOAD_SCRIPT = (
    "(function(){var token=document.documentElement.getAttribute('data-token');"
    "setInterval(function(){fetch('/__changes',{cache:'no-store'})"
    ".then(function(r){return r.text();})"
    ".then(function(now){if(now!==token){location.reload();}})"
    ".catch(function(){});},700);})();"
)


def _script(token: str | None, *, frames: bool) -> str | None:
    parts = ([FIT_SCRIPT] if frames else []) + ([RELOAD_SCRIPT] if token else [])
    return "\n".join(parts) or None


def _csp(allow_remote: bool, script: str | None, *, polls: bool) -> str:
    """Nothing may load from anywhere but the page itself; srcdoc frames inherit this."""
    digest = base64.b64encode(hashlib.sha256(script.encode()).digest()).decode() if script else None
    parts = [
        "default-src 'none'",
        "style-src 'unsafe-inline'",
        "img-src data:" + (" https: http:" if allow_remote else ""),
        f"script-src 'sha256-{digest}'" if digest else "script-src 'none'",
        "connect-src 'self'" if polls else "",
        "form-action 'none'",
        "base-uri 'none'",
    ]
    return "; ".join(part for part in parts if part)


@functools.cache
def _env() -> jinja2.Environment:
    """The page's own templates, shipped in the package: not overridable like the email's."""
    env = jinja2.Environment(
        loader=jinja2.FileSystemLoader(str(Path(__file__).parent / "pages")),
        autoescape=True,
        undefined=jinja2.StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
    )
    env.filters["post"] = lambda text: Markup(post_markup(text))  # noqa: S704 (escaped)
    return env


def render_page(
    preview: Preview,
    *,
    allow_remote: bool = False,
    token: str | None = None,
) -> str:
    """The preview as one HTML page; ``token`` (when served) makes it reload on edits."""
    frames = [(m, m.html if allow_remote else local_only(m.html)) for m in preview.messages]
    script = _script(token, frames=bool(frames))
    return (
        _env()
        .get_template("preview.html.j2")
        .render(
            p=preview,
            frames=frames,
            csp=_csp(allow_remote, script, polls=bool(token)),
            script=script,
            token=token or "",
            allow_remote=allow_remote,
            kb=lambda n: f"{n / 1024:.1f} KB",
            network=network_name,
        )
    )


def error_page(error: Exception, source: Path, *, token: str | None = None) -> str:
    """What the served page shows while the release, a template or a list is broken."""
    message = (
        error.format()
        if isinstance(error, DistributeError)
        else (f"{type(error).__name__}: {error}")
    )
    return (
        _env()
        .get_template("error.html.j2")
        .render(
            message=message,
            source=source,
            csp=_csp(False, _script(token, frames=False), polls=bool(token)),
            script=_script(token, frames=False),
            token=token or "",
        )
    )


def watched_files(path: Path, settings: Settings) -> list[Path]:
    """The files whose change alters the preview: the releases and campaigns beside ``path``,
    the templates, the lists and the settings."""
    from distribute.recipients import recipients_dir
    from distribute.render.templates import template_dirs

    found: list[Path] = [path]
    folder = path.parent
    if folder.is_dir():
        found += [p for p in folder.iterdir() if p.suffix.lower() in {".md", ".toml", ".txt"}]
    for root in template_dirs(settings):
        found += [p for p in root.rglob("*") if p.is_file()]
    if is_campaign(path):
        try:
            lists = recipients_dir(settings)
        except DistributeError:
            lists = None
        if lists is not None and lists.is_dir():
            found += [p for p in lists.iterdir() if p.suffix.lower() == ".csv"]
    if settings.source is not None:
        found.append(settings.source)
    return sorted(set(found))


def files_token(files: Iterable[Path]) -> str:
    """Changes whenever one of ``files`` is written, created or removed."""
    digest = hashlib.sha256()
    for path in files:
        try:
            stat = path.stat()
            digest.update(f"{path}\0{stat.st_mtime_ns}\0{stat.st_size}\n".encode())
        except OSError:
            digest.update(f"{path}\0-\n".encode())
    return digest.hexdigest()[:16]


def page_or_error(
    build: Callable[[], Preview], source: Path, *, allow_remote: bool, token: str | None
) -> tuple[str, Exception | None]:
    """The page, or the error page when building fails: a server must keep running."""
    try:
        return render_page(build(), allow_remote=allow_remote, token=token), None
    except DistributeError as exc:
        return error_page(exc, source, token=token), exc
    except Exception as exc:  # a bug must not stop the server; show it and go on
        return error_page(exc, source, token=token), exc


def network_name(network: str) -> str:
    entry = NETWORKS.get(network)
    return entry.name if entry else network
