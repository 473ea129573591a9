"""Load exported models the way their model card tells a user to, and score test texts: the fresh-process half of
`studio.export_check`.

Run as a script, in a process of its own: ``python export_check_worker.py JOB.json`` (the studio runs it by path
through runpy, from a temporary folder, so no studio module is importable; it exits 3 if one was imported anyway).
It imports only transformers, peft, torch, numpy, pandas and json, never the studio, so what it sees is what a user
with plain transformers sees. JOB.json::

    {"exports": [{"folder": "...", "layout": "run" | "flat", "base_model": "<path or id>" | null,
                  "max_length": 256, "texts": "<the run's predictions.parquet>", "rows": 2000,
                  "head_keys": ["classifier.weight", ...], "out": "<file.npz>"}, ...]}

For each export it scores the first ``rows`` test texts of ``texts`` and writes ``out`` (numpy .npz: ``logits``,
``probs``, ``probs_calibrated`` (when the export has a calibration.json), ``predicted`` (single-label: the class
index; multi-label: 0/1 per label), ``id2label`` (the loaded model's labels, JSON), ``head::<key>`` (each of
``head_keys`` the loaded model has, as it loaded)), or ``out + ".error"`` with the
one line the load or scoring failed with. The loading and the post-processing follow the card's "How to use",
"Calibration" and "Thresholds" sections:

- the tokenizer from the export (``tokenizer/`` in a zip's layout, else the folder itself);
- a full model: ``AutoModelForSequenceClassification.from_pretrained(model folder)``;
- an adapter: the base from ``base_model`` with ``num_labels``, ``id2label``, ``label2id`` and the tokenizer's
  ``pad_token_id``, then ``PeftModel.from_pretrained(base, adapter folder)``;
- texts tokenized with ``truncation=True, max_length=...``, padded per batch; fp32 (on a GPU when there is one,
  TF32 off);
- probabilities: softmax of the logits (single-label) or a sigmoid per label (multi-label); calibrated: the logits
  divided by calibration.json's ``temperature`` (or its ``per_label`` temperature of each label) first;
- the label: the most probable class; multi-label: every label whose calibrated probability (raw without a
  calibration.json) is at or above its threshold in thresholds.json (``per_label``, else ``global_threshold``;
  0.5 without the file).
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

BATCH = 32


def _labels(folder: Path) -> tuple[list[str], str]:
    data = json.loads((folder / "label_map.json").read_text(encoding="utf-8"))
    names = [data["id2label"][str(i)] for i in range(len(data["id2label"]))]
    return names, ("multi_label" if data.get("task") == "multi_label" else "single_label")


def _load(job: dict, names: list[str]):
    """(model, tokenizer) as the card's "How to use" loads them."""
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    folder = Path(job["folder"])
    flat = job["layout"] == "flat"
    tokenizer = AutoTokenizer.from_pretrained(folder if flat else folder / "tokenizer")
    adapter_dir = folder if flat else folder / "adapter"
    if (adapter_dir / "adapter_config.json").is_file():
        from peft import PeftModel

        base = AutoModelForSequenceClassification.from_pretrained(
            job["base_model"], num_labels=len(names), id2label=dict(enumerate(names)),
            label2id={n: i for i, n in enumerate(names)}, pad_token_id=tokenizer.pad_token_id,
        )  # fmt: skip
        model = PeftModel.from_pretrained(base, adapter_dir)
    else:
        model = AutoModelForSequenceClassification.from_pretrained(folder if flat else folder / "model")
    return model.float().eval(), tokenizer


def _logits(model, tokenizer, texts: list[str], max_length: int):
    import numpy as np
    import torch

    device = "cuda" if torch.cuda.is_available() else "cpu"
    model.to(device)
    out = []
    with torch.inference_mode():
        for start in range(0, len(texts), BATCH):
            enc = tokenizer(texts[start : start + BATCH], truncation=True, max_length=max_length, padding=True,
                            return_tensors="pt").to(device)  # fmt: skip
            out.append(model(**enc).logits.float().cpu().numpy())
    return np.concatenate(out) if out else np.zeros((0, model.config.num_labels), dtype=np.float32)


