"""Settings: ``distribute.toml`` in the workspace, plus secrets from the environment.

The file holds nothing secret. Passwords and tokens are read from environment variables
at the moment a channel needs them (see :func:`secret`), so they can never end up in the
state database, the outbox, a log line or an error message.
"""

from __future__ import annotations

import math
import os
import re
import tomllib
from dataclasses import dataclass, field
from email.headerregistry import Address
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from distribute.errors import ConfigError
from distribute.headers import header_text_problem
from distribute.textfile import long_number_line

CONFIG_NAME = "distribute.toml"
SMTP_PASSWORD_ENV = "DISTRIBUTE_SMTP_PASSWORD"  # noqa: S105 (a variable name)
# The four OAuth 1.0a user-context values of the X app, in the order tweepy takes them.
X_CREDENTIALS = ("X_API_KEY", "X_API_SECRET", "X_ACCESS_TOKEN", "X_ACCESS_TOKEN_SECRET")

DEFAULT_FROM = "Press Office <press@example.org>"
# A display name longer than this is a mistake, and would push header lines past 998 octets.
MAX_NAME = 200
DEFAULT_TIMEZONE = "Europe/Paris"
# Seconds: the longest timeout or first retry delay that still means something (an hour),
# and the most retries, so the doubling delay stays within days, not centuries.
MAX_SECONDS = 3600
MAX_RETRIES = 10
# More SMTP connections than this is a typo, not a plan: each one is a thread and a socket.
MAX_CONNECTIONS = 100
MAX_INTEGER = 2**53


@dataclass(frozen=True)
class Sender:
    name: str
    address: str
    reply_to: str | None = None

    @property
    def domain(self) -> str:
        return self.address.rpartition("@")[2]

    @property
    def mailbox(self) -> tuple[str, str]:
        """(name, address), as the From header carries them."""
        return self.name, self.address


@dataclass(frozen=True)
class Unsubscribe:
    mailto: str
    url: str | None = None


@dataclass(frozen=True)
class SmtpSettings:
    host: str = "localhost"
    port: int = 587
    security: str = "starttls"
    username: str | None = None
    connections: int = 4
    rate: float | None = None
    timeout: float = 30.0
    allow_insecure: bool = False
    max_retries: int = 3
    retry_delay: float = 30.0
    ca_file: Path | None = None


X_API_URL = "https://api.x.com"


@dataclass(frozen=True)
class XSettings:
    account: str = "@IMTFrance"
    # Every X call goes to this base URL (staging, or a test double on loopback).
    api_url: str = X_API_URL
    timeout: float = 30.0


@dataclass(frozen=True)
class Settings:
    workspace: Path
    sender: Sender
    unsubscribe: Unsubscribe
    smtp: SmtpSettings = field(default_factory=SmtpSettings)
    x: XSettings = field(default_factory=XSettings)
    state_url: str | None = None
    timezone: str = DEFAULT_TIMEZONE
    templates: Path | None = None
    recipients: Path | None = None
    source: Path | None = None

    @property
    def zone(self) -> ZoneInfo:
        return ZoneInfo(self.timezone)

    @property
    def database_url(self) -> str:
        """The ledger's SQLAlchemy URL: ``[state] url``, else a SQLite file in the workspace."""
        if self.state_url:
            return self.state_url
        return f"sqlite:///{self.workspace / 'distribute.db'}"


_SECTIONS: dict[str, set[str]] = {
    "": {"sender", "unsubscribe", "smtp", "state", "x", "paths", "timezone"},
    "sender": {"from", "reply_to"},
    "unsubscribe": {"mailto", "url"},
    "smtp": {
        "host",
        "port",
        "security",
        "username",
        "connections",
        "rate",
        "timeout",
        "allow_insecure",
        "max_retries",
        "retry_delay",
        "ca_file",
    },
    "state": {"url"},
    "x": {"account", "api_url", "timeout"},
    "paths": {"templates", "recipients"},
}


# "Name <address>", the name bare or in double quotes, or an address alone: nothing else.
MAILBOX = re.compile(
    r"""\s*(?:
        (?P<name>"(?:[^"\\]|\\.)*"|[^"<>]*?)\s*<(?P<inner>[^<>]*)>
        |(?P<bare>[^<>]*)
    )\s*""",
    re.VERBOSE,
)
# RFC 5322 specials that end a bare display name or an address's parts (section 3.2.3).
SPECIALS = re.compile(r'[()<>\[\]:;@\\,"\s]')


