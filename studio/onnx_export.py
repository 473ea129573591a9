"""A finished encoder run as an ONNX model (optionally int8), checked against torch, and served by onnxruntime.

``export_onnx(registry, run_id, int8=...)`` writes ``<run_dir>/onnx/`` (beside ``merged/``, as `merge_adapter`
does: a model derived from the run, not a copy of it):

- ``model.onnx``: the fp32 graph of the full fine-tune (``model/``) or of the merged adapter (``merged/``: run
  ``python -m studio merge RUN_ID`` first); inputs input_ids / attention_mask (/ token_type_ids), batch and
  sequence length dynamic; output the logits.
  For bert, distilbert and (xlm-)roberta the graph is fused by onnxruntime's transformer optimizer
  (`optimize_graph`: Attention, BiasGelu, EmbedLayerNormalization; traced from eager
  attention with a mask the optimizer recognizes), and the last layer after its attention computes token 0 alone,
  the only one their classifiers read (`first_token_only`); deberta-v2 keeps the plain graph (no fusion for it).
- ``model.int8.onnx`` (``int8``): the same graph with onnxruntime's dynamic int8 quantization (weights int8 per
  output channel, activations quantized on the fly).
- the tokenizer, label_map.json, calibration.json (the temperature) and thresholds.json (multi-label) of the run,
  and ``onnx.json``: max_length, task, the inputs, and the checks the export passed.

Why not optimum: optimum 2.x moved its ONNX exporter and ORTModel / ORTQuantizer into optimum-onnx, whose newest
release (0.1.0) requires ``transformers<4.58`` and ``optimum~=2.1``; with our transformers 5.x its imports fail
(``optimum.onnxruntime``: "cannot import name 'is_offline_mode' from 'transformers.utils'";
``optimum.exporters.onnx``: "cannot import name 'get_parameter_dtype' from 'transformers.modeling_utils'", checked
with optimum 2.3.0 + optimum-onnx 0.1.0 on transformers 5.24). optimum 1.27 pins ``transformers<4.54`` for its
onnxruntime extra. So the graph comes from ``torch.onnx.export`` (the TorchScript exporter, ``dynamo=False``: the
dynamo one needs the onnxscript package and gains nothing here) and the quantization from
``onnxruntime.quantization.quantize_dynamic``, which is what ORTQuantizer calls underneath.

The check (every export): the run's saved test texts (predictions.parquet) scored by the exported torch model in
fp32 on the CPU and by the ONNX model through `OnnxPredictor`: every label must be the same and every calibrated
probability within PROB_TOLERANCE. The int8 model must reach the torch model's test accuracy less at most
INT8_MAX_LOSS points. An export that fails is not kept and says why.
"""

from __future__ import annotations

import json
import os
import shutil
import warnings
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from studio.calibration import CALIBRATION_FILE, read_temperature
from studio.errors import StudioError
from studio.inference import CPU_BATCH, CPU_CHUNK, Predictor
from studio.multilabel import THRESHOLDS_FILE
from studio.registry import Registry

ONNX_DIR = "onnx"
FP32_FILE = "model.onnx"
INT8_FILE = "model.int8.onnx"
META_FILE = "onnx.json"
OPSET = 17
PROB_TOLERANCE = 1e-4
"""Largest difference allowed between a torch and an ONNX fp32 probability (measured: ~1e-7, docs/onnx.md)."""
INT8_MAX_LOSS = 0.5
"""Most test accuracy (points) the int8 model may lose against the torch model."""
OPTIMIZED_TYPES = ("bert", "distilbert", "roberta", "xlm-roberta")
"""Model types whose graph onnxruntime's transformer optimizer fuses (as model_type "bert")."""
DISABLED_OPTIMIZERS = ("SkipLayerNormFusion",)
"""onnxruntime session-level fusions not applied (see `optimize_graph`): the residual Add + LayerNormalization would
be fused back into the slower SkipLayerNormalization when a session loads the graph."""
FUSED_OPS = ("Attention", "EmbedLayerNormalization", "SkipLayerNormalization", "BiasGelu", "FastGelu", "Gelu")
INPUTS = ("input_ids", "attention_mask", "token_type_ids")
_PROBE_TEXTS = ("a wonderful, moving film", "dull and far too long", "", "I laughed a lot " * 40, "ok")
"""Scored too (a run without saved test texts is checked on these alone): empty and over-long texts."""


