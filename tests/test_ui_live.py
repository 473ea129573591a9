"""The studio as a user meets it: a live app on localhost, driven through gradio_client.

The app starts from a tiny preset (a tiny random BERT, 240 IMDb reviews at 32 tokens) so a run takes
seconds; everything else is the real app: the real handlers, job slot, registry and event log.
"""

from __future__ import annotations

import re
import time
from pathlib import Path

import pytest
from gradio_client import Client
from gradio_client.exceptions import AppError

from studio.config import RunConfig
from studio.ui import build_app

pytestmark = pytest.mark.slow  # a live app on localhost, driven through gradio_client

UNTIL_STOPPED = 1_000_000
"""A run started from the page trains until the test presses Stop, however fast the host (a 400-step run once
finished on a fast CPU before the test's Stop, and the stop was never seen)."""


def tiny_preset(folder: Path, model_dir: Path, max_steps: int = UNTIL_STOPPED) -> Path:
    config = RunConfig.from_dict({
        "name": "tiny-ui",
        "data": {"source": "imdb-sample", "max_samples": 240, "max_length": 32},
        "model": {"name": str(model_dir)},
        "method": {"name": "lora", "r": 4},
        "train": {"epochs": 1, "max_steps": max_steps, "batch_size": 8, "learning_rate": 1e-3, "logging_steps": 1,
                  "eval_strategy": "steps", "eval_steps": 4},
    })  # fmt: skip
    path = folder / "tiny-ui.yaml"
    config.to_yaml(path)
    return path


@pytest.fixture(scope="module")
def live(tmp_path_factory, tiny_model_dir):
    root = tmp_path_factory.mktemp("live")
    app = build_app(root / "runs", preset=tiny_preset(root, tiny_model_dir("bert")))
    app.queue().launch(prevent_thread_lock=True, quiet=True)
    client = Client(app.local_url, verbose=False)
    yield app, client
    job = app.studio.jobs.active()
    if job:
        job.run.stop()
        job.run.wait(60)
    app.close()


def finished_run(app, tiny_model_dir) -> str:
    """The id of a single-label run of the app's registry that has ended with results: the newest one, or a short
    run trained now through the engine (so a test that needs one passes alone and in any order)."""
    import tempfile

    from studio.training import Run

    registry = app.studio.registry
    for record in registry.list():
        ended = record.status in ("completed", "stopped") and record.accuracy is not None
        if ended and registry.task(record.id) == "single_label":  # a multi-label run answers otherwise
            return record.id
    config = RunConfig.from_yaml(tiny_preset(Path(tempfile.mkdtemp()), tiny_model_dir("bert"), max_steps=8))
    result = Run(config.with_overrides(["train.eval_strategy=no", "train.eval_steps=null"]),
                 app.studio.registry).execute()  # fmt: skip
    assert result.status == "completed", result.message
    return result.run_id


@pytest.fixture
def done(live, tiny_model_dir) -> str:
    return finished_run(live[0], tiny_model_dir)


BOTH = "the film angry furious happy glad it"
"""A text the tiny multi-label run gives both anger and joy (tests/test_multilabel.py's data)."""


def multi_label_run(app, tiny_model_dir) -> str:
    """A finished multi-label run of the app's registry (anger / joy / neutral, the words say them): the newest
    one, or one trained now through the engine (so a test that needs one passes alone and in any order)."""
    import tempfile

    from test_multilabel import multi_label_rows, write_rows

    from studio.training import Run

    registry = app.studio.registry
    for record in registry.list(status="completed"):
        if registry.task(record.id) == "multi_label":
            return record.id
    source = write_rows(Path(tempfile.mkdtemp()) / "emotions.csv", multi_label_rows())
    config = RunConfig.from_dict({
        "name": "tiny-ml", "data": {"source": source, "label_separator": "|", "max_length": 16},
        "model": {"name": str(tiny_model_dir("bert"))}, "method": {"name": "full"},
        "train": {"epochs": 6, "batch_size": 16, "learning_rate": 3e-3, "metric_for_best": "f1_macro",
                  "class_weights": "balanced"},
    })  # fmt: skip
    result = Run(config, registry).execute()
    assert result.status == "completed", result.message
    return result.run_id


