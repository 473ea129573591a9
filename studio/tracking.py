"""Experiment tracking in MLflow: a run's parameters, live metrics, test results, plots and model.

When ``MLFLOW_TRACKING_URI`` is set (and the run's ``train.mlflow`` is not ``off``), each run is mirrored into
one MLflow run, named by the studio's run id and tagged ``studio.run_id`` with it; the run folder's
``mlflow.json`` holds the MLflow run's id, so each is found from the other, and a resumed run continues the
same MLflow run. What is logged comes from the run's own event stream (studio/events.py), the stream its page
and ``metrics.jsonl`` are built from, rather than from the Trainer's MLflowCallback: the studio's config tree
(not TrainingArguments) is the parameters, validation and test results use the studio's metric names, and the
test results, plots and model come after the Trainer is done.

Tracking never costs the run: every call to MLflow runs in a background thread, and the first failure (a server
down or unreachable, a refused request) turns tracking off for that run with a warning in its log; the run
goes on and keeps its local logs. The client is ``mlflow-skinny`` (requirements.txt); a tracking server is the
full ``mlflow`` package, installed wherever the server runs.
"""

from __future__ import annotations

import contextlib
import importlib.util
import json
import logging
import math
import os
import queue
import shutil
import socket
import tempfile
import threading
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from studio.events import Evaluation, Event, Note, TrainLog

if TYPE_CHECKING:
    from studio.config import RunConfig
    from studio.registry import Registry
    from studio.results import RunSummary

log = logging.getLogger(__name__)

TRACKING_ENV = "MLFLOW_TRACKING_URI"
EXPERIMENT_ENV = "MLFLOW_EXPERIMENT_NAME"
DEFAULT_EXPERIMENT = "fine-tune-studio"
WAIT_ENV = "STUDIO_MLFLOW_WAIT_S"
WAIT_S = 900.0
"""How long a finishing run waits for its uploads (the model's weights) before it ends without them."""
CHECK_S = 10.0
"""While a finishing run waits for its uploads, it asks the server for its health this often."""
REACH_TIMEOUT_S = 5.0
"""A tracking server that does not answer its health check within this is taken as down."""
LINK_FILE = "mlflow.json"
RUN_ID_TAG = "studio.run_id"
PARAM_LIMIT = 6000
"""MLflow's longest parameter value (longer ones are cut)."""
BATCH = 100
"""MLflow takes at most 100 parameters in one request."""
NOT_MODEL = {"predictions.parquet", "metrics.jsonl", "log.txt", "eval.json", LINK_FILE, "checkpoints", "STOP"}
"""Files of a run folder that are results or logs, not the model a `Predictor` loads."""
SUMMARY_NUMBERS = ("test", "validation", "efficiency", "memory", "calibration", "best_checkpoint_step")
"""The parts of eval.json whose numbers become metrics at the end of a run."""
RESULTS = ("eval.json", "config.yaml", "metrics.jsonl", "log.txt", "predictions.parquet")
_STATUS = {"completed": "FINISHED", "stopped": "KILLED", "failed": "FAILED", "interrupted": "FAILED"}


@dataclass(frozen=True)
class MlflowLink:
    """Where a studio run is tracked (its folder's mlflow.json): enough to find the MLflow run again."""

    tracking_uri: str
    experiment_id: str
    run_id: str

    def write(self, run_dir: Path) -> None:
        (run_dir / LINK_FILE).write_text(json.dumps(asdict(self), indent=1) + "\n", encoding="utf-8")

    @classmethod
    def read(cls, run_dir: Path) -> MlflowLink | None:
        try:
            data = json.loads((run_dir / LINK_FILE).read_text(encoding="utf-8"))
            return cls(str(data["tracking_uri"]), str(data["experiment_id"]), str(data["run_id"]))
        except (OSError, ValueError, KeyError, TypeError):
            return None


def tracker_for(config: RunConfig, run_id: str, run_dir: Path, emit: Callable[[Event], None]) -> Tracker | None:
    """The run's tracker when MLflow tracking is asked for (MLFLOW_TRACKING_URI set, train.mlflow not off),
    already opening its MLflow run in the background; None (with a note when something is missing) otherwise."""
    uri = os.environ.get(TRACKING_ENV, "").strip()
    if config.train.mlflow == "off" or not uri:
        return None
    if importlib.util.find_spec("mlflow") is None:
        emit(Note(f"MLflow: {TRACKING_ENV} is set but mlflow is not installed (pip install mlflow-skinny): "
                  "this run logs locally only"))  # fmt: skip
        return None
    tracker = Tracker(uri, run_id, run_dir, emit, with_model=config.train.mlflow != "without_model")
    tracker.start(config)
    return tracker