@dataclass(frozen=True)
class ParityCheck:
    """One exported model against the torch model it came from, on the same texts."""

    model: str
    """fp32 | int8."""
    texts: int
    labels_differ: int
    """Texts whose label (multi-label: label set) differs from torch's."""
    max_prob_diff: float
    """Largest absolute difference of a calibrated probability."""
    accuracy_torch: float | None
    """Test accuracy in % (multi-label: of the label decisions); None without saved test labels."""
    accuracy_onnx: float | None
    passed: bool
    reason: str = ""

    @property
    def accuracy_loss(self) -> float | None:
        if self.accuracy_torch is None or self.accuracy_onnx is None:
            return None
        return self.accuracy_torch - self.accuracy_onnx

    def line(self) -> str:
        acc = "" if self.accuracy_loss is None else (
            f", test accuracy {self.accuracy_onnx:.2f}% vs torch {self.accuracy_torch:.2f}%")  # fmt: skip
        return (f"{self.model}: {self.texts - self.labels_differ}/{self.texts} labels equal to torch's, max "
                f"probability difference {self.max_prob_diff:.2e}{acc}")  # fmt: skip


@dataclass(frozen=True)
class OnnxExport:
    folder: Path
    fp32: Path
    int8: Path | None
    checks: tuple[ParityCheck, ...]


# ---- which model -----------------------------------------------------------------------------------------
def exported_model_dir(registry: Registry, run_id: str) -> Path:
    """The plain transformers model of a finished run: model/ (full fine-tune) or merged/ (adapter, merged).

    Raises:
        StudioError: unfinished run, an adapter not merged yet, or a decoder / unsupported architecture.
    """
    from studio.architectures import family_for
    from studio.model_card import finished_run

    run = finished_run(registry, run_id)
    folder = run.dir / ("model" if run.kind == "model" else "merged")
    if run.kind == "adapter" and not (folder / "config.json").is_file():
        method = run.config.method.spec.label
        raise StudioError(f"run {run_id} is a {method} adapter: ONNX exports a plain model, so merge it into its "
                          f"base first (python -m studio merge {run_id}), then export again")  # fmt: skip
    model_type = json.loads((folder / "config.json").read_text(encoding="utf-8")).get("model_type", "?")
    family = family_for(model_type)
    encoders = sorted({f.name for f in _encoder_families()})
    if family is None or family.decoder:
        what = f"a {family.name} decoder" if family else f"a '{model_type}' model"
        raise StudioError(f"run {run_id} is {what}: ONNX export covers the encoder classifiers "
                          f"({', '.join(encoders)}); serve it with the torch predictor instead")  # fmt: skip
    return folder


def _encoder_families() -> list[Any]:
    from studio.architectures import FAMILIES

    return [f for f in FAMILIES if not f.decoder]


def _torch_predictor(registry: Registry, run_id: str, model_dir: Path) -> Predictor:
    """The exported model itself in torch, fp32 on the CPU, with the run's labels, temperature and thresholds."""
    import torch
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    from studio import multilabel
    from studio.config import RunConfig
    from studio.models import read_label_map, read_task

    run_dir = registry.run_dir(run_id)
    labels, task = read_label_map(run_dir), read_task(run_dir)
    config = RunConfig.from_yaml(run_dir / "config.yaml")
    # eager attention: the graph the optimizer fuses (sdpa traces differently); the same computation
    model = AutoModelForSequenceClassification.from_pretrained(model_dir, use_safetensors=True, dtype=torch.float32,
                                                               attn_implementation="eager")  # fmt: skip
    model.eval()
    tokenizer = AutoTokenizer.from_pretrained(run_dir / "tokenizer")
    tokenizer.padding_side = "right"
    thresholds = multilabel.read(run_dir, labels) if task == "multi_label" else None
    temperature = read_temperature(run_dir, labels)
    return Predictor(model, tokenizer, labels, config.data.max_length, run_id, temperature, task, thresholds)


