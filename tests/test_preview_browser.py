"""The preview page in a real headless Chromium, driven through ChromeDriver (Selenium).

Checked from the browser's own records: its console (no error, CSP violations included) and
its network log (every request it made, from the page and from the email frames), the frames'
documents as laid out (the email is there; at 375 px it does not scroll sideways), and, with
``--serve``, the page reloading itself after an edit.
"""

from __future__ import annotations

import html
import json
import os
import re
import shutil
import threading
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest

from distribute.config import Settings, load_settings
from distribute.preview import Preview, build_preview, render_page
from distribute.preview_server import preview_server

ROOT = Path(__file__).resolve().parents[1]
CAMPAIGN = ROOT / "releases" / "hydrogen.toml"
NOW = datetime(2026, 12, 1, 9, 0, tzinfo=UTC)
LOCAL_HOSTS = {"127.0.0.1", "localhost", "::1"}
NETWORK = {"http", "https", "ws", "wss", "ftp"}

FRAMES = """
return Array.from(document.querySelectorAll('iframe')).map(function (f) {
  var d = f.contentDocument, c = d.querySelector('table.container');
  return {
    kind: f.className,
    h1: (d.querySelector('h1') || {textContent: ''}).textContent,
    width: d.documentElement.clientWidth,
    scroll: d.documentElement.scrollWidth,
    height: f.getBoundingClientRect().height,
    content: d.documentElement.scrollHeight,
    background: c ? getComputedStyle(c).backgroundColor : '',
    text: d.body.innerText
  };
});
"""


@pytest.fixture(scope="module")
def driver(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Any]:
    required = os.environ.get("DISTRIBUTE_REQUIRE_BROWSER")
    chromium = shutil.which("chromium") or shutil.which("chromium-browser")
    chromedriver = shutil.which("chromedriver")
    try:
        from selenium import webdriver
        from selenium.webdriver.chrome.service import Service
    except ImportError:
        chromium = None
    if chromium is None or chromedriver is None:
        if required:
            pytest.fail("chromium, chromedriver and selenium are required here")
        pytest.skip("chromium, chromedriver or selenium is not installed")
    options = webdriver.ChromeOptions()
    options.binary_location = chromium
    for flag in (
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--no-first-run",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        f"--user-data-dir={tmp_path_factory.mktemp('profile')}",
        "--window-size=1280,900",
    ):
        options.add_argument(flag)
    # The console and every network event, read back after each page load.
    options.set_capability("goog:loggingPrefs", {"browser": "ALL", "performance": "ALL"})
    browser = webdriver.Chrome(options=options, service=Service(chromedriver))
    try:
        yield browser
    finally:
        browser.quit()


def load(driver: Any, url: str) -> tuple[list[str], list[str]]:
    """Open ``url`` once its frames have loaded; (console errors, every URL requested)."""
    from selenium.webdriver.support.ui import WebDriverWait

    driver.get_log("browser")
    driver.get_log("performance")
    driver.get(url)
    WebDriverWait(driver, 30, poll_frequency=0.1).until(
        lambda d: d.execute_script(
            "return document.readyState === 'complete' && Array.from("
            "document.querySelectorAll('iframe')).every(function (f) {"
            "return f.contentDocument && f.contentDocument.readyState === 'complete'; });"
        )
    )
    errors = [e["message"] for e in driver.get_log("browser") if e["level"] == "SEVERE"]
    requested = []
    for entry in driver.get_log("performance"):
        event = json.loads(entry["message"])["message"]
        if event["method"] == "Network.requestWillBeSent":
            requested.append(event["params"]["request"]["url"])
    return errors, requested


def off_machine(urls: list[str]) -> list[str]:
    """The requests that went to the network and not to this machine (chrome:// and
    chrome-untrusted:// are the browser's own start page, loaded as the driver starts)."""
    return [
        url
        for url in urls
        if urlsplit(url).scheme in NETWORK and urlsplit(url).hostname not in LOCAL_HOSTS
    ]


def first_h1(markup: str) -> str:
    match = re.search(r"<h1[^>]*>(.*?)</h1>", markup, re.DOTALL)
    assert match
    return " ".join(html.unescape(re.sub(r"<[^>]+>", "", match.group(1))).split())


def pictured(folder: Path) -> Path:
    """A release whose image is on a remote server, and whose body links to one."""
    path = folder / "pictured.md"
    path.write_text(
        "---\ntitle: A pictured release about a test hall\n"
        "image: https://images.example.com/hall.jpg\nimage_alt: The test hall at night\n"
        "url: https://www.example.org/press/hall\nhashtags: [hydrogen]\n---\n\n"
        "# A pictured release about a test hall\n\n**A fictional lead paragraph.**\n\n"
        "The hall opens in [spring](https://www.example.org/spring).\n",
        encoding="utf-8",
    )
    return path


@pytest.fixture(params=["example-campaign", "seed", "remote-image"])
def source(request: pytest.FixtureRequest, workspace: Path) -> Path:
    if request.param == "seed":
        seed: Path = request.getfixturevalue("seed_path")
        return seed
    if request.param == "remote-image":
        return pictured(workspace)
    return CAMPAIGN


