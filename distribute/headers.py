"""What may go into a message header: checked where a value comes in, and again as bytes.

A header field ends at CRLF (RFC 5322 section 2.2), so a value that brings a line ending
into a header adds header lines, or a body, of its own. Two checks, because one is not
enough:

* Where a value comes in (a list row, the release, the configuration, a subject
  template), :func:`header_text_problem` refuses what the email package would turn into
  something else: RFC 2047 encoded-words are decoded by its header parser *after* its CR/LF
  check, and before CPython 3.11.10 its folder wrote decoded line breaks back out as real
  ones (CVE-2024-6923, python/cpython#121650). The caller knows the file and line to name.
* Every folded header is checked as bytes by :func:`verify_folded`, whatever produced it
  and whatever the interpreter's version, as CPython's fix for that CVE does in the folder
  itself: a header is its name, a colon and continuation lines that start with white space,
  joined by CRLF and by nothing else, and no encoded-word in it decodes to a line break.
"""

from __future__ import annotations

import re
from email.header import decode_header

from distribute.errors import HeaderError

# Any "=?" later followed by "?=": wider than RFC 2047's grammar on purpose, because the
# email package's parser also decodes words RFC 2047 forbids (white space inside, no space
# around them, inside quoted strings and addresses).
_ENCODED_TEXT = re.compile(r"=\?.*?\?=", re.DOTALL)
# C0 and C1 controls (tab aside), DEL, and the Unicode line and paragraph separators: what a
# mail program may read as the end of a line.
_CONTROL = re.compile(r"[\x00-\x08\x0a-\x1f\x7f-\x9f\u2028\u2029]")
# Bidirectional embeddings, overrides and isolates: they can make a Subject or a sender's
# name display as something else (CVE-2021-42574, "Trojan Source"). A list's names lose them
# when read; a title, a subject template or the configuration is refused.
_BIDI = re.compile(r"[\u202a-\u202e\u2066-\u2069]")
_ENCODED_WORD = re.compile(r"=\?[^?\s]+\?[bBqQ]\?[^?\s]*\?=")
MAX_LINE = 998  # octets, CRLF excluded (RFC 5322 section 2.1.1)


def _shown(text: str, width: int = 48) -> str:
    return repr(text if len(text) <= width else text[: width - 1] + "…")


def header_text_problem(text: str) -> str | None:
    """Why ``text`` cannot sit in a header as written, or None."""
    if text.isascii() and text.isprintable() and "=?" not in text:
        # Printable ASCII holds no control and no bidirectional mark, and every encoded
        # text starts with "=?": no search in _text_problem could match.
        return None
    return _text_problem(text)


def _text_problem(text: str) -> str | None:
    match = _ENCODED_TEXT.search(text)
    if match is not None:
        return (
            f"holds {_shown(match.group())}, RFC 2047 encoded text (=?...?=), which mail programs "
            "decode, so it could add header lines; write the text itself"
        )
    match = _CONTROL.search(text)
    if match is not None:
        return f"holds U+{ord(match.group()):04X}, a control or line-separator character"
    match = _BIDI.search(text)
    if match is not None:
        return (
            f"holds U+{ord(match.group()):04X}, a bidirectional control that can make the "
            "text display as something else"
        )
    return None


def has_bare_line_ending(data: bytes) -> bool:
    """True when ``data`` holds a CR not followed by LF, or an LF not preceded by CR."""
    # Every CR and every LF belongs to a CRLF exactly when the three counts agree; counting
    # is many times faster than a search with look-arounds over a whole message.
    pairs = data.count(b"\r\n")
    return data.count(b"\r") != pairs or data.count(b"\n") != pairs


def verify_folded(name: str, folded: bytes, *, utf8: bool) -> None:
    """Raise :class:`HeaderError` unless ``folded`` is exactly one header field named ``name``."""

    def refuse(why: str) -> HeaderError:
        return HeaderError(f"the {name} header {why}", field=name)

    if not folded.endswith(b"\r\n"):
        raise refuse("does not end with CRLF")
    head = f"{name}:".encode("ascii")
    lines = folded[:-2].split(b"\r\n")
    if not lines[0].startswith(head):
        raise refuse("does not start with its name")
    for number, line in enumerate(lines):
        if b"\r" in line or b"\n" in line:
            raise refuse("holds a bare CR or LF")
        if len(line) > MAX_LINE:
            raise refuse(f"has a line over {MAX_LINE} octets")
        # A continuation line starts with white space and holds something else
        # (RFC 5322 section 3.2.2: a line of white space alone is obsolete folding).
        if number and (line[:1] not in (b" ", b"\t") or not line.strip(b" \t")):
            raise refuse("would start a new header line")
    try:
        text = folded[len(head) : -2].decode("utf-8" if utf8 else "ascii")
    except UnicodeDecodeError:
        raise refuse("holds bytes that are not " + ("UTF-8" if utf8 else "ASCII")) from None
    value = text.replace("\r\n", "")
    if _CONTROL.search(value):
        raise refuse("holds a control character")
    for word in _ENCODED_WORD.findall(value):
        decoded = _decoded(word)
        if decoded is None or _CONTROL.search(decoded):
            raise refuse(f"holds an encoded-word that decodes to a control character: {word!r}")


def _decoded(word: str) -> str | None:
    try:
        return "".join(
            chunk.decode(charset or "ascii") if isinstance(chunk, bytes) else chunk
            for chunk, charset in decode_header(word)
        )
    except (LookupError, ValueError):
        return None
