"""Posting to X, against a double of the X API on loopback (``x_double.py``).

tweepy builds and signs every request as it would for X; the double checks each OAuth 1.0a
signature against the four secrets, records what it was sent and answers as scripted.
The clock and the sleep are injected: a rate limit that resets in minutes costs nothing.
"""

from __future__ import annotations

import json
import os
import re
import struct
import threading
import zlib
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner
from databases import emptied_postgres
from hypothesis import HealthCheck, example, given
from hypothesis import settings as settings_
from hypothesis import strategies as st
from x_double import KEYS, Reply, XDouble, enc, multipart_fields

from distribute import posting
from distribute.campaign import check_campaign, load_campaign
from distribute.channels.x import Credentials, XChannel
from distribute.cli import cli
from distribute.config import load_settings
from distribute.dispatch import Dispatcher, StepReport
from distribute.errors import CampaignError, ConfigError, ReleaseError, SocialError
from distribute.ledger import Ledger
from distribute.render.social import weighted_length

START = datetime(2027, 3, 10, 7, 0, tzinfo=UTC)
PARTS = [
    "Orchard Lab opens a solar kiln that dries fruit without a drop of fuel.",
    "Growers from the valley can book it from May, by the day or by the week.",
    "The first season is free for cooperatives. https://www.example.org/press/kiln",
]
DUPLICATE = "You are not allowed to create a Tweet with duplicate content."