def form(app, api_name: str, **changes) -> dict:
    """Every form input of an endpoint at the preset's value (what a fresh page sends), with `changes` by path
    (data__max_samples=60): config values, shown as the form shows them (a field of several components, such as
    data.balance, sets each of them; an optional number's None is its 0)."""
    fn = next(f for f in app.fns.values() if f.api_name == api_name)
    shown = {}
    for b in app.studio.form.bindings:
        if (key := b.path.replace(".", "__")) in changes:
            value = b.to_ui(changes[key])
            shown.update(zip(b.components, value if len(b.components) > 1 else (value,), strict=True))
    args = {}
    for i, component in enumerate(fn.inputs):
        if component.__class__.__name__ != "State":
            args[f"param_{i}"] = shown.get(component, component.value)
    return args


def tick_until(client: Client, predicate, timeout: float = 120) -> tuple:
    """Poll the Train tab's timer handler: (status, progress, loss, metrics, lr, log, results, hardware)."""
    deadline = time.time() + timeout
    while time.time() < deadline:
        out = client.predict(api_name="/tick")
        if predicate(out):
            return out
        time.sleep(0.2)  # 0.5 s added 0.25 s on average to each wait (31 failing runs in the bad-input matrix)
    raise AssertionError(f"timed out; last status: {out[0]}")


def _step(progress_html: str) -> int:
    match = re.search(r"step ([\d,]+) /", progress_html)  # "waiting for the first step" has no number yet
    return int(match.group(1).replace(",", "")) if match else 0


def test_inspect_data_and_estimate_memory(live):
    app, client = live
    summary, labels, lengths, preview, *_ = client.predict(api_name="/inspect_data", **form(app, "inspect_data"))
    assert "240 rows" in summary and "2 labels" in summary and "longer than 32" in summary
    assert preview["headers"] == ["sentiment", "review"] and len(preview["data"]) == 20  # the label first
    device, plot, text = client.predict(api_name="/estimate", **form(app, "estimate"))
    assert "CPU only" in device and "GB estimated" in text and "Trainable parameters" in text
    assert "Speed profile fast: on a CPU the settings train as given" in text  # the profile says what it did
    # A knob moves the estimate: a bigger batch needs more memory.
    bigger = client.predict(api_name="/estimate", **form(app, "estimate", train__batch_size=512))
    gb = [float(t.split(" GB")[0].split()[-1]) for t in (text, bigger[2])]
    assert gb[1] > gb[0]
    # Choosing another family moves the adapters: the same placement wraps that family's modules.
    assert "**Adapters on:** attention.self.query, attention.self.value" in text  # the tiny BERT, LoRA q+v
    decoder = client.predict(api_name="/estimate", **form(app, "estimate", model__name="smollm2-135m"))[2]
    assert "**Adapters on:** self_attn.q_proj, self_attn.v_proj" in decoder and "of 134," in decoder


def test_train_watch_stop_and_predict(live):
    app, client = live
    client.predict(api_name="/stop")  # nothing is training: a notice (gr.Info), not an error
    assert client.predict(api_name="/start", **form(app, "start")) == ""  # no message
    # one run at a time: said in the message slot by the buttons
    assert "already training" in client.predict(api_name="/start", **form(app, "start"))
    # while a run trains the curves are redrawn at most as often as plots.redraw_due allows: wait for a tick
    # that drew them
    drawn = lambda o: isinstance(o[2], dict) and "plot" in o[2] and "accuracy" in str(o[3])  # noqa: E731
    out = tick_until(client, lambda o: "training" in o[0] and _step(o[1]) >= 10 and drawn(o))
    assert "ETA" in out[1] and "train loss" in out[2]["plot"] and "accuracy" in out[3]["plot"]
    client.predict(api_name="/stop")
    out = tick_until(client, lambda o: "stopped" in o[0])
    assert out[5].count("\n") > 3 and "stop requested" in out[5]  # the log pane
    assert "Test accuracy" in out[6]
    record = app.studio.registry.get(app.studio.jobs.current().run_id)
    assert record.status == "stopped" and record.accuracy is not None
    # A fresh page (a new client session) re-attaches to the same run.
    fresh = Client(app.local_url, verbose=False)
    fresh.predict(api_name="/attach")
    assert "stopped" in fresh.predict(api_name="/tick")[0] and record.id in fresh.predict(api_name="/tick")[0]
    # The playground predicts with it (after listing the runs, as opening the tab does).
    client.predict(api_name="/playground_runs")
    label = client.predict(record.id, None, "What a wonderful, moving film.", 0, api_name="/predict")[0]
    assert {c["label"] for c in label["confidences"]} == {"negative", "positive"}
    mistakes = client.predict(record.id, "test", api_name="/mistakes")[0]  # (the table, the answer line)
    assert mistakes["headers"] == ["label", "predicted", "confidence", "p_true", "text"]  # labels first


