"""The preview page: built from the exact bytes a send writes, with each warning and its fix."""

from __future__ import annotations

import html
import http.client
import re
import shutil
import socket
import struct
import threading
import urllib.request
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import pytest
from click.testing import CliRunner
from hypothesis import given
from hypothesis import settings as hypothesis_settings
from hypothesis import strategies as st
from markupsafe import escape

from distribute.cli import cli
from distribute.config import Settings, load_settings
from distribute.preview import (
    LINK_SHOWN,
    build_preview,
    local_only,
    page_or_error,
    post_markup,
    render_page,
    shown_link,
)
from distribute.preview_server import PreviewServer, preview_server

ROOT = Path(__file__).resolve().parents[1]
CAMPAIGN = ROOT / "releases" / "hydrogen.toml"
RELEASE = ROOT / "releases" / "hydrogen.md"
DATE = re.compile(rb"^Date: [^\r\n]*\r\n", re.MULTILINE)


def without_date(data: bytes) -> bytes:
    assert len(DATE.findall(data)) == 1
    return DATE.sub(b"", data)


# --------------------------------------------------------------------------- exact bytes


@pytest.mark.parametrize(
    "recipient",
    [None, "amelie.durand@example.org", "Maya.Patel@example.net"],
    ids=["first-of-each-step", "french-list", "address-in-another-case"],
)
def test_campaign_step_preview_is_the_dry_run_outbox_message(
    settings: Settings, workspace: Path, recipient: str | None
) -> None:
    result = CliRunner().invoke(cli, ["send", str(CAMPAIGN)])
    assert result.exit_code == 0, result.output
    preview = build_preview(
        CAMPAIGN, settings, now=datetime.now(UTC), recipient=recipient, send_now=True
    )
    assert preview.messages
    for view in preview.messages:
        assert view.step is not None
        outbox = workspace / "outbox" / "hydrogen-platform" / view.step / "new"
        sent = {without_date(path.read_bytes()) for path in outbox.glob("*.eml")}
        assert without_date(view.data) in sent, view.step
        if recipient:
            assert recipient.lower() in view.headers["To"].lower()


def test_release_preview_is_the_rendered_eml(settings: Settings, tmp_path: Path) -> None:
    out = tmp_path / "out"
    result = CliRunner().invoke(cli, ["render", str(RELEASE), "--out", str(out)])
    assert result.exit_code == 0, result.output
    preview = build_preview(RELEASE, settings, now=datetime.now(UTC))
    (view,) = preview.messages
    assert without_date(view.data) == without_date((out / "email.eml").read_bytes())
    assert view.html == (out / "email.html").read_text(encoding="utf-8")


def test_recipient_sees_their_name_and_unsubscribe_link(settings: Settings) -> None:
    preview = build_preview(
        CAMPAIGN, settings, now=datetime.now(UTC), recipient="chloe.martin@example.net"
    )
    (view,) = preview.messages  # only the French step mails her
    assert view.step == "presse-regionale"
    assert view.headers["To"] == "Chloé Martin <chloe.martin@example.net>"
    assert "email=chloe.martin@example.net" in view.headers["List-Unsubscribe"]
    assert "Dear Chloé," in view.text
    assert preview.skipped == ["science-desk: not on this step's lists"]
    page = render_page(preview)
    assert "Chloé Martin" in page
    assert "chloe.martin@example.net gets nothing from: science-desk" in page


def test_a_suppressed_recipient_is_told_why_in_one_line(
    workspace: Path, settings: Settings
) -> None:
    result = CliRunner().invoke(
        cli, ["preview", str(CAMPAIGN), "--recipient", "henry.walsh@example.org"]
    )
    assert result.exit_code == 1
    assert result.output == (
        f"Error: {CAMPAIGN}: henry.walsh@example.org gets no email from this campaign "
        "(science-desk: suppressed, gets nothing; presse-regionale: not on this step's lists)\n"
    )


# --------------------------------------------------------------------------- warnings