def png() -> bytes:
    """A valid 1x1 PNG, written here so the test carries no binary file."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        return (
            struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))
        )

    header = struct.pack(">IIBBBBB", 1, 1, 8, 2, 0, 0, 0)
    return (
        b"\x89PNG\r\n\x1a\n"
        + chunk(b"IHDR", header)
        + chunk(b"IDAT", zlib.compress(b"\x00\xff\x80\x00"))
        + chunk(b"IEND", b"")
    )


class FakeClock:
    def __init__(self) -> None:
        self.now = START
        self.slept: list[float] = []

    def __call__(self) -> datetime:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.slept.append(seconds)
        self.now += timedelta(seconds=seconds)


@pytest.fixture
def double(monkeypatch: pytest.MonkeyPatch) -> Iterator[XDouble]:
    for name, value in KEYS.items():
        monkeypatch.setenv(name, value)
    with XDouble() as server:
        yield server


@dataclass
class Workspace:
    root: Path
    double: XDouble
    clock: FakeClock = field(default_factory=FakeClock)
    url: str = ""

    def __post_init__(self) -> None:
        self.url = self.url or f"sqlite:///{self.root / 'distribute.db'}"

    def write(
        self,
        parts: list[str] = PARTS,
        *,
        image: str | None = None,
        embargo: str | None = None,
        account: str = "@IMTFrance",
        timeout: float = 5.0,
    ) -> None:
        (self.root / "distribute.toml").write_text(
            '[sender]\nfrom = "Orchard Lab Press <press@example.org>"\n'
            '[unsubscribe]\nurl = "https://www.example.org/unsubscribe?email={email}"\n'
            f'[x]\naccount = "{account}"\napi_url = "{self.double.url}"\ntimeout = {timeout}\n',
            encoding="utf-8",
        )
        front = "title: Orchard Lab opens a solar kiln\nurl: https://www.example.org/press/kiln\n"
        if embargo:
            front += f"embargo: {embargo}\n"
        if image:
            front += f"image: {image}\nimage_alt: A wooden kiln under solar panels\n"
        (self.root / "kiln.md").write_text(
            f"---\n{front}---\n\n# Orchard Lab opens a solar kiln\n\n"
            "Orchard Lab, a fictional laboratory, opens a kiln.\n",
            encoding="utf-8",
        )
        text = "\n---\n".join(parts)
        (self.root / "launch.toml").write_text(
            'name = "launch"\nrelease = "kiln.md"\ntimezone = "Europe/Paris"\n'
            f'[[post]]\nname = "announce"\nchannel = "x"\ntext = {json.dumps(text)}\n'
            'at = "2027-03-10 09:00"\n',
            encoding="utf-8",
        )

    def run(self, *, live: bool = True, retry_uncertain: bool = False) -> StepReport:
        settings = load_settings(workspace=self.root)
        ledger = self.ledger()
        try:
            campaign = load_campaign(self.root / "launch.toml", settings)
            check = check_campaign(campaign, settings, now=self.clock(), send_now=True)
            dispatcher = Dispatcher(
                settings, ledger, live=live, clock=self.clock, sleep=self.clock.sleep
            )
            return dispatcher.run(
                campaign, check, campaign.step("announce"), retry_uncertain=retry_uncertain
            )
        finally:
            ledger.close()

    def ledger(self) -> Ledger:
        return Ledger(self.url, clock=self.clock)

    def rows(self) -> list[dict[str, Any]]:
        ledger = self.ledger()
        try:
            step = ledger.status("launch")[0]["steps"][-1]["ref"]
            return ledger.rows(step)
        finally:
            ledger.close()

    def tweets(self) -> list[dict[str, Any]]:
        return [seen.json for seen in self.double.requests("POST /2/tweets")]


@pytest.fixture
def ws(tmp_path: Path, double: XDouble) -> Workspace:
    return Workspace(tmp_path, double)


@pytest.fixture(params=["sqlite", "postgresql"])
def any_ws(request: pytest.FixtureRequest, tmp_path: Path, double: XDouble) -> Iterator[Workspace]:
    """The same workspace on each database the ledger supports."""
    if request.param == "sqlite":
        yield Workspace(tmp_path, double)
        return
    for url in emptied_postgres("these"):
        yield Workspace(tmp_path, double, url=url)


# --------------------------------------------------------------------------- posting


def test_single_post_is_one_signed_request_with_the_rendered_text(ws: Workspace) -> None:
    ws.write(["Orchard Lab opens a solar kiln. https://www.example.org/press/kiln"])
    report = ws.run()
    assert ws.tweets() == [
        {"text": "Orchard Lab opens a solar kiln. https://www.example.org/press/kiln"}
    ]
    # Each request verified against the four secrets; the first asks who the tokens are.
    assert [(s.method, s.path, s.signed) for s in ws.double.seen] == [
        ("GET", "/2/users/me", True),
        ("POST", "/2/tweets", True),
    ]
    assert report.mode == "live" and report.counts["sent"] == 1
    [row] = ws.rows()
    assert row["state"] == "sent" and row["message_id"] == ws.double.posts[0]["id"]


def test_a_wrong_secret_fails_the_signature_and_names_the_variables(
    ws: Workspace, monkeypatch: pytest.MonkeyPatch
) -> None:
    ws.write(PARTS[:1])
    monkeypatch.setenv("X_ACCESS_TOKEN_SECRET", "ats-not-the-right-one")
    with pytest.raises(SocialError) as caught:
        ws.run()
    assert caught.value.message == (
        "X refused the request (401: Unauthorized); check X_API_KEY, X_API_SECRET, "
        "X_ACCESS_TOKEN and X_ACCESS_TOKEN_SECRET, and that the X app has Read and Write "
        "permission (after changing it, regenerate the access token and secret)"
    )
    assert [s.signed for s in ws.double.seen] == [False]
    assert not ws.double.posts


def test_a_three_part_thread_replies_to_each_previous_part(any_ws: Workspace) -> None:
    ws = any_ws
    ws.write()
    ws.run()
    ids = [post["id"] for post in ws.double.posts]
    assert ws.tweets() == [
        {"text": PARTS[0]},
        {"reply": {"in_reply_to_tweet_id": ids[0]}, "text": PARTS[1]},
        {"reply": {"in_reply_to_tweet_id": ids[1]}, "text": PARTS[2]},
    ]
    assert [row["message_id"] for row in ws.rows()] == ids
    assert [row["address"] for row in ws.rows()] == [f"@IMTFrance part {n} of 3" for n in (1, 2, 3)]


def test_an_image_is_uploaded_first_with_its_alt_text_and_attached_to_part_one(
    ws: Workspace,
) -> None:
    (ws.root / "kiln.png").write_bytes(png())
    ws.write(image="kiln.png")
    ws.run()
    assert [s.path for s in ws.double.seen] == [
        "/2/users/me",
        "/2/media/upload",
        "/2/media/metadata",
        "/2/tweets",
        "/2/tweets",
        "/2/tweets",
    ]
    upload = ws.double.requests("POST /2/media/upload")[0]
    assert upload.signed
    fields = multipart_fields(upload)
    assert fields["media"] == png()
    assert fields["media_category"] == b"tweet_image"
    media_id = str(ws.double.posts[0]["media"]["media_ids"][0])
    metadata = ws.double.requests("POST /2/media/metadata")[0].json
    assert metadata == {
        "id": media_id,
        "metadata": {"alt_text": {"text": "A wooden kiln under solar panels"}},
    }
    tweets = ws.tweets()
    assert tweets[0] == {"media": {"media_ids": [media_id]}, "text": PARTS[0]}
    assert "media" not in tweets[1] and "media" not in tweets[2]


def test_a_failed_upload_fails_the_step_before_any_part_is_posted(ws: Workspace) -> None:
    (ws.root / "kiln.png").write_bytes(png())
    ws.write(image="kiln.png")
    ws.double.on(
        "POST /2/media/upload",
        Reply(400, {"title": "Invalid Request", "detail": "media type unrecognized."}),
    )
    with pytest.raises(SocialError, match=r"uploading the image: X answered 400: media type"):
        ws.run()
    assert not ws.double.requests("POST /2/tweets")
    assert [row["state"] for row in ws.rows()] == ["pending"] * 3


def test_an_image_that_is_not_an_image_is_refused_before_posting(ws: Workspace) -> None:
    (ws.root / "kiln.png").write_text("not a picture", encoding="utf-8")
    ws.write(image="kiln.png")
    with pytest.raises(ReleaseError, match="is not a JPEG, PNG, GIF or WebP file"):
        ws.run()
    assert not ws.double.requests("POST /2/tweets")


def test_a_missing_image_stops_the_campaign_before_any_step_runs(
    ws: Workspace, monkeypatch: pytest.MonkeyPatch
) -> None:
    ws.write(image="kiln.png")
    monkeypatch.chdir(ws.root)
    result = CliRunner().invoke(cli, ["send", "launch.toml", "--live"])
    assert result.exit_code == 1
    assert result.stderr == "Error: kiln.md: image 'kiln.png': No such file or directory\n"
    assert ws.double.seen == []
    assert not (ws.root / "distribute.db").exists()


class Images:
    """A plain web server for the release's image (no OAuth: it is not X)."""

    def __init__(self, body: bytes, *, redirect: str | None = None):
        self.body = body
        self.hits: list[str] = []
        images = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, format: str, *args: Any) -> None:
                pass

            def do_GET(self) -> None:
                images.hits.append(self.path)
                if redirect:
                    self.send_response(302)
                    self.send_header("location", redirect)
                    self.send_header("content-length", "0")
                    self.end_headers()
                    return
                self.send_response(200)
                self.send_header("content-length", str(len(images.body)))
                self.end_headers()
                self.wfile.write(images.body)

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server.server_address[1]}/kiln.png"

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


def test_an_image_url_is_fetched_once_and_uploaded(ws: Workspace) -> None:
    images = Images(png())
    try:
        ws.write(image=images.url)
        assert ws.run(live=False).counts["sent"] == 3
        assert images.hits == []  # a dry run makes no request at all
        ws.run()
    finally:
        images.close()
    assert images.hits == ["/kiln.png"]
    assert multipart_fields(ws.double.requests("POST /2/media/upload")[0])["media"] == png()
    assert len(ws.double.posts) == 3


