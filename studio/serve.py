"""A prediction service: one finished run's model behind an HTTP JSON API (`python -m studio serve RUN_ID`).

    POST /predict  {"texts": [...], "min_confidence": 0.8?, "threshold": 0.4?, "raw": false?}
                   -> {"run_id", "calibrated", "predictions": [{"answer", "label", "labels", "score", "unsure",
                       "probs", "thresholds"}, ...]}  (input order; what `Predictor.predict` returns)
    GET /labels    -> {"run_id", "task", "labels": [...]}
    GET /health    -> {"run_id", "model", "method", "task", "backend", "batching", "ready", ...}; 503 until ready

Starlette under uvicorn (both come with gradio). Requests are checked before they reach the model: the body's size,
its JSON, each field's type, the number of texts and each text's length; a bad one gets a 4xx JSON answer
`{"error": {"code", "message"}}` whose message names the field and the limit. The port opens at once; the model
loads on a helper thread (`/health` says ready: false and `/predict` answers 503 meanwhile), and a load that
fails stops the service with the error.

One model serves every request. Concurrent requests never call it at once: `BatchQueue` (the default) gathers the
requests that arrived while the model was busy into one call (requests with the same options; each gets its own
rows back), up to a cap of texts per call; `ModelLock` scores one request at a time. The cap is 4 texts on a CPU
and 256 on a GPU unless set (`Limits.max_batch_texts`): with 50 concurrent clients sending one review each on 2
shared CPU cores (benchmarks/results/serve_load), the queue capped at 4 served 16.4 texts/s (median of 2 x 60 s)
against the lock's 9.0, where uncapped (batches of ~50) it served 7.8 against the lock's 10.7; a GPU scores a
batch of 256 in about the time of one text (5,386 texts/s against 8 ms a text on the H100:
benchmarks/results/inference_speed).
"""

from __future__ import annotations

import asyncio
import json
import logging
import threading
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from studio.errors import StudioError

log = logging.getLogger("uvicorn.error.studio")
"""Beside uvicorn's own messages (its handler, its format)."""

ROUTES = "POST /predict, GET /labels, GET /health"
BATCHING = ("queue", "lock")
CPU_BATCH_TEXTS, GPU_BATCH_TEXTS = 4, 256
"""The queue's default batch cap (texts per call of the model) on a CPU and on a GPU: see the module's doc."""


@dataclass(frozen=True)
class Limits:
    """What one request may carry; more is refused with 413 before anything is scored."""

    max_texts: int = 256
    """Texts in one /predict request."""
    max_chars: int = 20_000
    """Characters in one text (the model reads its first max_length tokens anyway)."""
    max_body_bytes: int = 2 * 1024 * 1024
    """Bytes in one request body (JSON)."""
    max_batch_texts: int | None = None
    """BatchQueue: texts gathered into one call of the model at most (None: CPU_BATCH_TEXTS on a CPU,
    GPU_BATCH_TEXTS on a GPU)."""

    def __post_init__(self) -> None:
        for name in ("max_texts", "max_chars", "max_body_bytes", "max_batch_texts"):
            if getattr(self, name) is not None and getattr(self, name) < 1:
                raise StudioError(f"--{name.replace('_', '-')}: {getattr(self, name)} is not a limit; give 1 or more")


@dataclass(frozen=True)
class RunInfo:
    """What /health says about the run served."""

    run_id: str
    model: str
    method: str
    task: str
    labels: list[str]
    backend: str = "torch"
    """torch, onnx or onnx-int8."""


@dataclass(frozen=True)
class PredictRequest:
    """A checked /predict body."""

    texts: list[str]
    min_confidence: float | None = None
    threshold: float | None = None
    raw: bool = False

    @property
    def options(self) -> tuple[Any, ...]:
        """What a call of `Predictor.predict` takes besides the texts: requests alike can share one call."""
        return (self.raw, self.min_confidence, self.threshold)


class RequestError(StudioError):
    """A request the service refuses: its HTTP status, a short code, and a message naming what to change."""

    def __init__(self, status: int, code: str, message: str):
        self.status, self.code = status, code
        super().__init__(message)


FIELDS = ("texts", "min_confidence", "threshold", "raw")


