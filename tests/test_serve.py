"""The prediction service (studio/serve.py, `python -m studio serve`): a real uvicorn server on a free loopback port
in this process, called over HTTP: every route, every class of bad request (4xx JSON naming the problem and the
limit), the same answers as `Predictor.predict` (temperature, multi-label thresholds, overrides), a model never
called by two requests at once, the service not ready while the model loads, and the command's refusals."""

from __future__ import annotations

import asyncio
import contextlib
import socket
import sys
import threading
import time

import httpx
import pytest
import torch
from test_multilabel import multi_label_config, multi_label_rows, write_rows
from test_training import tiny_config

from studio import serve
from studio.cli import main
from studio.errors import StudioError
from studio.inference import Prediction, Predictor
from studio.multilabel import Thresholds
from studio.registry import Registry
from studio.training import Run

TEXTS = ["a truly great film", "dull and long, I left early", "film number 3", "angry furious", "happy glad day"]


@contextlib.contextmanager
def running(service: serve.Service) -> httpx.Client:
    """`service` served on a free loopback port by a thread of this process; a client of it, once it is ready."""
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    server = serve.make_server(service)
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    try:
        deadline = time.monotonic() + 60
        while not server.started and thread.is_alive() and time.monotonic() < deadline:
            time.sleep(0.02)
        with httpx.Client(base_url=f"http://127.0.0.1:{sock.getsockname()[1]}", timeout=60) as client:
            yield client
    finally:
        server.should_exit = True
        thread.join(30)
        sock.close()


def ready(client: httpx.Client) -> httpx.Client:
    for _ in range(600):
        if client.get("/health").json()["ready"]:
            return client
        time.sleep(0.05)
    raise AssertionError(client.get("/health").json())


@pytest.fixture(scope="module")
def runs(tiny_model_dir, tmp_path_factory) -> tuple[Registry, str, str]:
    """A registry with a finished tiny single-label run and a tiny multi-label one."""
    root = tmp_path_factory.mktemp("serve")
    registry = Registry(root / "runs")
    config = tiny_config(tiny_model_dir("bert"), "full", max_steps=2).with_overrides(["data.max_samples=80"])
    single = Run(config, registry).execute()
    source = write_rows(root / "ml.csv", multi_label_rows(60))
    config = multi_label_config(source, tiny_model_dir("bert")).with_overrides(["train.max_steps=2"])
    multi = Run(config, registry).execute()
    assert single.status == multi.status == "completed", (single.message, multi.message)
    return registry, single.run_id, multi.run_id


def loaded(registry: Registry, run_id: str) -> Predictor:
    """The run's predictor with a temperature (per label for multi-label) and uneven thresholds, so that both
    visibly change the answers."""
    p = Predictor.from_run(registry, run_id)
    if p.multi_label:
        p.temperature = [1.7, 0.6, 2.5][: len(p.label_names)]
        p.thresholds = Thresholds(dict(zip(p.label_names, [0.3, 0.55, 0.7], strict=False)))
    else:
        p.temperature = 1.9
    return p


@pytest.fixture(scope="module")
def single(runs) -> tuple[serve.Service, Predictor]:
    registry, run_id, _ = runs
    predictor = loaded(registry, run_id)
    limits = serve.Limits(max_texts=4, max_chars=60, max_body_bytes=2000)
    return serve.Service(serve.run_info(registry, run_id), lambda: predictor, limits), predictor


@pytest.fixture(scope="module")
def single_client(single) -> httpx.Client:
    with running(single[0]) as client:
        yield ready(client)


def direct(predictor: Predictor, texts: list[str], **options) -> list[dict]:
    return [serve.prediction_json(p) for p in predictor.predict(texts, **options)]


def assert_same(got: list[dict], want: list[dict]) -> None:
    """The same answers; probabilities equal to 1e-6 (a request scored alone is scored exactly as by predict)."""
    assert [(g["answer"], g["label"], g["labels"], g["unsure"]) for g in got] == [
        (w["answer"], w["label"], w["labels"], w["unsure"]) for w in want
    ]
    for g, w in zip(got, want, strict=True):
        assert g["probs"] == pytest.approx(w["probs"], abs=1e-6) and g["score"] == pytest.approx(w["score"], abs=1e-6)
        assert g.get("thresholds") == (pytest.approx(w["thresholds"]) if "thresholds" in w else None)