def write_warning_campaign(workspace: Path) -> Path:
    """A release and campaign made to trigger every warning the preview knows."""
    (workspace / "recipients").mkdir()
    (workspace / "recipients" / "desk.csv").write_text(
        "email,first_name,last_name\n"
        "ana@example.com,Ana,Lima\n"
        "ANA@example.com,Ana,Again\n"
        "ben@example.org,Ben,Stone\n",
        encoding="utf-8",
    )
    filler = " ".join(["The platform measures electrolyser ageing in real conditions."] * 30)
    body = "\n\n".join(f"Paragraph {n}. {filler}" for n in range(60))
    (workspace / "long.md").write_text(
        "---\n"
        "title: An extremely long headline about a hydrogen platform that no inbox shows whole\n"
        "embargo: 2027-03-10T09:00:00+01:00\n"
        "summary: A platform opens.\n"
        "---\n\n"
        "# An extremely long headline\n\n"
        "**The lead paragraph of the fictional release.**\n\n"
        "![](https://images.example.com/photo.jpg)\n\n"
        "See [the old site](http://old.example.com/page) for more.\n\n" + body + "\n",
        encoding="utf-8",
    )
    post = "A" * 200 + " " + "b" * 74  # 275 of 280
    path = workspace / "long.toml"
    path.write_text(
        'name = "long"\nrelease = "long.md"\ntimezone = "Europe/Paris"\n'
        '[[email]]\nname = "early"\nlists = ["desk"]\nembargoed = true\nat = "2027-03-10 08:00"\n'
        f'[[post]]\nname = "near-limit"\nchannel = "x"\ntext = "{post}"\n'
        'at = "2027-03-10 09:05"\n',
        encoding="utf-8",
    )
    return path


EXPECTED = {
    "html-size": ("Gmail clips messages over 102 KB", "shorten the release"),
    "image-alt": ("1 image(s) without alt text", "give the image a description"),
    "http-link": ("http:// link(s) (http://old.example.com/page)", "https://"),
    "subject": ("the subject is ", "shorten the title"),
    "post-limit": ("275 of 280 weighted characters: within 10", "shorten the text"),
    "no-url": ("the release has no url", "add url: https://"),
    "lists": (
        "1 row(s) of its lists are not mailed (1 duplicate; in desk.csv)",
        "run 'distribute recipients check recipients/desk.csv'",
    ),
}


def test_each_warning_is_shown_with_what_to_do(workspace: Path, settings: Settings) -> None:
    path = write_warning_campaign(workspace)
    preview = build_preview(path, settings, now=datetime(2026, 12, 1, tzinfo=UTC))
    page = render_page(preview)
    missing = []
    for name, (message, fix) in EXPECTED.items():
        found = [n for n in preview.notices if message in n.message and fix in n.fix]
        if not found or str(escape(found[0].message)) not in page:
            missing.append(name)
    assert missing == []
    places = {n.where for n in preview.notices}
    assert places == {"email step 'early'", "post step 'near-limit'", str(workspace / "long.md")}
    assert page.count('class="notice"') == len(preview.notices)
    assert page.count("What to do:") == len(preview.notices)


def test_the_example_campaign_has_none_of_those_warnings(settings: Settings) -> None:
    preview = build_preview(CAMPAIGN, settings, now=datetime(2026, 12, 1, tzinfo=UTC))
    texts = " ".join(n.message for n in preview.notices)
    for name in ("html-size", "image-alt", "http-link", "post-limit", "no-url"):
        assert EXPECTED[name][0] not in texts, name
    # Only the step sent under embargo has a long subject: the EMBARGOED prefix makes it so.
    long_subjects = [n.where for n in preview.notices if EXPECTED["subject"][0] in n.message]
    assert long_subjects == ["email step 'science-desk'"]


