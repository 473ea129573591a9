"""Export: model card, zip, merged model, Hub push (a fake HfApi: no network), and the errors of each."""

from __future__ import annotations

import contextlib
import io
import json
import re
import shutil
import zipfile
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
import yaml

from studio import export
from studio import model_card as card_module
from studio.config import ModelConfig, RunConfig
from studio.errors import RunNotFoundError, StudioError
from studio.inference import Predictor
from studio.model_card import model_card
from studio.registry import Registry
from studio.training import Run

TEXTS = ["a wonderful, moving film", "dull and far too long", "the actors seem bored", "I laughed a lot", ""]


@pytest.fixture(scope="module")
def runs(tiny_model_dir, tmp_path_factory):
    """(registry, get): get(method) trains one tiny run of that method on first use (~1-2 s each)."""
    registry = Registry(tmp_path_factory.mktemp("export") / "runs")
    ids: dict[str, str] = {}

    def get(method: str) -> str:
        if method not in ids:
            config = RunConfig.from_dict(
                {
                    "name": f"export-{method}",
                    "data": {"source": "imdb-sample", "max_samples": 240, "max_length": 32},
                    "model": {"name": str(tiny_model_dir("bert"))},
                    "method": {"name": method, "r": 4},
                    # a large learning rate: the adapters must move far from the base for the merge to be tested
                    "train": {"max_steps": 3, "batch_size": 16, "learning_rate": 2e-2, "eval_strategy": "no"},
                }
            )
            result = Run(config, registry).execute()
            assert result.status == "completed", result.message
            ids[method] = result.run_id
        return ids[method]

    return registry, get


def outputs(model, tokenizer, texts=TEXTS) -> tuple[np.ndarray, np.ndarray]:
    """(last hidden states of the real tokens, logits). Hidden states are O(1) where a tiny random model's
    logits are ~0.01: comparing them is what makes a merge check sharp."""
    import torch

    enc = tokenizer(texts, truncation=True, max_length=32, padding=True, return_tensors="pt")
    with torch.inference_mode():
        out = model(**enc, output_hidden_states=True)
    real = enc["attention_mask"].bool().numpy()
    return out.hidden_states[-1].float().numpy()[real], out.logits.float().numpy()


def front_matter(card: str) -> dict:
    assert card.startswith("---\n")
    return yaml.safe_load(card.split("---\n")[1])


def run_usage_snippet(card: str, **replace: str) -> str:
    """Run the card's "How to use" code with its placeholders (`name = "..."` lines) replaced; return stdout."""
    code = re.search(r"## How to use\n\n```python\n(.*?)```", card, re.S).group(1)
    for name, value in replace.items():
        code, n = re.subn(rf'^{name} = "[^"]*".*$', f"{name} = {value!r}", code, flags=re.M)
        assert n == 1, f"no `{name} = ...` line in the snippet:\n{code}"
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        exec(compile(code, "model-card-snippet", "exec"), {})
    return out.getvalue()


# ---- model card ----------------------------------------------------------------------------------------
def test_model_card_front_matter_and_body(runs):
    registry, get = runs
    run_id = get("qlora")
    card = model_card(registry, run_id)
    meta = front_matter(card)
    summary = registry.summary(run_id)
    assert meta["library_name"] == "peft" and meta["pipeline_tag"] == "text-classification"
    assert meta["tags"] == ["fine-tune-studio", "qlora", "imdb-sample"]
    assert "base_model" not in meta and "datasets" not in meta  # a local base folder, a shipped sample
    metrics = {m["name"]: m["value"] for m in meta["model-index"][0]["results"][0]["metrics"]}
    test = summary.test
    assert metrics == {"Accuracy": test.accuracy, "F1 (weighted)": test.f1_weighted,
                       "F1 (macro)": test.f1_macro}  # fmt: skip
    from huggingface_hub import ModelCard

    assert ModelCard(card).data.eval_results[0].metric_value == test.accuracy  # the Hub's own parser agrees
    for words in ("| 0 | negative |", "192 train / 24 validation / 24 test", "max_length: 32", "QLoRA, placement qv",
                  "rank 4, alpha 32", "4-bit nf4", "saved whole: classifier", "| learning rate | 0.02 |",
                  "| optimizer | adamw_torch |", "| negative |", "trainable parameters:", "peak memory:",
                  summary.reproducibility.config_hash, "python -m studio train config.yaml",
                  "PeftModel.from_pretrained", "BitsAndBytesConfig"):  # fmt: skip
        assert words in card, words