# ---- the graph -------------------------------------------------------------------------------------------
class _Logits:
    """forward(*inputs) -> logits, the inputs by position (the exporter names them). `fusable`: the 2-D attention
    mask is turned into the additive 4-D mask here, in the form onnxruntime's attention fusion recognizes
    (transformers 5 passes a 4-D mask through unchanged; its own mask graph does not fuse)."""

    def __new__(cls, model: Any, names: list[str], fusable: bool = False) -> Any:
        import torch

        class Wrapped(torch.nn.Module):
            def __init__(self) -> None:
                super().__init__()
                self.model = model

            def forward(self, *inputs: Any) -> Any:
                kwargs = dict(zip(names, inputs, strict=True))
                if fusable:
                    mask = kwargs["attention_mask"]  # a text of no tokens attends to all, as transformers does
                    mask = torch.where(mask.sum(-1, keepdim=True) == 0, torch.ones_like(mask), mask)
                    batch, length = mask.shape
                    ones = mask.unsqueeze(1).unsqueeze(2).expand(batch, 1, length, length).to(torch.float32)
                    inverted = 1.0 - ones
                    kwargs["attention_mask"] = inverted.masked_fill(inverted.to(torch.bool),
                                                                    torch.finfo(torch.float32).min)  # fmt: skip
                return self.model(**kwargs).logits

        # eval() matters: the exporter restores the wrapper's training flag afterwards, and a new module is in
        # training mode: the model would be left with its dropout on
        return Wrapped().eval()


def export_graph(predictor: Predictor, path: Path, fusable: bool = False) -> list[str]:
    """Write `predictor.model` as an fp32 ONNX graph with dynamic batch and sequence axes; returns its inputs.
    `fusable`: the attention mask is built as `optimize_graph` needs it (`_Logits`).

    The example batch has padding, so the traced attention mask handling is the general one (transformers
    skips the mask for a batch without padding, and a trace keeps only the branch it saw)."""
    import inspect

    import torch

    model, tokenizer = predictor.model, predictor.tokenizer
    accepted = inspect.signature(model.forward).parameters
    example = tokenizer(["a short one", "a somewhat longer example text"], padding=True, return_tensors="pt")
    names = [k for k in INPUTS if k in example and k in accepted]
    axes = {k: {0: "batch", 1: "sequence"} for k in names}
    with warnings.catch_warnings(), torch.inference_mode(False), torch.no_grad():
        warnings.simplefilter("ignore")  # tracer warnings about Python control flow on shapes
        torch.onnx.export(_Logits(model, names, fusable), tuple(example[k] for k in names), str(path), dynamo=False,
                          input_names=names, output_names=["logits"], opset_version=OPSET,
                          dynamic_axes={**axes, "logits": {0: "batch"}})  # fmt: skip
    return names


def optimizer_settings(config: Any) -> tuple[str, int, int] | None:
    """(model_type, heads, hidden size) for onnxruntime's transformer optimizer, None where it has no fusion for
    the architecture (deberta-v2: its disentangled attention; exported as the plain graph)."""
    if config.model_type not in OPTIMIZED_TYPES:
        return None
    heads = getattr(config, "num_attention_heads", None) or config.n_heads  # distilbert: n_heads / dim
    return "bert", int(heads), int(getattr(config, "hidden_size", None) or config.dim)


def optimize_graph(path: Path, settings: tuple[str, int, int]) -> dict[str, int]:
    """Rewrite the graph at `path` with onnxruntime's transformer optimizer (fused Attention, EmbedLayerNorm,
    BiasGelu; what optimum's ORTOptimizer runs, less SkipLayerNormalization: slower here); returns the fused
    operators' counts."""
    import logging

    from onnxruntime.transformers.fusion_options import FusionOptions
    from onnxruntime.transformers.optimizer import optimize_model

    model_type, heads, hidden = settings
    options = FusionOptions(model_type)
    # residual Add + LayerNormalization stay two operators: onnxruntime 1.32's SkipLayerNormalization kernel took
    # 12 ms where Add + LayerNormalization took 1.4 ms (32 x 128 x 384, 2 cores; docs/onnx.md, "Speed")
    options.enable_skip_layer_norm = options.enable_bias_skip_layer_norm = False
    quiet = logging.getLogger("onnxruntime.transformers")
    level = quiet.level
    quiet.setLevel(logging.ERROR)
    try:  # opt_level 0: the fusions only (onnxruntime's own graph optimizations run when a session loads it)
        optimized = optimize_model(str(path), model_type=model_type, num_heads=heads, hidden_size=hidden,
                                   opt_level=0, optimization_options=options)  # fmt: skip
    finally:
        quiet.setLevel(level)
    optimized.save_model_to_file(str(path))
    counts: dict[str, int] = {}
    for node in optimized.model.graph.node:
        if node.op_type in FUSED_OPS:
            counts[node.op_type] = counts.get(node.op_type, 0) + 1
    return counts