def test_an_image_over_the_size_limit_is_refused_before_posting(
    ws: Workspace, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(posting, "MAX_IMAGE_BYTES", 4096)
    images = Images(png() + bytes(200_000))
    try:
        ws.write(image=images.url)
        with pytest.raises(ReleaseError, match=r"kiln.png' is 0.2 MB; X takes images up to"):
            ws.run()
    finally:
        images.close()
    assert not ws.double.requests("POST /2/media/upload")
    assert not ws.double.requests("POST /2/tweets")


# --------------------------------------------------------------------------- errors


def test_429_waits_for_the_reset_then_posts_once(ws: Workspace) -> None:
    ws.write(PARTS[:1])
    reset = int(START.timestamp()) + 2
    ws.double.on(
        "POST /2/tweets",
        Reply(
            429,
            {"title": "Too Many Requests", "detail": "Too Many Requests"},
            {"x-rate-limit-reset": str(reset)},
        ),
    )
    report = ws.run()
    assert ws.clock.slept == [2.0]
    assert ws.clock.now >= datetime.fromtimestamp(reset, UTC)
    assert len(ws.double.requests("POST /2/tweets")) == 2
    assert len(ws.double.posts) == 1
    assert report.counts["sent"] == 1


def test_429_resetting_later_leaves_the_part_pending_and_says_when(ws: Workspace) -> None:
    ws.write(PARTS[:1])
    reset = int(START.timestamp()) + 3600
    ws.double.on(
        "POST /2/tweets",
        Reply(
            429,
            {"title": "Too Many Requests", "detail": "Too Many Requests"},
            {"x-rate-limit-reset": str(reset)},
        ),
    )
    report = ws.run()
    assert report.notes == [
        "announce: X's rate limit: @IMTFrance is tried again at 10 March 2027 09:00 CET "
        "(run send again then; a scheduled run retries by itself)"
    ]
    [row] = ws.rows()
    assert row["state"] == "pending" and row["not_before"] == datetime.fromtimestamp(reset, UTC)
    assert row["last_code"] == 429 and row["last_text"] == "rate limited by X: Too Many Requests"
    assert not ws.clock.slept
    ws.clock.now = datetime.fromtimestamp(reset, UTC)
    ws.run()
    assert len(ws.double.posts) == 1
    assert ws.rows()[0]["state"] == "sent"


def test_429_without_a_reset_backs_off_within_bounds(ws: Workspace) -> None:
    ws.write(PARTS[:1])
    busy = Reply(429, {"title": "Too Many Requests", "detail": "Too Many Requests"})
    ws.double.on("POST /2/tweets", busy, busy, busy)
    ws.run()
    assert ws.clock.slept == [60.0, 120.0]
    [row] = ws.rows()
    assert row["state"] == "pending"
    assert row["not_before"] == START + timedelta(seconds=60 + 120 + 240)


def test_403_duplicate_is_failed_with_x_words_and_not_retried(ws: Workspace) -> None:
    ws.write()
    ws.double.on(
        "POST /2/tweets",
        Reply(
            403, {"detail": DUPLICATE, "type": "about:blank", "title": "Forbidden", "status": 403}
        ),
    )
    report = ws.run()
    assert len(ws.double.requests("POST /2/tweets")) == 1
    rows = ws.rows()
    assert [r["state"] for r in rows] == ["failed", "pending", "pending"]
    assert rows[0]["last_code"] == 403 and rows[0]["last_text"] == DUPLICATE
    assert report.problems == [
        {"address": "@IMTFrance part 1 of 3", "state": "failed", "code": 403, "text": DUPLICATE}
    ]
    assert report.notes == [
        "announce: @IMTFrance part 1 of 3 is failed, so the rest of the thread is not posted "
        "(each part replies to the one before)"
    ]


@pytest.mark.parametrize(
    "first",
    [Reply(503, {"title": "Service Unavailable"}), Reply(drop=True)],
    ids=["503", "uncertain-retried"],
)
def test_a_duplicate_after_an_earlier_attempt_is_uncertain_not_failed(
    ws: Workspace, first: Reply
) -> None:
    """X sometimes creates the post and still answers 503; the retry then hears "duplicate":
    the post is most likely on the account, which "failed" would deny."""
    ws.write(timeout=0.5)
    duplicate = Reply(403, {"detail": DUPLICATE, "title": "Forbidden"})
    ws.double.on("POST /2/tweets", first, duplicate)
    ws.run(retry_uncertain=False)
    if first.drop:
        ws.run(retry_uncertain=True)
    rows = ws.rows()
    assert [r["state"] for r in rows] == ["uncertain", "pending", "pending"]
    assert rows[0]["last_code"] == 403
    assert rows[0]["last_text"] == (
        f"X says the account already has this text ({DUPLICATE}): an earlier attempt of "
        "this part may have posted it"
    )
    assert len(ws.double.requests("POST /2/tweets")) == 2


def test_403_other_is_a_permission_error_and_the_part_stays_pending(ws: Workspace) -> None:
    ws.write(PARTS[:1])
    words = "You are not permitted to perform this action."
    ws.double.on("POST /2/tweets", Reply(403, {"detail": words, "title": "Forbidden"}))
    with pytest.raises(SocialError, match=r"\(403: You are not permitted.*Read and Write"):
        ws.run()
    [row] = ws.rows()
    assert row["state"] == "pending" and row["last_text"] == words


def test_503_is_retried_and_posted_once(ws: Workspace) -> None:
    ws.write(PARTS[:1])
    ws.double.on("POST /2/tweets", Reply(503, {"title": "Service Unavailable"}))
    ws.run()
    assert len(ws.double.requests("POST /2/tweets")) == 2
    assert len(ws.double.posts) == 1
    assert ws.clock.slept == [5.0]


def test_5xx_retries_are_bounded(ws: Workspace) -> None:
    ws.write(PARTS[:1])
    ws.double.on("POST /2/tweets", *[Reply(500, {"title": "Internal Error"})] * 10)
    report = ws.run()
    assert len(ws.double.requests("POST /2/tweets")) == 4
    assert ws.clock.slept == [5.0, 10.0, 20.0]
    assert report.problems[0]["text"] == "gave up after 4 attempts: 500 Internal Server Error"


def test_a_refused_connection_is_safe_to_retry(double: XDouble) -> None:
    from distribute.config import XSettings

    port = double.server.server_address[1]
    double.__exit__()  # nothing listens there any more
    channel = XChannel(XSettings(api_url=f"http://127.0.0.1:{port}"), Credentials.from_env())
    outcome = channel.post({"text": "hello"})
    assert outcome.state == "retry"
    assert outcome.text is not None and outcome.text.startswith("could not connect to X")


@pytest.mark.parametrize(
    "reply", [Reply(hang=2.0), Reply(drop=True)], ids=["read-timeout", "dropped"]
)
def test_no_answer_after_sending_is_uncertain_and_never_posted_again(
    any_ws: Workspace, reply: Reply
) -> None:
    ws = any_ws
    ws.write(timeout=0.5)
    ws.double.on("POST /2/tweets", Reply(), reply)
    report = ws.run()
    assert len(ws.double.posts) == 2  # X has part 2, but the answer never came
    rows = ws.rows()
    assert [r["state"] for r in rows] == ["sent", "uncertain", "pending"]
    assert "it may have been posted" in rows[1]["last_text"]
    assert any("the rest of the thread is not posted" in note for note in report.notes)
    assert any("is uncertain" in note for note in report.notes)
    before = len(ws.double.requests("POST /2/tweets"))
    again = ws.run()
    assert len(ws.double.requests("POST /2/tweets")) == before
    assert [r["state"] for r in ws.rows()] == ["sent", "uncertain", "pending"]
    assert again.attempted == 0


def test_retry_uncertain_posts_again_and_says_the_risk(ws: Workspace) -> None:
    ws.write(PARTS[:1], timeout=0.5)
    ws.double.on("POST /2/tweets", Reply(drop=True))
    ws.run()
    report = ws.run(retry_uncertain=True)
    assert len(ws.double.posts) == 2
    assert report.notes == [
        "announce: @IMTFrance was uncertain and is posted again; if X had it, @IMTFrance "
        "now shows it twice"
    ]


class Killed(BaseException):
    """Stands for the process dying: nothing after it runs, not even an except clause."""


class DyingLedger(Ledger):
    """Dies right after recording part 2 as sent (a kill between two parts)."""

    def finish(self, claim: Any, state: str, **kwargs: Any) -> None:
        super().finish(claim, state, **kwargs)
        if state == "sent" and claim.target.endswith("part-2"):
            raise Killed


def test_a_run_killed_after_part_two_resumes_with_part_three_only(
    any_ws: Workspace, monkeypatch: pytest.MonkeyPatch
) -> None:
    ws = any_ws
    ws.write()
    monkeypatch.setattr(Workspace, "ledger", lambda self: DyingLedger(self.url, clock=self.clock))
    with pytest.raises(Killed):
        ws.run()
    monkeypatch.undo()
    for name, value in KEYS.items():
        monkeypatch.setenv(name, value)
    assert [r["state"] for r in ws.rows()] == ["sent", "sent", "pending"]
    ws.run()
    tweets = ws.tweets()
    assert [t["text"] for t in tweets] == PARTS  # each part once
    part_two = ws.double.posts[1]["id"]
    assert tweets[2]["reply"] == {"in_reply_to_tweet_id": part_two}
    assert [r["state"] for r in ws.rows()] == ["sent"] * 3


def test_a_thread_that_shrank_after_posting_began_is_refused(ws: Workspace) -> None:
    ws.write()
    ws.double.on("POST /2/tweets", Reply(), Reply(drop=True))
    ws.run()
    ws.write(PARTS[:2])
    with pytest.raises(SocialError, match=r"was planned as 3 parts and now renders 2"):
        ws.run()
    assert len(ws.double.requests("POST /2/tweets")) == 2


def later(ws: Workspace) -> Reply:
    """A 429 whose reset is an hour ahead: the run stops there, the part stays pending."""
    reset = int(ws.clock.now.timestamp()) + 3600
    return Reply(429, {"detail": "Too Many Requests"}, {"x-rate-limit-reset": str(reset)})


def test_a_thread_whose_posted_part_was_edited_is_refused(ws: Workspace) -> None:
    """Part 2 would reply to a part 1 that no longer reads as the preview shows it."""
    ws.write()
    ws.double.on("POST /2/tweets", Reply(), later(ws))
    ws.run()
    assert [r["state"] for r in ws.rows()] == ["sent", "pending", "pending"]
    ws.write([PARTS[0].replace("solar kiln", "sun kiln"), *PARTS[1:]])
    ws.clock.now += timedelta(hours=1)
    with pytest.raises(SocialError) as caught:
        ws.run()
    assert caught.value.message == (
        "step 'announce': @IMTFrance part 1 of 3 was posted with other words than the "
        "release and the template now give it, so the rest of the thread would not follow "
        "from it; nothing was posted (put the words back as they were posted, or post the "
        "rest by hand)"
    )
    assert len(ws.double.posts) == 1


def test_a_thread_whose_unposted_part_was_edited_posts_the_new_words(ws: Workspace) -> None:
    ws.write()
    ws.double.on("POST /2/tweets", Reply(), later(ws))
    ws.run()
    edited = [PARTS[0], PARTS[1].replace("by the day", "by the hour"), PARTS[2]]
    ws.write(edited)
    ws.clock.now += timedelta(hours=1)
    ws.run()
    assert [post["text"] for post in ws.double.posts] == edited
    assert ws.double.posts[1]["reply"] == {"in_reply_to_tweet_id": ws.double.posts[0]["id"]}


def test_a_post_step_is_refused_when_the_tokens_belong_to_another_account(
    ws: Workspace,
) -> None:
    ws.write(account="@ValmontInstitute")
    with pytest.raises(SocialError) as caught:
        ws.run()
    assert caught.value.message == (
        "step 'announce': the X credentials belong to @IMTFrance, but [x] account is "
        "@ValmontInstitute; nothing was posted (set the tokens of @ValmontInstitute, or "
        "correct [x] account)"
    )
    assert not ws.double.requests("POST /2/tweets")


def test_a_post_under_embargo_is_refused_whoever_runs_the_step(ws: Workspace) -> None:
    ws.write(embargo="2027-03-10T09:00:00+01:00")
    with pytest.raises(CampaignError, match=r"the release is under embargo until 10 March"):
        ws.run()
    assert ws.double.seen == []
    ws.clock.now = datetime(2027, 3, 10, 8, 0, tzinfo=UTC)
    ws.run()
    assert len(ws.double.posts) == 3


# --------------------------------------------------------------------------- dry run


def test_a_dry_run_writes_the_request_bodies_and_sends_nothing(ws: Workspace) -> None:
    (ws.root / "kiln.png").write_bytes(png())
    ws.write(image="kiln.png")
    report = ws.run(live=False)
    assert ws.double.seen == []
    document = json.loads(Path(str(report.outbox)).read_text(encoding="utf-8"))
    base = ws.double.url
    assert document["media"]["upload"] == {
        "method": "POST",
        "url": f"{base}/2/media/upload",
        "form": {"media_category": "tweet_image"},
        "file": "kiln.png",
        "bytes": len(png()),
        "media_type": "image/png",
    }
    assert [part["length"] for part in document["parts"]] == [
        weighted_length(text) for text in PARTS
    ]
    assert [part["request"]["json"] for part in document["parts"]] == [
        {"media": {"media_ids": ["<media id>"]}, "text": PARTS[0]},
        {"reply": {"in_reply_to_tweet_id": "<id of part 1>"}, "text": PARTS[1]},
        {"reply": {"in_reply_to_tweet_id": "<id of part 2>"}, "text": PARTS[2]},
    ]
    assert report.mode == "dry" and report.counts["sent"] == 3


def test_the_dry_run_bodies_are_what_a_live_run_sends(ws: Workspace) -> None:
    ws.write()
    dry = ws.run(live=False)
    planned = [p["request"]["json"] for p in json.loads(Path(str(dry.outbox)).read_text())["parts"]]
    ws.run()
    ids = [post["id"] for post in ws.double.posts]
    sent = json.dumps(ws.tweets())
    for number, post_id in enumerate(ids[:-1], start=1):
        sent = sent.replace(f'"{post_id}"', f'"<id of part {number}>"')
    assert json.loads(sent) == planned


# --------------------------------------------------------------------------- settings


@pytest.mark.parametrize(
    ("url", "message"),
    [
        (
            "http://api.example.org",
            "plain http is allowed only for loopback (127.0.0.1); use https",
        ),
        ("ftp://127.0.0.1", "is not an http(s) address"),
        ("https://user:pw@api.example.org", "must be a plain base URL"),
    ],
    ids=["http-remote", "ftp", "userinfo"],
)
def test_api_url_must_be_https_unless_loopback(tmp_path: Path, url: str, message: str) -> None:
    (tmp_path / "distribute.toml").write_text(f'[x]\napi_url = "{url}"\n', encoding="utf-8")
    with pytest.raises(ConfigError, match=re.escape(message)):
        load_settings(workspace=tmp_path)


def test_api_url_defaults_to_x_and_keeps_a_staging_url(tmp_path: Path) -> None:
    assert load_settings(workspace=tmp_path).x.api_url == "https://api.x.com"
    (tmp_path / "distribute.toml").write_text(
        '[x]\napi_url = "https://staging.example.org/"\n', encoding="utf-8"
    )
    assert load_settings(workspace=tmp_path).x.api_url == "https://staging.example.org"


def test_x_keys_in_the_settings_file_are_refused(tmp_path: Path) -> None:
    (tmp_path / "distribute.toml").write_text('[x]\naccess_token = "abc"\n', encoding="utf-8")
    with pytest.raises(ConfigError, match=r"X's keys go in X_API_KEY, X_API_SECRET"):
        load_settings(workspace=tmp_path)


# --------------------------------------------------------------------------- command line


def test_whoami_prints_the_handle(ws: Workspace, monkeypatch: pytest.MonkeyPatch) -> None:
    ws.write()
    monkeypatch.chdir(ws.root)
    result = CliRunner().invoke(cli, ["x", "whoami"])
    assert (result.exit_code, result.output) == (0, "@IMTFrance\n")
    assert [(s.path, s.signed) for s in ws.double.seen] == [("/2/users/me", True)]


def test_whoami_says_when_the_account_differs(
    ws: Workspace, monkeypatch: pytest.MonkeyPatch
) -> None:
    ws.write(account="@Valmont")
    monkeypatch.chdir(ws.root)
    result = CliRunner().invoke(cli, ["x", "whoami"])
    assert result.exit_code == 1
    assert result.stdout == "@IMTFrance\n"
    assert result.stderr == (
        "Error: [x] account is @Valmont, not @IMTFrance: live post steps would be refused\n"
    )


def test_whoami_names_a_missing_variable(ws: Workspace, monkeypatch: pytest.MonkeyPatch) -> None:
    ws.write()
    monkeypatch.chdir(ws.root)
    monkeypatch.delenv("X_API_SECRET")
    result = CliRunner().invoke(cli, ["x", "whoami"])
    assert result.exit_code == 1
    assert result.stderr == (
        "Error: posting to X needs X_API_SECRET in the environment (the keys and tokens of "
        "the X app; see the README's X section)\n"
    )
    assert ws.double.seen == []


@pytest.mark.parametrize("value", ["{}\n", " {}", "{} ", "{}\r\n", "{} x"])
def test_whoami_names_a_variable_copied_with_a_line_end(
    ws: Workspace, monkeypatch: pytest.MonkeyPatch, value: str
) -> None:
    """No key or token of X holds whitespace: one that does was copied with its line end (a
    certain 401 later, blamed on the keys in general), so it is named before any request."""
    ws.write()
    monkeypatch.chdir(ws.root)
    monkeypatch.setenv("X_ACCESS_TOKEN", value.format(KEYS["X_ACCESS_TOKEN"]))
    result = CliRunner().invoke(cli, ["x", "whoami"])
    assert result.exit_code == 1
    assert result.stderr == (
        "Error: X_ACCESS_TOKEN holds a space or a line break (copied with the line end?); "
        "set it to the token alone\n"
    )
    assert ws.double.seen == []


def test_send_live_posts_and_no_secret_is_written_anywhere(
    ws: Workspace, monkeypatch: pytest.MonkeyPatch
) -> None:
    (ws.root / "kiln.png").write_bytes(png())
    ws.write(image="kiln.png")
    monkeypatch.chdir(ws.root)
    runner = CliRunner()
    outputs = []
    for args in (["send", "launch.toml"], ["send", "launch.toml", "--live"], ["status"]):
        result = runner.invoke(cli, args)
        assert result.exit_code == 0, result.output
        outputs.append(result.output)
    assert len(ws.double.posts) == 3
    # A refused secret, so that error output is scanned too.
    monkeypatch.setenv("X_API_SECRET", "cs-wrong-" + KEYS["X_API_SECRET"])
    refused = runner.invoke(cli, ["x", "whoami"])
    assert refused.exit_code == 1 and "Read and Write" in refused.output
    outputs.append(refused.output)
    files = [p for p in ws.root.rglob("*") if p.is_file()]
    assert any(p.name == "distribute.log" for p in files)
    assert any(p.name == "x.json" for p in files)
    assert any(p.name == "distribute.db" for p in files)
    for secret in KEYS.values():
        for text in outputs:
            assert secret not in text
        for path in files:
            assert secret.encode() not in path.read_bytes(), path


def test_send_live_without_a_key_stops_before_anything_runs(
    ws: Workspace, monkeypatch: pytest.MonkeyPatch
) -> None:
    ws.write()
    monkeypatch.chdir(ws.root)
    monkeypatch.delenv("X_ACCESS_TOKEN")
    result = CliRunner().invoke(cli, ["send", "launch.toml", "--live"])
    assert result.exit_code == 1
    assert result.stderr.endswith(
        "Error: posting to X needs X_ACCESS_TOKEN in the environment (the keys and tokens "
        "of the X app; see the README's X section)\n"
    )
    assert ws.double.seen == []
    assert not (ws.root / "distribute.db").exists()


# --------------------------------------------------------------------------- property

ANSWERS = {
    "ok": Reply(),
    "503": Reply(503, {"title": "Service Unavailable"}),
    "429": Reply(429, {"title": "Too Many Requests", "detail": "Too Many Requests"}),
    "dropped": Reply(drop=True),
    "duplicate": Reply(403, {"detail": DUPLICATE, "title": "Forbidden"}),
}


@settings_(max_examples=10, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(answers=st.lists(st.sampled_from(sorted(ANSWERS)), max_size=12))
def test_whatever_x_answers_no_part_is_posted_twice_and_replies_chain(
    answers: list[str], tmp_path_factory: pytest.TempPathFactory
) -> None:
    with pytest.MonkeyPatch.context() as patch, XDouble() as double:
        for name, value in KEYS.items():
            patch.setenv(name, value)
        ws = Workspace(tmp_path_factory.mktemp("ws"), double)
        ws.write(timeout=2.0)
        double.on("POST /2/tweets", *(ANSWERS[a] for a in answers))
        for _ in range(3):  # runs again and again, as a scheduler would
            ws.clock.sleep(3600)
            ws.run()
        posted = [post["text"] for post in double.posts]
        assert sorted(set(posted)) == sorted(posted)  # never the same part twice
        by_text = {post["text"]: post for post in double.posts}
        for number, text in enumerate(PARTS[1:], start=1):
            if text in by_text:
                # A reply goes to the previous part as X has it, never to an unknown id.
                assert (
                    by_text[text]["reply"]["in_reply_to_tweet_id"]
                    == by_text[PARTS[number - 1]]["id"]
                )
        rows = ws.rows()
        for row, text in zip(rows, PARTS, strict=True):
            if row["state"] == "sent":
                assert by_text[text]["id"] == row["message_id"]
            if row["state"] == "pending":
                assert text not in by_text
        if not {"dropped", "duplicate"} & set(answers):
            # Only temporary refusals: nothing is uncertain, and a part fails only by
            # running out of attempts.
            assert "uncertain" not in [row["state"] for row in rows]
            for row in rows:
                if row["state"] == "failed":
                    assert row["last_text"].startswith("gave up after")
        if set(answers) <= {"ok"}:
            assert posted == PARTS


# --------------------------------------------------------------------------- X's answers

JSON = st.recursive(
    st.none() | st.booleans() | st.integers() | st.text(max_size=20),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=8), inner),
    max_leaves=10,
)
# What X's error body may look like, malformed included: its keys with any values.
ERROR_BODIES = st.one_of(
    JSON.map(lambda v: json.dumps(v).encode()),
    st.fixed_dictionaries(
        {},
        optional={"detail": JSON, "title": JSON, "errors": JSON, "error": JSON},
    ).map(lambda v: json.dumps(v).encode()),
    st.binary(max_size=40),
    st.just(b"[" * 5000),  # nested past Python's recursion limit
)
HEADER_TEXT = st.text(st.characters(min_codepoint=0x20, max_codepoint=0x7E), max_size=24)


