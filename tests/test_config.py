from __future__ import annotations

import re
from pathlib import Path

import pytest

from distribute.config import bundled, load_settings
from distribute.errors import ConfigError


def write(workspace: Path, text: str) -> Path:
    path = workspace / "distribute.toml"
    path.write_text(text, encoding="utf-8")
    return path


def test_defaults_without_a_file(workspace: Path) -> None:
    settings = load_settings(workspace=workspace)
    assert settings.sender.address == "press@example.org"
    assert settings.unsubscribe.mailto == "press@example.org"
    assert settings.unsubscribe.url is None
    assert settings.database_url == f"sqlite:///{workspace / 'distribute.db'}"
    assert settings.smtp.security == "starttls" and settings.smtp.port == 587


def test_values_are_read(workspace: Path) -> None:
    write(
        workspace,
        '[sender]\nfrom = "Valmont Press <press@example.org>"\nreply_to = "c@example.org"\n'
        '[smtp]\nhost = "mail.example.org"\nsecurity = "tls"\nconnections = 2\nrate = 5\n'
        '[state]\nurl = "postgresql://db.example.org/distribute"\n',
    )
    settings = load_settings(workspace=workspace)
    assert settings.sender.name == "Valmont Press"
    assert settings.sender.reply_to == "c@example.org"
    assert settings.smtp.port == 465
    assert settings.smtp.rate == 5.0
    assert settings.database_url == "postgresql://db.example.org/distribute"


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("[sendr]\n", "unknown setting 'sendr'"),
        ("[smtp]\nsecurity = 'ssl'\n", "security must be starttls, tls or none"),
        ("[smtp]\nport = 'x'\n", "port has the wrong type"),
        ("[unsubscribe]\nurl = 'http://x.example.org'\n", "url must be an https:// address"),
        ("[sender\n", "invalid TOML"),
        ("timezone = 'Mars/Olympus'\n", "unknown time zone"),
        ("[smtp]\npassword = 'secret'\n", "[smtp] password: secrets are never read from this file"),
        ("[smtp]\ntimeout = -5\n", "[smtp] timeout must be a positive number of seconds"),
        ("[smtp]\ntimeout = 0\n", "[smtp] timeout must be a positive number of seconds"),
        ("[smtp]\nconnections = 0\n", "[smtp] connections must be at least 1"),
        ("[smtp]\nport = 70000\n", "[smtp] port 70000 is not a TCP port"),
        ("[smtp]\nmax_retries = -1\n", "[smtp] max_retries cannot be negative"),
        (
            '[unsubscribe]\nmailto = "u@example.org\\r\\nBcc: x@y.z"\n',
            "line breaks are not allowed",
        ),
        ("[unsubscribe]\nmailto = 'nobody'\n", "[unsubscribe] mailto: 'nobody' is not an email"),
        (
            '[unsubscribe]\nurl = "https://x.example.org/?e={email}\\r\\nBcc: x"\n',
            "[unsubscribe] url must be an https:// address without spaces",
        ),
        ("[sender]\nfrom = 'Presse <présse@example.org>'\n", "has non-ASCII characters before"),
        ("[smtp]\ntimeout = nan\n", "timeout must be a finite number, not nan"),
        ("[smtp]\nrate = inf\n", "rate must be a finite number, not inf"),
        ("[smtp]\nretry_delay = inf\n", "retry_delay must be a finite number, not inf"),
        (f"[sender]\nfrom = '{'N' * 201} <p@example.org>'\n", "keep it under 200"),
        (
            "[unsubscribe]\nurl = 'https://x.example.org/?e={{email}}'\n",
            "[unsubscribe] url: '{' and '}' are not allowed in a URL except in {email}",
        ),
        (
            "[unsubscribe]\nurl = 'https://x.example.org/?e={email}>,<https://evil.example'\n",
            "[unsubscribe] url: '>' is not allowed in a URL (percent-encode it)",
        ),
        (
            f"[unsubscribe]\nurl = 'https://x.example.org/{'a' * 600}?e={{email}}'\n",
            "[unsubscribe] url is 632 characters long; keep it under 500",
        ),
    ],
    ids=[
        "unknown-section",
        "bad-security",
        "bad-type",
        "http-unsubscribe",
        "toml",
        "zone",
        "pw",
        "negative-timeout",
        "zero-timeout",
        "no-connections",
        "bad-port",
        "negative-retries",
        "crlf-mailto",
        "bad-mailto",
        "crlf-url",
        "non-ascii-local-part",
        "nan-timeout",
        "infinite-rate",
        "infinite-retry-delay",
        "long-sender-name",
        "jinja-braces-url",
        "angle-url",
        "long-url",
    ],
)
def test_bad_settings(workspace: Path, text: str, message: str) -> None:
    write(workspace, text)
    with pytest.raises(ConfigError, match=re.escape(message)):
        load_settings(workspace=workspace)


