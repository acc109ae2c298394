"""Run one post step: one ledger row per part of the thread, posted in order, once.

Part N replies to part N-1, so the parts are posted one at a time and each post id is
written to the ledger (``message_id``) as soon as X returns it: a run that stops after
part 2 resumes with part 3 replying to part 2, and never posts part 1 or 2 again. A part
whose fate is unknown (``uncertain``: the request left, no answer came) stops the thread,
since the next part would reply to an id nobody knows; so does a failed part.

Every post is billed and public, so nothing is retried blindly:

* 5xx, or a connection that never opened: retried with a doubling delay, a bounded number
  of times (X cannot have created a post it never received, and a 5xx created none);
* 429: the row stays ``pending`` with ``not_before`` at X's ``x-rate-limit-reset`` (or a
  bounded backoff when X sent none). A reset due within :data:`WAIT_AT_MOST` is waited
  for; a later one ends the run, which says when to try again;
* a read timeout or a dropped connection after sending: ``uncertain``, never re-posted
  unless ``--retry-uncertain`` is given.

A dry run writes the exact request bodies to the outbox and makes no HTTP request at all.
"""

from __future__ import annotations

import hashlib
import logging
import os
import re
import stat
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

from distribute.campaign import Campaign, CampaignCheck, PostStep, hold_embargo
from distribute.channels.base import PostChannel, PostOutcome
from distribute.channels.outbox import write_posts
from distribute.channels.x import (
    ALT_TEXT_LIMIT,
    MEDIA_METADATA,
    MEDIA_UPLOAD,
    TWEETS,
    Credentials,
    XAuthError,
    XChannel,
    tweet_body,
)
from distribute.config import LOOPBACK
from distribute.errors import ReleaseError, SocialError
from distribute.ledger import Claim, Planned, StepHeld, StepRef, runner_id
from distribute.release import Release

if TYPE_CHECKING:
    from distribute.dispatch import Dispatcher, StepReport

log = logging.getLogger("distribute")

# X refuses images over 5 MB (tweet_image).
MAX_IMAGE_BYTES = 5 * 1024 * 1024
# 5xx and refused connections: attempts per part before it is marked failed.
MAX_ATTEMPTS = 4
RETRY_DELAY = 5.0
# A rate limit without a reset time: 60 s, doubling, never more than 15 minutes (X's window).
RATE_BACKOFF = 60.0
RATE_BACKOFF_MAX = 15 * 60.0
MAX_RATE_ATTEMPTS = 8
# A reset this close is waited for in the run; a later one ends the run (a daily limit
# resets hours later: the scheduler, or the next send, takes it from there).
WAIT_AT_MOST = timedelta(minutes=2)
# X's longest rate-limit window is a day: a reset later than that is not believed.
RESET_AT_MOST = timedelta(days=1)

StepRefFor = Callable[[Campaign, PostStep, str], StepRef]


@dataclass(frozen=True)
class Image:
    """The release's image as it will be uploaded (``data`` is None for an unfetched URL)."""

    source: str
    alt: str | None
    data: bytes | None = None
    media_type: str | None = None


def _sniff(data: bytes) -> str | None:
    if data.startswith(b"\x89PNG\r\n\x1a\n"):
        return "image/png"
    if data.startswith(b"\xff\xd8\xff"):
        return "image/jpeg"
    if data.startswith((b"GIF87a", b"GIF89a")):
        return "image/gif"
    if data[:4] == b"RIFF" and data[8:12] == b"WEBP":
        return "image/webp"
    return None


def load_image(
    release: Release, *, fetch: bool, timeout: float = 30.0, root: Path | None = None
) -> Image | None:
    """The release's ``image``: a file in the workspace ``root`` (or the release's folder),
    or an https URL fetched once.

    With ``fetch`` false (a dry run) a URL is not fetched: no HTTP request at all.
    """
    if not release.image:
        return None
    where = release.source
    alt = release.image_alt
    if alt and len(alt) > ALT_TEXT_LIMIT:
        raise ReleaseError(
            f"image_alt is {len(alt)} characters; X takes at most {ALT_TEXT_LIMIT}", path=where
        )
    source = release.image
    parts = urlsplit(source)
    if parts.scheme in {"http", "https"}:
        if parts.scheme == "http" and parts.hostname not in LOOPBACK:
            raise ReleaseError(f"image {source!r}: use an https address", path=where)
        if not fetch:
            return Image(source, alt)
        data = _fetch(source, timeout, where)
    else:
        data = _read_local(source, where, root)
    media_type = _sniff(data)
    if media_type is None:
        raise ReleaseError(f"image {source!r} is not a JPEG, PNG, GIF or WebP file", path=where)
    return Image(source, alt, data, media_type)