def test_whatever_refusal_x_sends_it_is_classified_and_never_crashes(double: XDouble) -> None:
    """A refusal posted nothing, whatever its body or reset header: it is retried, rate
    limited or failed (401/403: a credentials error), never a crash, never uncertain."""
    from distribute.channels.x import XAuthError
    from distribute.config import XSettings

    channel = XChannel(XSettings(api_url=double.url, timeout=5.0), Credentials.from_env())

    @settings_(max_examples=60, deadline=None)
    @given(
        status=st.sampled_from([400, 401, 403, 404, 409, 413, 422, 429, 500, 502, 503, 504]),
        body=ERROR_BODIES,
        reset=st.none() | HEADER_TEXT | st.integers(-(10**20), 10**20).map(str),
    )
    def check(status: int, body: bytes, reset: str | None) -> None:
        headers = {} if reset is None else {"x-rate-limit-reset": reset}
        double.on("POST /2/tweets", Reply(status, raw=body, headers=headers))
        try:
            outcome = channel.post({"text": "hello"})
        except XAuthError as exc:
            assert status in {401, 403}
            assert "X_API_KEY" in exc.message
            return
        expected = {429: "rate_limited"}.get(status, "retry" if status >= 500 else "failed")
        assert outcome.state == expected
        assert outcome.code == status
        assert outcome.text and len(outcome.text) <= 500
        assert outcome.reset is None or 0 <= outcome.reset < 10**12

    check()
    assert not double.posts


