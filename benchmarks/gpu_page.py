"""The page on a GPU (issue 23, point 12): `python app.py` started on the GPU machine and driven through
gradio_client as a user's browser would, for a bert-base-sized LoRA run.

The model is bert-base-uncased's architecture with random weights (its published config; no weights reach the
GPU machine) and its real WordPiece tokenizer (tests/assets/tokenizers); the data is the shipped IMDb sample.
The driver:

1. writes the model folder and a preset, and starts `python app.py` (STUDIO_PRESET, STUDIO_RUNS_DIR) on a port;
2. builds the same app in this process (not launched) only to know the order of the Start endpoint's inputs,
   and sends the preset's values, as a fresh page would;
3. polls `/tick` every 2 s until the run ends, keeping what the page shows: status, progress, and the hardware
   figure (GPU memory and utilisation from pynvml);
4. asks the playground (`/predict`) two reviews with the finished run.

Writes to --out: transcript.md (each call and what it returned, trimmed) and hardware.json (the last hardware
figure as the page drew it, plotly JSON, to render here). Run on the device machine:
    python benchmarks/gpu_page.py --out $OUT
"""

from __future__ import annotations

import argparse
import json
import os
import socket
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "tests"))


def model_folder(root: Path) -> Path:
    """bert-base-uncased's architecture, random weights, its real tokenizer."""
    import torch
    from transformers import AutoTokenizer, BertConfig, BertModel

    folder = root / "bert-base-random"
    torch.manual_seed(0)
    BertModel(BertConfig()).save_pretrained(folder)  # BertConfig() is bert-base-uncased's config
    AutoTokenizer.from_pretrained(ROOT / "tests" / "assets" / "tokenizers" / "bert-base-uncased").save_pretrained(
        folder
    )
    return folder


def preset(root: Path, model: Path, smoke: bool) -> Path:
    path = root / "gpu_page.yaml"
    data = (
        "{source: imdb-sample, max_length: 32, max_samples: 200}" if smoke else "{source: imdb-sample, max_length: 512}"
    )
    path.write_text(
        "version: 4\nname: gpu-page\ndescription: bert-base-sized LoRA on the IMDb sample, driven through the page\n"
        f"data: {data}\nmodel: {{name: {model}}}\nmethod: {{name: lora, r: 16, alpha: 32}}\n"
        "train: {epochs: 4, batch_size: 32, learning_rate: 2.0e-4, eval_strategy: epoch, logging_steps: 5}\n",
        encoding="utf-8",
    )
    return path


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start_app(runs: Path, preset_path: Path, port: int, log: Path) -> subprocess.Popen:
    env = {**os.environ, "STUDIO_RUNS_DIR": str(runs), "STUDIO_PRESET": str(preset_path), "GRADIO_SERVER_NAME":
           "127.0.0.1", "GRADIO_SERVER_PORT": str(port), "GRADIO_ANALYTICS_ENABLED": "False"}  # fmt: skip
    process = subprocess.Popen([sys.executable, "app.py"], cwd=ROOT, env=env, stdout=log.open("w"),
                               stderr=subprocess.STDOUT)  # fmt: skip
    deadline = time.time() + 180
    while time.time() < deadline:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
            return process
        except OSError:
            if process.poll() is not None:
                raise SystemExit(f"app.py exited: {log.read_text()[-2000:]}") from None
            time.sleep(1)
    raise SystemExit("app.py did not start in 180 s")


def start_args(preset_path: Path, scratch: Path) -> dict:
    """The Start endpoint's inputs at the preset's values, in order (the same app built here, not launched)."""
    from test_ui_live import form

    from studio.ui import build_app

    return form(build_app(scratch, preset=str(preset_path)), "start")


def shown(value: object, limit: int = 400) -> str:
    text = value if isinstance(value, str) else json.dumps(value, default=str)
    return " ".join(str(text).split())[:limit]


def gpu_now() -> str:
    """Memory used and utilisation of GPU 0, as nvidia-smi reads them (beside what the page shows)."""
    query = ["nvidia-smi", "--query-gpu=memory.used,utilization.gpu", "--format=csv,noheader"]
    try:
        return subprocess.run(query, capture_output=True, text=True, timeout=10).stdout.strip()
    except (OSError, subprocess.TimeoutExpired):
        return "n/a"


def drive(client: object, args: dict, out: Path, lines: list[str]) -> str:
    t0 = time.time()
    started = client.predict(api_name="/start", **args)
    lines.append(f"- `/start` ({time.time() - t0:.1f} s): {shown(started)}")
    last, hardware, drawn, status = None, None, None, ""
    while time.time() - t0 < 900:
        out_tick = client.predict(api_name="/tick")
        status, progress = out_tick[0], out_tick[1]
        if isinstance(out_tick[-1], dict) and "plot" in out_tick[-1]:  # redrawn every 4th tick; else a skip
            hardware = out_tick[-1]
        if status != last or (hardware is not None and hardware is not drawn):
            redrawn = "; hardware plot redrawn" if hardware is not drawn else ""
            lines.append(f"- t+{time.time() - t0:.0f} s `/tick` status: {shown(status, 200)}; progress: "
                         f"{shown(progress, 300)}; GPU (nvidia-smi): {gpu_now()}{redrawn}")  # fmt: skip
            last, drawn = status, hardware
        if any(word in status for word in ("completed", "failed", "stopped")):
            break
        time.sleep(2)
    lines.append(f"- t+{time.time() - t0:.0f} s: the run ended: {shown(status, 600)}")
    if hardware:
        (out / "hardware.json").write_text(json.dumps(hardware, default=str), encoding="utf-8")
    return status


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--work", type=Path, default=Path("/tmp/gpu_page"))
    parser.add_argument("--smoke", action="store_true", help="a tiny model and 200 rows: to check the driver on a CPU")
    args = parser.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    args.work.mkdir(parents=True, exist_ok=True)
    import torch
    from gradio_client import Client

    device = torch.cuda.get_device_name(0) if torch.cuda.is_available() else "CPU"
    lines = [f"# The page on {device}", "",
             f"torch {torch.__version__}, {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}", ""]  # fmt: skip
    if args.smoke:
        from tiny import make_tiny_model

        model = make_tiny_model("bert", args.work / "tiny-bert")
    else:
        model = model_folder(args.work)
    path = preset(args.work, model, args.smoke)
    port = free_port()
    app = start_app(args.work / "runs", path, port, args.out / "app.log")
    try:
        client = Client(f"http://127.0.0.1:{port}/", verbose=False)
        lines.append(f"- `python app.py` answering on port {port}")
        status = drive(client, start_args(path, args.work / "scratch-runs"), args.out, lines)
        from studio.registry import Registry

        run_id = Registry(args.work / "runs").list()[0].id  # the newest run: the one just trained
        client.predict(api_name="/playground_runs")  # what opening the Playground tab does
        for text in ("What a wonderful, moving film.", "Dull, far too long, and badly acted."):
            answer = client.predict(run_id, None, text, 0, api_name="/predict")
            lines.append(f"- `/predict` {text!r}: {shown(answer[0], 300)}")
        lines.append(f"\nfinal status: {shown(status, 800)}")
    finally:
        app.terminate()
        app.wait(30)
        (args.out / "transcript.md").write_text("\n".join(lines) + "\n", encoding="utf-8")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
