"""A release rendered into an :class:`EmailDraft`: HTML (CSS inlined once) and text.

premailer is slow (it parses the CSS and walks the whole tree), so it runs once per
template variant. Values that differ per journalist (greeting, address, unsubscribe link)
are rendered as placeholder slots, survive the inlining untouched, and are substituted
into the finished HTML and text for each recipient, HTML-escaped. Sending speed is then
bounded by the SMTP server, not by rendering.
"""

from __future__ import annotations

import html as html_lib
import logging
import re
import warnings
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import jinja2
from markupsafe import Markup

from distribute.config import Settings
from distribute.errors import TemplateError
from distribute.release import Release
from distribute.render.templates import (
    environment,
    instant,
    long_date,
    render,
    render_string,
    single_line,
)

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

_SLOT = "%%{}%%"
_SLOT_RE = re.compile(r"%%([A-Za-z_][A-Za-z0-9_]*)%%")


def labels(language: str) -> dict[str, str]:
    return LABELS.get(language[:2].lower(), LABELS["en"])


class RecipientSlots:
    """Stands for ``recipient`` while a variant renders: each field becomes a slot."""

    def __init__(self, extra_fields: Iterable[str] = ()):
        self._fields = set(RECIPIENT_FIELDS) | set(extra_fields)

    def __getattr__(self, name: str) -> Markup:
        if name.startswith("__"):
            raise AttributeError(name)
        if name not in self._fields:
            known = ", ".join(sorted(self._fields))
            raise jinja2.UndefinedError(f"'recipient' has no field {name!r} (known: {known})")
        return Markup(_SLOT.format(name))  # noqa: S704 (a fixed ASCII token)

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

    def personalise(self, values: Mapping[str, str]) -> tuple[str, str, str]:
        """(subject, html, text) for one recipient; ``values`` holds every slot's value."""

        def fill(text: str, escape: bool) -> str:
            def one(match: re.Match[str]) -> str:
                value = values.get(match.group(1), "")
                return html_lib.escape(value, quote=True) if escape else value

            return _SLOT_RE.sub(one, text)

        return single_line(fill(self.subject, False)), fill(self.html, True), fill(self.text, False)

    def slots(self) -> set[str]:
        """The recipient fields this draft fills in per journalist."""
        return {
            m.group(1)
            for part in (self.subject, self.html, self.text)
            for m in _SLOT_RE.finditer(part)
        }

    @property
    def html_bytes(self) -> int:
        return len(self.html.encode("utf-8"))


def inline_css(html: str) -> str:
    """Inline CSS with premailer, keeping @media and dark-mode rules in a <style> block."""
    import cssutils
    from premailer import Premailer

    # cssutils reports every property it does not know (mso-hide, -webkit-...) through its
    # own logger and through warnings; neither is news to a press office.
    cssutils.log.setLevel(logging.CRITICAL)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        inliner = Premailer(
            html,
            base_url=None,
            allow_network=False,
            allow_loading_external_files=False,
            keep_style_tags=False,
            strip_important=False,
            remove_classes=False,
            disable_validation=True,
            disable_leftover_css=False,
            cssutils_logging_level=logging.CRITICAL,
        )
        result: str = inliner.transform(pretty_print=False)
    return result


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
) -> EmailDraft:
    """Render ``release`` with template ``template`` as it would be sent at instant ``at``."""
    env = env or environment(settings)
    embargoed = release.embargoed_at(at)
    t = labels(release.language)
    context: dict[str, Any] = {
        "release": release,
        "sender": settings.sender,
        "recipient": RecipientSlots(extra_fields),
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
    html = inline_css(html_raw)
    headline = render_string(env, subject, context, where="subject") if subject else release.title
    headline = single_line(headline)
    if not headline:
        raise TemplateError("the subject is empty", path="subject" if subject else release.source)
    if embargoed:
        headline = f"{t['embargoed']} {context['embargo_until']}{t['colon']} {headline}"
    fields = set(RECIPIENT_FIELDS) | set(extra_fields)
    _check_slots(html, f"email/{template}.html.j2", fields)
    _check_slots(text, f"email/{template}.txt.j2", fields)
    notes: list[str] = []
    size = len(html.encode("utf-8"))
    if size > GMAIL_CLIP_BYTES:
        notes.append(
            f"the HTML part is {size / 1024:.0f} KB: Gmail clips messages over 102 KB, "
            "hiding the end of the release and the unsubscribe link"
        )
    if not release.url:
        notes.append(f"the release has no url: the email has no 'read online' link ({url_hint})")
    reply_to = settings.sender.reply_to or next(
        (email for contact in release.contacts for email in contact.emails), None
    )
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
    )


def _check_slots(rendered: str, template: str, fields: set[str]) -> None:
    """A filter applied to a recipient field mangles its slot; say so instead of sending it."""
    for match in re.finditer(r"%%([^%\s]{1,40})%%", rendered):
        if match.group(1) not in fields:
            raise TemplateError(
                f"recipient field {match.group(1)!r} was changed by a filter: recipient fields "
                "are filled in per journalist after rendering, use them as {{ recipient.NAME }}",
                path=template,
            )