def test_model_card_names_hub_base_and_dataset(runs, monkeypatch):
    registry, get = runs
    monkeypatch.setattr(card_module, "base_model_id", lambda cfg: "google-bert/bert-base-uncased")
    monkeypatch.setattr(card_module, "_hub_dataset_id", lambda source: "stanfordnlp/imdb")
    card = model_card(registry, get("full"), repo_id="alice/imdb-full")
    meta = front_matter(card)
    assert meta["library_name"] == "transformers" and meta["base_model"] == "google-bert/bert-base-uncased"
    assert meta["datasets"] == ["stanfordnlp/imdb"] and meta["model-index"][0]["name"] == "imdb-full"
    assert 'pipeline("text-classification", model=repo' in card and 'repo = "alice/imdb-full"' in card


def test_base_model_id():
    assert export.base_model_id(ModelConfig(name="minilm-l6")) == "sentence-transformers/all-MiniLM-L6-v2"
    assert export.base_model_id(ModelConfig(name="bert-base")) == "bert-base-uncased"
    assert export.base_model_id(ModelConfig(name="Qwen/Qwen2.5-0.5B")) == "Qwen/Qwen2.5-0.5B"
    assert export.base_model_id(ModelConfig(name="/models/mine")) is None
    assert export.base_model_id(ModelConfig(name=str(Path(__file__).parent))) is None


# ---- zip -----------------------------------------------------------------------------------------------
def test_export_zip_holds_a_loadable_run_and_a_working_card(runs, tiny_model_dir, tmp_path):
    registry, get = runs
    run_id = get("lora")
    path = export.export_zip(registry, run_id, check=False).path
    assert path == registry.runs_dir / "exports" / f"{run_id}.zip"
    assert not list(path.parent.glob(".*tmp*")) and not (registry.run_dir(run_id) / "exports").exists()
    with zipfile.ZipFile(path) as zf:
        names = set(zf.namelist())
        zf.extractall(tmp_path)
    expected = {"adapter/adapter_config.json", "adapter/adapter_model.safetensors", "tokenizer/tokenizer.json",
                "tokenizer/tokenizer_config.json", "label_map.json", "calibration.json", "config.yaml", "eval.json",
                "README.md"}  # fmt: skip
    assert names == {f"{run_id}/{n}" for n in expected}  # no predictions (the test texts), logs or peft stub
    folder = tmp_path / run_id
    # the unzipped folder is a run folder: the studio's loader gives the run's own logits
    from studio.models import load_for_inference

    config = RunConfig.from_yaml(folder / "config.yaml")
    model, tokenizer = load_for_inference(folder, config, ["negative", "positive"])
    original = Predictor.from_run(registry, run_id)
    for got, want in zip(outputs(model, tokenizer), outputs(original.model, original.tokenizer), strict=True):
        np.testing.assert_allclose(got, want, atol=1e-6)
    # ... and the card's snippet, run as written, loads it with plain peft + transformers
    card = (folder / "README.md").read_text()
    out = run_usage_snippet(card, base_model=str(tiny_model_dir("bert")), folder=str(folder))
    assert out.strip() in ("negative", "positive")


def test_export_zip_of_a_full_fine_tune_to_a_chosen_folder(runs, tmp_path):
    registry, get = runs
    run_id = get("full")
    path = export.export_zip(registry, run_id, tmp_path / "out", check=False).path
    assert path == tmp_path / "out" / f"{run_id}.zip"
    with zipfile.ZipFile(path) as zf:
        zf.extractall(tmp_path)
        assert f"{run_id}/model/model.safetensors" in zf.namelist()
    out = run_usage_snippet((tmp_path / run_id / "README.md").read_text(), folder=str(tmp_path / run_id))
    assert "'label': 'negative'" in out or "'label': 'positive'" in out


def test_export_rewrites_the_adapter_base_to_its_hub_id(runs, monkeypatch):
    registry, get = runs
    for module in (export, card_module):  # the zip's adapter config and its card
        monkeypatch.setattr(module, "base_model_id", lambda cfg: "google-bert/bert-base-uncased")
    run_id = get("lora")
    with zipfile.ZipFile(export.export_zip(registry, run_id, check=False)) as zf:
        adapter_cfg = json.loads(zf.read(f"{run_id}/adapter/adapter_config.json"))
    assert adapter_cfg["base_model_name_or_path"] == "google-bert/bert-base-uncased"
    saved = json.loads((registry.run_dir(run_id) / "adapter" / "adapter_config.json").read_text())
    assert saved["base_model_name_or_path"] != "google-bert/bert-base-uncased"  # the run folder is untouched