def parse_predict(body: bytes, limits: Limits, multi_label: bool) -> PredictRequest:
    """The /predict body as a `PredictRequest`, or a RequestError (400 bad JSON, 422 wrong types or values,
    413 over a limit) saying which field is wrong and what it takes."""
    try:
        data = json.loads(body)
    except (ValueError, UnicodeDecodeError) as e:
        raise RequestError(400, "bad_json", f"the body is not valid JSON ({e}); send an object like "
                           '{"texts": ["a text"]}') from None  # fmt: skip
    if not isinstance(data, dict):
        raise RequestError(422, "not_an_object", f'the body is a JSON {type(data).__name__}; send an object like '
                           '{"texts": ["a text"]}')  # fmt: skip
    unknown = sorted(set(data) - set(FIELDS))
    if unknown:
        raise RequestError(422, "unknown_field", f"unknown field(s) {', '.join(map(repr, unknown))}; /predict takes "
                           f"{', '.join(FIELDS)}")  # fmt: skip
    texts = _texts(data.get("texts"), limits)
    raw = data.get("raw", False)
    if not isinstance(raw, bool):
        raise RequestError(422, "wrong_type", f"raw must be true or false, not {json.dumps(raw)}")
    min_confidence = _unit(data.get("min_confidence"), "min_confidence", "the lowest score to answer with (below "
                           "it the answer is 'unsure'), e.g. 0.8")  # fmt: skip
    threshold = _unit(data.get("threshold"), "threshold", "every label whose probability reaches it is given, "
                      "e.g. 0.5")  # fmt: skip
    if threshold is not None and not multi_label:
        raise RequestError(422, "single_label_run", "threshold: this run is single-label (it answers with its most "
                           "probable class); use min_confidence to answer 'unsure' under a confidence")  # fmt: skip
    return PredictRequest(texts, min_confidence, threshold, raw)


def _texts(texts: Any, limits: Limits) -> list[str]:
    if texts is None:
        raise RequestError(422, "missing_texts", 'the body has no "texts"; send {"texts": ["a text", ...]}')
    if isinstance(texts, str):
        raise RequestError(422, "wrong_type", 'texts must be a list of strings, not one string: {"texts": ["..."]}')
    if not isinstance(texts, list):
        raise RequestError(422, "wrong_type", f"texts must be a list of strings, not a JSON {type(texts).__name__}")
    if not texts:
        raise RequestError(422, "empty_texts", "texts is an empty list; send at least one text")
    if len(texts) > limits.max_texts:
        raise RequestError(413, "too_many_texts", f"{len(texts)} texts in one request; the limit is "
                           f"{limits.max_texts}: split them over several requests")  # fmt: skip
    for i, text in enumerate(texts):
        if not isinstance(text, str):
            raise RequestError(422, "wrong_type", f"texts[{i}] is {json.dumps(text)[:40]}, not a string")
        if len(text) > limits.max_chars:
            raise RequestError(413, "text_too_long", f"texts[{i}] has {len(text):,} characters; the limit is "
                               f"{limits.max_chars:,} (the model reads only its first tokens): shorten it")  # fmt: skip
    return texts


def _unit(value: Any, name: str, what: str) -> float | None:
    """An optional number in [0, 1]."""
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int | float) or not 0.0 <= value <= 1.0:
        raise RequestError(422, "bad_value", f"{name} must be a number in [0, 1], not {json.dumps(value)}: {what}")
    return float(value)


def prediction_json(p: Any) -> dict[str, Any]:
    """One `Prediction` as JSON: `answer` (the label(s) or 'unsure'), `label` (the most probable class; multi-label:
    the labels given, joined by ', '), `labels` (multi-label: the list; null otherwise), `score`, `unsure`,
    `probs` per class, and multi-label `thresholds` per label."""
    labels = list(p.labels) if p.labels is not None else None
    probs = {k: float(v) for k, v in p.probs.items()}
    out = {"answer": p.answer, "label": p.label, "labels": labels, "score": float(p.score), "unsure": bool(p.unsure),
           "probs": probs}  # fmt: skip
    if p.thresholds is not None:
        out["thresholds"] = {k: float(v) for k, v in p.thresholds.items()}
    return out