def test_ten_playground_clients_at_once_while_a_run_trains(live, done):
    """10 pages predicting at the same time (3 texts each) while another run trains: every answer is the one a
    single client gets, none fails, and a second Start is refused."""
    from concurrent.futures import ThreadPoolExecutor

    app, client = live
    texts = ["What a wonderful, moving film.", "Dull, long and badly acted.", "It was fine, I suppose."]
    client.predict(api_name="/playground_runs")
    expected = [client.predict(done, None, t, 0, api_name="/predict")[0]["label"] for t in texts]
    client.predict(api_name="/start", **form(app, "start"))
    try:
        tick_until(client, lambda o: "training" in o[0])
        assert "already training" in client.predict(api_name="/start", **form(app, "start"))

        def page(_: int) -> list[str]:
            # gradio_client fetches the app's API description with httpx's 5-s default: ten at once beside a training
            # run on 2 cores took longer once in CI. That wait is the client's, not what this test checks.
            mine = Client(app.local_url, verbose=False, httpx_kwargs={"timeout": 60})
            mine.predict(api_name="/playground_runs")
            return [mine.predict(done, None, t, 0, api_name="/predict")[0]["label"] for t in texts]

        with ThreadPoolExecutor(10) as pool:
            answers = list(pool.map(page, range(10)))
        assert answers == [expected] * 10
        assert app.studio.jobs.active() is not None  # the training went on meanwhile
    finally:
        client.predict(api_name="/stop")
        tick_until(client, lambda o: "stopped" in o[0] or "completed" in o[0])


def test_resume_button_continues_an_interrupted_run(live, tmp_path, tiny_model_dir):
    """A run whose process was killed shows `interrupted`; Resume continues it and the Train tab follows it."""
    import subprocess
    import sys

    from test_resume import KILLED_AT, ROOT, config_for

    app, client = live
    registry = app.studio.registry
    preset = tmp_path / "killed.yaml"
    config_for(tiny_model_dir).to_yaml(preset)
    killed = subprocess.run([sys.executable, "-c", KILLED_AT, str(preset), str(registry.runs_dir), "8"], cwd=ROOT,
                            capture_output=True, text=True, timeout=300)  # fmt: skip
    assert killed.returncode == -9, killed.stderr[-2000:]
    record = registry.list()[0]
    assert record.status == "interrupted"
    client.predict([], None, api_name="/runs")  # the Runs tab's refresh: the run is in its list now
    assert client.predict(record.id, api_name="/resume") is not None
    out = tick_until(client, lambda o: "completed" in o[0])
    assert record.id in out[0] and registry.get(record.id).status == "completed"
    assert "resuming from checkpoint-6" in out[5]  # the log pane says where it went on from
    assert "is completed: only an interrupted run can be resumed" in client.predict(record.id, api_name="/resume")
    registry.delete(record.id)  # the later tests expect the page's own runs only


def test_the_playground_predicts_a_label_set_through_the_api(live, done, tiny_model_dir):
    """/predict keeps its shape (label A, label B, answer line, bars A, bars B) for either kind of run: a
    multi-label run answers with its label set in the answer line, its probabilities in the (hidden) Label, and
    a bar per label with its threshold."""
    import json

    app, client = live
    multi = multi_label_run(app, tiny_model_dir)
    client.predict(api_name="/playground_runs")
    label, _, said, bars, _ = client.predict(multi, None, BOTH, 0, api_name="/predict")
    assert said in ("Run A: **joy, anger**", "Run A: **anger, joy**")
    assert {c["label"] for c in label["confidences"]} == {"anger", "joy", "neutral"}
    assert bars["visible"] is True  # the bars come as an update: shown for a multi-label run, hidden otherwise
    figure = json.loads(bars["value"]["plot"])
    assert {t.get("name") for t in figure["data"]} >= {"given (reaches its threshold)", "threshold"}
    assert "anger" in figure["layout"]["title"]["text"] and "joy" in figure["layout"]["title"]["text"]
    # A/B: the single-label run beside it; its Label shows, its answer is said too
    single_label, multi_label, said, _, bars_b = client.predict(done, multi, BOTH, 0, api_name="/predict")
    assert {c["label"] for c in single_label["confidences"]} == {"negative", "positive"}
    assert said.startswith("Run A: **") and "Run B: **" in said and "plot" in bars_b["value"]
    b_labels = {c["label"] for c in multi_label["value"]["confidences"]}  # B's Label as it always came (an update)
    assert multi_label["visible"] is False and b_labels == {"anger", "joy", "neutral"}  # hidden: a multi-label run
    unsure = client.predict(multi, None, BOTH, 0.99, api_name="/predict")[2]
    assert unsure.startswith("Run A: **unsure** (least sure label decision")