def test_export_refuses_links_out_of_the_run_folder(runs, tmp_path):
    registry, get = runs
    run_id = get("lora")
    secret = tmp_path / "secret.txt"
    secret.write_text("not part of the run")
    link = registry.run_dir(run_id) / "tokenizer" / "extra.json"
    link.symlink_to(secret)
    try:
        with pytest.raises(StudioError, match=r"tokenizer/extra.json is a link to .*outside the run folder"):
            export.export_zip(registry, run_id, tmp_path / "out", check=False)
    finally:
        link.unlink()
    assert not (tmp_path / "out").exists() or not list((tmp_path / "out").iterdir())


# ---- merge ---------------------------------------------------------------------------------------------
@pytest.mark.parametrize("method", ["lora", "ia3"])
def test_merged_model_gives_the_adapter_models_outputs(runs, tiny_model_dir, method):
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    registry, get = runs
    run_id = get(method)
    folder = export.merge_adapter(registry, run_id, check=False).path
    assert folder == registry.run_dir(run_id) / "merged"
    assert {"config.json", "model.safetensors", "tokenizer.json", "label_map.json", "README.md"} <= {
        p.name for p in folder.iterdir()
    }
    merged = AutoModelForSequenceClassification.from_pretrained(folder).eval()
    assert not any("lora" in k or "ia3" in k or "modules_to_save" in k for k in merged.state_dict())
    assert merged.config.id2label == {0: "negative", 1: "positive"}
    tokenizer = AutoTokenizer.from_pretrained(folder)
    hidden, logits = outputs(merged, tokenizer)
    adapter = Predictor.from_run(registry, run_id)  # the studio's own loader: base + adapter, unmerged
    adapter_hidden, adapter_logits = outputs(adapter.model, adapter.tokenizer)
    np.testing.assert_allclose(hidden, adapter_hidden, atol=1e-4)
    np.testing.assert_allclose(logits, adapter_logits, atol=1e-5)
    # the adapters changed the encoder (by ~0.1 for LoRA, ~0.002 for IA3): the merge folded in something real
    base_hidden, _ = outputs(AutoModelForSequenceClassification.from_pretrained(tiny_model_dir("bert")), tokenizer)
    assert np.abs(hidden - base_hidden).max() > 5e-4
    assert front_matter((folder / "README.md").read_text())["library_name"] == "transformers"


def test_qlora_merges_into_the_unquantized_base(runs, tiny_model_dir):
    # The merge loads the base in fp32, not 4-bit, applies the adapter and folds it in. Against the same fp32
    # base with the adapter unmerged it agrees to float precision. Against the 4-bit model that trained (which
    # Predictor loads) it differs by the base's nf4 quantization error (~0.01 in hidden states here, against
    # ~0.15 moved by the adapter): same predictions, outputs close, not equal.
    from peft import PeftModel
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    registry, get = runs
    run_id = get("qlora")
    folder = export.merge_adapter(registry, run_id, check=False).path
    merged = AutoModelForSequenceClassification.from_pretrained(folder).eval()
    assert not hasattr(merged.config, "quantization_config")
    tokenizer = AutoTokenizer.from_pretrained(folder)
    hidden, logits = outputs(merged, tokenizer)
    base = AutoModelForSequenceClassification.from_pretrained(
        tiny_model_dir("bert"), num_labels=2, id2label={0: "negative", 1: "positive"}
    )
    base_hidden, _ = outputs(base, tokenizer)
    unmerged = PeftModel.from_pretrained(base, registry.run_dir(run_id) / "adapter").eval()
    for got, want in zip((hidden, logits), outputs(unmerged, tokenizer), strict=True):
        np.testing.assert_allclose(got, want, atol=1e-4)
    quantized = Predictor.from_run(registry, run_id)
    q_hidden, q_logits = outputs(quantized.model, quantized.tokenizer)
    assert (logits.argmax(-1) == q_logits.argmax(-1)).all()
    np.testing.assert_allclose(logits, q_logits, atol=1e-3)
    quantization_error = np.abs(hidden - q_hidden).max()
    assert quantization_error < 0.05 and quantization_error < np.abs(hidden - base_hidden).max() / 4
    assert "NOT quantized" in (folder / "README.md").read_text()


def test_merge_returns_an_existing_merge_and_refuses_an_incomplete_one(runs):
    registry, get = runs
    run_id = get("lora")
    folder = export.merge_adapter(registry, run_id, check=False).path
    stamp = (folder / "model.safetensors").stat().st_mtime_ns
    assert export.merge_adapter(registry, run_id, check=False).path == folder
    assert (folder / "model.safetensors").stat().st_mtime_ns == stamp  # not rewritten
    (folder / "README.md").rename(folder / "README.bak")
    try:
        with pytest.raises(StudioError, match="exists but is incomplete.*README.md.*delete it"):
            export.merge_adapter(registry, run_id, check=False)
    finally:
        (folder / "README.bak").rename(folder / "README.md")


