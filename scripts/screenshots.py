"""Screenshots of every tab for the README, taken from a real session in a real browser.

Starts the studio (quick demo preset: the real MiniLM-L6 on the shipped IMDb sample) on a fresh runs
folder, trains it to the end from the Train tab, tries the Playground, and writes one PNG per tab:

    python scripts/screenshots.py [--out assets/screenshots] [--port 7890]

or, over an existing runs folder (e.g. a grid run on a GPU), the Compare tab of one grid as compare.png:

    python scripts/screenshots.py --compare RUNS_DIR --grid goemotions_real

or the Train tab's results of the newest finished run of a runs folder (test metrics, calibrated confidence,
confusion matrix, reliability diagram) as train_results.png (or --name, e.g. train_results_multilabel.png):

    python scripts/screenshots.py --results RUNS_DIR [--name train_results_multilabel.png]

or the Playground with the newest finished run of a runs folder predicting one text (a multi-label run's answer
line and label bars with their thresholds) as playground_multilabel.png (or --name):

    python scripts/screenshots.py --playground RUNS_DIR [--text "Thank you so much, I love this!"]

or the Compare tab running a grid on a Ray cluster (a local one: `ray start --head`, the app started with
STUDIO_RAY_ADDRESS): the default CPU grid (cpu_quick_methods, 2 runs) while it runs and once it is done, as
compare_ray_running.png and compare_ray_done.png:

    python scripts/screenshots.py --ray

Needs Chromium (Debian: apt install chromium) and playwright (pip). Takes ~5 minutes on 2 CPU cores.
Prints the wall time of the training and its test accuracy as seen in the page.
"""

from __future__ import annotations

import argparse
import os
import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
MULTI_LABEL_TEXT = "Thank you so much, I love this! Best news all week."
"""A comment that carries several emotions (gratitude, love, joy, excitement): a multi-label run's case."""


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
    parser.add_argument(
        "--playground", metavar="RUNS_DIR", help="only the Playground, with this folder's newest finished run"
    )
    parser.add_argument("--text", default=MULTI_LABEL_TEXT, help="the text --playground predicts")
    parser.add_argument("--name", help="the PNG's file name (--results, --playground)")
    parser.add_argument("--ray", action="store_true", help="only the Compare tab running a grid on a local Ray cluster")
    args = parser.parse_args()
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    runs = args.compare or args.results or args.playground or tempfile.mkdtemp(prefix="studio-screenshots-")
    env = {**os.environ, "STUDIO_RUNS_DIR": runs, "GRADIO_SERVER_PORT": str(args.port), "HF_HUB_OFFLINE": "1"}
    if args.ray:
        env["STUDIO_RAY_ADDRESS"] = start_ray()
    server = subprocess.Popen([sys.executable, "app.py"], cwd=ROOT, env=env)
    try:
        if args.ray:
            return shoot_ray(f"http://127.0.0.1:{args.port}", out, args.chromium)
        url = f"http://127.0.0.1:{args.port}"
        if args.compare:
            return shoot_compare(url, out, args.chromium, args.grid)
        if args.results:
            return shoot_results(url, out / (args.name or "train_results.png"), args.chromium)
        if args.playground:
            name = args.name or "playground_multilabel.png"
            return shoot_playground(url, out / name, args.chromium, newest_finished(runs), args.text)
        return shoot(url, out, args.chromium)
    finally:
        server.terminate()
        server.wait(30)
        if args.ray:
            subprocess.run([sys.executable, "-m", "ray.scripts.scripts", "stop", "--force"], capture_output=True)


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


def start_ray(port: int = 6399) -> str:
    """A one-machine Ray cluster on loopback, as `ray start --head` gives a user; its address."""
    cmd = [sys.executable, "-m", "ray.scripts.scripts", "start", "--head", f"--port={port}", "--num-cpus=2",
           "--node-ip-address=127.0.0.1", "--include-dashboard=false", "--disable-usage-stats"]  # fmt: skip
    subprocess.run(cmd, check=True, capture_output=True)
    return f"127.0.0.1:{port}"


def shoot_ray(url: str, out: Path, chromium: str, grid: str = "cpu_quick_methods") -> int:
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        browser, page = _open(p, url, chromium)
        page.get_by_role("tab", name="6 · Compare (grids)").click()
        page.locator("#grid-choice input").click()
        page.get_by_role("option", name=grid, exact=True).click()
        page.locator("#grid-start").click()
        page.get_by_text("on Ray at").first.wait_for(timeout=120_000)
        time.sleep(75)  # its runs start on the cluster's workers and draw their first curves
        page.screenshot(path=out / "compare_ray_running.png", full_page=True)
        page.locator("#grid-progress").get_by_text("finished").wait_for(timeout=900_000)
        time.sleep(5)
        page.screenshot(path=out / "compare_ray_done.png", full_page=True)
        print(page.locator("#grid-progress").inner_text())
        browser.close()
    return 0


def newest_finished(runs: str) -> str:
    """The id of the newest run of the folder that saved a model (what the Playground lists)."""
    sys.path.insert(0, str(ROOT))
    from studio.registry import Registry

    registry = Registry(runs)
    for record in registry.list():
        if record.status in ("completed", "stopped") and (registry.run_dir(record.id) / "label_map.json").is_file():
            return record.id
    raise SystemExit(f"{runs} has no finished run with a model")


def shoot_playground(url: str, path: Path, chromium: str, run_id: str, text: str) -> int:
    """Run A set to `run_id`, `text` predicted; the tab from the run pickers to the answer (bars or Label)."""
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        browser, page = _open(p, url, chromium)
        page.get_by_text(re.compile(r"\d rows")).first.wait_for(timeout=120_000)  # hydrated: the Data tab inspected
        page.get_by_role("tab", name="5 · Playground").click()
        page.locator("#run-a input").click()
        page.get_by_role("option", name=run_id).first.click()
        page.locator("#play-text textarea").fill(text)
        page.locator("#predict").click()
        answer = page.locator("#bars-a").get_by_text("threshold", exact=True).or_(page.locator("#label-a h2"))
        answer.first.wait_for(timeout=300_000)  # the model loads on the first prediction
        time.sleep(3)
        page.screenshot(path=path, full_page=True)
        print(page.locator("#play-verdict").inner_text())
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
        page.locator("#run-results-row").screenshot(path=out)
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
        page.get_by_text("Advanced: the method").click()  # (they are under Advanced)
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