def flat_params(config: RunConfig, run_id: str) -> dict[str, str]:
    """The config tree as MLflow parameters (``train.learning_rate``: "0.001"), with the run id, model and
    method under their own names; lists and mappings as JSON, values cut at MLflow's limit."""
    out: dict[str, str] = {"run_id": run_id, "model": config.model.name, "method": config.method.name,
                           "config_hash": config.config_hash()}  # fmt: skip

    def walk(prefix: str, value: Any) -> None:
        if isinstance(value, dict) and value:
            for key, inner in value.items():
                walk(f"{prefix}.{metric_key(str(key))}" if prefix else str(key), inner)
        else:
            text = value if isinstance(value, str) else json.dumps(value)
            out[prefix] = text[:PARAM_LIMIT]

    walk("", config.to_dict())
    return out


def numbers(prefix: str, value: Any) -> dict[str, float]:
    """Every finite number in a nested mapping, keyed by its path (``test/per_class/pos/f1``); lists and flags
    left out (the confusion matrix is in eval.json and the plots)."""
    if isinstance(value, dict):
        out: dict[str, float] = {}
        for key, inner in value.items():
            out.update(numbers(f"{prefix}/{metric_key(str(key))}" if prefix else metric_key(str(key)), inner))
        return out
    if isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value):
        return {prefix: float(value)}
    return {}


def metric_key(name: str) -> str:
    """A name MLflow takes as a metric or parameter key: letters, digits, ``_-. /`` (a label's other characters
    become _), and no empty, ``.`` or ``..`` part between slashes (MLflow refuses names a path would rewrite)."""
    kept = "".join(c if c.isalnum() or c in "_-. /" else "_" for c in name)
    return "/".join(part if part.strip(" .") else "_" for part in kept.split("/"))


