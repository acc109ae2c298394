"""The channel interface: open, deliver one envelope at a time, close.

A channel never decides whether to send for real: the dispatcher picks an outbox channel
unless ``--live`` was given, and only :class:`~distribute.channels.smtp.SmtpChannel` has
``live = True``. Per-message outcomes are returned; a channel that cannot work at all
(server down, login refused) raises :class:`~distribute.errors.DeliveryError`.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable
from dataclasses import dataclass
from types import TracebackType
from typing import Any, Literal

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


class Aside:
    """Work a channel does while the server processes a message (building the next one).

    Runs at most once. What it raises is kept in ``error``, never raised into the channel:
    the message under way has its own outcome, which the caller records before raising it.
    """

    def __init__(self, work: Callable[[], Any]):
        self.work = work
        self.ran = False
        self.value: Any = None
        self.error: Exception | None = None

    def __call__(self) -> None:
        if self.ran:
            return
        self.ran = True
        try:
            self.value = self.work()
        except Exception as exc:
            self.error = exc


class Channel(ABC):
    live: bool = False

    def open(self) -> None:  # noqa: B027 (optional hook: not every channel connects)
        """Connect; raises DeliveryError with one clear line when that is impossible."""

    @abstractmethod
    def deliver(self, envelope: Envelope, meanwhile: Aside | None = None) -> Outcome:
        """Send one message. ``meanwhile``, when given, is called at most once while the
        server holds the message and its reply is not yet read (or not at all)."""

    def prepare(self, sender: str) -> None:  # noqa: B027 (optional hook)
        """Start the next transaction ahead, before its recipient is known (SMTP: write
        MAIL FROM), so the server answers while the caller claims the row; the next
        ``deliver`` from ``sender`` goes on from there, ``cancel`` drops it. Never raises: a
        connection that fails here is reopened by ``deliver``."""

    def cancel(self) -> None:  # noqa: B027 (optional hook)
        """Drop a transaction started by ``prepare`` that will not be used; never raises."""

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


PostState = Literal["sent", "retry", "rate_limited", "failed", "uncertain"]


@dataclass(frozen=True)
class PostOutcome:
    """What happened to one post request.

    ``retry``: refused before anything was created (a 5xx, or no connection); ``rate_limited``:
    try again at ``reset`` (X's ``x-rate-limit-reset``, when it sent one); ``uncertain``: the
    request left and no answer came back, so the post may exist.
    """

    state: PostState
    code: int | None = None
    text: str | None = None
    post_id: str | None = None
    reset: int | None = None


class PostChannel(ABC):
    """A social network account: who it is, media upload, one post per call."""

    live: bool = True

    @abstractmethod
    def whoami(self) -> str:
        """The handle the credentials belong to, like ``@IMTFrance``."""

    @abstractmethod
    def upload_image(self, data: bytes, media_type: str, alt: str | None) -> str:
        """Upload an image (and its alt text); returns the media id to attach."""

    @abstractmethod
    def post(self, body: dict[str, object]) -> PostOutcome:
        """Send one post request body as it is; never retries by itself."""