def test_merge_refuses_a_full_fine_tune(runs):
    registry, get = runs
    run_id = get("full")
    with pytest.raises(StudioError, match=f"run {run_id} is a full fine-tune: its model/ folder is already a plain"):
        export.merge_adapter(registry, run_id, check=False)


# ---- runs that cannot be exported ----------------------------------------------------------------------
@pytest.fixture
def unfinished(runs):
    """(registry, make(status, **fields)): a registry row + folder without a saved model."""
    registry, _ = runs

    def make(status: str, **fields) -> str:
        record = registry.create(RunConfig.from_dict({"name": "broken"}))
        if status == "completed":  # finished (eval.json written last) but its model files are gone
            (registry.run_dir(record.id) / "eval.json").write_text("{}")
        if status != "running":
            registry.update(record.id, status=status, **fields)
        return record.id

    return registry, make


@pytest.mark.parametrize(
    "call",
    [
        lambda r, i: model_card(r, i),
        lambda r, i: export.export_zip(r, i),
        lambda r, i: export.merge_adapter(r, i),
        lambda r, i: export.push_to_hub(r, i, "alice/model", "hf_x", api_factory=FakeHfApi),
    ],
    ids=["card", "zip", "merge", "push"],
)
def test_runs_without_a_model_are_refused(unfinished, call):
    registry, make = unfinished
    with pytest.raises(RunNotFoundError, match="no run '20990101-000000-nope-0000'"):
        call(registry, "20990101-000000-nope-0000")
    with pytest.raises(RunNotFoundError, match="not a run id"):
        call(registry, "../..")
    failed = make("failed", message="out of CPU memory during training")
    with pytest.raises(StudioError, match=f"run {failed} failed \\(out of CPU memory.*\\) and has no saved model"):
        call(registry, failed)
    with pytest.raises(StudioError, match="is still training"):
        call(registry, make("running"))
    with pytest.raises(StudioError, match="no complete saved model: adapter/ or model/, tokenizer"):
        call(registry, make("completed"))
    gone = make("completed")  # a completed row whose folder lost eval.json too: shown as failed, refused
    (registry.run_dir(gone) / "eval.json").unlink()
    with pytest.raises(StudioError, match="no eval.json.*no saved model"):
        call(registry, gone)
    assert not FakeHfApi.instances


# ---- push ----------------------------------------------------------------------------------------------
class FakeHfApi:
    """Records what push_to_hub asks of huggingface_hub.HfApi and keeps a copy of the uploaded folder."""

    instances: list[FakeHfApi] = []
    keep: Path | None = None
    fail_with: Exception | None = None

    def __init__(self, token=None):
        self.token, self.calls = token, []
        FakeHfApi.instances.append(self)

    def create_repo(self, repo_id, *, private=None, exist_ok=False, **kwargs):
        self.calls.append(("create_repo", repo_id, {"private": private, "exist_ok": exist_ok, **kwargs}))
        if FakeHfApi.fail_with is not None:
            raise FakeHfApi.fail_with
        return f"https://huggingface.co/{repo_id}"

    def upload_folder(self, *, repo_id, folder_path, **kwargs):
        folder = Path(folder_path)
        self.files = sorted(p.relative_to(folder).as_posix() for p in folder.rglob("*") if p.is_file())
        self.calls.append(("upload_folder", repo_id, kwargs))
        if FakeHfApi.keep is not None:
            shutil.copytree(folder, FakeHfApi.keep)


@pytest.fixture(autouse=True)
def _fresh_fake(tmp_path, monkeypatch):
    monkeypatch.delenv("HF_TOKEN", raising=False)
    FakeHfApi.instances, FakeHfApi.keep, FakeHfApi.fail_with = [], tmp_path / "uploaded", None


