"""Posting to X through tweepy: API v2, OAuth 1.0a user context.

``tweepy.Client`` builds and signs every request. Two things it cannot do are added here,
without touching tweepy's module globals:

* its host is fixed (``Client.request`` prefixes ``https://api.twitter.com``), so the client
  gets a session that sends each call to ``[x] api_url`` instead. The URL is rewritten
  before requests_oauthlib signs the request, so the signature covers the URL actually
  requested (RFC 5849, section 3.4.1.2);
* tweepy 4.17 has no v2 media upload: ``POST /2/media/upload`` goes through the same
  session with the same OAuth 1.0a signer.

Nothing here retries or sleeps (``wait_on_rate_limit=False``: tweepy would sleep inside the
call for as long as X says, hours for a daily limit). Each failure is classified by what it
means for the post, and the caller decides: see :class:`PostOutcome`.
"""

from __future__ import annotations

import json
import re
import time
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import quote

import requests
import tweepy
import urllib3.exceptions
from tweepy.auth import OAuth1UserHandler

from distribute.channels.base import PostChannel, PostOutcome
from distribute.config import X_CREDENTIALS, XSettings, secret
from distribute.errors import ConfigError, SocialError

# The host tweepy writes into every URL it builds (tweepy/client.py, BaseClient.request).
TWEEPY_HOST = "https://api.twitter.com"
TWEETS = "/2/tweets"
MEDIA_UPLOAD = "/2/media/upload"
MEDIA_METADATA = "/2/media/metadata"
ME = "/2/users/me"
ALT_TEXT_LIMIT = 1000
# X's ids are 64-bit integers written in decimal; its handles are 1 to 15 of these characters.
X_ID = re.compile(r"[0-9]{1,19}")
HANDLE = re.compile(r"[A-Za-z0-9_]{1,15}")
# X's answers are a few hundred bytes; a bigger one is not X's, and is not read into memory.
MAX_ANSWER_BYTES = 1024 * 1024

_CREDENTIALS_HINT = (
    f"check {', '.join(X_CREDENTIALS[:-1])} and {X_CREDENTIALS[-1]}, and that the X app has "
    "Read and Write permission (after changing it, regenerate the access token and secret)"
)


@dataclass(frozen=True)
class Credentials:
    """The X app's keys and the account's tokens; kept out of every repr and message."""

    api_key: str = field(repr=False)
    api_secret: str = field(repr=False)
    access_token: str = field(repr=False)
    access_token_secret: str = field(repr=False)

    @classmethod
    def from_env(cls) -> Credentials:
        values = {name: secret(name) for name in X_CREDENTIALS}
        missing = [name for name, value in values.items() if not value]
        if missing:
            names = ", ".join(missing[:-1]) + " and " * (len(missing) > 1) + missing[-1]
            raise ConfigError(
                f"posting to X needs {names} in the environment "
                f"(the keys and tokens of the X app; see the README's X section)"
            )
        for name, value in values.items():
            # X's keys and tokens never hold whitespace: this one was copied with its line
            # end, and would only earn a 401 blamed on all four.
            if any(ch.isspace() for ch in str(value)):
                kind = "secret" if name.endswith("SECRET") else name.rsplit("_", 1)[-1].lower()
                raise ConfigError(
                    f"{name} holds a space or a line break (copied with the line end?); "
                    f"set it to the {kind} alone"
                )
        return cls(*(str(values[name]) for name in X_CREDENTIALS))


class XAuthError(SocialError):
    """X refused the credentials or the permission (401, or a 403 other than a duplicate)."""

    def __init__(self, code: int, words: str):
        self.code = code
        self.words = words
        super().__init__(f"X refused the request ({code}: {words}); {_CREDENTIALS_HINT}")


class ApiSession(requests.Session):
    """A session that sends tweepy's requests to ``base`` and never waits forever.

    tweepy gives requests no timeout; without one, a silent server would hold a post (and
    the step) forever instead of turning it ``uncertain``.
    """

    def __init__(self, base: str, timeout: float, secrets: tuple[str, ...] = ()):
        super().__init__()
        self.base = base.rstrip("/")
        self.timeout = timeout
        self.secrets = secrets

    def request(
        self, method: str | bytes, url: str | bytes, *args: Any, **kwargs: Any
    ) -> requests.Response:
        url = url.decode() if isinstance(url, bytes) else url
        if url.startswith(TWEEPY_HOST + "/"):
            url = self.base + url[len(TWEEPY_HOST) :]
        if not url.startswith(self.base + "/"):
            # Signed requests go to the configured API and nowhere else.
            raise SocialError(f"refusing to send a signed request outside {self.base}")
        kwargs.setdefault("timeout", self.timeout)
        # A redirect would carry the signed request elsewhere, and a POST must not repeat.
        kwargs["allow_redirects"] = False
        kwargs["stream"] = True
        response = super().request(method, url, *args, **kwargs)
        try:
            body = read_bounded(response, MAX_ANSWER_BYTES, self.timeout, "X")
            response._content = redact(body, self.secrets)
        finally:
            response.close()
        if not 200 <= response.status_code < 300:
            plain_refusal(response)
        return response


