"""Where the time goes when a step is sent: rendering, the SMTP server, the ledger.

    python bench/bench_send.py [--recipients 500] [--latency-ms 20]

Measures in the same run, side by side:

* rendering: the real design (premailer once per draft, then a cheap per-recipient
  substitution into ``build_message``) against the naive one (``draft_email``, hence
  premailer, for every recipient), per message, and their ratio;
* a live send through :class:`~distribute.dispatch.Dispatcher` with 1, 2, 4 and 8
  connections to an aiosmtpd server on loopback that runs in its own process (so it does
  not share the sender's interpreter lock) and waits ``--latency-ms`` before it answers
  each message's final dot, as a real server does while it queues the message. With that
  latency a server cannot take more than connections / latency messages per second: each
  run's rate is shown against that bound. The server counts what it receives, and every
  recipient must have been received exactly once;
* the same run with a channel that accepts every message at once, so what is left is
  rendering plus the ledger: the sender's own ceiling. The time spent inside the ledger's
  calls and inside rendering (``build_message`` + ``message_bytes``) is timed in every run.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import dataclasses
import functools
import multiprocessing
import shutil
import sys
import tempfile
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from multiprocessing.connection import Connection
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests"))

from smtp_double import free_port  # noqa: E402

import distribute.dispatch  # noqa: E402
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


class Stopwatch:
    """Adds up the wall time spent inside the calls it times, from any thread."""

    def __init__(self) -> None:
        self.spent = 0.0
        self.lock = threading.Lock()

    def time(self, call: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
        start = time.perf_counter()
        try:
            return call(*args, **kwargs)
        finally:
            elapsed = time.perf_counter() - start
            with self.lock:
                self.spent += elapsed

    def wrap(self, call: Callable[..., Any]) -> Callable[..., Any]:
        return functools.partial(self.time, call)


class TimedLedger(Ledger):
    """Adds up the wall time spent inside the calls a send makes for each message."""

    def __init__(self, url: str):
        super().__init__(url)
        self.watch = Stopwatch()

    def claim(self, *args: Any, **kwargs: Any) -> Any:
        return self.watch.time(super().claim, *args, **kwargs)

    def finish(self, *args: Any, **kwargs: Any) -> None:
        self.watch.time(super().finish, *args, **kwargs)


@contextlib.contextmanager
def timed_rendering(watch: Stopwatch) -> Iterator[None]:
    """Times the per-recipient rendering of the dispatcher (it calls these two by name)."""
    module = distribute.dispatch
    saved = {name: getattr(module, name) for name in ("build_message", "message_bytes")}
    for name, call in saved.items():
        setattr(module, name, watch.wrap(call))
    try:
        yield
    finally:
        for name, call in saved.items():
            setattr(module, name, call)


class Instant(Channel):
    """Accepts every message at once: what is left of a send is rendering and the ledger."""

    live = True

    def deliver(self, envelope: Envelope) -> Outcome:
        return Outcome("sent", 250, "250 accepted")


# ------------------------------------------------------- the server, in its own process

WAIT = 30.0  # seconds, at most, for the server process to start, report or stop


class SlowHandler:
    """Answers each final dot after ``latency`` seconds; counts the mail of each address."""

    def __init__(self, latency: float):
        self.latency = latency
        self.received: Counter[str] = Counter()

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        await asyncio.sleep(self.latency)
        self.received.update(address.lower() for address in envelope.rcpt_tos)
        return "250 2.0.0 queued"


def serve(latency: float, pipe: Connection) -> None:
    """The server process: says its port, receives until told to stop, sends the counts."""
    from aiosmtpd.controller import Controller

    handler = SlowHandler(latency)
    controller = Controller(
        handler, hostname="127.0.0.1", port=free_port(), server_hostname="smtp.bench"
    )
    controller.start()
    cpu = time.process_time()
    try:
        pipe.send(controller.port)
        with contextlib.suppress(EOFError):  # the bench is gone: stop all the same
            pipe.recv()
    finally:
        controller.stop()
    with contextlib.suppress(OSError):
        pipe.send((dict(handler.received), time.process_time() - cpu))
    pipe.close()


class ServerProcess:
    """aiosmtpd with a latency, in a process of its own; always stopped on the way out."""

    def __init__(self, latency: float):
        self.latency = latency
        self.port = 0
        context = multiprocessing.get_context("spawn")
        self.pipe, self._theirs = context.Pipe()
        self.process = context.Process(
            target=serve, args=(latency, self._theirs), name="bench-smtp", daemon=True
        )

    def __enter__(self) -> ServerProcess:
        try:
            self.process.start()
            self._theirs.close()
            if not self.pipe.poll(WAIT):
                raise RuntimeError(f"the SMTP server process did not start in {WAIT:.0f} s")
            self.port = self.pipe.recv()
        except BaseException:
            self.close()
            raise
        return self

    def stop(self) -> tuple[Counter[str], float]:
        """Stops the server: (messages each address received, its CPU seconds serving)."""
        self.pipe.send("stop")
        if not self.pipe.poll(WAIT):
            raise RuntimeError(f"the SMTP server process did not report in {WAIT:.0f} s")
        received, cpu = self.pipe.recv()
        return Counter(received), cpu

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        self.pipe.close()  # the server reads end-of-file and stops, if it has not yet
        if self.process.pid is None:
            return
        self.process.join(WAIT)
        if self.process.is_alive():
            self.process.kill()
            self.process.join(WAIT)


def check_received(received: Counter[str], count: int) -> None:
    """Every recipient received exactly once, and nobody else."""
    expected = {person.email for person in people(count)}
    twice = sorted(address for address, times in received.items() if times > 1)
    missing = sorted(expected - set(received))
    stray = sorted(set(received) - expected)
    if twice or missing or stray:
        raise RuntimeError(
            f"the server got {received.total()} messages for {count} recipients: "
            f"{len(twice)} twice or more, {len(missing)} missing, {len(stray)} unknown"
        )


# ------------------------------------------------------------------------ the sends


@dataclasses.dataclass
class Run:
    label: str
    connections: int
    seconds: float
    in_ledger: float
    in_rendering: float
    bound: float | None  # messages/s the server can take at most; None: no server
    server_cpu: float | None  # CPU seconds of the server process while it served


def send(folder: Path, count: int, connections: int, latency: float | None, label: str) -> Run:
    """One live run of the whole step; against the slow server, or the instant channel."""
    campaign_path = workspace(folder, count)
    base = load_settings(workspace=folder)
    campaign = load_campaign(campaign_path, base)
    check = check_campaign(campaign, base, now=AT, send_now=True)
    ledger = TimedLedger(f"sqlite:///{folder / 'distribute.db'}")
    rendering_watch = Stopwatch()

    def go(port: int, factory: Callable[[], Channel] | None) -> tuple[float, int]:
        smtp = dataclasses.replace(base.smtp, port=port, connections=connections)
        settings = dataclasses.replace(base, smtp=smtp)
        dispatcher = Dispatcher(settings, ledger, live=True, channel_factory=factory)
        with timed_rendering(rendering_watch):
            start = time.perf_counter()
            report = dispatcher.run(campaign, check, campaign.steps[0])
            seconds = time.perf_counter() - start
        return seconds, report.counts.get("sent", 0)

    server_cpu: float | None = None
    try:
        if latency is None:
            seconds, sent = go(0, Instant)
        else:
            with ServerProcess(latency) as server:
                seconds, sent = go(server.port, None)
                received, server_cpu = server.stop()
            check_received(received, count)
        if sent != count:
            raise RuntimeError(f"the ledger says {sent} sent of {count}")
    finally:
        ledger.close()
    bound = connections / latency if latency else None
    in_rendering = rendering_watch.spent
    return Run(label, connections, seconds, ledger.watch.spent, in_rendering, bound, server_cpu)


def report(runs: list[Run], count: int, latency_ms: float) -> None:
    print()
    print(f"live send of {count:,} messages through Dispatcher (SQLite ledger)")
    print(f"  server: aiosmtpd in its own process, {latency_ms:g} ms before each reply to DATA")
    print(
        f"  {'':<24}{'seconds':>8}{'msg/s':>8}{'bound':>8}{'of bound':>9}"
        f"{'render':>8}{'ledger':>8}{'render':>8}{'ledger':>8}{'server':>8}"
    )
    units = f"{'msg/s':>8}{'':>9}{'ms/msg':>8}{'ms/msg':>8}{'share':>8}{'share':>8}{'CPU':>8}"
    print(f"  {'':<40}{units}")
    for run in runs:
        rate = count / run.seconds
        bound = f"{run.bound:8,.0f}{rate / run.bound:9.0%}" if run.bound else f"{'-':>8}{'-':>9}"
        # Each connection's thread is busy for the whole run: a share is of that time.
        busy = run.seconds * run.connections
        cpu = f"{run.server_cpu / run.seconds:8.0%}" if run.server_cpu else f"{'-':>8}"
        print(
            f"  {run.label:<24}{run.seconds:8.2f}{rate:8,.0f}{bound}"
            f"{run.in_rendering / count * 1e3:8.2f}{run.in_ledger / count * 1e3:8.2f}"
            f"{run.in_rendering / busy:8.0%}{run.in_ledger / busy:8.0%}{cpu}"
        )
    served = [run for run in runs if run.bound]
    instant = next(run for run in runs if not run.bound)
    first, last = served[0], served[-1]
    print(
        f"  {last.connections} connections / {first.connections}: "
        f"{first.seconds / last.seconds:.2f}x the throughput "
        f"(the server would take {last.connections / first.connections:.0f}x)"
    )
    print(
        f"  sender's ceiling (instant channel, 1 connection): {count / instant.seconds:,.0f} msg/s,"
        f" {instant.seconds / count * 1e3:.2f} ms per message"
    )
    print(f"  the server received each of the {count:,} recipients exactly once in every run")
    print(NOTES)


NOTES = """\
  render, ledger ms/msg: wall time inside build_message + message_bytes, and inside
    claim + finish, per message; with several connections it includes the threads'
    waits for the interpreter lock and for SQLite's write lock
  share: of the connections' time (seconds x connections)
  server CPU: the server process's CPU time while serving, over the run's seconds"""


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--recipients", type=int, default=500, help="for the live sends")
    parser.add_argument(
        "--latency-ms", type=float, default=20.0, help="the server's wait per message"
    )
    parser.add_argument("--render", type=int, default=1000, help="messages, the design")
    parser.add_argument("--naive", type=int, default=50, help="messages, premailer each")
    options = parser.parse_args()
    count = options.recipients
    latency = options.latency_ms / 1e3
    if count < 1 or latency <= 0:
        parser.error("--recipients and --latency-ms must be positive")

    with tempfile.TemporaryDirectory() as tmp:
        scratch = Path(tmp) / "render"
        scratch.mkdir()
        workspace(scratch, 1)
        rendering(load_settings(workspace=scratch), options.render, options.naive)

        runs: list[Run] = []
        for label, connections, wait in (
            ("1 connection", 1, latency),
            ("2 connections", 2, latency),
            ("4 connections", 4, latency),
            ("8 connections", 8, latency),
            ("instant channel, 1 conn.", 1, None),
        ):
            folder = Path(tmp) / f"send-{len(runs)}"
            folder.mkdir()
            runs.append(send(folder, count, connections, wait, label))
    report(runs, count, options.latency_ms)


if __name__ == "__main__":
    main()