# ---- routes -----------------------------------------------------------------------------------------------------
def test_health_and_labels_describe_the_run(single_client, single, runs):
    registry, run_id, _ = runs
    health = single_client.get("/health").json()
    assert health == {"run_id": run_id, "model": health["model"], "method": "full", "task": "single_label",
                      "backend": "torch", "batching": "queue", "ready": True, "labels": 2,
                      "calibrated": True, "limits": {"max_texts": 4, "max_chars": 60, "max_body_bytes": 2000},
                      "max_batch_texts": 256 if torch.cuda.is_available() else serve.CPU_BATCH_TEXTS}  # fmt: skip
    assert health["model"].endswith("bert")
    labels = single_client.get("/labels").json()
    assert labels == {"run_id": run_id, "task": "single_label", "labels": ["negative", "positive"]}


def test_predict_answers_as_the_predictor_does_with_its_temperature_and_overrides(single_client, single):
    _, predictor = single
    r = single_client.post("/predict", json={"texts": TEXTS[:4]})
    assert r.status_code == 200 and r.json()["calibrated"] is True
    assert_same(r.json()["predictions"], direct(predictor, TEXTS[:4]))
    # the temperature is applied: the raw probabilities differ, and raw asks for them
    raw = single_client.post("/predict", json={"texts": TEXTS[:4], "raw": True}).json()
    assert raw["calibrated"] is False
    assert_same(raw["predictions"], direct(predictor, TEXTS[:4], raw=True))
    assert raw["predictions"][0]["probs"] != pytest.approx(r.json()["predictions"][0]["probs"], abs=1e-4)
    # min_confidence (the Playground's threshold): unsure under it
    score = r.json()["predictions"][0]["score"]
    sure = single_client.post("/predict", json={"texts": TEXTS[:1], "min_confidence": score + 1e-3}).json()
    assert sure["predictions"][0]["unsure"] is True and sure["predictions"][0]["answer"] == "unsure"
    assert_same(sure["predictions"], direct(predictor, TEXTS[:1], min_confidence=score + 1e-3))


def test_a_multi_label_run_gives_its_label_sets_with_its_thresholds(runs):
    registry, _, run_id = runs
    predictor = loaded(registry, run_id)
    service = serve.Service(serve.run_info(registry, run_id), lambda: predictor, batching="lock")
    with running(service) as client:
        ready(client)
        assert client.get("/labels").json()["labels"] == predictor.label_names == ["anger", "joy", "neutral"]
        assert client.get("/health").json()["task"] == "multi_label"
        for options in ({}, {"threshold": 0.5}, {"threshold": 0.05}, {"raw": True}, {"min_confidence": 0.9}):
            got = client.post("/predict", json={"texts": TEXTS, **options}).json()["predictions"]
            want = direct(predictor, TEXTS, label_threshold=options.get("threshold"), raw=options.get("raw", False),
                          min_confidence=options.get("min_confidence"))  # fmt: skip
            assert_same(got, want)
            assert all(isinstance(g["labels"], list) and set(g["thresholds"]) == set(predictor.label_names)
                       for g in got)  # fmt: skip
        tuned = client.post("/predict", json={"texts": TEXTS[:1]}).json()["predictions"][0]["thresholds"]
        assert tuned == pytest.approx({"anger": 0.3, "joy": 0.55, "neutral": 0.7})
        low = client.post("/predict", json={"texts": TEXTS[:1], "threshold": 0.05}).json()["predictions"][0]
        assert set(low["labels"]) == {"anger", "joy", "neutral"} and low["thresholds"]["joy"] == 0.05