def test_a_rate_limit_reset_that_is_not_a_number_backs_off(ws: Workspace) -> None:
    ws.write(PARTS[:1])
    busy = Reply(429, {"detail": "Too Many Requests"}, {"x-rate-limit-reset": "soon"})
    ws.double.on("POST /2/tweets", busy)
    report = ws.run()
    assert ws.clock.slept == [60.0]
    assert report.counts["sent"] == 1 and len(ws.double.posts) == 1


def test_an_answer_over_the_size_limit_is_not_read_and_the_post_is_uncertain(
    ws: Workspace, monkeypatch: pytest.MonkeyPatch
) -> None:
    from distribute.channels import x

    monkeypatch.setattr(x, "MAX_ANSWER_BYTES", 1024)
    ws.write(PARTS[:1])
    ws.double.on("POST /2/tweets", Reply(201, raw=b'{"data": {"id": "1", "text": "' + b"a" * 4096))
    report = ws.run()
    [row] = ws.rows()
    assert row["state"] == "uncertain"
    assert "X's answer is over 1 KB" in row["last_text"]
    assert any("is uncertain" in note for note in report.notes)


@settings_(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    reset=st.one_of(
        st.integers(0, 10**12 - 1),
        st.integers(-120, 7200).map(lambda s: int(START.timestamp()) + s),
    )
)
@example(reset=999_999_999_999)  # the year 33658
@example(reset=int(START.timestamp()) - 30)  # a clock ahead of X's
@example(reset=int(START.timestamp()) + 30 * 86400)
def test_whatever_reset_x_gives_the_wait_is_bounded_and_the_part_kept(
    reset: int, tmp_path_factory: pytest.TempPathFactory
) -> None:
    """A reset in the past, absurdly far ahead or past the year 9999 neither crashes the run
    nor spends the part's attempts at once: the part waits at most a day, then posts once."""
    with pytest.MonkeyPatch.context() as patch, XDouble() as double:
        for name, value in KEYS.items():
            patch.setenv(name, value)
        ws = Workspace(tmp_path_factory.mktemp("ws"), double)
        ws.write(PARTS[:1])
        busy = Reply(429, {"detail": "Too Many Requests"}, {"x-rate-limit-reset": str(reset)})
        double.on("POST /2/tweets", busy)
        ws.run()
        [row] = ws.rows()
        assert all(0 < s <= posting.WAIT_AT_MOST.total_seconds() for s in ws.clock.slept)
        if row["state"] == "pending":
            assert START < row["not_before"] <= START + posting.RESET_AT_MOST
            ws.clock.now = row["not_before"]
            ws.run()
        assert [r["state"] for r in ws.rows()] == ["sent"]
        assert len(double.requests("POST /2/tweets")) == 2
        assert len(double.posts) == 1