# ---- who calls the model ---------------------------------------------------------------------------------------
class ModelLock:
    """One request at a time: each awaits the lock, then scores its texts on a worker thread."""

    name = "lock"

    def __init__(self, predictor: Any, limits: Limits):
        self.predictor = predictor
        self._lock = asyncio.Lock()

    async def predict(self, request: PredictRequest) -> list[Any]:
        async with self._lock:
            return await asyncio.to_thread(_call, self.predictor, request.texts, request.options)

    async def close(self) -> None:
        return None


def on_gpu(predictor: Any) -> bool:
    """Whether the predictor's model sits on a GPU (a predictor without a torch model: its `device`, else no)."""
    model = getattr(predictor, "model", None)
    try:
        device = next(model.parameters()).device.type if model is not None else "cpu"
    except (AttributeError, StopIteration, TypeError):
        device = getattr(predictor, "device", "cpu")
    return str(device).startswith("cuda")


def _call(predictor: Any, texts: list[str], options: tuple[Any, ...]) -> list[Any]:
    raw, min_confidence, threshold = options
    return predictor.predict(texts, raw=raw, min_confidence=min_confidence, label_threshold=threshold)


@dataclass
class _Waiting:
    request: PredictRequest
    done: asyncio.Future = field(repr=False)


class BatchQueue:
    """Requests wait in a queue; one task takes everything waiting (up to `Limits.max_batch_texts` texts) each time
    the model is free, scores each group of requests with the same options in one call, and hands each request
    its own rows. No timer: a lone request is scored at once, and while the model works the next batch gathers."""

    name = "queue"

    def __init__(self, predictor: Any, limits: Limits):
        self.predictor = predictor
        self.limit = limits.max_batch_texts or (GPU_BATCH_TEXTS if on_gpu(predictor) else CPU_BATCH_TEXTS)
        self._waiting: deque[_Waiting] = deque()
        self._arrived = asyncio.Event()
        self._task: asyncio.Task | None = None

    async def predict(self, request: PredictRequest) -> list[Any]:
        if self._task is None:
            self._task = asyncio.create_task(self._work())
        waiting = _Waiting(request, asyncio.get_running_loop().create_future())
        self._waiting.append(waiting)
        self._arrived.set()
        return await waiting.done

    def _take(self) -> list[_Waiting]:
        """The requests waiting, oldest first, up to `limit` texts (always at least one request)."""
        batch = [self._waiting.popleft()]
        size = len(batch[0].request.texts)
        while self._waiting and size + len(self._waiting[0].request.texts) <= self.limit:
            batch.append(self._waiting.popleft())
            size += len(batch[-1].request.texts)
        return batch

    async def _work(self) -> None:
        while True:
            if not self._waiting:
                self._arrived.clear()
                await self._arrived.wait()
                continue
            groups: dict[tuple[Any, ...], list[_Waiting]] = {}
            for w in self._take():
                groups.setdefault(w.request.options, []).append(w)
            for options, group in groups.items():
                await self._score(options, [w for w in group if not w.done.cancelled()])

    async def _score(self, options: tuple[Any, ...], group: list[_Waiting]) -> None:
        if not group:
            return
        texts = [t for w in group for t in w.request.texts]
        try:
            preds = await asyncio.to_thread(_call, self.predictor, texts, options)
        except Exception as e:  # every request of the call hears of it
            for w in group:
                if not w.done.done():
                    w.done.set_exception(e)
            return
        start = 0
        for w in group:
            n = len(w.request.texts)
            if not w.done.done():
                w.done.set_result(preds[start : start + n])
            start += n

    async def close(self) -> None:
        if self._task is not None:
            self._task.cancel()


SCHEDULERS = {"queue": BatchQueue, "lock": ModelLock}