class Tracker:
    """One studio run's MLflow run. Calls wait on a queue and run in order in a background thread; the first
    one that fails turns tracking off for the run, with a warning in its log (the run goes on)."""

    def __init__(self, uri: str, run_id: str, run_dir: Path, emit: Callable[[Event], None], with_model: bool = True):
        self.uri, self.studio_id, self.run_dir, self.emit, self.with_model = uri, run_id, run_dir, emit, with_model
        self.shown = without_login(uri)
        """The URI as logs and mlflow.json show it: without a user and password it may carry."""
        self.link: MlflowLink | None = None
        self.failed: str | None = None
        """Why tracking stopped (the warning the run's log got); None while it works."""
        self._client: Any = None
        self._step = 0
        self._calls: queue.Queue[Callable[[], None] | None] = queue.Queue()
        self._thread = threading.Thread(target=self._work, name=f"mlflow-{run_id}", daemon=True)

    def start(self, config: RunConfig) -> None:
        self._calls.put(lambda: self._open(config))
        self._thread.start()

    def observe(self, event: Event) -> None:
        """Live metrics: the Trainer's training logs (train/...) and validation results (eval/...) at their step.
        The final test metrics come from eval.json at the end (`finish`)."""
        if isinstance(event, TrainLog):
            self._step = max(self._step, event.step)
            self._log_metrics(numbers("train", event.values), event.step, event.time)
        elif isinstance(event, Evaluation) and event.split is None:
            step = event.step if event.step is not None else self._step
            self._log_metrics(numbers("eval", event.metrics), step, event.time)

    def finish(self, status: str, summary: RunSummary | None, registry: Registry) -> None:
        """Log the results (eval.json's numbers and files), the plots and the model, end the MLflow run with
        the run's status, and wait for it all (at most STUDIO_MLFLOW_WAIT_S seconds, default 900)."""
        if summary is not None:
            results = {k: v for k, v in summary.to_dict().items() if k in SUMMARY_NUMBERS}
            self._log_metrics(numbers("", results), self._step, None)
            if summary.health is not None and summary.health.flag:  # not learning (studio/health.py): findable
                flag = summary.health.flag
                self._calls.put(lambda: self._client.set_tag(self.link.run_id, "studio.health", flag))
        self._calls.put(lambda: self._upload(registry))
        self._calls.put(lambda: self._client.set_terminated(self.link.run_id, _STATUS.get(status, "FINISHED")))
        self._calls.put(None)
        wait = float(os.environ.get(WAIT_ENV) or WAIT_S)
        deadline = time.monotonic() + wait
        while self._thread.is_alive() and time.monotonic() < deadline:
            self._thread.join(min(CHECK_S, max(deadline - time.monotonic(), 0)))
            if self._thread.is_alive() and self.failed is None and not reachable(self.uri):
                # a server that went down mid-run: MLflow's client retries each call for minutes
                self._fail("the tracking server stopped answering")
                return
        if self._thread.is_alive():
            self._fail(f"still uploading after {wait:.0f} s ({WAIT_ENV} to wait longer); the run ends without it")

    # ---- the background thread ------------------------------------------------------------------------------
    def _work(self) -> None:
        while (call := self._calls.get()) is not None:
            if self.failed is not None:
                continue
            try:
                call()
            except Exception as e:  # noqa: BLE001 - any failure of the tracker must leave the run training
                self._fail(f"{type(e).__name__}: {(str(e).strip().splitlines() or [''])[0][:300]}")

    def _fail(self, reason: str) -> None:
        if self.failed is None:
            self.failed = reason
            message = f"MLflow tracking at {self.shown} stopped ({reason}): this run goes on and logs locally only"
            log.warning("run %s: %s", self.studio_id, message)
            self.emit(Note(f"warning: {message}"))

    def _log_metrics(self, values: dict[str, float], step: int, at: float | None) -> None:
        if values and self.failed is None:
            stamp = int((at or 0) * 1000) or None
            self._calls.put(lambda: self._send_metrics(values, step, stamp))

    def _send_metrics(self, values: dict[str, float], step: int, stamp: int | None) -> None:
        from mlflow.entities import Metric

        ms = stamp or int(time.time() * 1000)
        metrics = [Metric(key, value, ms, step) for key, value in values.items()]
        for i in range(0, len(metrics), 1000):  # MLflow takes 1000 metrics a request
            self._client.log_batch(self.link.run_id, metrics=metrics[i : i + 1000], synchronous=True)

    def _open(self, config: RunConfig) -> None:
        """Check the server answers, then continue this studio run's MLflow run (a resumed run) or create it."""
        reach(self.uri)
        from mlflow import MlflowClient

        self._client = client = MlflowClient(self.uri)
        link = MlflowLink.read(self.run_dir)
        existing = self._existing(link)
        if existing is not None:
            client.update_run(existing.info.run_id, status="RUNNING")
            self.link = MlflowLink(self.shown, existing.info.experiment_id, existing.info.run_id)
            self.emit(Note(f"MLflow: continuing run {self.link.run_id} at {self.shown}"))
        else:
            experiment = _experiment(client, os.environ.get(EXPERIMENT_ENV) or DEFAULT_EXPERIMENT)
            tags = {RUN_ID_TAG: self.studio_id, "studio.folder": f"{socket.gethostname()}:{self.run_dir}",
                    "studio.model": config.model.name, "studio.method": config.method.name}  # fmt: skip
            run = client.create_run(experiment, run_name=self.studio_id, tags=tags)
            self.link = MlflowLink(self.shown, experiment, run.info.run_id)
            from mlflow.entities import Param

            params = [Param(k, v) for k, v in flat_params(config, self.studio_id).items()]
            for i in range(0, len(params), BATCH):
                client.log_batch(self.link.run_id, params=params[i : i + BATCH], synchronous=True)
            self.emit(Note(f"MLflow: logging to run {self.link.run_id} (experiment {experiment}) at {self.shown}"))
        self.link.write(self.run_dir)

    def _existing(self, link: MlflowLink | None) -> Any:
        """This studio run's MLflow run on this server, if it has one: the one its folder names, else the one
        tagged with its id."""
        client = self._client
        if link is not None and link.tracking_uri == self.shown:
            try:
                return client.get_run(link.run_id)
            except Exception:  # noqa: BLE001 - deleted, or another server under the same address: look it up
                pass
        experiment = client.get_experiment_by_name(os.environ.get(EXPERIMENT_ENV) or DEFAULT_EXPERIMENT)
        if experiment is None:
            return None
        found = client.search_runs([experiment.experiment_id], f"tags.`{RUN_ID_TAG}` = '{self.studio_id}'",
                                   max_results=1)  # fmt: skip
        return found[0] if found else None

    def _plots(self, registry: Registry, out: Path) -> bool:
        """The run's figures (studio_plots.run_figures: labels per split, loss, validation metrics, confusion
        matrix) in `out`: report.html (plotly once: opens offline) and a PNG each where plotly's exporter works
        (kaleido and a Chrome). A failure to draw them is a note; the results and model are logged all the same."""
        import html

        import plotly.io as pio

        from studio.study_plots import run_figures

        try:
            figures = run_figures(registry, self.studio_id)
            out.mkdir(parents=True)
            body = [f"<h1>{html.escape(self.studio_id)}</h1>"]
            for i, (name, fig) in enumerate(figures.items()):
                body += [f"<h2>{html.escape(name)}</h2>", fig.to_html(full_html=False, include_plotlyjs=i == 0)]
            page = f"<!doctype html><html><head><meta charset='utf-8'></head><body>{''.join(body)}</body></html>"
            (out / "report.html").write_text(page, encoding="utf-8")
        except Exception as e:  # noqa: BLE001 - the plots are a bonus: the results and model still go
            self.emit(Note(f"MLflow: the run's plots could not be drawn ({type(e).__name__}: {e}); logged without"))
            return False
        names = [out / f"{i + 1:02d}-{metric_key(n).lower().replace(' ', '-')}.png" for i, n in enumerate(figures)]
        with contextlib.suppress(Exception):  # no kaleido or no Chrome here: the HTML holds the same figures
            pio.write_images(list(figures.values()), [str(p) for p in names], width=1100, scale=1)
        return True

    def _upload(self, registry: Registry) -> None:
        """The results (eval.json, config, logs, predictions), the plots and, unless `without_model`, the model
        (the run folder less its results: what `Predictor` loads, byte for byte)."""
        run = self.link.run_id
        for name in RESULTS:
            if (self.run_dir / name).is_file():
                self._client.log_artifact(run, str(self.run_dir / name), "results")
        with tempfile.TemporaryDirectory(prefix="studio-mlflow-") as tmp:
            if self._plots(registry, Path(tmp) / "plots"):
                self._client.log_artifacts(run, str(Path(tmp) / "plots"), "plots")
            if self.with_model and any((self.run_dir / kind).is_dir() for kind in ("model", "adapter")):
                model = Path(tmp) / "model"
                shutil.copytree(self.run_dir, model, ignore=lambda _d, names: [n for n in names if n in NOT_MODEL])
                self._client.log_artifacts(run, str(model), "model")


