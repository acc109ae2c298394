"""Draw docs/preview.png, the README's picture of ``distribute preview``, again.

Builds the preview of the example campaign (releases/hydrogen.toml) on sample settings in a
scratch folder and photographs its first email with headless Chromium (through Selenium)::

    python scripts/screenshot_preview.py [--out docs/preview.png]
"""

from __future__ import annotations

import argparse
import shutil
import sys
import tempfile
from datetime import UTC, datetime
from pathlib import Path

from distribute.config import load_settings
from distribute.preview import build_preview, render_page

ROOT = Path(__file__).resolve().parents[1]
CONFIG = (
    '[sender]\nfrom = "Valmont Press Office <press@example.org>"\n'
    '[unsubscribe]\nmailto = "unsubscribe@example.org"\n'
    'url = "https://www.example.org/unsubscribe?email={email}"\n'
)


def photograph(chromium: str, page: Path, folder: Path, width: int, height: int) -> bytes:
    """The viewport scrolled to the first email: its envelope and its frames."""
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

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
        "--hide-scrollbars",
        f"--user-data-dir={folder / 'profile'}",
        f"--window-size={width},{height}",
    ):
        options.add_argument(flag)
    driver = webdriver.Chrome(options=options, service=Service(shutil.which("chromedriver")))
    try:
        driver.get(page.as_uri())
        driver.execute_script("document.getElementById('email-1').scrollIntoView()")
        png: bytes = driver.get_screenshot_as_png()
        return png
    finally:
        driver.quit()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=ROOT / "docs" / "preview.png")
    parser.add_argument("--width", type=int, default=1120)
    parser.add_argument("--height", type=int, default=860)
    args = parser.parse_args()
    chromium = shutil.which("chromium") or shutil.which("chromium-browser")
    if chromium is None or shutil.which("chromedriver") is None:
        print("chromium and chromedriver are needed", file=sys.stderr)
        return 1
    with tempfile.TemporaryDirectory() as scratch:
        folder = Path(scratch)
        (folder / "distribute.toml").write_text(CONFIG, encoding="utf-8")
        settings = load_settings(workspace=folder)
        preview = build_preview(
            ROOT / "releases" / "hydrogen.toml", settings, now=datetime.now(UTC)
        )
        # The page names its source: show the path as a reader of the README knows it.
        preview.source = Path("releases/hydrogen.toml")
        page = folder / "preview.html"
        page.write_text(render_page(preview), encoding="utf-8")
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_bytes(photograph(chromium, page, folder, args.width, args.height))
    print(f"Wrote {args.out} ({args.out.stat().st_size / 1024:.0f} KB)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
