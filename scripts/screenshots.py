"""Screenshots of every tab for the README, taken from a real session in a real browser.

Starts the studio (quick demo preset: the real MiniLM-L6 on the shipped IMDb sample) on a fresh runs
folder, trains it to the end from the Train tab, tries the Playground, and writes one PNG per tab:

    python scripts/screenshots.py [--out assets/screenshots] [--port 7890]

or, over an existing runs folder (e.g. a grid run on a GPU), the Compare tab of one grid as compare.png:

    python scripts/screenshots.py --compare RUNS_DIR --grid goemotions_real

or the Train tab's results of the newest finished run of a runs folder (test metrics, calibrated confidence,
confusion matrix, reliability diagram) as train_results.png:

    python scripts/screenshots.py --results RUNS_DIR

Needs Chromium (Debian: apt install chromium) and playwright (pip). Takes ~5 minutes on 2 CPU cores.
Prints the wall time of the training and its test accuracy as seen in the page.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", default=str(ROOT / "assets" / "screenshots"))
    parser.add_argument("--port", type=int, default=7890)
    parser.add_argument("--chromium", default="/usr/bin/chromium")
    parser.add_argument("--compare", metavar="RUNS_DIR", help="only the Compare tab, over this runs folder")
    parser.add_argument("--grid", default="goemotions_real", help="the grid --compare shows")
    parser.add_argument(
        "--results", metavar="RUNS_DIR", help="only the Train tab's results of this folder's newest run"
    )
    args = parser.parse_args()
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    runs = args.compare or args.results or tempfile.mkdtemp(prefix="studio-screenshots-")
    env = {**os.environ, "STUDIO_RUNS_DIR": runs, "GRADIO_SERVER_PORT": str(args.port), "HF_HUB_OFFLINE": "1"}
    server = subprocess.Popen([sys.executable, "app.py"], cwd=ROOT, env=env)
    try:
        url = f"http://127.0.0.1:{args.port}"
        if args.compare:
            return shoot_compare(url, out, args.chromium, args.grid)
        if args.results:
            return shoot_results(url, out, args.chromium)
        return shoot(url, out, args.chromium)
    finally:
        server.terminate()
        server.wait(30)


def _open(p, url: str, chromium: str):
    browser = p.chromium.launch(executable_path=chromium, args=["--no-sandbox"])
    page = browser.new_page(viewport={"width": 1440, "height": 1000})
    for _ in range(60):  # the server takes a few seconds to come up
        try:
            page.goto(url)
            break
        except Exception:
            time.sleep(1)
    page.get_by_text("Fine-Tune Studio").first.wait_for(timeout=60_000)
    return browser, page


def shoot_compare(url: str, out: Path, chromium: str, grid: str) -> int:
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        browser, page = _open(p, url, chromium)
        page.get_by_role("tab", name="6 · Compare (grids)").click()
        page.locator("#grid-choice input").click()
        page.get_by_role("option", name=grid, exact=True).click()
        page.get_by_role("button", name="List its runs").click()
        page.get_by_text("Accuracy vs training time").first.wait_for(timeout=120_000)
        time.sleep(4)
        page.screenshot(path=out / "compare.png", full_page=True)
        browser.close()
    return 0


def shoot_results(url: str, out: Path, chromium: str) -> int:
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        browser, page = _open(p, url, chromium)
        page.get_by_role("tab", name="3 · Train").click()  # a fresh page attaches to the newest run
        page.get_by_text("Calibrated confidence").first.wait_for(timeout=120_000)
        page.locator("#reliability").get_by_text("perfect").first.wait_for(timeout=60_000)
        time.sleep(3)
        page.locator("#run-results-row").screenshot(path=out / "train_results.png")
        browser.close()
    return 0


def shoot(url: str, out: Path, chromium: str) -> int:
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        browser, page = _open(p, url, chromium)
        page.get_by_text("rows").first.wait_for(timeout=120_000)  # the Data tab inspected its source on load
        time.sleep(2)
        page.screenshot(path=out / "data.png", full_page=True)

        page.get_by_role("tab", name="2 · Model & method").click()
        page.get_by_text("estimated").first.wait_for(timeout=60_000)
        page.get_by_label("lora", exact=True).check()  # show the adapter settings in the picture
        time.sleep(3)
        page.screenshot(path=out / "model.png", full_page=True)
        page.get_by_label("full", exact=True).check()  # the quick demo is a full fine-tune
        time.sleep(2)

        page.get_by_role("tab", name="3 · Train").click()
        started = time.time()
        page.locator("#start").click()
        page.get_by_text("test accuracy").first.wait_for(timeout=1_200_000)
        seconds = time.time() - started
        time.sleep(4)
        page.screenshot(path=out / "train.png", full_page=True)
        result = page.locator("#run-results").inner_text().splitlines()[0]

        page.get_by_role("tab", name="4 · Runs").click()
        time.sleep(3)
        page.locator("#run-select input").click()  # (dataframe cells do not take clicks in headless Chromium)
        page.get_by_role("option").first.click()
        page.locator("#run-details").get_by_role("heading", name="Test accuracy").wait_for(timeout=60_000)
        time.sleep(3)
        page.screenshot(path=out / "runs.png", full_page=True)

        page.get_by_role("tab", name="5 · Playground").click()
        time.sleep(2)
        page.locator("#run-a input").click()
        page.get_by_role("option").first.click()
        page.locator("#play-text textarea").fill("A beautiful, funny and moving film: I would watch it again tomorrow.")
        page.locator("#predict").click()
        page.locator("#label-a").get_by_text("positive").first.wait_for(timeout=120_000)
        time.sleep(2)
        page.screenshot(path=out / "playground.png", full_page=True)
        browser.close()
    print(f"trained in {seconds:.0f} s (click to result); {result}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
