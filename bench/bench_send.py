"""Where the time goes when a step is sent: rendering, the SMTP server, the ledger.

    python bench/bench_send.py [--recipients 2000]

Measures in the same run, side by side:

* rendering: the real design (premailer once per draft, then a cheap per-recipient
  substitution into ``build_message``) against the naive one (``draft_email``, hence
  premailer, for every recipient), per message, and their ratio;
* a live send through :class:`~distribute.dispatch.Dispatcher` to an aiosmtpd server on
  loopback (the test double in ``tests/smtp_double.py``), with 1 and 4 connections;
* the same run with a channel that accepts every message at once, so what is left is
  rendering plus the ledger; the time spent inside the ledger's calls is timed in every
  run and shown as a share of it.
"""

from __future__ import annotations

import argparse
import dataclasses
import shutil
import sys
import tempfile
import time
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests"))

from smtp_double import SmtpServer  # noqa: E402

from distribute.campaign import check_campaign, load_campaign  # noqa: E402
from distribute.channels.base import Channel, Envelope, Outcome  # noqa: E402
from distribute.config import Settings, load_settings  # noqa: E402
from distribute.dispatch import Dispatcher  # noqa: E402
from distribute.ledger import Ledger  # noqa: E402
from distribute.recipients import Recipient  # noqa: E402
from distribute.release import load_release  # noqa: E402
from distribute.render.email import draft_email  # noqa: E402
from distribute.render.message import build_message, message_bytes  # noqa: E402

AT = datetime(2027, 3, 10, 7, 0, tzinfo=UTC)


def workspace(folder: Path, recipients: int) -> Path:
    """A workspace with one email step to ``recipients`` journalists; returns the campaign."""
    (folder / "distribute.toml").write_text(
        '[sender]\nfrom = "Valmont Press Office <press@example.org>"\n'
        '[unsubscribe]\nurl = "https://www.example.org/unsubscribe?email={email}"\n'
        '[paths]\nrecipients = "recipients"\n'
        '[smtp]\nhost = "127.0.0.1"\nsecurity = "none"\n',
        encoding="utf-8",
    )
    (folder / "recipients").mkdir()
    rows = ["email,first_name,last_name,outlet,language"]
    rows += [f"j{n:05d}@example.com,Jo{n},Doe,Daily {n},en" for n in range(recipients)]
    (folder / "recipients" / "desk.csv").write_text("\n".join(rows) + "\n", "utf-8")
    shutil.copy(ROOT / "releases" / "hydrogen.md", folder / "hydrogen.md")
    path = folder / "launch.toml"
    path.write_text(
        'name = "launch"\nrelease = "hydrogen.md"\n'
        '[[email]]\nname = "desk"\nlists = ["desk"]\nat = "2027-03-10 08:00"\n',
        encoding="utf-8",
    )
    return path


def people(count: int) -> list[Recipient]:
    return [
        Recipient(email=f"j{n:05d}@example.com", first_name=f"Jo{n}", last_name="Doe")
        for n in range(count)
    ]


def per_message(work: Callable[[Recipient], object], recipients: list[Recipient]) -> float:
    start = time.perf_counter()
    for recipient in recipients:
        work(recipient)
    return (time.perf_counter() - start) / len(recipients)


def rendering(settings: Settings, designed: int, naive: int) -> None:
    release = load_release(ROOT / "releases" / "hydrogen.md")
    start = time.perf_counter()
    draft = draft_email(release, settings, at=AT)
    once = time.perf_counter() - start

    def substituted(recipient: Recipient) -> bytes:
        message = build_message(draft, recipient, settings, campaign="b", step="s", date=AT)
        return message_bytes(message)

    def inlined(recipient: Recipient) -> bytes:
        own = draft_email(release, settings, at=AT)
        message = build_message(own, recipient, settings, campaign="b", step="s", date=AT)
        return message_bytes(message)

    cheap = per_message(substituted, people(designed))
    costly = per_message(inlined, people(naive))
    print("rendering, per message")
    print(f"  draft_email once (premailer)           {once * 1e3:9.2f} ms")
    print(
        f"  design: substitution, N={designed:<14,}{cheap * 1e3:9.3f} ms  {1 / cheap:9,.0f} msg/s"
    )
    print(
        f"  naive: premailer each, N={naive:<13,}{costly * 1e3:9.3f} ms  {1 / costly:9,.0f} msg/s"
    )
    print(f"  naive / design: {costly / cheap:.0f}x")