TOKENWISE_OPS = ("MatMul", "Add", "Mul", "Div", "Sub", "LayerNormalization", "BiasGelu", "FastGelu", "Gelu", "Erf",
                 "Relu", "Tanh", "Sqrt", "Pow", "Cast")  # fmt: skip
"""Operators that compute each token's vector from that token's alone (given constant weights): what may lie between
the last fused Attention and the classifier's token-0 Gather for `first_token_only` to apply."""


def first_token_only(path: Path) -> bool:
    """After the last layer's attention, compute token 0 alone: the classifiers of bert, distilbert and
    (xlm-)roberta read only the first token's final vector (a Gather of index 0 on the sequence axis), so the last
    layer's output projection, residual, LayerNorms and feed-forward ran on every token for nothing. Slices of
    token 0 are put on the last Attention's output and on its input (the residual); the Gather then picks row 0 of
    a length-1 axis. Returns whether the graph was rewritten: only when every operator from there to the Gather is
    token-wise (TOKENWISE_OPS, weights constant) and the Gather takes index 0 on axis 1, so the logits are the same
    computation (the fp32 parity check holds the result to PROB_TOLERANCE; measured on the MiniLM quick-demo run:
    7.75e-07, as without the rewrite).

    Why by hand: onnxruntime's optimizer has no such rewrite (it is specific to a classifier on token 0)."""
    import numpy as np
    import onnx
    from onnx import helper, numpy_helper

    model = onnx.load(str(path))
    graph = model.graph
    attention = [i for i, n in enumerate(graph.node) if n.op_type == "Attention"]
    if not attention:
        return False
    at = attention[-1]
    x, a = graph.node[at].input[0], graph.node[at].output[0]
    rows = _token_rows(graph, {x: at, a: None}, _constants(graph))
    if rows is None:
        return False
    starts, ends, axes = (numpy_helper.from_array(np.array([v], dtype=np.int64), f"first_token_{k}")
                          for k, v in (("start", 0), ("end", 1), ("axis", 1)))  # fmt: skip
    graph.initializer.extend([starts, ends, axes])
    slices = [helper.make_node("Slice", [t, starts.name, ends.name, axes.name], [f"{t}/first_token"],
                               name=f"FirstToken_{k}") for k, t in enumerate((x, a))]  # fmt: skip
    for node in rows:
        node.input[:] = [f"{t}/first_token" if t in (x, a) else t for t in node.input]
    for node in reversed(slices):
        graph.node.insert(at + 1, node)
    onnx.save(model, str(path))
    return True


def _constants(graph: Any) -> set[str]:
    """Names of the graph's constant tensors (initializers and Constant outputs)."""
    names = {t.name for t in graph.initializer}
    return names | {o for n in graph.node if n.op_type == "Constant" for o in n.output}