def _experiment(client: Any, name: str) -> str:
    """The id of experiment `name`, created if missing (another run may create it at the same time)."""
    found = client.get_experiment_by_name(name)
    if found is not None:
        return str(found.experiment_id)
    try:
        return str(client.create_experiment(name))
    except Exception:  # noqa: BLE001 - created meanwhile by another run
        found = client.get_experiment_by_name(name)
        if found is None:
            raise
        return str(found.experiment_id)


def without_login(uri: str) -> str:
    """`uri` less the ``user:password@`` an http(s) tracking URI may carry (kept out of logs and run folders)."""
    parts = urllib.parse.urlsplit(uri)
    if "@" not in parts.netloc:
        return uri
    return urllib.parse.urlunsplit(parts._replace(netloc=parts.netloc.rsplit("@", 1)[1]))


def reachable(uri: str) -> bool:
    try:
        reach(uri)
    except ConnectionError:
        return False
    return True


def reach(uri: str) -> None:
    """Raise ConnectionError unless the tracking server at an http(s) `uri` answers its health check within
    REACH_TIMEOUT_S (MLflow's client would retry for minutes); other URIs (a folder, databricks) pass."""
    if not uri.startswith(("http://", "https://")):
        return
    try:  # /health asks for no login: the URI's user and password stay out of it
        with urllib.request.urlopen(without_login(uri).rstrip("/") + "/health", timeout=REACH_TIMEOUT_S):
            return
    except urllib.error.HTTPError:  # it answered (behind a proxy or a login, /health may be refused)
        return
    except OSError as e:
        reason = getattr(e, "reason", None) or e
        raise ConnectionError(f"the tracking server cannot be reached: {reason}") from None