def test_timeline_counts_recipients_after_deduplication_and_suppression(
    settings: Settings,
) -> None:
    preview = build_preview(CAMPAIGN, settings, now=datetime(2026, 12, 1, tzinfo=UTC))
    desk, regional, post = preview.timeline
    assert (desk.step, desk.at, desk.recipients) == ("science-desk", "9 March 2027 18:00 CET", 19)
    # The evening before, on purpose (embargoed = true): under embargo, with no warning.
    assert desk.embargo == "under embargo (lifts 10 March 2027 08:00 CET)"
    assert regional.embargo == "embargo lifted"
    by_list = {c.name: (c.recipients, c.rows, c.suppressed, c.duplicates) for c in desk.lists}
    assert by_list == {"science-press": (13, 14, 1, 0), "tech-press": (6, 10, 0, 2)}
    assert (regional.recipients, regional.suppressed) == (13, 1)
    assert (post.channel, post.at, post.embargo) == (
        "x",
        "10 March 2027 08:05 CET",
        "embargo lifted",
    )
    assert preview.embargo == "until 10 March 2027 08:00 CET: in force now"
    page = render_page(preview)
    assert "tech-press: 6 of 10 rows" in page and "2 duplicate(s)" in page


# --------------------------------------------------------------------------- posts and images


def test_post_shows_links_shortened_as_x_counts_them(settings: Settings) -> None:
    preview = build_preview(CAMPAIGN, settings, now=datetime(2026, 12, 1, tzinfo=UTC))
    (view,) = preview.posts
    page = render_page(preview)
    assert (
        '<span class="link" title="https://www.example.org/press/hydrogen-platform">'
        "www.example.org/press/…</span>"
    ) in page
    assert '<span class="tag">#hydrogen</span>' in page
    length = view.posts.parts[0].length
    assert f"{length} / 280" in page
    assert '<div class="who">@IMTFrance</div>' in page


WORDS = st.sampled_from(
    [
        "hydrogen",
        "Valmont",
        "#hydrogen",
        "@ValmontTech",
        "R&D",
        "<b>",
        "«",
        "https://www.example.org/press/a-very-long-address-for-the-platform",
        "https://example.com/x",
        "example.org/short",
    ]
)


@hypothesis_settings(max_examples=80, deadline=None)
@given(st.lists(WORDS, min_size=1, max_size=12), st.sampled_from([" ", "\n", "  "]))
def test_post_markup_shows_every_character_and_shortens_only_links(
    words: list[str], separator: str
) -> None:
    from twitter_text import extract_urls_with_indices

    text = separator.join(words)
    markup = post_markup(text)
    shown = html.unescape(re.sub(r"<[^>]+>", "", markup))
    expected = text
    for entity in reversed(extract_urls_with_indices(text)):
        start, end = entity["indices"]
        assert len(shown_link(entity["url"])) <= LINK_SHOWN
        expected = expected[:start] + shown_link(entity["url"]) + expected[end:]
    assert shown == expected
    assert "<b>" not in markup


@hypothesis_settings(max_examples=60, deadline=None)
@given(
    st.text(min_size=0, max_size=40),
    st.sampled_from(["https://img.example.com/a.png", "http://x.example.org/b.jpg?c=1&d=2", ""]),
)
def test_remote_images_become_boxes_with_their_alt_text(alt: str, src: str) -> None:
    page = (
        f'<p>before</p><img class="hero" src="{html.escape(src)}" alt="{html.escape(alt)}" '
        'width="536"><p>after</p>'
    )
    local = local_only(page)
    assert "<img" not in local
    assert "<p>before</p>" in local and "<p>after</p>" in local
    if alt.strip():
        assert html.escape(alt.strip()) in local
    else:
        assert "(image without alt text)" in local
    assert local_only(local) == local


BREAKS = ["\n", "\r\n", "\r", "\u2028", "\u2029", "\x0b", "\x0c", "\x1c", "\x85"]
PROSE = st.lists(
    st.one_of(
        st.sampled_from(BREAKS), st.text(st.characters(exclude_characters="<>&"), max_size=8)
    ),
    max_size=8,
).map("".join)


@hypothesis_settings(max_examples=80, deadline=None)
@given(PROSE, PROSE)
def test_only_the_image_is_replaced_whatever_breaks_the_lines(before: str, after: str) -> None:
    """Text pasted from a word processor carries U+2028, form feeds and the like, which
    str.splitlines() breaks lines at and the HTML parser does not: the image must still be
    cut exactly, with every other character of the email kept."""
    head = f"<p>{before}</p>\n"
    tail = f"\n<p>{after}</p>"
    local = local_only(f'{head}<img src="https://img.example.com/a.png" alt="A hall">{tail}')
    assert local.startswith(head) and local.endswith(tail)
    assert "<img" not in local and "A hall" in local