def _token_rows(graph: Any, start: dict[str, int | None], constants: set[str]) -> list[Any] | None:
    """The nodes reading a tensor of `start` (name: the index of a node not to follow: the Attention reading its own
    input), when everything fed by those tensors is token-wise up to token-0 Gathers, every path ends in such a
    Gather and nothing from outside (but constants) is mixed in; else None."""
    import onnx

    consumers: dict[str, list[int]] = {}
    for i, node in enumerate(graph.node):
        for t in node.input:
            consumers.setdefault(t, []).append(i)
    outputs = {o.name for o in graph.output}
    reached, frontier, seen = set(start), list(start), set()
    while frontier:  # everything the start tensors feed, stopping at the Gathers
        tensor = frontier.pop()
        if tensor in outputs:
            return None  # a path to the logits without the Gather
        for i in consumers.get(tensor, []):
            node = graph.node[i]
            if i == start.get(tensor) or i in seen:
                continue
            seen.add(i)
            if node.op_type == "Gather":
                axis = next((onnx.helper.get_attribute_value(a) for a in node.attribute if a.name == "axis"), 0)
                if axis != 1 or node.input[0] not in reached or _constant_value(graph, node.input[1]) != 0:
                    return None
                continue
            if node.op_type not in TOKENWISE_OPS or (node.op_type == "MatMul" and node.input[1] not in constants):
                return None
            reached.update(node.output)
            frontier.extend(node.output)
    if any(t and t not in reached and t not in constants for i in seen for t in graph.node[i].input):
        return None  # mixes in a tensor from outside the last layer
    return [graph.node[i] for i in sorted(seen) if any(t in start for t in graph.node[i].input)]


def _constant_value(graph: Any, name: str) -> Any:
    """The value of constant tensor `name` as a Python scalar (None: not a constant scalar)."""
    from onnx import numpy_helper

    for t in graph.initializer:
        if t.name == name:
            value = numpy_helper.to_array(t)
            return value.item() if value.size == 1 else None
    for n in graph.node:
        if n.op_type == "Constant" and name in n.output:
            value = numpy_helper.to_array(n.attribute[0].t)
            return value.item() if value.size == 1 else None
    return None


def quantize_int8(fp32: Path, int8: Path) -> None:
    """Dynamic int8: weights of MatMul / Gemm / fused Attention quantized per output channel, activations at run
    time."""
    import logging

    import onnx
    from onnxruntime.quantization import QuantType, quantize_dynamic

    root = logging.getLogger()
    level = root.level
    root.setLevel(logging.ERROR)  # its advice to pre-process (shape inference) is for static quantization
    try:
        quantize_dynamic(fp32, int8, per_channel=True, weight_type=QuantType.QInt8,
                         op_types_to_quantize=["MatMul", "Gemm", "Attention"],
                         # the fused (com.microsoft) operators' outputs have no inferred type: they are float
                         extra_options={"DefaultTensorType": onnx.TensorProto.FLOAT})  # fmt: skip
    finally:
        root.setLevel(level)


# ---- the check -------------------------------------------------------------------------------------------
def _test_set(run_dir: Path, task: str) -> tuple[list[str], list[Any] | None]:
    """The run's saved test texts and labels (label ids; multi-label: id lists) plus the probe texts."""
    import pandas as pd

    path = run_dir / "predictions.parquet"
    if not path.is_file():
        return list(_PROBE_TEXTS), None
    frame = pd.read_parquet(path, columns=["split", "text", "label"])
    frame = frame[frame["split"] == "test"]
    if not len(frame):
        return list(_PROBE_TEXTS), None
    labels = [list(v) if task == "multi_label" else int(v) for v in frame["label"]]
    return [*frame["text"].astype(str), *_PROBE_TEXTS], labels


def _decisions(preds: list[Any], names: list[str], multi: bool) -> Any:
    """Label ids (single-label) or a 0/1 matrix of label decisions (multi-label), numpy."""
    import numpy as np

    if multi:
        return np.array([[n in (p.labels or ()) for n in names] for p in preds], dtype=bool)
    return np.array([names.index(p.label) for p in preds])


def _accuracy(decided: Any, labels: list[Any] | None, names: list[str], multi: bool) -> float | None:
    import numpy as np

    if labels is None:
        return None
    decided = decided[: len(labels)]
    if multi:
        truth = np.zeros_like(decided)
        for row, ids in enumerate(labels):
            truth[row, list(ids)] = True
        return float((decided == truth).mean() * 100)
    return float((decided == np.asarray(labels)).mean() * 100)