# ---- the service -----------------------------------------------------------------------------------------------
class Service:
    """The state behind the routes: the run, the model once loaded (on a helper thread), and its scheduler."""

    def __init__(self, info: RunInfo, load: Callable[[], Any], limits: Limits | None = None,
                 batching: str = "queue", on_failure: Callable[[BaseException], None] | None = None):  # fmt: skip
        if batching not in BATCHING:
            raise StudioError(f"--batching: {batching!r} is not one of {', '.join(BATCHING)}")
        self.info, self.limits, self.batching = info, limits or Limits(), batching
        self._load, self.on_failure = load, on_failure
        self.predictor: Any = None
        self.error: BaseException | None = None
        self.scheduler: Any = None
        self._ready = threading.Event()

    @property
    def ready(self) -> bool:
        return self._ready.is_set()

    def wait_ready(self, timeout: float | None = None) -> bool:
        return self._ready.wait(timeout)

    def load(self) -> None:
        """Load the model and score one text (the first call is the slow one), then mark the service ready."""
        try:
            predictor = self._load()
            predictor.predict(["warm-up"])
        except BaseException as e:  # told to the CLI, which exits with it
            self.error = e
            log.error("the model could not be loaded: %s", e)
            if self.on_failure is not None:
                self.on_failure(e)
            return
        self.predictor = predictor
        self.scheduler = SCHEDULERS[self.batching](predictor, self.limits)
        self._ready.set()
        log.info("ready: run %s (%s, %s) on %s, batching %s", self.info.run_id, self.info.model, self.info.method,
                 self.info.backend, self.batching)  # fmt: skip

    def health(self) -> dict[str, Any]:
        i = self.info
        out = {"run_id": i.run_id, "model": i.model, "method": i.method, "task": i.task, "backend": i.backend,
               "batching": self.batching, "ready": self.ready, "labels": len(i.labels)}  # fmt: skip
        if self.batching == "queue" and self.scheduler is not None:
            out["max_batch_texts"] = self.scheduler.limit
        if self.predictor is not None:
            out["calibrated"] = getattr(self.predictor, "temperature", None) is not None
        if self.error is not None:
            out["error"] = str(self.error)
        out["limits"] = {"max_texts": self.limits.max_texts, "max_chars": self.limits.max_chars,
                         "max_body_bytes": self.limits.max_body_bytes}  # fmt: skip
        return out

    async def predict(self, body: bytes) -> dict[str, Any]:
        if not self.ready:
            raise RequestError(503, "not_ready", "the model is still loading; retry when GET /health says ready")
        request = parse_predict(body, self.limits, self.info.task == "multi_label")
        preds = await self.scheduler.predict(request)
        calibrated = not request.raw and getattr(self.predictor, "temperature", None) is not None
        predictions = [prediction_json(p) for p in preds]
        return {"run_id": self.info.run_id, "calibrated": calibrated, "predictions": predictions}


# ---- HTTP ------------------------------------------------------------------------------------------------------
def build_app(service: Service) -> Any:
    """The Starlette app of `service`: its three routes, JSON errors for every refusal, the model loaded at start."""
    import contextlib

    from starlette.applications import Starlette
    from starlette.exceptions import HTTPException
    from starlette.requests import Request
    from starlette.responses import JSONResponse
    from starlette.routing import Route

    async def predict(request: Request) -> JSONResponse:
        body = await read_body(request, service.limits.max_body_bytes)
        return JSONResponse(await service.predict(body))

    async def labels(request: Request) -> JSONResponse:
        return JSONResponse({"run_id": service.info.run_id, "task": service.info.task, "labels": service.info.labels})

    async def health(request: Request) -> JSONResponse:
        return JSONResponse(service.health(), status_code=200 if service.ready else 503)

    @contextlib.asynccontextmanager
    async def lifespan(app: Any) -> Any:
        if not service.ready and service.error is None:
            threading.Thread(target=service.load, name="studio-serve-load", daemon=True).start()
        yield
        if service.scheduler is not None:
            await service.scheduler.close()

    handlers = {RequestError: _refused, HTTPException: _http_error, Exception: _internal_error}
    routes = [Route("/predict", predict, methods=["POST"]), Route("/labels", labels, methods=["GET"]),
              Route("/health", health, methods=["GET"])]  # fmt: skip
    return Starlette(routes=routes, exception_handlers=handlers, lifespan=lifespan)


async def read_body(request: Any, limit: int) -> bytes:
    """The request's body, refused (413) as soon as it passes `limit` bytes: its Content-Length is checked
    first, then the bytes as they arrive (a chunked body has no length)."""
    length = request.headers.get("content-length", "")
    too_big = f"limit is {limit:,} bytes: send fewer or shorter texts per request"
    if length.isdigit() and int(length) > limit:
        raise RequestError(413, "body_too_large", f"the body has {int(length):,} bytes; the {too_big}")
    chunks, size = [], 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            raise RequestError(413, "body_too_large", f"the body passed {limit:,} bytes; the {too_big}")
        chunks.append(chunk)
    return b"".join(chunks)