def parse_mailbox(value: str, *, path: Path | None, key: str) -> tuple[str, str]:
    """Split ``"Name <address>"`` into (name, address) and check both.

    The value must be exactly one mailbox with nothing left over: ``parseaddr`` reads
    ``press@example.org <other@example.net>`` as the first address and drops the rest, so
    the strict form is matched here. The name goes into every message's From header, so it
    may hold no RFC 2047 encoded text and no control or line-separator character. The
    sender's own addresses must be ASCII: an internationalised domain is written in its
    ASCII (punycode) form, and a local part outside ASCII is refused (it would need SMTPUTF8
    from every journalist's server).
    """
    if any(ch in value for ch in "\r\n"):
        raise ConfigError(f"{key}: line breaks are not allowed in an address", path=path)
    match = MAILBOX.fullmatch(value)
    shape = f"{key}: {value!r} is not an email address"
    if match is None:
        raise ConfigError(shape, path=path)
    name, address = match.group("name") or "", match.group("inner") or match.group("bare")
    quoted = name.startswith('"')
    if quoted:
        name = re.sub(r"\\(.)", r"\1", name[1:-1])
    name = name.strip()
    problem = header_text_problem(name)
    if problem:
        raise ConfigError(f"{key}: the name {name!r} {problem}", path=path)
    name = " ".join(name.split())
    if not quoted and SPECIALS.search(name.replace(" ", "")):
        raise ConfigError(
            f"{key}: {value!r} is not one email address: a name holding any of "
            '( ) < > [ ] : ; @ \\ , goes in double quotes, like "Press, Valmont" <p@example.org>',
            path=path,
        )
    address = address.strip()
    local, _, domain = address.rpartition("@")
    if not local or not domain or SPECIALS.search(local) or SPECIALS.search(domain):
        raise ConfigError(shape, path=path)
    if not local.isascii():
        raise ConfigError(
            f"{key}: {address!r} has non-ASCII characters before the @; "
            "use an ASCII address for sending",
            path=path,
        )
    try:
        domain = domain.encode("idna").decode("ascii")
    except UnicodeError:
        raise ConfigError(f"{key}: {domain!r} is not a valid domain name", path=path) from None
    return name, f"{local}@{domain}"


# RFC 3986 section 2: what a URL may hold; "{email}" is replaced by the address.
_URL_CHARACTERS = re.compile(r"[A-Za-z0-9\-._~:/?#\[\]@!$&'()*+,;=%]")
# With a 254-octet address percent-encoded, the header line stays under 998 octets.
MAX_UNSUBSCRIBE_URL = 500


def _check_unsubscribe_url(url: str, path: Path | None) -> None:
    """The URL is written between < > in every List-Unsubscribe header (RFC 2369)."""
    if len(url) > MAX_UNSUBSCRIBE_URL:
        raise ConfigError(
            f"[unsubscribe] url is {len(url)} characters long; keep it under {MAX_UNSUBSCRIBE_URL}",
            path=path,
        )
    for char in url.replace("{email}", ""):
        if char in "{}":
            raise ConfigError(
                "[unsubscribe] url: '{' and '}' are not allowed in a URL except in {email}",
                path=path,
            )
        if not _URL_CHARACTERS.fullmatch(char):
            raise ConfigError(
                f"[unsubscribe] url: {char!r} is not allowed in a URL (percent-encode it)",
                path=path,
            )


def _check_keys(data: dict[str, Any], section: str, path: Path) -> None:
    allowed = _SECTIONS[section]
    for key in data:
        if key in {"password", "token", "secret", "api_key"} or key.endswith(("_secret", "_token")):
            where = (
                f"X's keys go in {', '.join(X_CREDENTIALS)}"
                if section == "x"
                else f"the SMTP password goes in {SMTP_PASSWORD_ENV}"
            )
            raise ConfigError(
                f"[{section}] {key}: secrets are never read from this file; set them in the "
                f"environment ({where})",
                path=path,
                line=_line_of(path, section, key),
            )
        if key not in allowed:
            where = f"[{section}] " if section else ""
            home = [f"[{name}]" for name, keys in _SECTIONS.items() if name and key in keys]
            hint = f"; {key!r} goes in {' or '.join(home)}" if home else ""
            raise ConfigError(
                f"unknown setting {where}{key!r} (known: {', '.join(sorted(allowed))}){hint}",
                path=path,
                line=_line_of(path, section, key),
            )