class TimedLedger(Ledger):
    """Adds up the wall time spent inside the calls a send makes for each message."""

    def __init__(self, url: str):
        super().__init__(url)
        self.spent = 0.0

    def _timed(self, call: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
        start = time.perf_counter()
        try:
            return call(*args, **kwargs)
        finally:
            self.spent += time.perf_counter() - start

    def claim(self, *args: Any, **kwargs: Any) -> Any:
        return self._timed(super().claim, *args, **kwargs)

    def finish(self, *args: Any, **kwargs: Any) -> None:
        self._timed(super().finish, *args, **kwargs)


class Instant(Channel):
    """Accepts every message at once: what is left of a send is rendering and the ledger."""

    live = True

    def deliver(self, envelope: Envelope) -> Outcome:
        return Outcome("sent", 250, "250 accepted")


def send(
    folder: Path, recipients: int, connections: int, *, instant: bool = False
) -> tuple[float, float]:
    """(seconds, seconds inside the ledger) for one live run of the whole step."""
    campaign_path = workspace(folder, recipients)
    base = load_settings(workspace=folder)
    campaign = load_campaign(campaign_path, base)
    check = check_campaign(campaign, base, now=AT, send_now=True)
    ledger = TimedLedger(f"sqlite:///{folder / 'distribute.db'}")
    try:
        with SmtpServer() as server:
            smtp = dataclasses.replace(base.smtp, port=server.port, connections=connections)
            settings = dataclasses.replace(base, smtp=smtp)
            factory = Instant if instant else None
            dispatcher = Dispatcher(settings, ledger, live=True, channel_factory=factory)
            start = time.perf_counter()
            report = dispatcher.run(campaign, check, campaign.steps[0])
            seconds = time.perf_counter() - start
            received = recipients if instant else len(server.received)
        assert report.counts["sent"] == received == recipients, report.counts
    finally:
        ledger.close()
    return seconds, ledger.spent


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--recipients", type=int, default=2000, help="for the live sends")
    parser.add_argument("--render", type=int, default=1000, help="messages, the design")
    parser.add_argument("--naive", type=int, default=50, help="messages, premailer each")
    options = parser.parse_args()
    count = options.recipients

    with tempfile.TemporaryDirectory() as tmp:
        scratch = Path(tmp) / "render"
        scratch.mkdir()
        workspace(scratch, 1)
        rendering(load_settings(workspace=scratch), options.render, options.naive)

        runs: list[tuple[str, float, float]] = []
        for label, connections, instant in (
            ("aiosmtpd, 1 connection", 1, False),
            ("aiosmtpd, 4 connections", 4, False),
            ("instant channel, 1 connection", 1, True),
        ):
            folder = Path(tmp) / f"send-{connections}-{instant}"
            folder.mkdir()
            seconds, in_ledger = send(folder, count, connections, instant=instant)
            runs.append((label, seconds, in_ledger))

    print()
    print(f"live send of {count:,} messages through Dispatcher (SQLite ledger)")
    print(f"  {'':<32}{'seconds':>9}{'msg/s':>9}{'ledger s':>10}{'ledger share':>14}")
    for label, seconds, in_ledger in runs:
        share = in_ledger / seconds
        print(
            f"  {label:<32}{seconds:>9.2f}{count / seconds:>9,.0f}{in_ledger:>10.2f}{share:>13.0%}"
        )
    one, four, instant = (seconds for _, seconds, _ in runs)
    print(f"  4 connections / 1 connection: {one / four:.2f}x the throughput")
    print(f"  instant channel / aiosmtpd (1 connection): {instant / one:.0%} of the time")
    print(f"  ledger per message: {runs[2][2] / count * 1e3:.2f} ms (claim + finish)")
    print("  (with 4 connections the ledger seconds add up the threads' overlapping calls)")


if __name__ == "__main__":
    main()
