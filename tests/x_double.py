"""A stand-in for the X API on 127.0.0.1, so tweepy's own request building and signing run.

Every request must carry an OAuth 1.0a signature that verifies against the four secrets:
the double recomputes HMAC-SHA1 over the signature base string of RFC 5849, section 3.4.1
(method, base URI, sorted parameters from the query, the Authorization header and a
form-encoded body) and answers 401 like X when it does not match.

Replies are scripted per route (``"POST /2/tweets"``), in order; a route with none left
answers as X does when all is well. A reply can also hang past the client's timeout or
drop the connection, both after the request (and the post) reached the server.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import itertools
import json
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from email.parser import BytesParser
from email.policy import HTTP
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qsl, quote, unquote, urlsplit

KEYS = {
    "X_API_KEY": "ck-Vd8sQ2mZ",
    "X_API_SECRET": "cs-9hT4wq7RkL2pXe5N",
    "X_ACCESS_TOKEN": "1234-at-Pw3nG6yJ",
    "X_ACCESS_TOKEN_SECRET": "ats-Qz5cV8bM1rKd4Hs",
}


def enc(value: str) -> str:
    """RFC 5849, section 3.6: percent-encode everything but unreserved characters."""
    return quote(value, safe="-._~")


def signature(method: str, uri: str, params: list[tuple[str, str]], secrets: dict[str, str]) -> str:
    normalized = "&".join(f"{k}={v}" for k, v in sorted((enc(k), enc(v)) for k, v in params))
    base = "&".join([method.upper(), enc(uri), enc(normalized)])
    key = f"{enc(secrets['X_API_SECRET'])}&{enc(secrets['X_ACCESS_TOKEN_SECRET'])}"
    digest = hmac.new(key.encode(), base.encode(), hashlib.sha1).digest()
    return base64.b64encode(digest).decode()


@dataclass
class Reply:
    status: int = 200
    body: Any = None
    headers: dict[str, str] = field(default_factory=dict)
    # "hang": answer only after this many seconds; "drop": close without answering.
    hang: float = 0.0
    drop: bool = False
    # Bytes sent as the body instead of ``body`` as JSON: X's answer, malformed.
    raw: bytes | None = None


@dataclass
class Seen:
    method: str
    path: str
    headers: dict[str, str]
    body: bytes
    signed: bool

    @property
    def json(self) -> Any:
        return json.loads(self.body)


class XDouble:
    def __init__(self, secrets: dict[str, str] | None = None, username: str = "IMTFrance"):
        self.secrets = dict(secrets or KEYS)
        self.username = username
        self.script: dict[str, list[Reply]] = {}
        self.seen: list[Seen] = []
        self.posts: list[dict[str, Any]] = []  # the posts that exist on the "account"
        self.ids = itertools.count(1_900_000_000_000_000_001)
        self.lock = threading.Lock()
        self.server = ThreadingHTTPServer(("127.0.0.1", 0), self._handler())
        self.server.daemon_threads = True
        self.thread = threading.Thread(
            target=self.server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True
        )

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server.server_address[1]}"

    def __enter__(self) -> XDouble:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.server.shutdown()
        self.server.server_close()

    def on(self, route: str, *replies: Reply) -> None:
        self.script.setdefault(route, []).extend(replies)

    def requests(self, route: str) -> list[Seen]:
        method, _, path = route.partition(" ")
        return [s for s in self.seen if s.method == method and s.path == path]

    # ------------------------------------------------------------------ checking

    def verify(self, method: str, target: str, headers: dict[str, str], body: bytes) -> bool:
        header = headers.get("authorization", "")
        if not header.startswith("OAuth "):
            return False
        oauth = dict(
            (unquote(k.strip()), unquote(v.strip().strip('"')))
            for k, _, v in (item.partition("=") for item in header[6:].split(","))
        )
        if (
            oauth.get("oauth_signature_method") != "HMAC-SHA1"
            or oauth.get("oauth_consumer_key") != self.secrets["X_API_KEY"]
            or oauth.get("oauth_token") != self.secrets["X_ACCESS_TOKEN"]
            or not oauth.get("oauth_nonce")
            or not oauth.get("oauth_timestamp", "").isdigit()
        ):
            return False
        given = oauth.pop("oauth_signature", "")
        oauth.pop("realm", None)
        parts = urlsplit(target)
        params = list(oauth.items()) + parse_qsl(parts.query, keep_blank_values=True)
        if headers.get("content-type", "").startswith("application/x-www-form-urlencoded"):
            params += parse_qsl(body.decode(), keep_blank_values=True)
        uri = f"{self.url}{parts.path}"  # host and port as the client addressed them
        return hmac.compare_digest(given, signature(method, uri, params, self.secrets))

    # ------------------------------------------------------------------ answering

    def answer(self, seen: Seen) -> Reply:
        route = f"{seen.method} {seen.path}"
        with self.lock:
            queue = self.script.get(route)
            reply = queue.pop(0) if queue else None
            if reply is not None and (reply.hang or reply.drop):
                # The request reached X: a post is created even if the answer never arrives.
                default = self.default(seen, None)
                reply = Reply(default.status, default.body, reply.headers, reply.hang, reply.drop)
            elif reply is None or (reply.body is None and reply.raw is None):
                reply = self.default(seen, reply)
        return reply

    def default(self, seen: Seen, reply: Reply | None) -> Reply:
        if seen.path == "/2/users/me":
            return Reply(200, {"data": {"id": "42", "name": "IMT", "username": self.username}})
        if seen.path == "/2/media/upload":
            media = str(next(self.ids))
            return Reply(200, {"data": {"id": media, "media_key": f"3_{media}"}})
        if seen.path == "/2/media/metadata":
            alt = seen.json["metadata"]["alt_text"]
            return Reply(200, {"data": {"associated_metadata": {"alt_text": alt}}})
        if seen.path == "/2/tweets":
            post = str(next(self.ids))
            self.posts.append({"id": post, **seen.json})
            return Reply(201, {"data": {"id": post, "text": seen.json["text"]}})
        return Reply(404, {"title": "Not Found Error", "detail": "no such route", "status": 404})

    def _handler(self) -> type[BaseHTTPRequestHandler]:
        double = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, format: str, *args: Any) -> None:
                pass

            def handle_one(self) -> None:
                length = int(self.headers.get("content-length") or 0)
                body = self.rfile.read(length)
                headers = {k.lower(): v for k, v in self.headers.items()}
                path = urlsplit(self.path).path
                signed = double.verify(self.command, self.path, headers, body)
                seen = Seen(self.command, path, headers, body, signed)
                with double.lock:
                    double.seen.append(seen)
                if not signed:
                    reply = Reply(
                        401,
                        {
                            "title": "Unauthorized",
                            "type": "about:blank",
                            "status": 401,
                            "detail": "Unauthorized",
                        },
                    )
                else:
                    reply = double.answer(seen)
                if reply.drop:
                    self.close_connection = True
                    return
                if reply.hang:
                    time.sleep(reply.hang)
                payload = json.dumps(reply.body).encode() if reply.raw is None else reply.raw
                self.send_response(reply.status)
                self.send_header("content-type", "application/json; charset=utf-8")
                self.send_header("content-length", str(len(payload)))
                for name, value in reply.headers.items():
                    self.send_header(name, value)
                self.end_headers()
                self.wfile.write(payload)

            do_GET = do_POST = handle_one

        return Handler


def multipart_fields(seen: Seen) -> dict[str, bytes]:
    """The parts of a multipart/form-data body, by name."""
    head = f"content-type: {seen.headers['content-type']}\r\n\r\n".encode()
    message = BytesParser(policy=HTTP).parsebytes(head + seen.body)
    out: dict[str, bytes] = {}
    for part in message.iter_parts():
        name = part.get_param("name", header="content-disposition")
        out[str(name)] = part.get_payload(decode=True)
    return out


def iter_files(root: Any) -> Iterator[Any]:
    return (path for path in root.rglob("*") if path.is_file())