def parity(reference: Predictor, exported: Predictor, texts: list[str], labels: list[Any] | None, model: str,
           tolerance: float | None = PROB_TOLERANCE, max_loss: float | None = None) -> ParityCheck:  # fmt: skip
    """`exported` against `reference` on `texts` (the first len(labels) being the labelled test texts): labels
    equal and probabilities within `tolerance` (None: not required), test accuracy lost at most `max_loss`."""
    import numpy as np

    names, multi = reference.label_names, reference.multi_label
    ref, got = reference.predict(texts), exported.predict(texts)
    p_ref = np.array([[p.probs[n] for n in names] for p in ref])
    p_got = np.array([[p.probs[n] for n in names] for p in got])
    d_ref, d_got = _decisions(ref, names, multi), _decisions(got, names, multi)
    differ = int((d_ref != d_got).reshape(len(texts), -1).any(axis=1).sum())
    diff = float(np.abs(p_ref - p_got).max())
    acc_ref, acc_got = _accuracy(d_ref, labels, names, multi), _accuracy(d_got, labels, names, multi)
    reasons = []
    if tolerance is not None and (differ or diff > tolerance):
        reasons.append(f"{differ} of {len(texts)} labels differ from torch's and probabilities differ by up to "
                       f"{diff:.2e} (allowed: equal labels, {tolerance:g})")  # fmt: skip
    if max_loss is not None and acc_ref is not None and acc_got is not None and acc_ref - acc_got > max_loss:
        reasons.append(f"test accuracy {acc_got:.2f}% against torch's {acc_ref:.2f}%: "
                       f"{acc_ref - acc_got:.2f} points lost (allowed: {max_loss:g})")  # fmt: skip
    return ParityCheck(model, len(texts), differ, diff, acc_ref, acc_got, not reasons, "; ".join(reasons))


# ---- export ----------------------------------------------------------------------------------------------
def export_onnx(registry: Registry, run_id: str, int8: bool = False, *, max_int8_loss: float = INT8_MAX_LOSS,
                rebuild: bool = False) -> OnnxExport:  # fmt: skip
    """Export a finished encoder run to ``<run_dir>/onnx/`` (see the module docstring), checked against torch.

    An existing export with the models asked for is returned as it is (`rebuild`: made again). The folder is
    built under a temporary name and renamed: it is whole or absent.

    Raises:
        StudioError: the run cannot be exported (`exported_model_dir`), or a model failed its check (nothing is
        kept; the message gives the figures).
    """
    model_dir = exported_model_dir(registry, run_id)
    run_dir = registry.run_dir(run_id)
    target = run_dir / ONNX_DIR
    if not rebuild and (found := _existing(target, int8)) is not None:
        return found
    reference = _torch_predictor(registry, run_id, model_dir)
    tmp = run_dir / f".onnx.tmp-{os.getpid()}"
    shutil.rmtree(tmp, ignore_errors=True)
    try:
        tmp.mkdir()
        graphs = build_graphs(reference, tmp, int8)
        files = [f for f in sorted((run_dir / "tokenizer").iterdir()) if not f.name.startswith(".")]
        files += [run_dir / n for n in ("label_map.json", CALIBRATION_FILE, THRESHOLDS_FILE) if (run_dir / n).exists()]
        copy_into(tmp, files, run_dir)
        meta = {"run_id": run_id, "source": model_dir.name, "opset": OPSET, "max_length": reference.max_length,
                "task": reference.task, **graphs}  # fmt: skip
        (tmp / META_FILE).write_text(json.dumps(meta, indent=2), encoding="utf-8")  # the predictor reads it
        checks = _checks(reference, tmp, run_dir, int8, max_int8_loss)
        meta["checks"] = [asdict(c) for c in checks]
        (tmp / META_FILE).write_text(json.dumps(meta, indent=2), encoding="utf-8")
        shutil.rmtree(target, ignore_errors=True)
        tmp.rename(target)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return _existing(target, int8)  # type: ignore[return-value]