def test_explicit_config_missing(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="configuration file not found"):
        load_settings(tmp_path / "nope.toml")


def test_bundled_folders_exist() -> None:
    for name in ("templates", "releases", "recipients"):
        assert bundled(name).is_dir()


def test_internationalised_sender_domain_becomes_punycode(workspace: Path) -> None:
    write(workspace, "[sender]\nfrom = 'Presse <presse@exämple.org>'\n")
    settings = load_settings(workspace=workspace)
    assert settings.sender.address == "presse@xn--exmple-cua.org"
    assert settings.unsubscribe.mailto == "presse@xn--exmple-cua.org"


def test_zero_retry_delay_is_kept(workspace: Path) -> None:
    write(workspace, "[smtp]\nretry_delay = 0\nmax_retries = 0\n")
    settings = load_settings(workspace=workspace)
    assert settings.smtp.retry_delay == 0.0
    assert settings.smtp.max_retries == 0


@pytest.mark.parametrize(
    ("value", "message"),
    [
        (
            "press@example.org <other@evil.example>",
            "[sender] from: 'press@example.org <other@evil.example>' is not one email address: "
            "a name holding any of ( ) < > [ ] : ; @ \\ , goes in double quotes",
        ),
        (
            "Press\\u2028Office <press@example.org>",
            "[sender] from: the name 'Press\\u2028Office' holds U+2028, a control or "
            "line-separator character",
        ),
        (
            "=?utf-8?q?Press=0D=0ABcc:_x@evil.example?= <press@example.org>",
            "[sender] from: the name '=?utf-8?q?Press=0D=0ABcc:_x@evil.example?=' holds "
            "'=?utf-8?q?Press=0D=0ABcc:_x@evil.example?=', RFC 2047 encoded text",
        ),
        (
            "<a@example.org> <b@example.org>",
            "[sender] from: '<a@example.org> <b@example.org>' is not an email address",
        ),
        (
            "a@example.org, b@example.org",
            "[sender] from: 'a@example.org, b@example.org' is not an email address",
        ),
        (
            "Press <press@example.org> trailing",
            "[sender] from: 'Press <press@example.org> trailing' is not an email address",
        ),
    ],
    ids=["two-addresses", "line-separator", "encoded-name", "two-brackets", "a-list", "left-over"],
)
def test_sender_is_exactly_one_mailbox(workspace: Path, value: str, message: str) -> None:
    write(workspace, f'[sender]\nfrom = "{value}"\n')
    with pytest.raises(ConfigError) as caught:
        load_settings(workspace=workspace)
    assert caught.value.message == message or caught.value.message.startswith(message)


def test_sender_forms_that_are_one_mailbox(workspace: Path) -> None:
    write(
        workspace,
        '[sender]\nfrom = "\\"Valmont, Press\\" <press@exämple.org>"\n'
        'reply_to = "Presse  Valmont <presse@exämple.org>"\n',
    )
    settings = load_settings(workspace=workspace)
    assert settings.sender.name == "Valmont, Press"
    assert settings.sender.address == "press@xn--exmple-cua.org"
    # Written back in canonical form, so the header holds no encoded-word for the domain.
    assert settings.sender.reply_to == "Presse Valmont <presse@xn--exmple-cua.org>"