def test_allow_remote_keeps_images_and_lets_them_load(settings: Settings, tmp_path: Path) -> None:
    release = tmp_path / "pictured.md"
    release.write_text(
        "---\ntitle: A pictured release\nimage: https://img.example.com/hero.jpg\n"
        "image_alt: The test hall\nurl: https://www.example.org/p\n---\n\n# A pictured release\n\n"
        "Body text.\n",
        encoding="utf-8",
    )
    preview = build_preview(release, settings, now=datetime(2026, 12, 1, tzinfo=UTC))
    closed = render_page(preview)
    assert "img-src data:;" in closed and "hero.jpg&#34;" not in closed
    assert "The test hall" in closed and "remote image from img.example.com" in closed
    opened = render_page(preview, allow_remote=True)
    assert "img-src data: https: http:;" in opened
    assert "src=&#34;https://img.example.com/hero.jpg&#34;" in opened


# --------------------------------------------------------------------------- command line


def test_preview_command_writes_the_page(workspace: Path, settings: Settings) -> None:
    out = workspace / "page.html"
    result = CliRunner().invoke(cli, ["preview", str(RELEASE), "--out", str(out)])
    assert result.exit_code == 0, result.output
    assert result.output.splitlines()[-1] == (
        f"Wrote the preview to {out}; open {out.resolve().as_uri()} in a browser"
    )
    page = out.read_text(encoding="utf-8")
    assert page.count("<iframe") == 4
    assert "<script>" in page and 'sandbox="allow-same-origin"' in page
    assert "allow-scripts" not in page


def test_preview_default_path_is_beside_the_release(workspace: Path, settings: Settings) -> None:
    shutil.copy(RELEASE, workspace / "hydrogen.md")
    result = CliRunner().invoke(cli, ["preview", "hydrogen.md"])
    assert result.exit_code == 0, result.output
    assert (workspace / "out" / "preview-hydrogen.html").is_file()


@pytest.mark.parametrize(
    ("args", "code", "message"),
    [
        (
            ["--out", "x.html", "--serve"],
            2,
            "Error: --out writes a file and --serve serves the page: give one",
        ),
        (
            ["--recipient", "not an address"],
            2,
            "Error: Invalid value for --recipient: 'not an address' is not an address like "
            "'Jane Doe <jane@example.com>'",
        ),
        (["--port", "70000"], 2, "Invalid value for '--port'"),
    ],
    ids=["out-and-serve", "bad-recipient", "bad-port"],
)
def test_bad_options(
    workspace: Path, settings: Settings, args: list[str], code: int, message: str
) -> None:
    result = CliRunner().invoke(cli, ["preview", str(RELEASE), *args])
    assert result.exit_code == code
    assert message in result.output


def test_missing_release_is_one_line(workspace: Path, settings: Settings) -> None:
    result = CliRunner().invoke(cli, ["preview", "nowhere.md"])
    assert result.exit_code == 1
    assert result.output == "Error: nowhere.md: release file not found\n"


def test_render_and_send_end_with_the_preview_command(workspace: Path, settings: Settings) -> None:
    rendered = CliRunner().invoke(cli, ["render", str(RELEASE), "--out", "out"])
    assert rendered.exit_code == 0, rendered.output
    assert rendered.output.splitlines()[-1] == (
        f"See it as received, in a browser: distribute preview {RELEASE} --open"
    )
    sent = CliRunner().invoke(cli, ["send", str(CAMPAIGN)])
    assert sent.exit_code == 0, sent.output
    assert sent.output.rstrip().endswith(
        f"; add --live to send. See them as received: distribute preview {CAMPAIGN} --open."
    )


# --------------------------------------------------------------------------- serving


