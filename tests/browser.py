"""A Chromium page on a live app, for the UI modules that open one browser for one test."""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"


@contextmanager
def opened(url: str) -> Iterator:
    """Debian's Chromium (headless) on `url`, hydrated: the app's source has been inspected on load."""
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox"])
        try:
            page = browser.new_page(viewport={"width": 1400, "height": 1000})
            page.set_default_timeout(60_000)
            page.goto(url)
            page.get_by_text("240 rows").first.wait_for()
            yield page
        finally:
            browser.close()


def screenshots(fallback: Path) -> Path:
    """$STUDIO_SCREENSHOTS, else `fallback`: where a test's screenshots go for a person to look at."""
    folder = Path(os.environ.get("STUDIO_SCREENSHOTS") or fallback)
    folder.mkdir(parents=True, exist_ok=True)
    return folder
