"""A release rendered into short posts that fit a social network, counted by its own rules.

X refuses a post over 280 *weighted* characters, and its weighting is not ``len()``: every
URL counts 23, code points outside a few Latin/punctuation ranges count 2 (CJK, emoji, but
also French typography: U+202F before ``: ; ! ?``, the ellipsis, ``€``), an emoji sequence
counts 2 however many code points it joins. twitter-text-parser implements the twitter-text
v3 configuration and passes its conformance suite, so X is counted with it rather than with
a copy of its tables.

A network is a small description (:class:`Network`); Mastodon (500, URLs 23) and Bluesky
(300 graphemes) are two more entries.

Posts come from a Jinja template (``templates/social/{name}.txt.j2``) or an inline ``text``.
The ``fit`` filter marks a value that may be shortened, at a sentence and else at a word
boundary, ending with "…", only as much as the post needs; later values give way first.
A post that still does not fit is an error, unless a thread is asked for (or the template
writes several parts, separated by a ``---`` line): the text is then split into parts that
each fit, at a sentence end where a part has one, else at a clause end, else between words,
never inside a URL, mention or hashtag.
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field, replace
from typing import Any

import jinja2
from twitter_text import extract_urls_with_indices, parse_tweet
from twitter_text.has_invalid_characters import has_invalid_characters

from distribute.config import Settings
from distribute.errors import ConfigError, ReleaseError, TemplateError
from distribute.links import web_address
from distribute.release import Release
from distribute.render.templates import environment, render, render_string

ELLIPSIS = "…"
# Where a release's web address comes from in every command; ``render`` also has --url.
NO_URL_HINT = "add 'url:' to the release's front matter"

# A line holding only this separates the parts of a thread written by hand.
_PART_SEPARATOR = re.compile(r"^[ \t]*---[ \t]*$", re.MULTILINE)
# Breakable whitespace. Python's \s also matches U+00A0 and U+202F, which French typography
# puts before « : ; ! ? » precisely so that a line (or a post) never breaks there.
_BREAK = re.compile(r"[ \t\n\r\f\v\u1680\u2000-\u2006\u2008-\u200a\u2028\u2029\u205f\u3000]+")
# French typography puts a (narrow) no-break or plain space before a closing guillemet:
# « Nous formerons des techniciens. » ends with the guillemet, not with the full stop.
_SENTENCE_END = re.compile(r"[.!?…][\"'”’»)\]\s\u00a0\u202f]*$")
_ONLY_CLOSERS = re.compile(r"^[\"'”’»)\]\u00a0\u202f]+$")
_ENTITY = re.compile(r"^[\"'“‘«(\[]*[@#＠＃]")


# --------------------------------------------------------------------------- counting


def _x_length(text: str) -> int:
    return int(parse_tweet(text).weightedLength)


def _x_invalid(text: str) -> str | None:
    for char in text:
        if has_invalid_characters(char):
            return f"U+{ord(char):04X}"
    return None


def _no_invalid(text: str) -> str | None:
    return None


# Enough of UAX #29 for post lengths: marks, joiners, variation selectors, emoji modifiers
# and tags extend a cluster; regional indicators pair into flags; CR LF is one.
def _extends(char: str) -> bool:
    code = ord(char)
    return (
        unicodedata.category(char) in {"Mn", "Me", "Mc"}
        or code == 0x200D
        or 0xFE00 <= code <= 0xFE0F
        or 0x1F3FB <= code <= 0x1F3FF
        or 0xE0020 <= code <= 0xE007F
        or 0xE0100 <= code <= 0xE01EF
    )


def _regional(char: str) -> bool:
    return 0x1F1E6 <= ord(char) <= 0x1F1FF


def graphemes(text: str) -> Iterator[str]:
    """User-perceived characters (extended grapheme clusters, simplified)."""
    text = unicodedata.normalize("NFC", text)
    index = 0
    while index < len(text):
        start = index
        index += 1
        pair = text[start : index + 1]
        if pair == "\r\n" or (len(pair) == 2 and all(_regional(char) for char in pair)):
            index += 1
        while index < len(text) and _extends(text[index]):
            joiner = text[index] == "\u200d"
            index += 1
            if joiner and index < len(text):
                index += 1
        yield text[start:index]


def _grapheme_length(text: str) -> int:
    return sum(1 for _ in graphemes(text))


def _mastodon_length(text: str) -> int:
    # Mastodon counts only http(s) links as 23, and a remote mention as its local part.
    out: list[str] = []
    position = 0
    for entity in extract_urls_with_indices(text):
        start, end = entity["indices"]
        if entity["url"].lower().startswith(("http://", "https://")):
            out.append(text[position:start])
            out.append("x" * 23)
            position = end
    out.append(text[position:])
    flat = re.sub(r"(@[A-Za-z0-9_]+)@[A-Za-z0-9.-]+\.[A-Za-z]+", r"\1", "".join(out))
    return _grapheme_length(flat)


@dataclass(frozen=True)
class Network:
    """How a network measures a post: its limit, what a URL weighs, and the counter itself.

    ``url_weight`` is ``None`` when links count as written.
    """

    name: str
    limit: int
    url_weight: int | None
    counter: Callable[[str], int]
    invalid: Callable[[str], str | None] = _no_invalid

    def length(self, text: str) -> int:
        return self.counter(text)


NETWORKS: dict[str, Network] = {
    "x": Network("X", 280, 23, _x_length, _x_invalid),
    "mastodon": Network("Mastodon", 500, 23, _mastodon_length),
    "bluesky": Network("Bluesky", 300, None, _grapheme_length),
}


def network_named(network: str) -> Network:
    try:
        return NETWORKS[network]
    except KeyError:
        known = ", ".join(NETWORKS)
        raise ConfigError(f"unknown social network {network!r} (known: {known})") from None


def weighted_length(text: str, network: str = "x") -> int:
    """The length ``network`` gives ``text`` (for X: twitter-text v3's weightedLength)."""
    return network_named(network).counter(text)


# --------------------------------------------------------------------------- results


@dataclass(frozen=True)
class Post:
    text: str
    length: int


@dataclass(frozen=True)
class PostSet:
    network: str
    limit: int
    parts: list[Post]
    warnings: list[str] = field(default_factory=list)
    source: str = "text"

    def to_json(self) -> dict[str, Any]:
        return {
            "network": self.network,
            "limit": self.limit,
            "parts": [{"text": post.text, "length": post.length} for post in self.parts],
        }


# --------------------------------------------------------------------------- shortening


def _tokens(text: str) -> list[tuple[str, str]]:
    """(separator before, word) pairs; words never contain breakable whitespace."""
    out: list[tuple[str, str]] = []
    position = 0
    separator = ""
    for match in _BREAK.finditer(text):
        if match.start() > position:
            out.append((separator, text[position : match.start()]))
        separator = match.group(0) if out else ""
        position = match.end()
    if position < len(text):
        out.append((separator, text[position:]))
    return out


def _join(tokens: list[tuple[str, str]]) -> str:
    return "".join(sep + word if index else word for index, (sep, word) in enumerate(tokens))


def _sentences(tokens: list[tuple[str, str]]) -> list[list[tuple[str, str]]]:
    out: list[list[tuple[str, str]]] = [[]]
    for token in tokens:
        if len(out) > 1 and not out[-1] and _ONLY_CLOSERS.match(token[1]):
            out[-2].append(token)  # the closing quote of the sentence just ended
            continue
        out[-1].append(token)
        if _SENTENCE_END.search(token[1]):
            out.append([])
    return [sentence for sentence in out if sentence]


def shorten(text: str, target: int, count: Callable[[str], int], *, cut: str = "word") -> str:
    """``text`` cut to weigh at most ``target``: whole sentences, else words and "…".

    With ``cut="sentence"`` only whole sentences are kept. An empty string when nothing fits.
    """
    if count(text) <= target:
        return text
    kept: list[tuple[str, str]] = []
    for sentence in _sentences(_tokens(text)):
        if count(_join(kept + sentence)) > target:
            break
        kept += sentence
    by_sentence = _join(kept)
    if cut == "sentence" or (kept and count(by_sentence) * 2 >= target):
        return by_sentence
    words: list[tuple[str, str]] = []
    best = ""
    for token in _tokens(text):
        words.append(token)
        candidate = _join(words).rstrip(",;:–—-([{«“‘ \u00a0\u202f")
        if not _SENTENCE_END.search(candidate):
            candidate += ELLIPSIS
        if count(candidate) > target:
            break
        best = candidate
    return best if len(best) > len(by_sentence) else by_sentence


def _one_line(value: Any) -> str:
    # Only breakable whitespace is collapsed: U+00A0 and U+202F stay, and weigh what they weigh.
    # A value the release lacks is nothing, not "None".
    return _BREAK.sub(" ", "" if value is None else str(value)).strip(" ")


class _Fitter:
    """The ``fit`` filter: records each fitted value, and on later passes shortens it."""

    def __init__(self, count: Callable[[str], int]):
        self.count = count
        self.sizes: list[int] = []
        self.targets: dict[int, int] = {}
        self.shortened: list[tuple[str, str]] = []

    def start(self, cut_total: int) -> None:
        """Take ``cut_total`` weighted characters away, from the last fitted value backwards."""
        sizes = self.sizes
        self.targets = {}
        for index in reversed(range(len(sizes))):
            if cut_total <= 0:
                break
            take = min(cut_total, sizes[index])
            self.targets[index] = sizes[index] - take
            cut_total -= take
        self.sizes = []
        self.shortened = []

    @property
    def room(self) -> int:
        return sum(self.sizes)

    def __call__(self, value: Any, cut: str = "word") -> str:
        text = _one_line(value)
        index = len(self.sizes)
        self.sizes.append(self.count(text))
        target = self.targets.get(index)
        if target is None:
            return text
        short = shorten(text, target, self.count, cut=cut)
        if short != text:
            self.shortened.append((text, short))
        return short


def sentence(value: Any) -> str:
    """A headline made into a sentence: terminal punctuation added when it has none."""
    text = _one_line(value).rstrip(":;,")
    if not text or _SENTENCE_END.search(text):
        return text
    return f"{text}."


# --------------------------------------------------------------------------- splitting


def _is_entity(word: str) -> bool:
    return bool(_ENTITY.match(word)) or bool(extract_urls_with_indices(word))


def _hard_split(word: str, budget: int, count: Callable[[str], int]) -> list[str]:
    """A single word longer than a post: cut between user-perceived characters."""
    pieces: list[str] = []
    current = ""
    for cluster in graphemes(word):
        if count(cluster) > budget:
            # One user-perceived character (a letter under hundreds of accents, emoji joined
            # by ZWJ) cannot be cut; handing it back would split it again for ever.
            raise ValueError(
                f"one character ({cluster[:1]!r} and {len(cluster) - 1} more code points "
                "joined to it) weighs more than a post"
            )
        if current and count(current + cluster) > budget:
            pieces.append(current)
            current = ""
        current += cluster
    if current:
        pieces.append(current)
    return pieces


# Where a thread may be cut, best first: after a sentence (or at a line break), after a
# clause (a comma, semicolon, colon or dash), between words. Never before a closing quote.
_SENTENCE_CUT, _CLAUSE_CUT, _WORD_CUT, _NO_CUT = 3, 2, 1, 0
_CLAUSE_END = re.compile(r"[,;:][\"'”’»)\]\u00a0\u202f]*$")
_DASH = re.compile(r"^[–—]$")


def _cuts(tokens: list[tuple[str, str]]) -> list[int]:
    """For each token, how good a place the gap after it is to end a part."""
    ends: set[int] = set()
    position = 0
    for group in _sentences(tokens):
        position += len(group)
        ends.add(position - 1)
    kinds: list[int] = []
    for index, (_, word) in enumerate(tokens):
        following = tokens[index + 1] if index + 1 < len(tokens) else None
        if following is not None and _ONLY_CLOSERS.match(following[1]):
            kinds.append(_NO_CUT)
        elif index in ends or (following is not None and "\n" in following[0]):
            kinds.append(_SENTENCE_CUT)
        elif _CLAUSE_END.search(word) or _DASH.match(word):
            kinds.append(_CLAUSE_CUT)
        else:
            kinds.append(_WORD_CUT)
    return kinds


def _best_cut(
    tokens: list[tuple[str, str]],
    kinds: list[int],
    start: int,
    end: int,
    budget: int,
    count: Callable[[str], int],
) -> int:
    """Where the part ``tokens[start:end]`` (the most that fits) should really end."""
    for wanted in (_SENTENCE_CUT, _CLAUSE_CUT):
        found = [k for k in range(start + 1, end + 1) if kinds[k - 1] >= wanted]
        if found:
            return found[-1]
    # Inside a sentence with no clause end: when the rest of the sentence fits in the next
    # part, cut near its middle, so no word is left there alone ("... AASM 2.6" / "manual.").
    stop = next((k for k in range(end, len(kinds)) if kinds[k] == _SENTENCE_CUT), len(kinds) - 1)
    candidates = [k for k in range(start + 1, end + 1) if kinds[k - 1] >= _WORD_CUT]
    best: tuple[int, int] | None = None
    for k in reversed(candidates):  # the rest of the sentence grows as the cut moves back
        rest = count(_join(tokens[k : stop + 1]))
        if rest > budget:
            break
        gap = abs(count(_join(tokens[start:k])) - rest)
        if best is None or gap < best[0]:
            best = (gap, k)
    if best is not None:
        return best[1]
    return candidates[-1] if candidates else end


def split_text(
    text: str,
    limit: int,
    count: Callable[[str], int],
    *,
    reserve: int = 0,
) -> list[str]:
    """Split ``text`` into parts that each weigh at most ``limit - reserve``.

    Each part takes as much as fits, then gives back what follows its last sentence end;
    with no sentence end in it, what follows its last clause end (a comma, a semicolon, a
    colon, a dash); else it ends between words, near the middle of a sentence that the next
    part can finish. So a sentence too long for what is left moves whole to the next part,
    and a sentence too long for any part never leaves its last word alone. URLs, mentions and
    hashtags are words, so they are never cut. Line breaks inside a part are kept; those
    between parts are dropped.
    """
    budget = limit - reserve
    tokens = _tokens(text)
    kinds = _cuts(tokens)
    weights: dict[str, int] = {}

    def weight(piece: str) -> int:
        if piece not in weights:
            weights[piece] = count(piece)
        return weights[piece]

    def fits(start: int, end: int) -> bool:
        return count(_join(tokens[start:end])) <= budget

    parts: list[str] = []
    start = 0
    while start < len(tokens):
        # Words weighed one by one find the end quickly; the whole part, counted as the
        # network counts it, has the last word (a URL can weigh differently in context).
        end, estimate = start, 0
        while end < len(tokens):
            separator, word = tokens[end]
            more = (weight(separator) if end > start else 0) + weight(word)
            if estimate + more > budget:
                break
            estimate += more
            end += 1
        while end > start and not fits(start, end):
            end -= 1
        while end < len(tokens) and fits(start, end + 1):
            end += 1
        if end == start:
            word = tokens[start][1]
            if _is_entity(word):
                raise ValueError(f"{word[:40]!r} alone is longer than a post")
            # A single word longer than a post: cut between user-perceived characters.
            pieces = _hard_split(word, budget, count)
            parts.extend(pieces[:-1])
            tokens[start] = ("", pieces[-1])
            continue
        if end < len(tokens):
            end = _best_cut(tokens, kinds, start, end, budget, count)
        parts.append(_join(tokens[start:end]))
        start = end
    return parts


def split_thread(
    texts: list[str], limit: int, count: Callable[[str], int], *, numbered: bool = False
) -> list[str]:
    """Split each text into parts that fit; number them ``1/3`` when asked and several."""
    parts = [part for text in texts for part in split_text(text, limit, count)]
    if not numbered or len(parts) < 2:
        return parts
    digits = 1
    while True:
        widest = 10**digits - 1
        reserve = len(f" {widest}/{widest}")
        parts = [part for text in texts for part in split_text(text, limit, count, reserve=reserve)]
        if len(parts) <= widest:
            total = len(parts)
            return [f"{part} {index}/{total}" for index, part in enumerate(parts, start=1)]
        digits += 1


# --------------------------------------------------------------------------- rendering


def _tidy(text: str) -> str:
    """Template whitespace out: trailing spaces, runs of blank lines, doubled spaces."""
    lines = [re.sub(r"(?<=\S) {2,}", " ", line).rstrip() for line in text.split("\n")]
    return re.sub(r"\n{3,}", "\n\n", "\n".join(lines)).strip(" \t\n")


def _parts_of(rendered: str) -> list[str]:
    return [part for part in (_tidy(p) for p in _PART_SEPARATOR.split(rendered)) if part]


def render_posts(
    release: Release,
    settings: Settings,
    *,
    network: str = "x",
    template: str | None = "x",
    text: str | None = None,
    thread: bool = False,
    numbered: bool = False,
    url: str | None = None,
    env: jinja2.Environment | None = None,
    url_hint: str = NO_URL_HINT,
) -> PostSet:
    """Render ``release`` into the post (or thread) it becomes on ``network``.

    ``text`` (an inline template) wins over ``template`` (``social/{template}.txt.j2``).
    Without ``thread``, a post over the limit raises :class:`TemplateError` naming the
    template, the weighted count and the limit. ``url_hint`` says how to give a url where
    the caller offers a way besides the front matter (``render --url``).
    """
    net = network_named(network)
    url = url or release.url
    if url and not web_address(url):
        raise ReleaseError(f"the release's url {url!r} is not a full http(s) address")
    if url != release.url:
        release = replace(release, url=url)
    warnings: list[str] = []
    if not url:
        warnings.append(f"the release has no url: the post carries no link ({url_hint})")
    fitter = _Fitter(net.counter)
    # Posts are plain text: even an inline template (which Jinja would escape like HTML by
    # default) must keep "R&D" as written.
    overlay = (env or environment(settings)).overlay(autoescape=False, cache_size=10)
    # The overlay shares its parent's filter dict: copy it so ``fit`` stays local.
    overlay.filters = {**overlay.filters, "fit": fitter, "sentence": sentence}
    context: dict[str, Any] = {
        "release": release,
        "url": url,
        "hashtags": release.hashtags,
        "handle": release.handle,
        "network": net.name,
        "limit": net.limit,
    }
    if text is not None:
        source = "text"

        def run() -> str:
            return render_string(overlay, text, context, where="text")
    elif template is not None:
        name = f"social/{template}.txt.j2"
        try:
            source = overlay.get_template(name).filename or name
        except jinja2.TemplateError:
            source = name  # render() below reports it with the searched folders

        def run() -> str:
            return render(overlay, name, context)
    else:
        raise TemplateError("a post needs a template or a text")

    parts = _parts_of(run())
    if len(parts) == 1 and not thread:
        cut_total = 0
        while (excess := net.counter(parts[0]) - net.limit) > 0 and cut_total < fitter.room:
            cut_total += excess
            fitter.start(cut_total)
            parts = _parts_of(run())
            if len(parts) != 1:
                break
        for original, short in fitter.shortened:
            warnings.append(f"shortened to fit {net.name}'s limit: {original!r} became {short!r}")
    if not parts:
        raise TemplateError("the post is empty", path=source)
    if thread or len(parts) > 1:
        try:
            parts = split_thread(parts, net.limit, net.counter, numbered=numbered)
        except ValueError as exc:
            raise TemplateError(f"cannot split the post: {exc}", path=source) from None
    elif numbered:
        warnings.append("numbered is ignored for a single post")
    posts = [Post(part, net.counter(part)) for part in parts]
    for number, post in enumerate(posts, start=1):
        what = "post" if len(posts) == 1 else f"part {number} of {len(posts)}"
        if post.length > net.limit:
            raise TemplateError(
                f"{what} is {post.length} weighted characters, over {net.name}'s limit of "
                f"{net.limit}; shorten it or post it as a thread",
                path=source,
            )
        bad = net.invalid(post.text)
        if bad:
            raise TemplateError(f"{what} holds {bad}, a character {net.name} refuses", path=source)
    return PostSet(network, net.limit, posts, warnings, source)
