"""How long `python app.py` takes until the page answers: start the app, poll it, stop it.

    python benchmarks/startup.py [--port 7899]

Prints the seconds from process start to the first HTTP 200 of the page, and to the first answer of the
config endpoint Gradio's frontend loads next. Time it several times with a whole-process timer (e.g.
`/usr/bin/time -v`, or several runs of this script) and quote the median: these machines are noisy.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--port", type=int, default=7899)
    parser.add_argument("--timeout", type=float, default=120)
    args = parser.parse_args()
    env = {**os.environ, "GRADIO_SERVER_PORT": str(args.port), "STUDIO_RUNS_DIR": tempfile.mkdtemp(),
           "HF_HUB_OFFLINE": "1", "GRADIO_ANALYTICS_ENABLED": "False"}  # fmt: skip
    t0 = time.perf_counter()
    app = subprocess.Popen([sys.executable, "app.py"], cwd=ROOT, env=env, stdout=subprocess.DEVNULL,
                           stderr=subprocess.DEVNULL)  # fmt: skip
    try:
        page = _wait(f"http://127.0.0.1:{args.port}/", t0, args.timeout)
        config = _wait(f"http://127.0.0.1:{args.port}/config", t0, args.timeout)
    finally:
        app.terminate()
        app.wait(30)
    print(f"page answers after {page:.2f} s; config after {config:.2f} s")
    return 0


def _wait(url: str, t0: float, timeout: float) -> float:
    while time.perf_counter() - t0 < timeout:
        try:
            with urllib.request.urlopen(url, timeout=2) as response:
                if response.status == 200:
                    return time.perf_counter() - t0
        except OSError:
            time.sleep(0.05)
    raise SystemExit(f"{url} did not answer within {timeout} s")


if __name__ == "__main__":
    sys.exit(main())