def build_graphs(predictor: Predictor, folder: Path, int8: bool) -> dict[str, Any]:
    """model.onnx (and with `int8` model.int8.onnx) of `predictor.model` in `folder`: exported, fused where
    onnxruntime can (`optimize_graph`), the last layer on token 0 alone where it applies (`first_token_only`),
    then quantized. Returns what onnx.json records of it."""
    settings = optimizer_settings(predictor.model.config)
    names = export_graph(predictor, folder / FP32_FILE, fusable=settings is not None)
    meta: dict[str, Any] = {"inputs": names, "optimized": settings is not None}
    if settings:
        meta["fused_ops"] = optimize_graph(folder / FP32_FILE, settings)
    else:
        model_type = predictor.model.config.model_type
        meta["fused_ops"] = f"none: onnxruntime's optimizer has no fusion for {model_type}; the plain graph"
    meta["first_token_only"] = bool(settings) and first_token_only(folder / FP32_FILE)
    if int8:
        quantize_int8(folder / FP32_FILE, folder / INT8_FILE)
    return meta


def copy_into(folder: Path, files: list[Path], run_dir: Path) -> None:
    """Put `files` (of the run folder; links leading out of it are refused, as in export.py) in `folder`, hard
    linked where the file system allows."""
    for file in files:
        real = file.resolve()
        if not real.is_relative_to(run_dir.resolve()) or not real.is_file():
            raise StudioError(f"{file.relative_to(run_dir)} is not a file inside the run folder (a link to {real}?); "
                              "an export only takes files from inside the run folder")  # fmt: skip
        try:
            os.link(real, folder / file.name)
        except OSError:
            shutil.copyfile(real, folder / file.name)


def _checks(reference: Predictor, folder: Path, run_dir: Path, int8: bool, max_int8_loss: float) -> list:
    """The fp32 parity check and (int8) the accuracy check, each raising StudioError when failed."""
    texts, labels = _test_set(run_dir, reference.task)
    checks = []
    for model, file in [("fp32", FP32_FILE)] + ([("int8", INT8_FILE)] if int8 else []):
        exported = OnnxPredictor.from_folder(folder, file, run_id=reference.run_id)
        if model == "fp32":
            check = parity(reference, exported, texts, labels, model)
        else:
            check = parity(reference, exported, texts, labels, model, tolerance=None, max_loss=max_int8_loss)
        if not check.passed:
            raise StudioError(f"the ONNX {model} export of run {reference.run_id} failed its check, so it was not "
                              f"kept: {check.reason}")  # fmt: skip
        checks.append(check)
    return checks


def _existing(folder: Path, int8: bool) -> OnnxExport | None:
    """The export in `folder` when it holds the models asked for (and its onnx.json), else None."""
    meta_path = folder / META_FILE
    if not meta_path.is_file() or not (folder / FP32_FILE).is_file() or (int8 and not (folder / INT8_FILE).is_file()):
        return None
    meta = json.loads(meta_path.read_text(encoding="utf-8"))
    checks = tuple(ParityCheck(**c) for c in meta.get("checks", []))
    has_int8 = (folder / INT8_FILE).is_file()
    return OnnxExport(folder, folder / FP32_FILE, folder / INT8_FILE if has_int8 else None, checks)


