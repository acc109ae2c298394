"""A release rendered into an :class:`EmailDraft`: HTML (CSS inlined once) and text.

premailer is slow (it parses the CSS and walks the whole tree), so it runs once per
template variant. Values that differ per journalist (greeting, address, unsubscribe link)
are rendered as placeholder slots, survive the inlining untouched, and are substituted
into the finished HTML and text for each recipient, HTML-escaped. Sending speed is then
bounded by the SMTP server, not by rendering.
"""

from __future__ import annotations

import functools
import hashlib
import html as html_lib
import os
import re
from collections import Counter
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, replace
from datetime import datetime
from html.parser import HTMLParser
from pathlib import Path
from typing import Any

import jinja2
from markupsafe import Markup

from distribute.config import Settings
from distribute.errors import ReleaseError, TemplateError
from distribute.headers import header_text_problem
from distribute.links import refused_reference, web_address
from distribute.release import Release
from distribute.render.inline import Inliner, kept, premailer
from distribute.render.templates import (
    environment,
    instant,
    long_date,
    render,
    render_string,
    single_line,
)

# premailer's results, kept for the next run (see distribute.render.inline.kept).
INLINED = Path(".cache") / "distribute" / "inlined"

# Gmail clips messages whose HTML is over about 102 KB, hiding the end: the unsubscribe link.
GMAIL_CLIP_BYTES = 102 * 1024

RECIPIENT_FIELDS = (
    "email",
    "name",
    "first_name",
    "last_name",
    "outlet",
    "beat",
    "language",
    "greeting",
    "unsubscribe_url",
)

# French typography puts a no-break space before « : ; ! ? » and inside guillemets, so the
# mark never starts a line. U+00A0 rather than the narrower U+202F: every font the templates
# name (Arial, Georgia) and every plain-text reader has it, it is what word processors insert
# in French, and X weighs it 1 where U+202F weighs 2.
NBSP = "\u00a0"

# Every word the bundled templates print themselves, in each language they speak; a
# release's ``language`` picks the set. ``colon`` follows a label the template ends itself.
LABELS: dict[str, dict[str, str]] = {
    "en": {
        "embargoed": "EMBARGOED until",
        "press_release": "Press release",
        "press_contact": "Press contact",
        "read_online": "Read the release online",
        "follow": "Follow us on X:",
        "why": "You receive this press release as a journalist on the press list of",
        "unsubscribe": "Unsubscribe from these press releases",
        "hello": "Hello,",
        "dear": "Dear {name},",
        "colon": ":",
        "end_mark": "###",
    },
    "fr": {
        "embargoed": "SOUS EMBARGO jusqu’au",
        "press_release": "Communiqué de presse",
        "press_contact": "Contact presse",
        "read_online": "Lire le communiqué en ligne",
        "follow": f"Suivez-nous sur X{NBSP}:",
        "why": "Vous recevez ce communiqué en tant que journaliste inscrit à la liste presse de",
        "unsubscribe": "Se désinscrire de ces communiqués",
        "hello": "Bonjour,",
        "dear": "Bonjour {name},",
        "colon": f"{NBSP}:",
        "end_mark": "-fin-",
    },
}


def _slot(tag: str, name: str) -> str:
    return f"%%{tag}.{name}%%"


@functools.lru_cache(maxsize=64)
def _slot_re(tag: str) -> re.Pattern[str]:
    return re.compile(rf"%%{re.escape(tag)}\.([A-Za-z_][A-Za-z0-9_]*)%%")


def slot_tag(*sources: object) -> str:
    """The mark of one draft's slots, derived from everything the draft is made of.

    A release (or a list) can hold any text, ``%%email%%`` included: were slots a fixed
    token, such text would be filled in with each journalist's address. A mark that
    depends on the release's own text cannot be written inside that text, and it stays
    the same from one run to the next, so drafts compare equal.
    """
    digest = hashlib.sha256(repr(sources).encode("utf-8", "surrogatepass")).hexdigest()
    return "s" + digest[:15]


