"""Counted words in messages: "1 journalist is", "2 journalists are", never "1 duplicates"."""

from __future__ import annotations


def plural(count: int, singular: str, plural: str | None = None) -> str:
    """``count`` and the noun that agrees with it: '1 message', '0 messages', '2 replies'."""
    return f"{count} {singular if count == 1 else plural or singular + 's'}"


def agree(count: int, singular: str, plural: str) -> str:
    """The word (a verb, most often) that agrees with ``count``: agree(1, 'is', 'are')."""
    return singular if count == 1 else plural