class XClient(tweepy.Client):  # type: ignore[misc]
    """tweepy's client on ``[x] api_url``, with the v2 media calls tweepy lacks."""

    def __init__(self, credentials: Credentials, settings: XSettings):
        super().__init__(
            consumer_key=credentials.api_key,
            consumer_secret=credentials.api_secret,
            access_token=credentials.access_token,
            access_token_secret=credentials.access_token_secret,
            wait_on_rate_limit=False,
        )
        self.session = ApiSession(
            settings.api_url,
            settings.timeout,
            (
                credentials.api_key,
                credentials.api_secret,
                credentials.access_token,
                credentials.access_token_secret,
            ),
        )

    def upload_media(self, data: bytes, media_type: str) -> str:
        """``POST /2/media/upload`` (multipart, one request: images are small)."""
        # The signer tweepy itself uses for user-context calls; a multipart body is not
        # part of an OAuth 1.0a signature (RFC 5849, section 3.4.1.3.1).
        auth = OAuth1UserHandler(
            self.consumer_key, self.consumer_secret, self.access_token, self.access_token_secret
        ).apply_auth()
        with self.session.post(
            TWEEPY_HOST + MEDIA_UPLOAD,
            data={"media_category": "tweet_image"},
            files={"media": ("media", data, media_type)},
            headers={"User-Agent": self.user_agent},
            auth=auth,
        ) as response:
            raise_for_status(response)
            media_id = _field(response, "id", X_ID)
        if not media_id:
            raise SocialError(f"X accepted the image but sent no media id ({_excerpt(response)})")
        return media_id

    def set_alt_text(self, media_id: str, alt: str) -> None:
        """``POST /2/media/metadata``: a JSON body, which tweepy's own request can send."""
        self.request(
            "POST",
            MEDIA_METADATA,
            json={"id": media_id, "metadata": {"alt_text": {"text": alt}}},
            user_auth=True,
        )


def raise_for_status(response: requests.Response) -> None:
    """tweepy's mapping of a status to its exceptions, for calls made outside tweepy."""
    code = response.status_code
    kinds: dict[int, type[tweepy.HTTPException]] = {
        400: tweepy.BadRequest,
        401: tweepy.Unauthorized,
        403: tweepy.Forbidden,
        404: tweepy.NotFound,
    }
    if code in kinds:
        raise kinds[code](response)
    if code == 429:
        reset = response.headers.get("x-rate-limit-reset")
        raise tweepy.TooManyRequests(response, reset_time=_int(reset))
    if code >= 500:
        raise tweepy.TwitterServerError(response)
    if not 200 <= code < 300:
        raise tweepy.HTTPException(response)


def tweet_body(
    text: str, *, reply_to: str | None = None, media_ids: list[str] | None = None
) -> dict[str, Any]:
    """The JSON body of ``POST /2/tweets``, laid out as tweepy's ``create_tweet`` lays it."""
    body: dict[str, Any] = {}
    if media_ids:
        body["media"] = {"media_ids": list(media_ids)}
    if reply_to is not None:
        body["reply"] = {"in_reply_to_tweet_id": reply_to}
    body["text"] = text
    return body