@pytest.fixture
def served(workspace: Path, settings: Settings) -> Iterator[tuple[PreviewServer, Path]]:
    release = workspace / "hydrogen.md"
    shutil.copy(RELEASE, release)
    server = preview_server(release, lambda: load_settings(workspace=workspace))
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield server, release
    finally:
        server.shutdown()
        server.server_close()
        thread.join()


def get(url: str) -> str:
    with urllib.request.urlopen(url, timeout=30) as response:
        assert response.status == 200
        body: str = response.read().decode("utf-8")
        return body


def test_served_page_follows_each_edit_of_the_release(
    served: tuple[PreviewServer, Path],
) -> None:
    server, release = served
    assert server.url.startswith("http://127.0.0.1:")
    first = get(server.url)
    token = get(server.url + "__changes")
    assert f'data-token="{token}"' in first
    assert "Forty companies" in first and "Sixty companies" not in first
    text = release.read_text(encoding="utf-8").replace("Forty companies", "Sixty companies")
    release.write_text(text, encoding="utf-8")
    assert get(server.url + "__changes") != token
    second = get(server.url)
    assert "Sixty companies" in second and "Forty companies" not in second


def test_broken_template_shows_the_error_and_the_server_goes_on(
    served: tuple[PreviewServer, Path], workspace: Path
) -> None:
    server, _ = served
    token = get(server.url + "__changes")
    template = workspace / "templates" / "email" / "press-release.html.j2"
    template.parent.mkdir(parents=True)
    good = (ROOT / "templates" / "email" / "press-release.html.j2").read_text(encoding="utf-8")
    template.write_text(good.replace("{{ release.title }}</h1>", "{{ release.title </h1>"), "utf-8")
    assert get(server.url + "__changes") != token  # a new template is watched too
    page = get(server.url)
    assert "cannot be built" in page
    line = good.splitlines().index(
        next(x for x in good.splitlines() if "{{ release.title }}</h1>" in x)
    )
    assert f"{template}:{line + 1}: template syntax error" in html.unescape(page)
    template.write_text(good.replace("Read the release online", "{{ t.read_online }}!"), "utf-8")
    assert "Valmont Institute opens" in get(server.url)


def test_unknown_paths_are_not_found(served: tuple[PreviewServer, Path]) -> None:
    server, _ = served
    with pytest.raises(urllib.error.HTTPError) as info:
        urllib.request.urlopen(server.url + "etc/passwd", timeout=30)
    assert info.value.code == 404
    info.value.close()


@pytest.mark.parametrize(
    "host",
    ["evil.example.net", "evil.example.net:{port}", "127.0.0.1.evil.example.net:{port}", ""],
    ids=["name", "name-port", "lookalike", "none"],
)
def test_a_request_for_another_host_is_refused(
    served: tuple[PreviewServer, Path], host: str
) -> None:
    """DNS rebinding: a web page whose name is made to resolve to 127.0.0.1 would read the
    preview (the embargoed release, the journalists' names) through the browser. Its
    requests carry its own name in Host, so only this server's own names are answered."""
    server, _ = served
    port = server.server_address[1]
    for path in ("/", "/__changes"):
        connection = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
        try:
            connection.putrequest("GET", path, skip_host=True)
            if host:
                connection.putheader("Host", host.format(port=port))
            connection.endheaders()
            response = connection.getresponse()
            body = response.read().decode()
        finally:
            connection.close()
        assert response.status == 421
        assert "Valmont" not in body and body.startswith("This server answers only")


@pytest.mark.parametrize("host", ["127.0.0.1:{port}", "localhost:{port}", "[::1]:{port}"])
def test_the_server_answers_under_its_own_names(
    served: tuple[PreviewServer, Path], host: str
) -> None:
    server, _ = served
    port = server.server_address[1]
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    try:
        connection.request("GET", "/", headers={"Host": host.format(port=port)})
        response = connection.getresponse()
        assert response.status == 200
        assert "Valmont Institute opens" in response.read().decode()
    finally:
        connection.close()


