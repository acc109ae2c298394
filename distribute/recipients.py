"""Journalist lists: CSV files in ``recipients/`` turned into validated :class:`Recipient`s."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field


@dataclass(frozen=True)
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
        return self.email.strip().lower()