# ---- predicting ------------------------------------------------------------------------------------------
class OnnxPredictor(Predictor):
    """`Predictor` on an onnxruntime session (CPU): same `predict` / `predict_file`, same calibrated
    probabilities, thresholds and `Prediction`s. `model` is the InferenceSession."""

    @classmethod
    def from_run(cls, registry: Registry, run_id: str, int8: bool = False, *, export: bool = True) -> OnnxPredictor:
        """The run's ONNX model (`int8`: the quantized one), exported and checked first when it has none yet
        (`export`; else a StudioError saying how to make one)."""
        folder = registry.run_dir(run_id) / ONNX_DIR
        if _existing(folder, int8) is None:
            if not export:
                flags = "--onnx --int8" if int8 else "--onnx"
                raise StudioError(f"run {run_id} has no ONNX{' int8' if int8 else ''} export: make one with "
                                  f"python -m studio export {run_id} {flags}")  # fmt: skip
            export_onnx(registry, run_id, int8)
        return cls.from_folder(folder, INT8_FILE if int8 else FP32_FILE, run_id=run_id)

    @classmethod
    def from_folder(cls, folder: Path, file: str = FP32_FILE, run_id: str = "") -> OnnxPredictor:
        """An export folder (``<run_dir>/onnx``, or one copied elsewhere): `file` is model.onnx or model.int8.onnx."""
        from transformers import AutoTokenizer

        from studio import multilabel
        from studio.models import read_label_map

        folder = Path(folder)
        if not (folder / file).is_file():
            raise StudioError(f"{folder} has no {file}: export the run with python -m studio export RUN_ID --onnx")
        meta = json.loads((folder / META_FILE).read_text(encoding="utf-8")) if (folder / META_FILE).is_file() else {}
        labels = read_label_map(folder)
        task = json.loads((folder / "label_map.json").read_text(encoding="utf-8")).get("task") or "single_label"
        thresholds = multilabel.read(folder, labels) if task == "multi_label" else None
        tokenizer = AutoTokenizer.from_pretrained(folder)
        tokenizer.padding_side = "right"
        session = inference_session(folder / file)
        max_length = int(meta.get("max_length") or tokenizer.model_max_length)
        return cls(session, tokenizer, labels, max_length, run_id, read_temperature(folder, labels), task, thresholds)

    def _score(self, texts: list[str], batch_size: int | None, temperature: Any = None) -> tuple[list[int], list]:
        """(row order, class probabilities in that order): texts tokenized CPU_CHUNK at a time, each chunk scored
        shortest first, CPU_BATCH (or `batch_size`) texts per run of the session (as `Predictor._score` on a CPU)."""
        import numpy as np

        inputs = [i.name for i in self.model.get_inputs()]
        batch_size = batch_size or CPU_BATCH
        order: list[int] = []
        scored: list[Any] = []
        for start in range(0, len(texts), CPU_CHUNK):
            encoded = self.tokenizer(texts[start : start + CPU_CHUNK], truncation=True, max_length=self.max_length)
            lengths = [len(ids) for ids in encoded["input_ids"]]
            ranked = sorted(range(len(lengths)), key=lengths.__getitem__)
            for first in range(0, len(ranked), batch_size):
                rows = ranked[first : first + batch_size]
                feed = {k: v for k, v in self._arrays(encoded, rows).items() if k in inputs}
                logits = self.model.run(["logits"], feed)[0].astype(np.float32)
                if temperature is not None:
                    logits = logits / np.asarray(temperature, dtype=np.float32)
                scored.append(_sigmoid(logits) if self.multi_label else _softmax(logits))
            order.extend(start + i for i in ranked)
        return order, np.concatenate(scored).tolist()

    def _arrays(self, encoded: Any, idx: list[int]) -> dict[str, Any]:
        """Rows `idx` of the tokenizer's output padded to the longest (as `Predictor._padded`, in numpy)."""
        import numpy as np

        ids = encoded["input_ids"]
        width = max(len(ids[i]) for i in idx)
        fill = {"input_ids": self.tokenizer.pad_token_id or 0, "token_type_ids": self.tokenizer.pad_token_type_id}
        out = {}
        for key in encoded:
            array = np.full((len(idx), width), fill.get(key, 0), dtype=np.int64)
            for r, i in enumerate(idx):
                array[r, : len(encoded[key][i])] = encoded[key][i]
            out[key] = array
        return out


def inference_session(path: Path, optimized_to: Path | None = None) -> Any:
    """An onnxruntime CPU session on the graph at `path`: every graph optimization but DISABLED_OPTIMIZERS, as many
    intra-op threads as torch uses (one per physical core by default in both: the same cores for both engines).
    `optimized_to`: onnxruntime also writes the graph as optimized there (what the session runs)."""
    import onnxruntime as ort
    import torch

    options = ort.SessionOptions()
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    options.intra_op_num_threads = torch.get_num_threads()
    if optimized_to is not None:
        options.optimized_model_filepath = str(optimized_to)
    return ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"],
                                disabled_optimizers=list(DISABLED_OPTIMIZERS))  # fmt: skip


def _softmax(logits: Any) -> Any:
    import numpy as np

    z = np.exp(logits - logits.max(axis=-1, keepdims=True))
    return z / z.sum(axis=-1, keepdims=True)


def _sigmoid(logits: Any) -> Any:
    import numpy as np

    return 1.0 / (1.0 + np.exp(-logits))