def _read_local(source: str, where: Path | None, root: Path | None) -> bytes:
    """The image file, read only if it is a regular file inside the workspace (or beside
    the release): a post is public, so a release must not be able to publish any picture
    the user can read, through an absolute path, ``..`` or a symlink."""
    path = Path(source)
    if not path.is_absolute() and where is not None:
        path = where.parent / path
    try:
        # O_NONBLOCK: opening a FIFO would otherwise wait for a writer.
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK)
    except OSError as exc:
        raise ReleaseError(f"image {source!r}: {exc.strerror}", path=where) from None
    with os.fdopen(fd, "rb") as file:
        status = os.fstat(file.fileno())
        if not stat.S_ISREG(status.st_mode):
            # A device or a FIFO has no size to check: /dev/zero would never end.
            raise ReleaseError(f"image {source!r} is not a regular file", path=where)
        real = path.resolve()
        roots = [r.resolve() for r in (root, where.parent if where else None) if r]
        if roots and not any(real.is_relative_to(r) for r in roots):
            raise ReleaseError(
                f"image {source!r} is outside the workspace ({real}); copy it beside the release",
                path=where,
            )
        if status.st_size > MAX_IMAGE_BYTES:
            raise ReleaseError(_too_big(source, status.st_size), path=where)
        # At most one byte over: a file that grows while read is still bounded.
        data = file.read(MAX_IMAGE_BYTES + 1)
    if len(data) > MAX_IMAGE_BYTES:
        raise ReleaseError(_too_big(source, len(data)), path=where)
    return data


def _too_big(source: str, size: int, *, over: bool = False) -> str:
    """``over``: ``size`` is only what was read before giving up, not the whole file."""
    return (
        f"image {source!r} is {'over ' if over else ''}{size / 1e6:.1f} MB; X takes images "
        f"up to {MAX_IMAGE_BYTES // (1024 * 1024)} MB"
    )


def _fetch(url: str, timeout: float, where: Path | None) -> bytes:
    import requests

    from distribute.channels.x import AnswerError, printable, read_bounded

    try:
        # Not followed: a redirect could lead to plain http or a host of the local network.
        with requests.get(url, stream=True, timeout=timeout, allow_redirects=False) as response:
            if response.is_redirect:
                raise ReleaseError(
                    f"image {url}: the server redirects it to "
                    f"{printable(response.headers.get('location', '?')[:200])}; give that "
                    "address instead",
                    path=where,
                )
            if response.status_code != 200:
                raise ReleaseError(
                    f"image {url}: the server answered {response.status_code}", path=where
                )
            length = response.headers.get("content-length", "")
            if length.isdigit() and int(length) > MAX_IMAGE_BYTES:
                raise ReleaseError(_too_big(url, int(length)), path=where)
            return read_bounded(response, MAX_IMAGE_BYTES, timeout, "the image server")
    except AnswerError as exc:
        message = f"image {url}: {exc}" if exc.size is None else _too_big(url, exc.size, over=True)
        raise ReleaseError(message, path=where) from None
    except requests.RequestException as exc:
        reason = type(exc).__name__
        raise ReleaseError(f"image {url}: cannot fetch it ({reason})", path=where) from None


def same_account(a: str, b: str) -> bool:
    return a.strip().lstrip("@").casefold() == b.strip().lstrip("@").casefold()