def _line_of(path: Path, section: str, key: str) -> int | None:
    """The line of ``key`` in table ``section`` of a TOML file (tomllib gives no positions)."""
    try:
        lines = path.read_text(encoding="utf-8").split("\n")
    except (OSError, UnicodeDecodeError):
        return None
    current = ""
    for number, line in enumerate(lines, start=1):
        header = re.match(r"^\s*\[\s*([\w.-]+)\s*\]", line)
        if header:
            current = header.group(1)
            if current == f"{section}.{key}" or (not section and current.split(".")[0] == key):
                return number  # an unknown table: [smpt], [smtp.tls]
            continue
        assignment = re.match(r"^\s*[\"']?([\w.-]+?)[\"']?\s*=", line)
        if assignment is None:
            continue
        dotted = ".".join(part for part in (current, assignment.group(1)) if part)
        if dotted == f"{section}.{key}" if section else dotted.split(".")[0] == key:
            return number
    return None


def _typed(data: dict[str, Any], key: str, kind: type | tuple[type, ...], path: Path) -> Any:
    value = data.get(key)
    if isinstance(value, float) and not math.isfinite(value):
        # TOML allows nan and inf; no setting here means anything with them.
        raise ConfigError(f"{key} must be a finite number, not {value}", path=path)
    wrong = value is not None and not isinstance(value, kind)
    if wrong or (isinstance(value, bool) and kind is int):
        raise ConfigError(f"{key} has the wrong type ({type(value).__name__})", path=path)
    if isinstance(value, int) and not isinstance(value, bool) and abs(value) > MAX_INTEGER:
        # Past this, an int no longer converts to float exactly, or at all (OverflowError).
        line = next(
            (
                number
                for number, text in enumerate(path.read_text("utf-8").split("\n"), start=1)
                if re.match(rf"\s*{re.escape(key)}\s*=\s*[-+]?\d[\d_]{{15,}}", text)
            ),
            None,
        )
        raise ConfigError(f"{key} is too large a number", path=path, line=line)
    return value


def load_settings(config: Path | None = None, *, workspace: Path | None = None) -> Settings:
    """Read ``distribute.toml`` (``config`` or the one in ``workspace``), defaults where absent."""
    if config is not None:
        if not config.is_file():
            raise ConfigError("configuration file not found", path=config)
        path: Path | None = config
        workspace = config.resolve().parent
    else:
        workspace = (workspace or Path.cwd()).resolve()
        candidate = workspace / CONFIG_NAME
        path = candidate if candidate.is_file() else None
    data: dict[str, Any] = {}
    if path is not None:
        try:
            data = tomllib.loads(path.read_text(encoding="utf-8"))
        except (OSError, UnicodeDecodeError) as exc:
            raise ConfigError(f"cannot read the configuration: {exc}", path=path) from None
        except tomllib.TOMLDecodeError as exc:
            raise ConfigError(f"invalid TOML: {exc}", path=path) from None
        except ValueError:
            text = path.read_text(encoding="utf-8")
            raise ConfigError(
                "invalid TOML: a number too long to read", path=path, line=long_number_line(text)
            ) from None
    try:
        return _build(data, workspace, path)
    except ConfigError as exc:
        # A check that names its setting ("[smtp] timeout must be ...") but not its line:
        # find the line, so every settings error points at what to change.
        named = re.match(r"\[([\w.-]+)\] ([\w-]+)", exc.message)
        if exc.line is None and path is not None and named and exc.path == path:
            exc.line = _line_of(path, named.group(1), named.group(2))
            exc.args = (exc.format(),)
        raise