def test_preview_in_chromium(driver: Any, source: Path, settings: Settings, tmp_path: Path) -> None:
    preview = build_preview(source, settings, now=NOW)
    page = tmp_path / "preview.html"
    page.write_text(render_page(preview), encoding="utf-8")
    errors, requested = load(driver, page.as_uri())
    assert errors == []
    assert requested and off_machine(requested) == []
    frames = driver.execute_script(FRAMES)
    assert len(frames) == 4 * len(preview.messages)
    for index, view in enumerate(preview.messages):
        for frame in frames[4 * index : 4 * index + 4]:
            assert " ".join(frame["h1"].split()) == first_h1(view.html)
            assert frame["text"].strip()
            # Each frame is as tall as its email: no scroll bar eats into the width.
            assert frame["height"] >= frame["content"]
            expected = 375 if "w375" in frame["kind"] else 600
            assert frame["width"] == expected, frame["kind"]
            assert frame["scroll"] <= frame["width"], frame["kind"]  # no sideways scrolling
        # The dark frames apply the email's own dark-mode rules; the light ones do not.
        light, dark = frames[4 * index]["background"], frames[4 * index + 2]["background"]
        assert light and dark and light != dark
    shot = tmp_path / f"preview-{source.stem}.png"
    assert driver.save_screenshot(str(shot))
    assert shot.read_bytes().startswith(b"\x89PNG\r\n\x1a\n") and shot.stat().st_size > 10_000


def test_the_remote_image_is_a_box_with_its_alt_text(
    driver: Any, workspace: Path, settings: Settings, tmp_path: Path
) -> None:
    preview = build_preview(pictured(workspace), settings, now=NOW)
    page = tmp_path / "preview.html"
    page.write_text(render_page(preview), encoding="utf-8")
    load(driver, page.as_uri())
    frames = driver.execute_script(FRAMES)
    assert all("The test hall at night" in frame["text"] for frame in frames)
    assert all("remote image from images.example.com not loaded" in f["text"] for f in frames)


def test_allow_remote_requests_are_seen_by_the_same_checks(
    driver: Any, workspace: Path, settings: Settings, tmp_path: Path
) -> None:
    # The checks above would catch a request off the machine: with --allow-remote there is one.
    preview = build_preview(pictured(workspace), settings, now=NOW)
    page = tmp_path / "remote.html"
    page.write_text(render_page(preview, allow_remote=True), encoding="utf-8")
    _, requested = load(driver, page.as_uri())
    assert "https://images.example.com/hall.jpg" in off_machine(requested)


@pytest.fixture
def served(workspace: Path, settings: Settings) -> Iterator[tuple[str, Path]]:
    release = workspace / "hydrogen.md"
    shutil.copy(ROOT / "releases" / "hydrogen.md", release)
    server = preview_server(release, lambda: load_settings(workspace=workspace))
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield server.url, release
    finally:
        server.shutdown()
        server.server_close()
        thread.join()


def test_served_page_reloads_itself_after_an_edit(
    driver: Any, served: tuple[str, Path], workspace: Path
) -> None:
    from selenium.webdriver.support.ui import WebDriverWait

    url, release = served
    errors, requested = load(driver, url)
    assert errors == [] and off_machine(requested) == []
    assert "Forty companies" in driver.page_source
    # Set in this page only: a reload clears it.
    driver.execute_script("window.keptUntilReload = true;")
    release.write_text(
        release.read_text(encoding="utf-8").replace("Forty companies", "Sixty companies"),
        encoding="utf-8",
    )
    WebDriverWait(driver, 30, poll_frequency=0.1).until(
        lambda d: d.execute_script("return window.keptUntilReload !== true;")
    )
    WebDriverWait(driver, 30, poll_frequency=0.1).until(
        lambda d: "Sixty companies" in d.page_source
    )
    # A broken template: the page (reloaded by itself) shows the error with file and line.
    template = workspace / "templates" / "email" / "press-release.txt.j2"
    template.parent.mkdir(parents=True)
    template.write_text("Hello {{ release.title\n", encoding="utf-8")
    WebDriverWait(driver, 30, poll_frequency=0.1).until(
        lambda d: "cannot be built" in d.page_source
    )
    shown = driver.find_element("id", "error").text
    assert shown.startswith(f"Error: {template}:1: template syntax error")
    template.unlink()
    WebDriverWait(driver, 30, poll_frequency=0.1).until(
        lambda d: "Sixty companies" in d.page_source
    )
    assert preview_has_frames(driver)


def preview_has_frames(driver: Any) -> bool:
    return len(driver.execute_script(FRAMES)) == 4


def test_served_preview_is_the_one_written_to_a_file(
    served: tuple[str, Path], settings: Settings
) -> None:
    import urllib.request

    url, release = served
    with urllib.request.urlopen(url, timeout=30) as response:
        body = response.read().decode("utf-8")
    preview: Preview = build_preview(release, settings, now=datetime.now(UTC))
    assert first_h1(preview.messages[0].html) in html.unescape(body)