class PostRun:
    """One post step, run by a :class:`~distribute.dispatch.Dispatcher` (its clock, sleep)."""

    def __init__(
        self,
        dispatcher: Dispatcher,
        step_ref: StepRefFor,
        *,
        channel_factory: Callable[[], PostChannel] | None = None,
    ):
        self.dispatcher = dispatcher
        self.settings = dispatcher.settings
        self.ledger = dispatcher.ledger
        self.live = dispatcher.live
        self.step_ref = step_ref
        self.channel_factory = channel_factory

    def clock(self) -> datetime:
        now = self.dispatcher.clock()
        return now if now.tzinfo else now.replace(tzinfo=UTC)

    # ------------------------------------------------------------------ entry

    def run(
        self,
        campaign: Campaign,
        check: CampaignCheck,
        step: PostStep,
        *,
        retry_uncertain: bool = False,
    ) -> StepReport:
        from distribute.dispatch import StepReport, outbox_folder

        posts = check.posts[step.name]
        account = self.settings.x.account
        total = len(posts.parts)
        rows = [
            Planned(f"{step.channel}:part-{n}", _part_name(account, n, total))
            for n in range(1, total + 1)
        ]
        folder = outbox_folder(self.settings, campaign.name, step.name)
        if not self.live or step.channel != "x":
            report = StepReport(campaign.name, step.name, step.channel, "dry")
            if self.live:
                report.notes.append(
                    f"{step.name}: posting to {step.channel} is not available yet; ran as a dry run"
                )
            image = (
                load_image(campaign.release, fetch=False, root=self.settings.workspace)
                if step.channel == "x"
                else None
            )
            document = self._dry_document(posts.to_json(), image, step.channel)
            ref = self.step_ref(campaign, step, "dry")
            self.ledger.reset(ref)
            report.planned = self.ledger.plan(ref, rows)
            report.outbox = write_posts(folder, step.channel, document)
            runner = runner_id()
            while isinstance(claim := self.ledger.claim(ref, runner), Claim):
                self.ledger.finish(claim, "sent", text=f"written to {report.outbox}")
                report.attempted += 1
            report.counts = self.ledger.counts(ref)
            return report

        # Everything that can refuse the step does so before a row is planned. The embargo
        # is checked here too, not only by `send`: whoever runs the step, a post is public.
        hold_embargo(campaign, [step], self.clock())
        credentials = Credentials.from_env()
        channel = (
            self.channel_factory()
            if self.channel_factory
            else XChannel(self.settings.x, credentials)
        )
        handle = channel.whoami()
        if not same_account(handle, account):
            raise SocialError(
                f"step {step.name!r}: the X credentials belong to {handle}, but [x] account "
                f"is {account}; nothing was posted (set the tokens of {account}, or correct "
                "[x] account)"
            )
        report = StepReport(campaign.name, step.name, step.channel, "live")
        ref = self.step_ref(campaign, step, "live")
        planned = len(self.ledger.rows(ref))
        if planned > total:
            # Parts are matched to rows by position: a shorter thread would misplace replies.
            raise SocialError(
                f"step {step.name!r} was planned as {planned} parts and now renders "
                f"{total}; the release or the template changed after posting began"
            )
        texts = [part.text for part in posts.parts]
        for row in self.ledger.rows(ref, ("sent",)):
            posted = _POSTED_TEXT.search(row["last_text"] or "")
            number = int(row["target"].rsplit("-", 1)[-1])  # "x:part-N"
            if posted and posted[1] != text_digest(texts[number - 1]):
                raise SocialError(
                    f"step {step.name!r}: {row['address']} was posted with other words than "
                    "the release and the template now give it, so the rest of the thread "
                    "would not follow from it; nothing was posted (put the words back as "
                    "they were posted, or post the rest by hand)"
                )
        runner = runner_id()
        holder = self.ledger.acquire(ref, runner)
        if holder is not None:
            raise StepHeld(
                f"step {step.name} is being posted by {holder} (campaign {campaign.name}); "
                "wait for it to finish"
            )
        try:
            report.planned = self.ledger.plan(ref, rows)
            if retry_uncertain:
                for row in self.ledger.rows(ref, ("uncertain", "sending")):
                    report.notes.append(
                        f"{step.name}: {row['address']} was uncertain and is posted again; "
                        f"if X had it, {account} now shows it twice"
                    )
            report.recovered = self.ledger.recover(ref, runner)
            if retry_uncertain:
                # A thread goes out part after part, all of it: every uncertain part at once.
                self.ledger.reopen_uncertain(ref, runner)
            self._post_thread(ref, runner, channel, texts, campaign, step, report)
        finally:
            self.ledger.release(ref, runner)
        report.counts = self.ledger.counts(ref)
        report.problems = self.ledger.problems(ref)
        return report

    # ------------------------------------------------------------------ dry run

    def _dry_document(
        self, posts: dict[str, Any], image: Image | None, network: str
    ) -> dict[str, Any]:
        """What a live run would send, request by request; ids X has not given yet are
        written as placeholders in angle brackets."""
        document: dict[str, Any] = {
            "network": posts["network"],
            "account": self.settings.x.account,
            "limit": posts["limit"],
        }
        if network != "x":
            document["parts"] = posts["parts"]
            return document
        base = self.settings.x.api_url
        media_ids: list[str] = []
        if image is not None:
            media: dict[str, Any] = {
                "source": image.source,
                "upload": {
                    "method": "POST",
                    "url": base + MEDIA_UPLOAD,
                    "form": {"media_category": "tweet_image"},
                    "file": image.source,
                },
            }
            if image.data is not None:
                media["upload"]["bytes"] = len(image.data)
                media["upload"]["media_type"] = image.media_type
            if image.alt:
                media["metadata"] = {
                    "method": "POST",
                    "url": base + MEDIA_METADATA,
                    "json": {"id": "<media id>", "metadata": {"alt_text": {"text": image.alt}}},
                }
            document["media"] = media
            media_ids = ["<media id>"]
        parts = []
        for number, part in enumerate(posts["parts"], start=1):
            body = tweet_body(
                part["text"],
                reply_to=f"<id of part {number - 1}>" if number > 1 else None,
                media_ids=media_ids if number == 1 else None,
            )
            parts.append(
                {
                    "text": part["text"],
                    "length": part["length"],
                    "request": {"method": "POST", "url": base + TWEETS, "json": body},
                }
            )
        document["parts"] = parts
        return document

    # ------------------------------------------------------------------ live

    def _post_thread(
        self,
        ref: StepRef,
        runner: str,
        channel: PostChannel,
        texts: list[str],
        campaign: Campaign,
        step: PostStep,
        report: StepReport,
    ) -> None:
        rows = self.ledger.rows(ref)
        previous: str | None = None
        media_ids: list[str] | None = None
        for number, row in enumerate(rows, start=1):
            if row["state"] in {"sent", "skipped"}:
                previous = row["message_id"]
                continue
            if row["state"] != "pending":
                if number < len(rows):
                    report.notes.append(
                        f"{step.name}: {row['address']} is {row['state']}, so the rest of the "
                        "thread is not posted (each part replies to the one before)"
                    )
                return
            if number == 1:
                # Uploaded only now that part 1 is certain to be needed; a failed upload
                # stops the step before any part is posted.
                image = load_image(
                    campaign.release,
                    fetch=True,
                    timeout=self.settings.x.timeout,
                    root=self.settings.workspace,
                )
                if image is not None:
                    assert image.data is not None and image.media_type is not None
                    media_ids = [channel.upload_image(image.data, image.media_type, image.alt)]
            elif previous is None:
                report.notes.append(
                    f"{step.name}: the post before {row['address']} has no id in the ledger; "
                    "the rest of the thread is not posted"
                )
                return
            body = tweet_body(
                texts[number - 1],
                reply_to=previous if number > 1 else None,
                media_ids=media_ids if number == 1 else None,
            )
            outcome = self._post_part(ref, runner, channel, row, body, campaign, step, report)
            if outcome is None:
                return
            if outcome.state != "sent":
                if number < len(rows):
                    report.notes.append(
                        f"{step.name}: {row['address']} is {outcome.state}, so the rest of the "
                        "thread is not posted (each part replies to the one before)"
                    )
                return
            previous = outcome.post_id

    def _post_part(
        self,
        ref: StepRef,
        runner: str,
        channel: PostChannel,
        row: dict[str, Any],
        body: dict[str, Any],
        campaign: Campaign,
        step: PostStep,
        report: StepReport,
    ) -> PostOutcome | None:
        """Post one part until it is sent, failed or uncertain; None when the run must stop
        with the part still pending (a rate limit resetting later than the run waits)."""
        target = row["target"]
        name = row["address"]
        not_before = row["not_before"]
        while True:
            if not_before is not None:
                wait = not_before - self.clock()
                if wait > WAIT_AT_MOST:
                    report.notes.append(
                        f"{step.name}: X's rate limit: {name} is tried again at "
                        f"{campaign.show(not_before)} (run send again then; a scheduled "
                        "run retries by itself)"
                    )
                    return None
                if wait > timedelta(0):
                    log.info("%s/%s %s waits %s for X", campaign.name, step.name, name, wait)
                    self.dispatcher.sleep(wait.total_seconds())
            claim = self.ledger.claim(ref, runner)
            if not isinstance(claim, Claim) or claim.target != target:
                # Only this part may go next; anything else means the ledger moved under us.
                if isinstance(claim, Claim):
                    self.ledger.unclaim(claim)
                report.notes.append(f"{step.name}: {name} could not be claimed; stopped")
                return None
            try:
                outcome = channel.post(body)
            except XAuthError as exc:
                # Nothing was posted: keep the part pending, with X's words, for the next run.
                self.ledger.finish(claim, "pending", code=exc.code, text=exc.words)
                raise
            except BaseException:
                # Whatever broke, it broke with the request possibly sent.
                self.ledger.finish(
                    claim, "uncertain", text="the post was interrupted while being sent"
                )
                raise
            report.attempted += 1
            if outcome.state == "failed" and outcome.code == 403 and claim.attempts > 1:
                # X refuses a duplicate: after an attempt that may have gone through (a 5xx,
                # which X sometimes answers to a post it created, or an uncertain one
                # retried), the duplicate is most likely that attempt's post.
                outcome = PostOutcome(
                    "uncertain",
                    403,
                    f"X says the account already has this text ({outcome.text}): an earlier "
                    "attempt of this part may have posted it",
                )
            not_before = self._record(claim, outcome, name, str(body["text"]))
            log.info(
                "live %s/%s %s %s %s",
                campaign.name,
                step.name,
                name,
                outcome.state,
                outcome.text or "",
            )
            if not_before is None:
                if outcome.state == "uncertain":
                    report.notes.append(
                        f"{step.name}: {name} is uncertain: {outcome.text}. Check "
                        f"{self.settings.x.account} before doing anything; it is not posted "
                        "again (--retry-uncertain would post it again)"
                    )
                return outcome

    def _record(self, claim: Claim, outcome: PostOutcome, name: str, text: str) -> datetime | None:
        """Write the outcome; returns when to try again, or None when the part is settled.

        A posted part keeps a digest of its words, so a run resuming the thread can tell
        whether the part still reads as it was posted."""
        now = self.clock()
        if outcome.state == "sent":
            self.ledger.finish(
                claim,
                "sent",
                code=outcome.code,
                text=f"{outcome.text}; text {text_digest(text)}",
                message_id=outcome.post_id,
            )
            return None
        if outcome.state in {"failed", "uncertain"}:
            self.ledger.finish(claim, outcome.state, code=outcome.code, text=outcome.text)
            return None
        if outcome.state == "rate_limited":
            limit, what = MAX_RATE_ATTEMPTS, "rate limited by X"
            reset_at = _reset_time(outcome.reset, now)
            if reset_at is not None:
                retry_at = reset_at
            else:
                delay = min(RATE_BACKOFF * 2 ** (claim.attempts - 1), RATE_BACKOFF_MAX)
                retry_at = now + timedelta(seconds=delay)
        else:
            limit, what = MAX_ATTEMPTS, "X could not take it"
            retry_at = now + timedelta(seconds=RETRY_DELAY * 2 ** (claim.attempts - 1))
        if claim.attempts >= limit:
            self.ledger.finish(
                claim,
                "failed",
                code=outcome.code,
                text=f"gave up after {claim.attempts} attempts: {outcome.text}",
            )
            return None
        self.ledger.finish(
            claim,
            "pending",
            code=outcome.code,
            text=f"{what}: {outcome.text}",
            retry_at=retry_at,
        )
        return retry_at