def _build(data: dict[str, Any], workspace: Path, path: Path | None) -> Settings:
    where = path or workspace / CONFIG_NAME
    _check_keys(data, "", where)
    tables: dict[str, dict[str, Any]] = {}
    for section in _SECTIONS[""] - {"timezone"}:
        table = data.get(section, {})
        if not isinstance(table, dict):
            raise ConfigError(f"{section} must be a table ([{section}])", path=where)
        _check_keys(table, section, where)
        tables[section] = table

    sender_t = tables["sender"]
    name, address = parse_mailbox(
        _typed(sender_t, "from", str, where) or DEFAULT_FROM, path=path, key="[sender] from"
    )
    reply_to = _typed(sender_t, "reply_to", str, where)
    if reply_to:
        # Written back in canonical form: the domain in ASCII, the name quoted as needed.
        reply_name, reply_address = parse_mailbox(reply_to, path=path, key="[sender] reply_to")
        reply_to = str(Address(display_name=reply_name, addr_spec=reply_address))
    if len(name) > MAX_NAME:
        raise ConfigError(
            f"[sender] from: the name is {len(name)} characters long; keep it under {MAX_NAME}",
            path=where,
        )
    sender = Sender(name=name or address, address=address, reply_to=reply_to)

    unsub_t = tables["unsubscribe"]
    mailto = _typed(unsub_t, "mailto", str, where)
    if mailto:
        mailto = parse_mailbox(mailto, path=where, key="[unsubscribe] mailto")[1]
    url = _typed(unsub_t, "url", str, where)
    # The URL goes verbatim into the List-Unsubscribe header of every message.
    if url and (not url.startswith("https://") or not url.isascii() or re.search(r"\s", url)):
        raise ConfigError(
            "[unsubscribe] url must be an https:// address without spaces or non-ASCII "
            "characters (percent-encode them)",
            path=where,
        )
    if url:
        _check_unsubscribe_url(url, where)

    smtp_t = tables["smtp"]
    defaults = SmtpSettings()
    security = _typed(smtp_t, "security", str, where) or defaults.security
    if security not in {"starttls", "tls", "none"}:
        raise ConfigError(
            f"[smtp] security must be starttls, tls or none, not {security!r}", path=where
        )
    port = _typed(smtp_t, "port", int, where)
    if port is None:
        port = 465 if security == "tls" else defaults.port
    if not 0 < port < 65536:
        raise ConfigError(f"[smtp] port {port} is not a TCP port", path=where)
    connections = _typed(smtp_t, "connections", int, where)
    connections = defaults.connections if connections is None else connections
    if connections < 1:
        raise ConfigError("[smtp] connections must be at least 1", path=where)
    _at_most(connections, MAX_CONNECTIONS, "smtp", "connections", where)
    timeout = _typed(smtp_t, "timeout", (int, float), where)
    if timeout is not None and timeout <= 0:
        raise ConfigError("[smtp] timeout must be a positive number of seconds", path=where)
    _at_most(timeout, MAX_SECONDS, "smtp", "timeout", where)
    retry_delay = _typed(smtp_t, "retry_delay", (int, float), where)
    if retry_delay is not None and retry_delay < 0:
        raise ConfigError("[smtp] retry_delay cannot be negative", path=where)
    _at_most(retry_delay, MAX_SECONDS, "smtp", "retry_delay", where)
    rate = _typed(smtp_t, "rate", (int, float), where)
    if rate is not None and rate <= 0:
        raise ConfigError(
            "[smtp] rate must be a positive number of messages per second", path=where
        )
    if rate is not None and rate < 1 / MAX_SECONDS:
        raise ConfigError(
            f"[smtp] rate must be at least one message an hour (1/{MAX_SECONDS}), not {rate:g}",
            path=where,
            line=_line_of(where, "smtp", "rate"),
        )
    retries = _typed(smtp_t, "max_retries", int, where)
    if retries is not None and retries < 0:
        raise ConfigError("[smtp] max_retries cannot be negative", path=where)
    _at_most(retries, MAX_RETRIES, "smtp", "max_retries", where)
    smtp = SmtpSettings(
        host=_typed(smtp_t, "host", str, where) or defaults.host,
        port=port,
        security=security,
        username=_typed(smtp_t, "username", str, where),
        connections=connections,
        rate=float(rate) if rate is not None else None,
        timeout=defaults.timeout if timeout is None else float(timeout),
        allow_insecure=bool(_typed(smtp_t, "allow_insecure", bool, where)),
        max_retries=defaults.max_retries if retries is None else retries,
        retry_delay=defaults.retry_delay if retry_delay is None else float(retry_delay),
        ca_file=_ca_file(_typed(smtp_t, "ca_file", str, where), workspace, where),
    )

    timezone = _typed(data, "timezone", str, where) or DEFAULT_TIMEZONE
    try:
        ZoneInfo(timezone)
    except (ZoneInfoNotFoundError, ValueError):
        raise ConfigError(f"unknown time zone {timezone!r}", path=where) from None

    paths_t = tables["paths"]
    templates = _typed(paths_t, "templates", str, where)
    if templates and not (workspace / templates).is_dir():
        # Without it, the bundled templates would be used in silence instead of the office's.
        folder = str(workspace / templates)
        raise ConfigError(
            f"[paths] templates: {folder!r} is not a folder",
            path=where,
            line=_line_of(where, "paths", "templates"),
        )
    recipients = _typed(paths_t, "recipients", str, where)
    return Settings(
        workspace=workspace,
        sender=sender,
        unsubscribe=Unsubscribe(mailto=mailto or address, url=url),
        smtp=smtp,
        x=_x_settings(tables["x"], where),
        state_url=_typed(tables["state"], "url", str, where),
        timezone=timezone,
        templates=workspace / templates if templates else None,
        recipients=workspace / recipients if recipients else None,
        source=path,
    )


