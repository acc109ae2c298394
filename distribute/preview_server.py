"""``distribute preview --serve``: the preview on 127.0.0.1, built again for every request.

The page asks ``/__changes`` every moment for a token made of the watched files' times and
sizes, and reloads itself when it changes, so saving the release, a template or a list shows
the result. A release or template that does not build gives a page naming the file and line;
the server keeps running and the page reloads once the file is fixed.
"""

from __future__ import annotations

import sys
import threading
from collections.abc import Callable
from datetime import UTC, datetime
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

from distribute.config import Settings
from distribute.preview import Preview, build_preview, files_token, page_or_error, watched_files

HOST = "127.0.0.1"


class PreviewServer(ThreadingHTTPServer):
    """Serves the preview of ``source``; ``build`` and ``watched`` are called per request."""

    daemon_threads = True

    def __init__(
        self,
        source: Path,
        build: Callable[[], Preview],
        watched: Callable[[], list[Path]],
        *,
        port: int = 0,
        allow_remote: bool = False,
        report: Callable[[str], None] | None = None,
    ):
        self.source = source
        self.build = build
        self.watched = watched
        self.allow_remote = allow_remote
        self.report = report
        self._last_error: str | None = None
        self._lock = threading.Lock()
        super().__init__((HOST, port), _Handler)

    def handle_error(self, request: object, client_address: object) -> None:
        """One line instead of socketserver's traceback on stderr; nothing at all when the
        browser went away (the page reloading itself drops the request under way)."""
        error = sys.exc_info()[1]
        if isinstance(error, ConnectionError | TimeoutError) or error is None:
            return
        if self.report:
            self.report(f"Error: a request failed: {type(error).__name__}: {error}")

    @property
    def url(self) -> str:
        return f"http://{HOST}:{self.server_address[1]}/"

    def token(self) -> str:
        try:
            return files_token(self.watched())
        except Exception:  # a settings file broken mid-edit: keep polling, show it on reload
            return "unreadable"

    def page(self) -> str:
        # The token is taken before building, so an edit made while building still reloads.
        token = self.token()
        with self._lock:
            html, error = page_or_error(
                self.build, self.source, allow_remote=self.allow_remote, token=token
            )
            message = None if error is None else str(error)
            if self.report and message != self._last_error:
                self.report(f"Error: {message}" if message else "The preview builds again.")
            self._last_error = message
        return html


class _Handler(BaseHTTPRequestHandler):
    server: PreviewServer

    def do_GET(self) -> None:
        if not self._own_host():
            # DNS rebinding: a web page whose name is made to resolve to 127.0.0.1 could
            # otherwise read the preview (an embargoed release, the journalists' names)
            # through the browser. Its requests name it in Host; this server's never do.
            self._send(
                f"This server answers only requests for {self.server.url}",
                "text/plain",
                HTTPStatus.MISDIRECTED_REQUEST,
            )
            return
        path = self.path.split("?", 1)[0]
        if path == "/":
            self._send(self.server.page(), "text/html")
        elif path == "/__changes":
            self._send(self.server.token(), "text/plain")
        else:
            self._send("not found", "text/plain", HTTPStatus.NOT_FOUND)

    def _own_host(self) -> bool:
        port = self.server.server_address[1]
        host = (self.headers.get("Host") or "").strip().lower()
        names = {"127.0.0.1", "localhost", "[::1]"}
        return host in {f"{name}:{port}" for name in names} or (port == 80 and host in names)

    def _send(self, body: str, kind: str, status: HTTPStatus = HTTPStatus.OK) -> None:
        data = body.encode("utf-8")
        self.send_response(status)
        self.send_header("Content-Type", f"{kind}; charset=utf-8")
        self.send_header("Content-Length", str(len(data)))
        self.send_header("Cache-Control", "no-store")
        self.end_headers()
        self.wfile.write(data)

    def log_message(self, format: str, *args: object) -> None:
        """Requests are not logged: the page polls several times a second."""


def preview_server(
    source: Path,
    load_settings: Callable[[], Settings],
    *,
    recipient: str | None = None,
    port: int = 0,
    allow_remote: bool = False,
    report: Callable[[str], None] | None = None,
) -> PreviewServer:
    """The server ``preview --serve`` runs; settings are read again for every request, so an
    edit of distribute.toml shows too."""

    def build() -> Preview:
        return build_preview(source, load_settings(), now=datetime.now(UTC), recipient=recipient)

    return PreviewServer(
        source,
        build,
        lambda: watched_files(source, load_settings()),
        port=port,
        allow_remote=allow_remote,
        report=report,
    )