def test_a_browser_that_leaves_before_the_answer_prints_no_traceback(
    served: tuple[PreviewServer, Path], capfd: pytest.CaptureFixture[str]
) -> None:
    """The page reloads itself after an edit, abandoning the request under way: the server
    goes on without a word, and a real failure is one line, never a traceback."""
    server, _ = served
    done = threading.Event()
    shutdown_request = server.shutdown_request

    def finished(request: object) -> None:  # called once a request is over, failed or not
        shutdown_request(request)  # type: ignore[arg-type]
        done.set()

    server.shutdown_request = finished  # type: ignore[method-assign]
    port = server.server_address[1]
    client = socket.create_connection(("127.0.0.1", port), timeout=30)
    client.sendall(f"GET / HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\n\r\n".encode())
    # Closed with a reset, as a browser drops a request it no longer wants.
    client.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    client.close()
    assert done.wait(60)
    assert "Valmont Institute opens" in get(server.url)  # still serving
    err = capfd.readouterr().err
    assert "Traceback" not in err and "Exception occurred" not in err


def test_an_unexpected_failure_is_shown_not_raised(tmp_path: Path) -> None:
    def broken() -> object:
        raise ZeroDivisionError("division by zero")

    page, error = page_or_error(broken, tmp_path / "x.md", allow_remote=False, token="t")  # type: ignore[arg-type]
    assert isinstance(error, ZeroDivisionError)
    assert "Error: ZeroDivisionError: division by zero" in page


def test_a_thread_is_shown_part_by_part_in_order(workspace: Path, settings: Settings) -> None:
    shutil.copy(RELEASE, workspace / "hydrogen.md")
    sentences = " ".join(f"Sentence number {n} about the hydrogen platform." for n in range(20))
    (workspace / "thread.toml").write_text(
        'release = "hydrogen.md"\n[[post]]\nname = "thread"\nchannel = "x"\n'
        f'text = "{sentences}"\nthread = true\nnumbered = true\nat = "2027-03-10 09:00"\n',
        encoding="utf-8",
    )
    preview = build_preview(
        workspace / "thread.toml", settings, now=datetime(2026, 12, 1, tzinfo=UTC)
    )
    (view,) = preview.posts
    parts = view.posts.parts
    assert len(parts) >= 3
    page = render_page(preview)
    positions = [page.index(html.escape(part.text, quote=False)) for part in parts]
    assert positions == sorted(positions)
    for number, part in enumerate(parts, start=1):
        assert f"part {number} of {len(parts)}" in page
        assert f"{part.length} / 280" in page


def test_release_error_shows_file_and_line_and_the_server_goes_on(
    served: tuple[PreviewServer, Path],
) -> None:
    server, release = served
    good = release.read_text(encoding="utf-8")
    lines = good.splitlines()
    number = next(n for n, line in enumerate(lines, start=1) if line.startswith("date:"))
    release.write_text(good.replace("date: 2027-03-10", "date: next spring"), encoding="utf-8")
    page = html.unescape(get(server.url))
    assert f"Error: {release}:{number}: date 'next spring' is not a date like 2027-03-10" in page
    release.write_text(good, encoding="utf-8")
    assert "Forty companies" in get(server.url)


@pytest.mark.slow
def test_preview_serve_command_serves_until_interrupted(
    workspace: Path, settings: Settings
) -> None:
    """The command itself: it prints where it serves, answers there, and Ctrl-C stops it."""
    import os
    import signal
    import subprocess
    import sys

    shutil.copy(RELEASE, workspace / "hydrogen.md")
    process = subprocess.Popen(
        [sys.executable, "-m", "distribute", "preview", "hydrogen.md", "--serve", "--port", "0"],
        cwd=workspace,
        env={**os.environ, "PYTHONUNBUFFERED": "1"},
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert process.stdout is not None
        first = process.stdout.readline()
        match = re.fullmatch(
            r"Serving the preview of hydrogen\.md on (http://127\.0\.0\.1:\d+/) "
            r"\(Ctrl-C to stop\)\n",
            first,
        )
        assert match, first + (process.stderr.read() if process.poll() is not None else "")
        assert "Valmont Institute opens" in get(match.group(1))
    finally:
        process.send_signal(signal.SIGINT)
        out, err = process.communicate(timeout=60)
    assert process.returncode == 0, err
    assert out == "Stopped.\n"
