"""The SMTP channel: many messages per connection, each transaction classified precisely.

A message is in one of two phases when something goes wrong. Before the server has seen
its content (MAIL, RCPT, the DATA command), nothing was delivered: a dropped connection
is reconnected and the message sent again. Once the content is on the wire and the
final reply has not arrived, the server may or may not have accepted it (RFC 5321
section 4.1.1.4 puts the commitment at the reply to the final dot), so the message is
``uncertain`` and never resent automatically.
"""

from __future__ import annotations

import base64
import contextlib
import ipaddress
import re
import smtplib
import ssl
from collections.abc import Callable

from distribute.channels.base import Aside, Channel, Envelope, Outcome
from distribute.config import SMTP_PASSWORD_ENV, SmtpSettings
from distribute.errors import ConfigError, SmtpError
from distribute.headers import has_bare_line_ending

Connector = Callable[[], smtplib.SMTP]
_LINE_ENDING = re.compile(rb"\r\n|\r|\n")
# What smtplib.quoteaddr writes as "<address>" without a doubt. Its parser
# (email.utils.parseaddr, stricter and slower again where CVE-2023-27043 is fixed) cost more
# than the rest of a RCPT command once per message, on the path between two messages.
_PLAIN_ADDRESS = re.compile(r"[A-Za-z0-9._+-]+@[A-Za-z0-9.-]+")


def is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def _reply(code: int, message: bytes | str) -> str:
    text = message.decode("utf-8", "replace") if isinstance(message, bytes) else message
    return f"{code} {' '.join(text.split())}".strip()


def _classify(code: int, message: bytes | str) -> Outcome:
    text = _reply(code, message)
    if 200 <= code < 300:
        return Outcome("sent", code, text)
    if 400 <= code < 500:
        return Outcome("retry", code, text)
    return Outcome("failed", code, text)


class _Disconnected(Exception):
    """The connection went away before the message content was sent."""


