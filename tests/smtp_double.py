"""A real SMTP server on loopback (aiosmtpd) that records what it receives and injects faults."""

from __future__ import annotations

import asyncio
import email
import email.policy
import logging
import socket
import ssl
import subprocess
import threading
from collections import Counter
from dataclasses import dataclass, field
from email.message import EmailMessage
from pathlib import Path
from typing import Any

from aiosmtpd.controller import Controller
from aiosmtpd.smtp import AuthResult, LoginPassword

# aiosmtpd logs each client that hangs up mid-session (our TLS refusal, our SIGKILL) with a
# traceback, from its own thread, into whatever stderr a CliRunner has captured at the time.
logging.getLogger("mail.log").setLevel(logging.CRITICAL)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@dataclass
class Received:
    sender: str
    recipients: list[str]
    data: bytes

    @property
    def message(self) -> EmailMessage:
        parsed = email.message_from_bytes(self.data, policy=email.policy.default)
        assert isinstance(parsed, EmailMessage)
        return parsed


@dataclass
class Faults:
    """What the server does wrong: per-address replies, and connection drops."""

    temporary_once: set[str] = field(default_factory=set)  # 451 on the first RCPT only
    permanent: set[str] = field(default_factory=set)  # 550 on every RCPT
    drop_every: int = 0  # drop a connection once it has carried this many messages
    latency: float = 0.0  # seconds before answering each message, as a busy server does


class Handler:
    def __init__(self, faults: Faults):
        self.faults = faults
        self.received: list[Received] = []
        self.refused: Counter[str] = Counter()
        self.lock = threading.Lock()

    async def handle_MAIL(
        self, server: Any, session: Any, envelope: Any, address: str, options: list[str]
    ) -> str:
        carried = getattr(session, "carried", 0)
        if self.faults.drop_every and carried >= self.faults.drop_every:
            # Gone without a word between two messages, as a restarting server is.
            server.transport.close()
            return "421 4.3.2 closing"
        envelope.mail_from = address
        envelope.mail_options.extend(options)
        return "250 OK"

    async def handle_RCPT(
        self, server: Any, session: Any, envelope: Any, address: str, options: list[str]
    ) -> str:
        key = address.lower()
        if key in self.faults.permanent:
            return f"550 5.1.1 <{address}>: mailbox unavailable"
        if key in self.faults.temporary_once and self.refused[key] == 0:
            self.refused[key] += 1
            return "451 4.7.1 greylisted, try again later"
        envelope.rcpt_tos.append(address)
        return "250 OK"

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        if self.faults.latency:
            await asyncio.sleep(self.faults.latency)
        with self.lock:
            self.received.append(
                Received(
                    envelope.mail_from, list(envelope.rcpt_tos), bytes(envelope.original_content)
                )
            )
        session.carried = getattr(session, "carried", 0) + 1
        return "250 2.0.0 queued"

    def per_recipient(self) -> Counter[str]:
        return Counter(r.lower() for item in self.received for r in item.recipients)


class SmtpServer:
    def __init__(
        self,
        faults: Faults | None = None,
        *,
        password: str | None = None,
        starttls: ssl.SSLContext | None = None,
        implicit_tls: ssl.SSLContext | None = None,
    ):
        self.handler = Handler(faults or Faults())
        self.port = free_port()
        self.password = password
        kwargs: dict[str, Any] = {}
        if password is not None:
            kwargs = {"authenticator": self._authenticate}
            # Over plain loopback the test logs in without TLS; with TLS, only after it.
            kwargs["auth_require_tls"] = starttls is not None
        if starttls is not None:
            kwargs.update(tls_context=starttls, require_starttls=True)
        if implicit_tls is not None:
            kwargs.update(ssl_context=implicit_tls)
        self.controller = Controller(
            self.handler,
            hostname="127.0.0.1",
            port=self.port,
            server_hostname="smtp.test",
            **kwargs,
        )

    def _authenticate(
        self, server: Any, session: Any, envelope: Any, mechanism: str, data: Any
    ) -> AuthResult:
        ok = isinstance(data, LoginPassword) and data.password.decode() == self.password
        return AuthResult(success=ok, handled=False)

    def __enter__(self) -> SmtpServer:
        self.controller.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.controller.stop()

    @property
    def received(self) -> list[Received]:
        return self.handler.received


def self_signed(folder: Path) -> tuple[Path, ssl.SSLContext]:
    """A certificate for 127.0.0.1 made with the openssl command; (its file, server context)."""
    cert, key = folder / "cert.pem", folder / "key.pem"
    subprocess.run(
        [
            "openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1",
            "-keyout", str(key), "-out", str(cert), "-subj", "/CN=smtp.test",
            "-addext", "subjectAltName=IP:127.0.0.1,DNS:localhost",
        ],
        check=True,
        capture_output=True,
    )  # fmt: skip
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(cert, key)
    return cert, context