def _temperatures(folder: Path, names: list[str]):
    """What divides the logits (calibration.json), or None without the file."""
    import numpy as np

    path = folder / "calibration.json"
    if not path.is_file():
        return None
    data = json.loads(path.read_text(encoding="utf-8"))
    per_label = data.get("per_label")
    if per_label:
        return np.asarray([float(per_label[n]) for n in names])
    return float(data["temperature"])


def _thresholds(folder: Path, names: list[str]):
    import numpy as np

    path = folder / "thresholds.json"
    if not path.is_file():
        return np.full(len(names), 0.5)
    data = json.loads(path.read_text(encoding="utf-8"))
    per_label, fallback = data.get("per_label") or {}, float(data.get("global_threshold", 0.5))
    return np.asarray([float(per_label.get(n, fallback)) for n in names])


def _probabilities(logits, multi: bool):
    import numpy as np

    z = np.asarray(logits, dtype=np.float64)
    if multi:
        return 1.0 / (1.0 + np.exp(-z))
    z = z - z.max(axis=-1, keepdims=True)
    e = np.exp(z)
    return e / e.sum(axis=-1, keepdims=True)


def check_one(job: dict, texts: list[str]) -> None:
    import numpy as np

    folder = Path(job["folder"])
    names, task = _labels(folder)
    multi = task == "multi_label"
    model, tokenizer = _load(job, names)
    logits = _logits(model, tokenizer, texts, int(job["max_length"]))
    result = {"logits": logits, "probs": _probabilities(logits, multi)}
    temperature = _temperatures(folder, names)
    if temperature is not None:
        result["probs_calibrated"] = _probabilities(logits / temperature, multi)
    decided_on = result.get("probs_calibrated", result["probs"])
    if multi:
        result["predicted"] = (decided_on >= _thresholds(folder, names)).astype(np.int8)
    else:
        result["predicted"] = logits.argmax(axis=-1)
    weights = model.state_dict()
    for key in job.get("head_keys") or ():  # the head as loaded, for the parent to compare with the one trained
        if key in weights:
            result[f"head::{key}"] = weights[key].float().cpu().numpy()
    id2label = getattr(getattr(model, "config", None), "id2label", None) or {}
    labels = [str(id2label.get(i, id2label.get(str(i), ""))) for i in range(len(names))]
    result["id2label"] = np.asarray(json.dumps(labels))
    with open(job["out"], "wb") as f:  # np.savez would add .npz to a name without it
        np.savez(f, **result)


def _test_texts(path: str, rows: int) -> list[str]:
    import pandas as pd

    frame = pd.read_parquet(path, columns=["split", "text"])
    return [str(t) for t in frame[frame["split"] == "test"]["text"].tolist()[:rows]]


def main(job_path: str) -> int:
    import torch

    torch.backends.cuda.matmul.allow_tf32 = False
    torch.backends.cudnn.allow_tf32 = False
    job = json.loads(Path(job_path).read_text(encoding="utf-8"))
    for export in job["exports"]:
        try:
            check_one(export, _test_texts(export["texts"], int(export["rows"])))
        except Exception as e:  # noqa: BLE001 (any failure to load or score is the check's finding)
            line = (str(e).strip().splitlines() or [""])[0][:400]
            Path(export["out"] + ".error").write_text(f"{type(e).__name__}: {line}", encoding="utf-8")
    leaked = sorted(m for m in sys.modules if m == "studio" or m.startswith("studio."))
    if leaked:  # the check is a user's view only if no studio code ran here
        print(f"the export check imported studio modules ({', '.join(leaked)})", file=sys.stderr)
        return 3
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1]))