class SmtpChannel(Channel):
    live = True

    def __init__(
        self,
        settings: SmtpSettings,
        password: str | None,
        *,
        connector: Connector | None = None,
    ):
        if (
            settings.security == "none"
            and not is_loopback(settings.host)
            and not settings.allow_insecure
        ):
            raise ConfigError(
                f"[smtp] security = 'none' sends passwords and releases in clear text to "
                f"{settings.host}; use starttls or tls, or set allow_insecure = true"
            )
        if settings.username and not password:
            raise ConfigError(
                f"[smtp] username is set but {SMTP_PASSWORD_ENV} is not in the environment"
            )
        self.settings = settings
        self._password = password
        self._connector = connector
        self._conn: smtplib.SMTP | None = None
        # The sender of a MAIL FROM written by ``prepare`` whose reply is not read yet.
        self._mail_from: str | None = None

    @property
    def where(self) -> str:
        return f"{self.settings.host}:{self.settings.port}"

    def _tls(self) -> ssl.SSLContext:
        # Certificates and host names are always verified; a relay with an in-house
        # authority is trusted through [smtp] ca_file, never by switching checks off.
        cafile = str(self.settings.ca_file) if self.settings.ca_file else None
        return ssl.create_default_context(cafile=cafile)

    def _new_connection(self) -> smtplib.SMTP:
        if self._connector is not None:
            return self._connector()
        s = self.settings
        if s.security == "tls":
            return smtplib.SMTP_SSL(s.host, s.port, timeout=s.timeout, context=self._tls())
        return smtplib.SMTP(s.host, s.port, timeout=s.timeout)

    def open(self) -> None:
        if self._conn is not None:
            return
        s = self.settings
        conn: smtplib.SMTP | None = None
        try:
            conn = self._new_connection()
            conn.ehlo()
            if s.security == "starttls":
                if not conn.has_extn("starttls"):
                    raise SmtpError(
                        f"{self.where} does not offer STARTTLS; set [smtp] security to tls "
                        "or ask the mail administrator"
                    )
                conn.starttls(context=self._tls())
                conn.ehlo()
            if s.username:
                self._login(conn, s.username, self._password or "")
        except smtplib.SMTPAuthenticationError as exc:
            _quiet_close(conn)
            raise SmtpError(
                f"{self.where} refused the login for user {s.username!r}: "
                f"{_reply(exc.smtp_code, exc.smtp_error)}; check [smtp] username and "
                f"{SMTP_PASSWORD_ENV}"
            ) from None
        except SmtpError:
            _quiet_close(conn)
            raise
        except (OSError, smtplib.SMTPException) as exc:
            _quiet_close(conn)
            reason = exc.strerror if isinstance(exc, OSError) and exc.strerror else str(exc)
            raise SmtpError(f"cannot connect to the SMTP server {self.where}: {reason}") from None
        self._conn = conn

    def _login(self, conn: smtplib.SMTP, username: str, password: str) -> None:
        if not conn.has_extn("auth"):
            raise SmtpError(
                f"{self.where} does not offer AUTH (login) on this connection; "
                + (
                    "use security = starttls or tls, as servers offer AUTH only over TLS"
                    if self.settings.security == "none"
                    else "check [smtp] host and port (the submission port is usually 587)"
                )
            )
        if username.isascii() and password.isascii():
            conn.login(username, password)
            return
        # smtplib encodes credentials as ASCII; RFC 4616 PLAIN carries UTF-8, so send it
        # ourselves rather than refuse a password with an accent.
        if "plain" not in conn.esmtp_features.get("auth", "").lower().split():
            raise SmtpError(
                f"{self.where} offers no AUTH PLAIN, the only way to send a user name or "
                "password with non-ASCII characters"
            )
        token = b"\0" + username.encode("utf-8") + b"\0" + password.encode("utf-8")
        code, reply = conn.docmd("AUTH", "PLAIN " + base64.b64encode(token).decode("ascii"))
        if code != 235:
            raise smtplib.SMTPAuthenticationError(code, reply)

    def prepare(self, sender: str) -> None:
        # Only for what ``_transaction`` would write the same way: an ASCII sender and no
        # options (SMTPUTF8 depends on the recipient, not known yet).
        if self._conn is None or self._mail_from is not None or not sender.isascii():
            return
        try:
            self._conn.putcmd("mail", f"FROM:{_quoted(sender)}")
        except (OSError, smtplib.SMTPException):
            _quiet_close(self._conn)
            self._conn = None
            return
        self._mail_from = sender

    def cancel(self) -> None:
        if self._mail_from is None:
            return
        self._mail_from = None
        conn = self._conn
        if conn is None:
            return
        try:
            conn.getreply()  # whatever MAIL got, RSET ends it
        except (OSError, smtplib.SMTPException):
            _quiet_close(conn)
            self._conn = None
            return
        self._reset()

    def close(self) -> None:
        self.cancel()
        conn, self._conn = self._conn, None
        if conn is not None:
            try:
                conn.quit()
            except (OSError, smtplib.SMTPException):
                _quiet_close(conn)

    def deliver(self, envelope: Envelope, meanwhile: Aside | None = None) -> Outcome:
        if self._mail_from is not None and (
            self._mail_from != envelope.sender or not envelope.recipient.isascii()
        ):
            self.cancel()  # not the MAIL FROM this message needs: start again
        for attempt in (1, 2):
            self.open()
            try:
                return self._transaction(envelope, meanwhile)
            except _Disconnected as exc:
                _quiet_close(self._conn)
                self._conn = None
                self._mail_from = None
                if attempt == 2:
                    raise SmtpError(
                        f"lost the connection to {self.where} twice in a row: {exc}"
                    ) from None
        raise AssertionError("unreachable")

    def _transaction(self, envelope: Envelope, meanwhile: Aside | None) -> Outcome:
        conn = self._conn
        assert conn is not None
        options: list[str] = []
        if not envelope.recipient.isascii():
            # RFC 6531: internationalised addresses need the server's SMTPUTF8 support.
            if not conn.has_extn("smtputf8"):
                return Outcome("failed", None, f"{self.where} does not accept non-ASCII addresses")
            options = ["SMTPUTF8", "BODY=8BITMIME"]
        prepared, self._mail_from = self._mail_from is not None, None
        try:
            if prepared:
                code, message = conn.getreply()  # to the MAIL FROM ``prepare`` wrote
            else:
                code, message = conn.mail(envelope.sender, options)
            if code != 250:
                return self._refused(code, message)
            # smtplib's rcpt(), with the address quoted as it quotes it.
            conn.putcmd("rcpt", f"TO:{_quoted(envelope.recipient)}")
            code, message = conn.getreply()
            if code not in (250, 251):
                return self._refused(code, message)
            conn.putcmd("data")
            code, message = conn.getreply()
            if code != 354:
                return self._refused(code, message)
        except (smtplib.SMTPServerDisconnected, OSError) as exc:
            raise _Disconnected(str(exc) or type(exc).__name__) from None
        # From here on the server may have accepted the message whatever happens next.
        try:
            conn.send(_dot_stuffed(envelope.data))
            if meanwhile is not None:
                # The server works on the message now: the caller's next one is built in
                # that time instead of after the reply. Aside keeps what it raises.
                meanwhile()
            code, message = conn.getreply()
        except (TimeoutError, smtplib.SMTPServerDisconnected, OSError) as exc:
            _quiet_close(conn)
            self._conn = None
            return Outcome("uncertain", None, f"connection lost before the server confirmed: {exc}")
        outcome = _classify(code, message)
        if outcome.state != "sent":
            self._reset()
        return outcome

    def _refused(self, code: int, message: bytes) -> Outcome:
        if code == 421:
            # The server is closing the channel (RFC 5321 section 3.8), whoever the message
            # is for: not a verdict on this recipient, so reconnect and send it again.
            raise _Disconnected(_reply(code, message))
        self._reset()
        return _classify(code, message)

    def _reset(self) -> None:
        if self._conn is None:
            return
        try:
            self._conn.rset()
        except (OSError, smtplib.SMTPException):
            _quiet_close(self._conn)
            self._conn = None


def _quoted(address: str) -> str:
    """``smtplib.quoteaddr(address)``, without its parser for a plain address."""
    if _PLAIN_ADDRESS.fullmatch(address):
        return f"<{address}>"
    return smtplib.quoteaddr(address)


def _dot_stuffed(data: bytes) -> bytes:
    """RFC 5321 section 4.5.2: a line starting with '.' gets another, then CRLF.CRLF ends.

    Every line ending becomes CRLF first, as smtplib's ``sendmail`` does: servers that also
    end lines at a bare LF would otherwise read "LF.CRLF" (or "LF.LF") as the end of the
    data, and what follows as commands of their own (SMTP smuggling, CVE-2023-51764).
    """
    if has_bare_line_ending(data):
        data = _LINE_ENDING.sub(b"\r\n", data)
    # CRLF only from here: a line starts after CRLF, so stuffing is one replacement.
    if data.endswith(b"\r\n"):
        data = data[:-2]
    body = data.replace(b"\r\n.", b"\r\n..")
    if body.startswith(b"."):
        body = b"." + body
    return body + b"\r\n.\r\n"


def _quiet_close(conn: smtplib.SMTP | None) -> None:
    if conn is None:
        return
    with contextlib.suppress(OSError):
        conn.close()