def test_bad_input_gets_a_message_and_the_app_stays_up(live, done, tmp_path):
    app, client = live
    assert "pick a run first" in client.predict(None, None, "some text", 0, api_name="/predict")[2]  # the answer line
    assert "choose a dataset first" in client.predict(api_name="/start", **form(app, "start", data__source=""))
    said = client.predict(api_name="/inspect_data", **form(app, "inspect_data", data__text_column="body"))[0]
    assert "This data cannot be used yet" in said and "text column 'body' not found" in said  # in the summary
    bad = tmp_path / "notes.xlsx"
    bad.write_bytes(b"PK\x03\x04 not really a spreadsheet")
    run_id = done
    from gradio_client import handle_file

    client.predict(api_name="/playground_runs")
    with pytest.raises(AppError, match="Invalid file type"):
        client.predict(run_id, handle_file(str(bad)), "", 0, api_name="/label_file")
    no_text = tmp_path / "scores.csv"
    no_text.write_text("id,score\n1,0.5\n2,0.7\n")
    said = client.predict(run_id, handle_file(str(no_text)), "", 0, api_name="/label_file")[1]  # the answer line
    assert "text column 'text' not found in scores.csv; it has columns: id, score" in said
    texts = tmp_path / "texts.csv"
    texts.write_text("text\nloved it\nhated it\n")
    out = client.predict(run_id, handle_file(str(texts)), "", 0, api_name="/label_file")[0]
    labelled = Path(out).read_text().splitlines()
    assert labelled[0] == "text,predicted_label,score,prob_negative,prob_positive" and len(labelled) == 3
    assert "pick a run first" in client.predict(None, "test", api_name="/mistakes")[1]
    # A model that cannot load (here: a Hub id, offline) fails the run with its reason, after the data loaded
    # (this once killed the run's thread and the page waited for ever).
    client.predict(api_name="/start", **form(app, "start", model__name="nobody/no-such-model-xyz"))
    out = tick_until(client, lambda o: "failed" in o[0])
    assert "Model: could not load" in out[0] and "no-such-model-xyz" in out[0]  # the field by its label
    assert client.predict(api_name="/runs", chosen=[], one=None)[0]["data"]  # still up and answering


def test_runs_tab_compares_opens_and_deletes(live, done):
    app, client = live
    registry = app.studio.registry
    run_id = done
    table, compare, selected = client.predict([], None, api_name="/runs")  # what opening the tab does
    assert run_id in [row[0] for row in table["data"]] and table["headers"][:4] == ["run", "status", "flag", "accuracy"]
    overlay, pareto = client.predict([run_id], "training loss", api_name="/draw_compare")
    assert run_id in overlay["plot"] and "Accuracy vs peak memory" in pareto["plot"]
    details, config_text = client.predict(run_id, api_name="/show")
    assert run_id in details and "Test accuracy" in details and "name: tiny-ui" in config_text
    client.predict(run_id, api_name="/open_run")  # fills the form from the run's config (session state)
    zip_path = client.predict(run_id, api_name="/zip_run")[0]  # (the file, the tab's message)
    assert Path(zip_path).suffix == ".zip" and Path(zip_path).stat().st_size > 1000
    assert "token" in client.predict(run_id, "me/tiny", "", True, False, api_name="/push_run")  # in its status line
    client.predict(run_id, api_name="/ask_delete")
    client.predict(run_id, [run_id], api_name="/delete_run")
    assert run_id not in [r.id for r in registry.list()] and not registry.run_dir(run_id).exists()
    assert "pick a run" in str(client.predict(None, [], api_name="/delete_run"))  # in the tab's message


def test_probe_measures_beside_the_estimate(live):
    app, client = live
    text = client.predict(api_name="/probe", **form(app, "probe", train__batch_size=4))[0]  # (the text, a message)
    assert "Measured" in text and "the process's memory (RSS)" in text and "estimate" in text and "3 steps" in text
    assert "this page's own included" in text  # on a CPU: what RSS holds, and the growth 3 steps do not show
    assert all(r.name != "probe" for r in app.studio.registry.list())  # the probe trains in a temp folder