def labels(language: str) -> dict[str, str]:
    return LABELS.get(language[:2].lower(), LABELS["en"])


class RecipientSlots:
    """Stands for ``recipient`` while a variant renders: each field becomes a slot."""

    def __init__(self, extra_fields: Iterable[str] = (), tag: str = "slot"):
        self._fields = set(RECIPIENT_FIELDS) | set(extra_fields)
        self._tag = tag

    def __getattr__(self, name: str) -> Markup:
        if name.startswith("__"):
            raise AttributeError(name)
        if name not in self._fields:
            known = ", ".join(sorted(self._fields))
            raise jinja2.UndefinedError(f"'recipient' has no field {name!r} (known: {known})")
        return Markup(_slot(self._tag, name))  # noqa: S704 (an ASCII token made here)

    __getitem__ = __getattr__


@dataclass(frozen=True)
class EmailDraft:
    """One rendered variant of a release, shared by every recipient of a step."""

    template: str
    subject: str
    html: str
    text: str
    preheader: str
    embargoed: bool
    reply_to: str | None
    language: str = "en"
    warnings: tuple[str, ...] = ()
    tag: str = "slot"

    def slot(self, name: str) -> str:
        """How recipient field ``name`` stands in the draft until it is personalised."""
        return _slot(self.tag, name)

    def personalise(self, values: Mapping[str, str]) -> tuple[str, str, str]:
        """(subject, html, text) for one recipient; ``values`` holds every slot's value."""

        def fill(text: str, escape: bool) -> str:
            def one(match: re.Match[str]) -> str:
                value = values.get(match.group(1), "")
                return html_lib.escape(value, quote=True) if escape else value

            return _slot_re(self.tag).sub(one, text)

        return single_line(fill(self.subject, False)), fill(self.html, True), fill(self.text, False)

    def personalise_subject(self, values: Mapping[str, str]) -> str:
        """The subject line alone for one recipient, as :meth:`personalise` gives it."""
        tag = _slot_re(self.tag)
        return single_line(tag.sub(lambda m: values.get(m.group(1), ""), self.subject))

    def subject_slots(self) -> set[str]:
        """The recipient fields the subject line fills in per journalist."""
        return {m.group(1) for m in _slot_re(self.tag).finditer(self.subject)}

    def slots(self) -> set[str]:
        """The recipient fields this draft fills in per journalist."""
        return {
            m.group(1)
            for part in (self.subject, self.html, self.text)
            for m in _slot_re(self.tag).finditer(part)
        }

    @property
    def html_bytes(self) -> int:
        return len(self.html.encode("utf-8"))


def inline_css(html: str) -> str:
    """The default inliner (premailer): see :mod:`distribute.render.inline`."""
    return premailer(html)