def _reset_time(reset: int | None, now: datetime) -> datetime | None:
    """When X's rate limit resets, at most :data:`RESET_AT_MOST` ahead; None when X gave no
    reset or one already past (a clock ahead of X's: retrying at once would spend every
    attempt in a burst), so the bounded backoff applies."""
    if reset is None:
        return None
    try:
        at = datetime.fromtimestamp(reset, UTC)
    except (OverflowError, ValueError, OSError):  # past the year 9999
        return now + RESET_AT_MOST
    if at <= now:
        return None
    return min(at, now + RESET_AT_MOST)


_POSTED_TEXT = re.compile(r"; text ([0-9a-f]{16})$")


def text_digest(text: str) -> str:
    return hashlib.sha256(text.encode("utf-8")).hexdigest()[:16]


def _part_name(account: str, number: int, total: int) -> str:
    return account if total == 1 else f"{account} part {number} of {total}"


def run_posts(
    dispatcher: Dispatcher,
    step_ref: StepRefFor,
    campaign: Campaign,
    check: CampaignCheck,
    step: PostStep,
    *,
    retry_uncertain: bool = False,
    channel_factory: Callable[[], PostChannel] | None = None,
) -> StepReport:
    """Run ``step`` (dry unless the dispatcher is live) and report it."""
    run = PostRun(dispatcher, step_ref, channel_factory=channel_factory)
    return run.run(campaign, check, step, retry_uncertain=retry_uncertain)