# ---- bad requests ----------------------------------------------------------------------------------------------
BAD = [
    ("POST", "/predict", b"{texts: [", 400, "bad_json", "not valid JSON"),
    ("POST", "/predict", b"", 400, "bad_json", "not valid JSON"),
    ("POST", "/predict", b'["a text"]', 422, "not_an_object", "JSON list"),
    ("POST", "/predict", b'{"texts": ["a"], "txt": 1}', 422, "unknown_field", "'txt'; /predict takes texts"),
    ("POST", "/predict", b'{"text": "a"}', 422, "unknown_field", "'text'"),
    ("POST", "/predict", b"{}", 422, "missing_texts", 'no "texts"'),
    ("POST", "/predict", b'{"texts": "a text"}', 422, "wrong_type", "not one string"),
    ("POST", "/predict", b'{"texts": {"a": 1}}', 422, "wrong_type", "not a JSON dict"),
    ("POST", "/predict", b'{"texts": []}', 422, "empty_texts", "empty list"),
    ("POST", "/predict", b'{"texts": ["a", 3]}', 422, "wrong_type", "texts[1] is 3, not a string"),
    ("POST", "/predict", b'{"texts": ["a", "b", "c", "d", "e"]}', 413, "too_many_texts", "5 texts in one request; the "
     "limit is 4"),
    ("POST", "/predict", b'{"texts": ["ok", "' + b"x" * 61 + b'"]}', 413, "text_too_long", "texts[1] has 61 "
     "characters; the limit is 60"),
    ("POST", "/predict", b'{"texts": ["' + b"x" * 2000 + b'"]}', 413, "body_too_large", "the limit is 2,000 bytes"),
    ("POST", "/predict", b'{"texts": ["a"], "raw": "yes"}', 422, "wrong_type", "raw must be true or false"),
    ("POST", "/predict", b'{"texts": ["a"], "min_confidence": 1.5}', 422, "bad_value", "min_confidence must be a "
     "number in [0, 1], not 1.5"),
    ("POST", "/predict", b'{"texts": ["a"], "min_confidence": "high"}', 422, "bad_value", 'not "high"'),
    ("POST", "/predict", b'{"texts": ["a"], "threshold": 0.4}', 422, "single_label_run", "use min_confidence"),
    ("GET", "/predictions", None, 404, "unknown_route", "no route GET /predictions; the routes are POST /predict"),
    ("GET", "/", None, 404, "unknown_route", "the routes are POST /predict, GET /labels, GET /health"),
    ("GET", "/predict", None, 405, "method_not_allowed", "GET /predict is not a route"),
    ("POST", "/health", b"{}", 405, "method_not_allowed", "POST /health is not a route"),
]  # fmt: skip


@pytest.mark.parametrize(("method", "path", "body", "status", "code", "says"), BAD, ids=[b[4] for b in BAD])
def test_a_bad_request_gets_a_4xx_json_error_naming_the_problem(single_client, method, path, body, status, code, says):
    r = single_client.request(method, path, content=body, headers={"content-type": "application/json"})
    assert r.status_code == status, r.text
    assert r.json()["error"]["code"] == code and says in r.json()["error"]["message"], r.json()


def test_a_chunked_body_over_the_limit_is_refused_as_it_arrives(single_client):
    chunks = iter([b'{"texts": ["', b"x" * 1500, b"y" * 1500, b'"]}'])  # no Content-Length: sent chunked
    r = single_client.post("/predict", content=chunks)
    assert r.status_code == 413 and "passed 2,000 bytes" in r.json()["error"]["message"]


def test_limits_must_be_positive():
    with pytest.raises(StudioError, match="--max-texts: 0 is not a limit"):
        serve.Limits(max_texts=0)


# ---- concurrency -----------------------------------------------------------------------------------------------
class Echo:
    """A stand-in model: each text's label is the text itself; it notes each call and fails a call overlapping
    another (what the service must never cause)."""

    temperature = None

    def __init__(self):
        self.calls: list[int] = []
        self.overlaps = 0
        self._busy = threading.Lock()

    def predict(self, texts, raw=False, min_confidence=None, label_threshold=None):
        if not self._busy.acquire(blocking=False):
            self.overlaps += 1
            raise RuntimeError("called while busy")
        try:
            self.calls.append(len(texts))
            time.sleep(0.05)
            return [Prediction(t, t, 1.0, {t: 1.0}) for t in texts]
        finally:
            self._busy.release()


@pytest.mark.parametrize("batching", ["queue", "lock"])
def test_concurrent_requests_never_call_the_model_at_once_and_each_gets_its_own_rows(batching):
    echo = Echo()
    info = serve.RunInfo("echo", "none", "none", "single_label", ["x"])
    service = serve.Service(info, lambda: echo, batching=batching)
    with running(service) as client:
        ready(client)
        url = str(client.base_url)

        async def burst() -> list[httpx.Response]:
            async with httpx.AsyncClient(base_url=url, timeout=60) as c:
                asks = [c.post("/predict", json={"texts": [f"r{i}-{k}" for k in range(1 + i % 3)]}) for i in range(24)]
                return await asyncio.gather(*asks)

        answers = asyncio.run(burst())
    assert echo.overlaps == 0
    for i, r in enumerate(answers):
        assert r.status_code == 200
        assert [p["label"] for p in r.json()["predictions"]] == [f"r{i}-{k}" for k in range(1 + i % 3)]
    served = echo.calls[1:]  # after the warm-up call
    assert sum(served) == sum(1 + i % 3 for i in range(24))
    if batching == "queue":  # requests that waited were scored together
        assert len(served) < 24
    else:
        assert len(served) == 24


