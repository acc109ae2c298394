"""The channel interface: open, deliver one envelope at a time, close.

A channel never decides whether to send for real: the dispatcher picks an outbox channel
unless ``--live`` was given, and only :class:`~distribute.channels.smtp.SmtpChannel` has
``live = True``. Per-message outcomes are returned; a channel that cannot work at all
(server down, login refused) raises :class:`~distribute.errors.DeliveryError`.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass
from types import TracebackType
from typing import Literal

State = Literal["sent", "retry", "failed", "uncertain"]


@dataclass(frozen=True)
class Envelope:
    sender: str
    recipient: str
    data: bytes
    message_id: str


@dataclass(frozen=True)
class Outcome:
    """What happened to one message: ``retry`` is a temporary refusal (4xx)."""

    state: State
    code: int | None = None
    text: str | None = None


class Channel(ABC):
    live: bool = False

    def open(self) -> None:  # noqa: B027 (optional hook: not every channel connects)
        """Connect; raises DeliveryError with one clear line when that is impossible."""

    @abstractmethod
    def deliver(self, envelope: Envelope) -> Outcome: ...

    def close(self) -> None:  # noqa: B027 (optional hook)
        """Release the connection; never raises."""

    def __enter__(self) -> Channel:
        self.open()
        return self

    def __exit__(
        self,
        kind: type[BaseException] | None,
        value: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.close()