class XChannel(PostChannel):
    """The account the four credentials belong to, on ``[x] api_url``."""

    live = True

    def __init__(self, settings: XSettings, credentials: Credentials):
        self.settings = settings
        self.client = XClient(credentials, settings)

    def whoami(self) -> str:
        try:
            response = self.client.request("GET", ME, user_auth=True)
            username = _field(response, "username")
        except tweepy.HTTPException as exc:
            raise self._refusal(exc, "checking the credentials") from None
        except requests.RequestException as exc:
            raise SocialError(
                f"cannot reach X at {self.settings.api_url}: {_reason(exc)}"
            ) from None
        if not username:
            raise SocialError(f"X did not say which account the credentials belong to ({ME})")
        if not HANDLE.fullmatch(username):
            raise SocialError(
                f"X answered {username!r} as the account's handle, which is not an X handle "
                f"({ME}); check [x] api_url"
            )
        return f"@{username}"

    def upload_image(self, data: bytes, media_type: str, alt: str | None) -> str:
        try:
            media_id = self.client.upload_media(data, media_type)
            if alt:
                self.client.set_alt_text(media_id, alt)
        except tweepy.HTTPException as exc:
            raise self._refusal(exc, "uploading the image") from None
        except requests.RequestException as exc:
            raise SocialError(
                f"uploading the image to {self.settings.api_url} failed: {_reason(exc)}"
            ) from None
        return media_id

    def post(self, body: dict[str, object]) -> PostOutcome:
        try:
            response = self.client.request("POST", TWEETS, json=body, user_auth=True)
        except tweepy.TooManyRequests as exc:
            return PostOutcome("rate_limited", 429, words(exc), reset=exc.reset_time)
        except tweepy.TwitterServerError as exc:
            return PostOutcome("retry", exc.response.status_code, words(exc))
        except (tweepy.Unauthorized, tweepy.Forbidden) as exc:
            if isinstance(exc, tweepy.Forbidden) and _duplicate(exc):
                return PostOutcome("failed", 403, words(exc))
            raise XAuthError(exc.response.status_code, words(exc)) from None
        except tweepy.HTTPException as exc:
            return PostOutcome("failed", exc.response.status_code, words(exc))
        except requests.RequestException as exc:
            if _before_sending(exc):
                return PostOutcome("retry", None, f"could not connect to X: {_reason(exc)}")
            return PostOutcome(
                "uncertain",
                None,
                f"no answer from X after the post was sent ({_reason(exc)}); it may have "
                "been posted",
            )
        post_id = _field(response, "id", X_ID)
        if not post_id:
            # X said yes (2xx) without the id: the post probably exists, and a reply to it
            # cannot be made; never post it again blindly.
            return PostOutcome(
                "uncertain",
                response.status_code,
                f"X answered {response.status_code} without a post id: {_excerpt(response)}",
            )
        return PostOutcome("sent", response.status_code, f"posted as {post_id}", post_id)

    def _refusal(self, exc: tweepy.HTTPException, doing: str) -> SocialError:
        code = exc.response.status_code
        if code in {401, 403}:
            return XAuthError(code, words(exc))
        if code == 429:
            return SocialError(f"{doing}: X's rate limit (429: {words(exc)}); try again later")
        return SocialError(f"{doing}: X answered {code}: {words(exc)}")


# --------------------------------------------------------------------------- helpers


class AnswerError(requests.RequestException):
    """An answer too big or too slow to read: the request was sent, its fate is unknown.

    ``size`` is how much was read when the answer turned out too big, else None."""

    def __init__(self, message: str, size: int | None = None):
        super().__init__(message)
        self.size = size


def read_bounded(response: requests.Response, limit: int, timeout: float, who: str) -> bytes:
    """The body of a streamed ``response``, refused past ``limit`` bytes or once reading it
    has taken ``timeout`` seconds more than the client's own per-read timeout allows.

    requests' timeout bounds each read, not the whole body: a server sending a byte now and
    then, or an endless body, would otherwise hold the run (and memory) forever.
    """
    deadline = time.monotonic() + 4 * timeout
    chunks: list[bytes] = []
    size = 0
    for chunk in response.iter_content(8 * 1024):
        size += len(chunk)
        if size > limit:
            raise AnswerError(f"{who}'s answer is over {limit // 1024} KB", size)
        if time.monotonic() > deadline:
            raise AnswerError(f"{who}'s answer did not end within {4 * timeout:.0f} s")
        chunks.append(chunk)
    return b"".join(chunks)


def redact(data: bytes, secrets: tuple[str, ...]) -> bytes:
    """An answer with the credentials taken out, before anything reads it.

    A proxy's error page or a debugging server may echo the request, whose Authorization
    header carries the key and the token percent-encoded (RFC 5849, section 3.5.1); X's
    words end up in the ledger, the log and the output.
    """
    forms: set[str] = set()
    for value in secrets:
        if value:
            forms |= {
                value,
                quote(value, safe="-._~"),
                quote(value, safe=""),
                json.dumps(value)[1:-1],
            }
    if not forms:
        return data
    # Longest first, so a secret inside another is not left half shown; percent escapes
    # may come in either case.
    pattern = b"|".join(re.escape(f.encode()) for f in sorted(forms, key=len, reverse=True))
    return re.sub(pattern, b"[redacted]", data, flags=re.IGNORECASE)