def draft_email(
    release: Release,
    settings: Settings,
    *,
    at: datetime,
    template: str = "press-release",
    subject: str | None = None,
    extra_fields: Iterable[str] = (),
    env: jinja2.Environment | None = None,
    url_hint: str = "add 'url:' to the release's front matter",
    inliner: Inliner | None = None,
) -> EmailDraft:
    """Render ``release`` with template ``template`` as it would be sent at instant ``at``.

    ``inliner`` inlines the CSS (default: premailer; see :mod:`distribute.render.inline`).
    """
    env = env or environment(settings)
    # Where the release was read from is not what it says: the same text, reached by another
    # path, gets the same mark, and its inlined HTML is found again (see inline.kept).
    tag = slot_tag(replace(release, source=None), template, subject)
    if release.url is not None and not web_address(release.url):
        raise ReleaseError(
            f"the release's url {release.url!r} is not a full http(s) address",
            path=release.source,
        )
    embargoed = release.embargoed_at(at)
    t = labels(release.language)
    context: dict[str, Any] = {
        "release": release,
        "sender": settings.sender,
        "recipient": RecipientSlots(extra_fields, tag),
        "embargoed": embargoed,
        "embargo_until": (
            instant(release.embargo, settings.timezone, release.language) if release.embargo else ""
        ),
        "preheader": release.preheader,
        "dateline": ", ".join(
            part
            for part in (
                release.dateline,
                long_date(release.date, release.language) if release.date else None,
            )
            if part
        ),
        "t": t,
    }
    html_raw = render(env, f"email/{template}.html.j2", context)
    text = render(env, f"email/{template}.txt.j2", context)
    if inliner is None:
        html = kept(html_raw, settings.workspace / INLINED, inline_css)
    else:
        html = inliner(html_raw)
    html_template = _template_file(env, f"email/{template}.html.j2")
    _check_inlined(html_raw, html, html_template, tag)
    refused = refused_reference(html, _slot_re(tag))
    if refused is not None and (refused.tag == "script" or refused.attribute.startswith("on")):
        where = f"<{refused.tag} {refused.attribute}>" if refused.attribute else "<script>"
        raise TemplateError(f"{where} runs a script: an email cannot carry one", path=html_template)
    if refused is not None:
        shown = _slot_re(tag).sub(lambda m: f"{{{{ recipient.{m.group(1)} }}}}", refused.value)
        raise TemplateError(
            f"<{refused.tag} {refused.attribute}> points to {shown!r}: only http, https "
            "and mailto links (and http(s) images) can be sent",
            path=html_template,
        )
    headline = render_string(env, subject, context, where="subject") if subject else release.title
    headline = single_line(headline)
    if not headline:
        raise TemplateError("the subject is empty", path="subject" if subject else release.source)
    check_headline(headline, release, templated=subject is not None)
    if embargoed:
        headline = f"{t['embargoed']} {context['embargo_until']}{t['colon']} {headline}"
    fields = set(RECIPIENT_FIELDS) | set(extra_fields)
    _check_slots(html, f"email/{template}.html.j2", fields, tag)
    _check_slots(text, f"email/{template}.txt.j2", fields, tag)
    notes: list[str] = []
    size = len(html.encode("utf-8"))
    if size > GMAIL_CLIP_BYTES:
        notes.append(
            f"the HTML part is {size / 1024:.0f} KB: Gmail clips messages over 102 KB, "
            "hiding the end of the release and the unsubscribe link"
        )
    if not release.url:
        notes.append(f"the release has no url: the email has no 'read online' link ({url_hint})")
    reply_to = settings.sender.reply_to or contact_reply_to(release)
    return EmailDraft(
        template=template,
        subject=headline,
        html=html,
        text=text.replace("\r\n", "\n").strip("\n") + "\n",
        preheader=single_line(release.preheader),
        embargoed=embargoed,
        reply_to=reply_to,
        language=release.language,
        warnings=tuple(notes),
        tag=tag,
    )


def check_headline(headline: str, release: Release, *, templated: bool) -> None:
    """Refuse a subject that cannot sit in a header, naming the release's title when the
    trouble is there, else the step's ``subject`` (which the campaign check places)."""
    problem = header_text_problem(headline)
    if not problem:
        return
    title = single_line(release.title)
    if header_text_problem(title):
        line = _line_of(release, key="title", text=title[:40])
        raise ReleaseError(f"title: {header_text_problem(title)}", path=release.source, line=line)
    where = "subject" if templated else None
    raise TemplateError(f"the subject {headline!r}: {problem}", path=where)


def contact_reply_to(release: Release) -> str | None:
    """The press contact's address, which journalists' replies go to, as Reply-To.

    An internationalised domain is written in its ASCII form (IDNA), which every server
    reads; a local part outside ASCII cannot be written in a header without SMTPUTF8
    (RFC 6532), which most journalists' servers would have to offer, so it is refused.
    """
    address = next((email for contact in release.contacts for email in contact.emails), None)
    if address is None:
        return None
    local, _, domain = address.rpartition("@")
    problem = header_text_problem(address)
    if not problem and not local.isascii():
        problem = (
            f"{address!r} has non-ASCII characters before the @, which a Reply-To header "
            "cannot carry to every journalist's server; give an ASCII address or set "
            "[sender] reply_to in distribute.toml"
        )
    if not problem:
        try:
            return f"{local}@{domain.encode('idna').decode('ascii')}"
        except UnicodeError:
            problem = f"{domain!r} is not a valid domain name"
    raise ReleaseError(
        f"press contact address: {problem}",
        path=release.source,
        line=_line_of(release, text=address),
    )