def _error(status: int, code: str, message: str) -> Any:
    from starlette.responses import JSONResponse

    return JSONResponse({"error": {"code": code, "message": message}}, status_code=status)


async def _refused(request: Any, exc: Exception) -> Any:
    assert isinstance(exc, RequestError)
    return _error(exc.status, exc.code, str(exc))


async def _http_error(request: Any, exc: Exception) -> Any:
    status = getattr(exc, "status_code", 500)
    where = f"{request.method} {request.url.path}"
    if status == 404:
        return _error(404, "unknown_route", f"no route {where}; the routes are {ROUTES}")
    if status == 405:
        return _error(405, "method_not_allowed", f"{where} is not a route; the routes are {ROUTES}")
    return _error(status, "http_error", f"{where}: {getattr(exc, 'detail', exc)}")


async def _internal_error(request: Any, exc: Exception) -> Any:
    log.exception("error serving %s %s", request.method, request.url.path, exc_info=exc)
    if isinstance(exc, StudioError):  # e.g. a text the model's tokenizer refuses
        return _error(422, "refused", str(exc))
    return _error(500, "internal_error", f"the service failed on this request ({type(exc).__name__}); see its log")


# ---- the command -----------------------------------------------------------------------------------------------
def run_info(registry: Any, run_id: str, backend: str = "torch") -> RunInfo:
    """The run's identity, read before any model loads: a clear error for an unknown run or one without a model."""
    from studio.config import RunConfig
    from studio.models import read_label_map, read_task

    record = registry.get(run_id)  # RunNotFoundError with a hint
    run_dir = registry.run_dir(run_id)
    if not (run_dir / "label_map.json").is_file():
        raise StudioError(f"run {run_id} has no saved model (status: {record.status}); pick a finished run")
    config = RunConfig.from_yaml(run_dir / "config.yaml")
    return RunInfo(run_id, config.model.name, config.method.name, read_task(run_dir), read_label_map(run_dir), backend)


def loader(registry: Any, run_id: str, onnx: bool = False, int8: bool = False) -> Callable[[], Any]:
    """What loads the run's predictor: `Predictor.from_run`, or with `onnx` the ONNX export's `OnnxPredictor`
    (imported here, so a missing export or onnxruntime is said before the service starts)."""
    if not onnx:
        if int8:
            raise StudioError("--int8 quantizes the ONNX model: give --onnx too")
        from studio.inference import Predictor

        return lambda: Predictor.from_run(registry, run_id)
    try:
        from studio.onnx_export import OnnxPredictor
    except ModuleNotFoundError as e:
        if e.name and e.name.startswith("studio"):
            raise StudioError("--onnx: ONNX serving needs the ONNX export (studio/onnx_export.py), which this "
                              "installation lacks; serve the torch model (without --onnx)") from None  # fmt: skip
        raise StudioError(f"--onnx needs the package '{e.name}' (pip install onnx onnxruntime); or serve the "
                          "torch model (without --onnx)") from None  # fmt: skip
    return lambda: OnnxPredictor.from_run(registry, run_id, int8=int8)


def make_server(service: Service, host: str = "127.0.0.1", port: int = 8000, access_log: bool = False) -> Any:
    """A uvicorn server of `service`, stopped by a model that fails to load (its `run` then returns)."""
    import uvicorn

    config = uvicorn.Config(build_app(service), host=host, port=port, access_log=access_log, log_level="info",
                            timeout_graceful_shutdown=5)  # fmt: skip
    server = uvicorn.Server(config)
    service.on_failure = lambda _: setattr(server, "should_exit", True)
    return server


def serve(service: Service, host: str = "127.0.0.1", port: int = 8000, sockets: list[Any] | None = None,
          access_log: bool = False) -> None:  # fmt: skip
    """Run the service until interrupted (Ctrl-C, SIGTERM); a model that fails to load stops it, and its error is
    raised here."""
    make_server(service, host, port, access_log).run(sockets=sockets)
    if service.error is not None:
        raise service.error