SECRET_TEXT = st.text(
    st.characters(min_codepoint=0x21, max_codepoint=0x7E, exclude_characters='"\\'),
    min_size=8,
    max_size=40,
)


def test_credentials_x_echoes_back_are_never_shown_or_stored(
    ws: Workspace, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A proxy or a debugging server that echoes the request (its Authorization header
    carries the key and the token) puts neither in the ledger, the output or the log."""
    ws.write(PARTS[:1])

    def echo(status: int) -> Reply:
        header = (
            f'OAuth oauth_consumer_key="{KEYS["X_API_KEY"]}", '
            f'oauth_token="{KEYS["X_ACCESS_TOKEN"]}"'
        )
        body = {"detail": f"bad request: Authorization: {header}", "errors": [{"message": header}]}
        return Reply(status, body)

    ws.double.on("POST /2/tweets", echo(400))
    monkeypatch.chdir(ws.root)
    result = CliRunner().invoke(cli, ["send", "launch.toml", "--live"])
    ws.double.on("GET /2/users/me", echo(401))
    refused = CliRunner().invoke(cli, ["x", "whoami"])
    assert refused.exit_code == 1
    assert "[redacted]" in refused.output
    files = [p for p in ws.root.rglob("*") if p.is_file()]
    for secret in (KEYS["X_API_KEY"], KEYS["X_ACCESS_TOKEN"]):
        assert secret not in result.output + refused.output
        for path in files:
            assert secret.encode() not in path.read_bytes(), path
    [row] = ws.rows()
    assert row["state"] == "failed" and "[redacted]" in row["last_text"]


def test_whatever_the_secrets_an_echoing_answer_never_shows_them(double: XDouble) -> None:
    from distribute.channels.x import XAuthError
    from distribute.config import XSettings

    @settings_(max_examples=30, deadline=None)
    @given(key=SECRET_TEXT, token=SECRET_TEXT, status=st.sampled_from([200, 400, 401, 503]))
    def check(key: str, token: str, status: int) -> None:
        credentials = Credentials(key, "secret-one", token, "secret-two")
        channel = XChannel(XSettings(api_url=double.url, timeout=5.0), credentials)
        # Echoed as sent (percent-encoded in the header, RFC 5849 section 3.6), as is, and
        # JSON-escaped.
        echoed = [enc(key), enc(token), key, token, json.dumps(key), json.dumps(token)]
        double.on("POST /2/tweets", Reply(status, {"detail": " ".join(echoed)}))
        try:
            shown = channel.post({"text": "hello"}).text or ""
        except XAuthError as exc:
            shown = exc.message
        for secret in (key, token):
            assert secret not in shown and enc(secret) not in shown

    double.secrets = {**double.secrets, "X_API_SECRET": "secret-one"}
    double.secrets["X_ACCESS_TOKEN_SECRET"] = "secret-two"
    double.verify = lambda *args: True  # type: ignore[method-assign]
    check()


# --------------------------------------------------------------------------- the image


def test_an_image_that_is_not_a_regular_file_is_refused_unread(ws: Workspace) -> None:
    """A device or a FIFO has no size to check first (/dev/zero never ends, a FIFO blocks
    until written): it is refused before a byte is read."""
    ws.write(image="/dev/null")
    with pytest.raises(ReleaseError, match=r"image '/dev/null' is not a regular file"):
        ws.run()
    assert not ws.double.requests("POST /2/media/upload")


@pytest.mark.parametrize("how", ["absolute", "dotdot", "symlink"])
def test_an_image_outside_the_workspace_is_refused(
    ws: Workspace, tmp_path_factory: pytest.TempPathFactory, how: str
) -> None:
    """A release cannot make a live run publish any picture the user can read."""
    private = tmp_path_factory.mktemp("private") / "passport.png"
    private.write_bytes(png())
    (ws.root / "link.png").symlink_to(private)
    source = {
        "absolute": str(private),
        "dotdot": os.path.relpath(private, ws.root),
        "symlink": "link.png",
    }[how]
    ws.write(image=source)
    with pytest.raises(ReleaseError, match=r"is outside the workspace"):
        ws.run()
    assert not ws.double.requests("POST /2/media/upload")
    assert not ws.double.posts


def test_an_image_in_a_folder_of_the_workspace_is_uploaded(ws: Workspace) -> None:
    (ws.root / "media").mkdir()
    (ws.root / "media" / "kiln.png").write_bytes(png())
    (ws.root / "link.png").symlink_to(ws.root / "media" / "kiln.png")
    ws.write(image="link.png")
    ws.run()
    assert multipart_fields(ws.double.requests("POST /2/media/upload")[0])["media"] == png()


@pytest.mark.parametrize("tail", ["", "\x1b[2J\r\nok"], ids=["plain", "escapes"])
def test_an_image_url_that_redirects_is_refused_and_not_followed(ws: Workspace, tail: str) -> None:
    """A redirect could lead anywhere, plain http and hosts of the local network included."""
    target = Images(png())
    images = Images(png(), redirect=target.url + tail)
    try:
        ws.write(image=images.url)
        with pytest.raises(ReleaseError, match=r"the server redirects it to .*kiln.png") as caught:
            ws.run()
        assert caught.value.message.isprintable()
    finally:
        images.close()
        target.close()
    assert target.hits == []
    assert not ws.double.requests("POST /2/tweets")


def test_whatever_x_says_the_run_shows_it_as_one_printable_line(double: XDouble) -> None:
    """X's words go to the ledger, the log and the terminal: a line break would forge a line
    of the report, an escape sequence would drive the terminal. An id that is not X's (a
    decimal number) is not stored, nor replied to."""
    from distribute.channels.x import XAuthError
    from distribute.config import XSettings

    channel = XChannel(XSettings(api_url=double.url, timeout=5.0), Credentials.from_env())

    @settings_(max_examples=60, deadline=None)
    @given(
        status=st.sampled_from([200, 201, 400, 401, 404, 429, 503]),
        said=st.text(max_size=60),
        raw=st.booleans(),
        post_id=st.one_of(st.integers(1, 2**63 - 1).map(str), st.text(max_size=25)),
    )
    def check(status: int, said: str, raw: bool, post_id: str) -> None:
        if status < 300:
            body: Any = {"data": {"id": post_id, "text": said}}
        else:
            body = {"detail": said, "errors": [{"message": said}]}
        reply = Reply(status, raw=said.encode()) if raw else Reply(status, body)
        double.on("POST /2/tweets", reply)
        try:
            outcome = channel.post({"text": "hello"})
        except XAuthError as exc:
            shown = exc.message
        else:
            shown = outcome.text or ""
            if outcome.state == "sent":
                assert outcome.post_id is not None and re.fullmatch(r"[0-9]{1,19}", outcome.post_id)
            elif status < 300:
                assert outcome.state == "uncertain"
        assert shown.isprintable(), shown

    check()


def test_whoami_refuses_a_handle_x_cannot_have(
    ws: Workspace, monkeypatch: pytest.MonkeyPatch
) -> None:
    ws.write()
    monkeypatch.chdir(ws.root)
    ws.double.on(
        "GET /2/users/me", Reply(200, {"data": {"id": "42", "username": "IMTFrance\x1b[2J\nok"}})
    )
    result = CliRunner().invoke(cli, ["x", "whoami"])
    assert result.exit_code == 1
    assert result.stdout == ""
    assert result.stderr == (
        "Error: X answered 'IMTFrance\\x1b[2J\\nok' as the account's handle, which is not an X "
        "handle (/2/users/me); check [x] api_url\n"
    )