def _x_settings(table: dict[str, Any], where: Path) -> XSettings:
    defaults = XSettings()
    account = _typed(table, "account", str, where) or defaults.account
    api_url = (_typed(table, "api_url", str, where) or defaults.api_url).rstrip("/")
    problem = api_url_problem(api_url)
    if problem:
        raise ConfigError(f"[x] api_url: {problem}", path=where)
    timeout = _typed(table, "timeout", (int, float), where)
    if timeout is not None and timeout <= 0:
        raise ConfigError("[x] timeout must be a positive number of seconds", path=where)
    _at_most(timeout, MAX_SECONDS, "x", "timeout", where)
    return XSettings(
        account=account,
        api_url=api_url,
        timeout=defaults.timeout if timeout is None else float(timeout),
    )


LOOPBACK = {"localhost", "127.0.0.1", "::1"}


def api_url_problem(url: str) -> str | None:
    """Why ``url`` cannot be the base of the X API: OAuth 1.0a signs but does not encrypt,
    so the tokens' requests travel in clear over http; that is allowed only on loopback."""
    parts = urlsplit(url)
    if parts.scheme not in {"https", "http"} or not parts.hostname:
        return f"{url!r} is not an http(s) address"
    if parts.query or parts.fragment or parts.username or parts.password:
        return f"{url!r} must be a plain base URL (no credentials, query or fragment)"
    if parts.scheme == "http" and parts.hostname not in LOOPBACK:
        return f"{url!r}: plain http is allowed only for loopback (127.0.0.1); use https"
    return None


def _at_most(value: float | None, limit: float, section: str, key: str, where: Path) -> None:
    """Refuse a number the clock or the sockets cannot take (``timeout = 1e300`` overflows
    the socket's timeout; a retry delay doubling from it overflows a datetime)."""
    if value is not None and value > limit:
        raise ConfigError(
            f"[{section}] {key} must be at most {limit:g}, not {value:g}",
            path=where,
            line=_line_of(where, section, key),
        )


def _ca_file(value: str | None, workspace: Path, where: Path) -> Path | None:
    """Certificates to trust besides the system's, for a relay with an in-house authority."""
    if not value:
        return None
    path = workspace / value
    if not path.is_file():
        raise ConfigError(f"[smtp] ca_file {value!r} not found", path=where)
    return path


def secret(name: str) -> str | None:
    """A secret from the environment; never stored in settings, so it cannot leak from them."""
    value = os.environ.get(name)
    return value or None


def bundled(name: str) -> Path:
    """A folder shipped with distribute (``templates``, ``recipients``, ``releases``).

    A wheel carries them inside the package; a source checkout has them at the top.
    """
    here = Path(__file__).resolve().parent
    for candidate in (here / "_bundled" / name, here.parent / name):
        if candidate.is_dir():
            return candidate
    raise ConfigError(f"the bundled {name!r} folder is missing from this installation")