def _line_of(release: Release, *, key: str | None = None, text: str = "") -> int | None:
    """The line of the release file holding front matter ``key``, else ``text``."""
    if release.source is None:
        return None
    try:
        lines = release.source.read_text(encoding="utf-8-sig").splitlines()
    except (OSError, UnicodeDecodeError):
        return None
    if key is not None:
        pattern = re.compile(rf"^{re.escape(key)}\s*:")
        for number, line in enumerate(lines, start=1):
            if pattern.match(line):
                return number
    for number, line in enumerate(lines, start=1):
        if text and text in line:
            return number
    return None


def _template_file(env: jinja2.Environment, name: str) -> str:
    """The file a template was loaded from, relative to here when that is shorter."""
    filename = env.get_template(name).filename
    if not filename:
        return name
    relative = os.path.relpath(filename)
    return relative if len(relative) < len(filename) else filename


class _BodyText(HTMLParser):
    """The text a reader sees in a document's body (no style, script or title)."""

    _HIDDEN = frozenset({"style", "script", "title", "head"})

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.parts: list[str] = []
        self._hidden = 0

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag in self._HIDDEN:
            self._hidden += 1

    def handle_endtag(self, tag: str) -> None:
        if tag in self._HIDDEN and self._hidden:
            self._hidden -= 1

    def handle_data(self, data: str) -> None:
        if not self._hidden:
            self.parts.append(data)

    @classmethod
    def of(cls, document: str) -> str:
        parser = cls()
        parser.feed(document)
        parser.close()
        return " ".join("".join(parser.parts).split())


def _check_inlined(before: str, after: str, template: str, tag: str) -> None:
    """Refuse an HTML part that lost text or a recipient field while its CSS was inlined.

    libxml2, under premailer, silently drops everything after a text node over 10 MB
    (XML_MAX_TEXT_LENGTH): the result is a valid page without the release's body and
    without the unsubscribe link. Whatever the cause, such a part is never sent.
    """
    text_before, text_after = _BodyText.of(before), _BodyText.of(after)
    if text_before != text_after:
        pairs = enumerate(zip(text_before, text_after, strict=False))
        same = next(
            (at for at, (a, b) in pairs if a != b), min(map(len, (text_before, text_after)))
        )
        gone = text_before[same : same + 60]
        raise TemplateError(
            f"inlining the CSS lost the email's text from {gone!r} on; nothing was written",
            path=template,
        )
    slots = _slot_re(tag)
    lost = Counter(slots.findall(before)) - Counter(slots.findall(after))
    if lost:
        raise TemplateError(
            f"inlining the CSS lost the recipient field(s) {', '.join(sorted(lost))}; "
            "nothing was written",
            path=template,
        )


def _check_slots(rendered: str, template: str, fields: set[str], tag: str) -> None:
    """A filter applied to a recipient field mangles its slot; say so instead of sending it."""
    rest = _slot_re(tag).sub(lambda m: "" if m.group(1) in fields else m.group(), rendered)
    match = re.search(rf"%%{re.escape(tag)}\.([^%\s]{{0,40}})%%", rest, re.IGNORECASE)
    if match is not None or tag.lower() in rest.lower():
        name = match.group(1) if match is not None else "?"
        raise TemplateError(
            f"recipient field {name!r} was changed by a filter: recipient fields "
            "are filled in per journalist after rendering, use them as {{ recipient.NAME }}",
            path=template,
        )