def plain_refusal(response: requests.Response) -> None:
    """Rewrite a refusal's body as ``{"detail": X's words}``, the one shape tweepy parses
    without failing, and drop a reset header that is not a plain Unix time.

    tweepy builds its exception from the body as if it were always X's JSON object (a list,
    a string or an error without a text message raises AttributeError or TypeError inside
    it) and ``int()``s ``x-rate-limit-reset`` as is: a refusal, which posted nothing, would
    surface as a crash with the post possibly sent.
    """
    response._content = json.dumps({"detail": answer_words(response)}).encode()
    response.encoding = "utf-8"
    reset = response.headers.get("x-rate-limit-reset")
    if reset is not None and not re.fullmatch(r"[0-9]{1,12}", reset.strip()):
        del response.headers["x-rate-limit-reset"]


def answer_words(response: requests.Response) -> str:
    """X's own explanation, whatever the body's shape: the problem ``detail``, its error
    messages, else the status."""
    payload = _json(response)
    messages: list[str] = []

    def add(value: object) -> None:
        if isinstance(value, dict):
            value = value.get("message") or value.get("detail")
        if isinstance(value, str | int | float):
            text = " ".join(printable(str(value)).split())
            if text and text not in messages:
                messages.append(text)

    if isinstance(payload, dict):
        add(payload.get("detail"))
        errors = payload.get("errors")
        for error in errors if isinstance(errors, list) else [errors]:
            add(error)
        add(payload.get("error"))
    text = "; ".join(messages) or printable(f"{response.status_code} {response.reason}")
    return text[:500]


def words(exc: tweepy.HTTPException) -> str:
    """X's own explanation of a refusal (see :func:`answer_words`)."""
    return answer_words(exc.response)


def _duplicate(exc: tweepy.HTTPException) -> bool:
    return "duplicate" in words(exc).lower()


def _before_sending(exc: requests.RequestException) -> bool:
    """True when the connection never opened, so X cannot have received the request.

    requests wraps urllib3's MaxRetryError, whose ``reason`` is the original failure; a
    refused or unresolvable connection is a NewConnectionError, a connect timeout a
    ConnectTimeoutError. Anything else (a read timeout, a reset) happened after sending.
    """
    if isinstance(exc, requests.ConnectTimeout):
        return True
    if not isinstance(exc, requests.ConnectionError) or isinstance(exc, requests.ReadTimeout):
        return False
    cause = exc.args[0] if exc.args else None
    cause = getattr(cause, "reason", cause)
    return isinstance(
        cause, urllib3.exceptions.NewConnectionError | urllib3.exceptions.ConnectTimeoutError
    )


def _reason(exc: requests.RequestException) -> str:
    if isinstance(exc, requests.Timeout):
        return "timed out"
    cause = exc.args[0] if exc.args else exc
    cause = getattr(cause, "reason", cause)
    # urllib3's messages repeat the connection object's repr; its last part is the reason.
    return printable(str(cause).rsplit(": ", 1)[-1].strip("()'\" ")) or type(exc).__name__


def _json(response: requests.Response) -> Any:
    """The body as JSON, or None; a body nested thousands deep raises RecursionError."""
    try:
        return response.json()
    except (ValueError, RecursionError):
        return None


def _field(
    response: requests.Response, name: str, shape: re.Pattern[str] | None = None
) -> str | None:
    """``data.name`` of the answer; None when absent, or not of the ``shape`` X gives it."""
    payload = _json(response)
    data = payload.get("data") if isinstance(payload, dict) else None
    value = data.get(name) if isinstance(data, dict) else None
    if not isinstance(value, str | int) or isinstance(value, bool) or value == "":
        return None
    if shape is not None and not shape.fullmatch(str(value)):
        return None
    return str(value)


def printable(text: str) -> str:
    """``text`` as one line of printable characters: what a server says goes to the ledger,
    the log and the terminal, where a line break would forge a line of the report and an
    escape sequence would drive the terminal."""
    return "".join(ch if ch.isprintable() else " " for ch in text).strip()


def _excerpt(response: requests.Response) -> str:
    return printable(response.text[:200]) or "an empty body"


def _int(value: str | None) -> int | None:
    try:
        return int(value) if value is not None else None
    except ValueError:
        return None