def test_compare_tab_runs_a_grid_and_reports(tmp_path_factory, tiny_model_dir):
    import yaml

    root = tmp_path_factory.mktemp("grid-live")
    grids = root / "grids"
    grids.mkdir()
    base = RunConfig.from_yaml(tiny_preset(root, tiny_model_dir("bert"))).with_overrides(
        ["train.max_steps=40", "train.eval_strategy=no", "train.eval_steps=null"]
    )
    axes = {"method.name": ["lora", "ia3"], "seed": [1, 2]}
    (grids / "tiny.yaml").write_text(yaml.safe_dump({"name": "tiny", "base": base.to_dict(), "axes": axes}))
    app = build_app(root / "runs", grids_dir=grids)
    app.queue().launch(prevent_thread_lock=True, quiet=True)
    try:
        client = Client(app.local_url, verbose=False)
        description, points = client.predict("tiny", api_name="/grid_points")
        assert "4 runs" in description and len(points["data"]) == 4 and points["data"][0][3] in ("yes", "no")
        client.predict("tiny", api_name="/grid_start")
        assert "grid tiny is running" in client.predict(api_name="/start", **form(app, "start"))  # it holds the slot
        deadline, live = time.time() + 180, []
        while "finished" not in (line := (out := client.predict("tiny", api_name="/grid_watch"))[0]):
            assert time.time() < deadline, line
            live.append(str(out[1]))
            time.sleep(0.2)
        assert "4 trained, 0 done before, 0 failed" in line
        assert any("Current run" in plot for plot in live)  # the training run's curves showed meanwhile
        report = client.predict("tiny", api_name="/grid_report")[0]  # (the file, the description line)
        assert "Aggregated over seeds" in Path(report).read_text()
        client.predict(api_name="/grid_stop")  # no grid is running: a notice, not an error
    finally:
        app.close()


def test_the_bad_input_matrix_in_the_page(live, tmp_path, tiny_model_dir):
    """Every entry of tests/test_bad_inputs.py's matrix that the page can express (a training config set in the
    form; the rest are CLI-only: unknown keys, preset files, run ids typed on a command line) gets a visible
    message with the same words, as an error popup or as the failed run's status, and the app stays up. A bad
    data input is said by Inspect too, where its summary would be (all but class weights, which are the
    training's)."""
    import yaml
    from test_bad_inputs import MATRIX

    app, client = live
    bound = {b.components[0]: b.path for b in app.studio.form.bindings}
    paths = set(bound.values())
    shown, inspected = [], []
    for bad in MATRIX:
        argv = bad.argv(tmp_path, tiny_model_dir)
        if argv[:2] != ["train", "quick_demo"]:
            continue
        changes = dict(a.split("=", 1) for a in argv[argv.index("--quiet") + 1 :] if a != "--set")
        if not set(changes) <= paths or bad.what in ("a value of the wrong type", "a choice that does not exist"):
            continue  # a field the page has no control for, or a value its widget cannot hold
        values = {k.replace(".", "__"): v if v in ("no", "yes") else yaml.safe_load(v) for k, v in changes.items()}
        if "data.balance" in changes:  # the CLI's quick_demo has no max_samples; the page's tiny preset has 240,
            values.setdefault("data__max_samples", None)  # which a balance refuses before its own checks
        if bad.area == "data" and not bad.words[0].startswith("train."):  # the data as Inspect sees it: its summary
            said = client.predict(api_name="/inspect_data", **form(app, "inspect_data", **values))[0]
            assert said.startswith("### ⚠ This data cannot be used yet"), (bad.what, said)
            assert all(_in_page_words(app, word, said) for word in bad.words), (bad.what, said)
            inspected.append(bad.what)
        try:
            message = client.predict(api_name="/start", **form(app, "start", **values))  # by the buttons, or ""
        except AppError as e:  # Gradio's own check of a field's bound, before the handler
            message = str(e)
        if not message:
            out = tick_until(client, lambda o: any(s in o[0] for s in ("failed", "completed", "stopped")))
            message = out[0]
            assert "failed" in message, (bad.what, message)
        if "than minimum value" in message or "than maximum value" in message:  # the widget's bound, at the field
            shown.append(f"{bad.what} (the field's bound)")
        else:
            for word in bad.words:  # the page names a field by its label ("Learning rate", not train.learning_rate)
                assert _in_page_words(app, word, message), (bad.what, message)
            shown.append(bad.what)
        client.predict(api_name="/tick")  # the app is up
    print("shown in the page:", len(shown), shown)
    print("said by Inspect:", len(inspected), inspected)
    assert len(shown) >= 41 and len(inspected) >= 24, (shown, inspected)


def _in_page_words(app, word: str, said: str) -> bool:
    """`word` (the CLI's words) in a page's message, where config paths are the fields' labels: a path becomes its
    label, and so does a field named without its section ("multi_label: drop" of "data.multi_label: drop")."""
    words = app.studio.form.words
    return any(words(w) in said for w in (word, f"data.{word}", f"train.{word}", f"model.{word}"))