def test_the_service_is_not_ready_until_the_model_has_loaded():
    release = threading.Event()

    def slow_load():
        release.wait(30)
        return Echo()

    service = serve.Service(serve.RunInfo("slow", "m", "full", "single_label", ["x"]), slow_load)
    with running(service) as client:
        health = client.get("/health")
        assert health.status_code == 503 and health.json()["ready"] is False
        r = client.post("/predict", json={"texts": ["a"]})
        assert r.status_code == 503 and r.json()["error"]["code"] == "not_ready"
        release.set()
        assert ready(client).post("/predict", json={"texts": ["a"]}).json()["predictions"][0]["label"] == "a"


def test_a_model_that_fails_to_load_stops_the_service_with_its_error():
    def broken():
        raise StudioError("model folder is damaged")

    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    service = serve.Service(serve.RunInfo("bad", "m", "full", "single_label", ["x"]), broken)
    with pytest.raises(StudioError, match="damaged"):
        serve.serve(service, sockets=[sock])
    sock.close()


# ---- the command -----------------------------------------------------------------------------------------------
def test_the_command_builds_the_service_of_the_run(runs, monkeypatch, capsys):
    registry, run_id, _ = runs
    served = {}
    monkeypatch.setattr(serve, "serve", lambda service, host, port, access_log: served.update(locals()))
    argv = ["--runs-dir", str(registry.runs_dir), "serve", run_id, "--port", "9123", "--batching", "lock",
            "--max-texts", "7"]  # fmt: skip
    assert main(argv) == 0
    service = served["service"]
    assert (served["host"], served["port"], service.batching) == ("127.0.0.1", 9123, "lock")
    assert service.limits.max_texts == 7
    assert service.info.run_id == run_id and service.info.labels == ["negative", "positive"]
    assert f"serving run {run_id}" in capsys.readouterr().out
    service.load()  # what the server's start does: the run's own predictor
    assert service.ready and isinstance(service.predictor, Predictor)


def test_onnx_serves_the_run_s_checked_onnx_export_with_the_same_answers(runs, monkeypatch):
    """--onnx: the run's ONNX export (made and checked against torch on first use, studio/onnx_export.py) behind
    the same API; its answers equal the torch model's within the export check's 1e-4."""
    from studio.onnx_export import OnnxPredictor

    registry, run_id, _ = runs
    served = {}
    monkeypatch.setattr(serve, "serve", lambda service, host, port, access_log: served.update(locals()))
    assert main(["--runs-dir", str(registry.runs_dir), "serve", run_id, "--onnx"]) == 0
    service = served["service"]
    with running(service) as client:
        got = ready(client).post("/predict", json={"texts": TEXTS}).json()["predictions"]
        assert client.get("/health").json()["backend"] == "onnx"
    assert isinstance(service.predictor, OnnxPredictor)
    want = direct(Predictor.from_run(registry, run_id), TEXTS)
    assert [g["label"] for g in got] == [w["label"] for w in want]
    for g, w in zip(got, want, strict=True):
        assert g["probs"] == pytest.approx(w["probs"], abs=1e-4)


def test_the_command_refuses_what_it_cannot_serve(runs, monkeypatch, capsys, tmp_path):
    registry, run_id, _ = runs
    base = ["--runs-dir", str(registry.runs_dir), "serve"]
    assert main(["--runs-dir", str(tmp_path), "serve", "no-such-run"]) == 2
    assert "no-such-run" in capsys.readouterr().err
    assert main([*base, run_id, "--int8"]) == 2
    assert "--int8 quantizes the ONNX model: give --onnx too" in capsys.readouterr().err
    monkeypatch.setitem(sys.modules, "studio.onnx_export", None)  # an installation without the ONNX export
    assert main([*base, run_id, "--onnx"]) == 2
    assert "ONNX serving needs the ONNX export" in capsys.readouterr().err
    assert main([*base, run_id, "--max-chars", "0"]) == 2
    assert "--max-chars: 0 is not a limit" in capsys.readouterr().err