def test_push_uploads_the_adapter_in_the_hub_layout(runs, tiny_model_dir):
    registry, get = runs
    run_id = get("lora")
    url = export.push_to_hub(registry, run_id, "alice/imdb-lora", "hf_secret", check=False, api_factory=FakeHfApi).url
    assert url == "https://huggingface.co/alice/imdb-lora"
    (api,) = FakeHfApi.instances
    assert api.token == "hf_secret"
    assert api.calls[0] == ("create_repo", "alice/imdb-lora", {"private": True, "exist_ok": True})
    assert api.calls[1][0] == "upload_folder" and api.calls[1][2]["repo_type"] == "model"
    assert api.files == ["README.md", "adapter_config.json", "adapter_model.safetensors", "calibration.json",
                         "config.yaml", "eval.json", "label_map.json", "tokenizer.json",
                         "tokenizer_config.json"]  # fmt: skip
    assert not list(registry.runs_dir.glob(".push-*")), "the staging folder is removed"
    card = (FakeHfApi.keep / "README.md").read_text()
    assert front_matter(card)["model-index"][0]["name"] == "imdb-lora" and 'repo = "alice/imdb-lora"' in card
    # the card's snippet loads the repo (a local copy of what was uploaded stands in for the Hub id)
    out = run_usage_snippet(card, base_model=str(tiny_model_dir("bert")), repo=str(FakeHfApi.keep))
    assert out.strip() in ("negative", "positive")


def test_push_merged_public_with_the_token_from_the_environment(runs, monkeypatch):
    registry, get = runs
    monkeypatch.setenv("HF_TOKEN", "hf_from_env")
    export.push_to_hub(registry, get("lora"), "alice/imdb-merged", None, private=False, merged=True,
                       check=False, api_factory=FakeHfApi)  # fmt: skip
    (api,) = FakeHfApi.instances
    assert api.token == "hf_from_env" and api.calls[0][2]["private"] is False
    assert "model.safetensors" in api.files and "config.json" in api.files
    assert not any(f.startswith("adapter") for f in api.files)
    card = (FakeHfApi.keep / "README.md").read_text()
    assert front_matter(card)["library_name"] == "transformers" and "merged into the base" in card
    out = run_usage_snippet(card, repo=str(FakeHfApi.keep))
    assert "'label': " in out


@pytest.mark.parametrize("repo_id", ["imdb-lora", "a/b/c", "alice/", "/imdb", "al ice/imdb", "alice/imdb--x",
                                     "alice/imdb.", "alice/x.git", ""])  # fmt: skip
def test_push_refuses_malformed_repo_ids_before_any_call(runs, repo_id):
    registry, get = runs
    with pytest.raises(StudioError, match="must look like owner/name"):
        export.push_to_hub(registry, get("lora"), repo_id, "hf_x", check=False, api_factory=FakeHfApi)
    assert not FakeHfApi.instances


@pytest.mark.parametrize("token", [None, "", "   "])
def test_push_needs_a_token(runs, token):
    registry, get = runs
    with pytest.raises(StudioError, match=r"a Hugging Face token with write access is needed: paste one .* HF_TOKEN"):
        export.push_to_hub(registry, get("lora"), "alice/imdb", token, check=False, api_factory=FakeHfApi)
    assert not FakeHfApi.instances


def _http_error(status: int) -> Exception:
    from huggingface_hub.errors import HfHubHTTPError

    class FakeHTTPError(HfHubHTTPError):  # the real one needs a live HTTP response object
        def __init__(self) -> None:
            Exception.__init__(self, f"{status} Client Error: for url https://huggingface.co/api/repos/create")
            self.response = SimpleNamespace(status_code=status)

    return FakeHTTPError()


@pytest.mark.parametrize(
    ("error", "words"),
    [
        (lambda: _http_error(401), "rejected the token (401)"),
        (lambda: _http_error(403), "may not write to alice/imdb (403)"),
        (lambda: _http_error(500), "refused the upload to alice/imdb (500): 500 Client Error"),
        (lambda: __import__("huggingface_hub.errors").errors.OfflineModeIsEnabled("offline"), "HF_HUB_OFFLINE=1"),
        (lambda: ConnectionError("Name or service not known"), "could not reach the Hugging Face Hub (Name or"),
    ],
    ids=["401", "403", "500", "offline", "connection"],
)
def test_hub_errors_become_one_readable_line(runs, error, words):
    registry, get = runs
    FakeHfApi.fail_with = error()
    with pytest.raises(StudioError) as info:
        export.push_to_hub(registry, get("lora"), "alice/imdb", "hf_secret_token", check=False, api_factory=FakeHfApi)
    message = str(info.value)
    assert words in message and "\n" not in message and "hf_secret_token" not in message
    assert info.value.__cause__ is None and info.value.__suppress_context__
    assert not list(registry.runs_dir.glob(".push-*"))


def test_other_errors_are_not_disguised(runs):
    registry, get = runs
    FakeHfApi.fail_with = ValueError("a bug")
    with pytest.raises(ValueError, match="a bug"):
        export.push_to_hub(registry, get("lora"), "alice/imdb", "hf_x", check=False, api_factory=FakeHfApi)
