"""ONNX export (studio/onnx_export.py): per encoder family, the exported graph predicts what torch does, int8 runs,
adapters are exported once merged, and what cannot be exported says why. Tiny random models, a few steps each."""

from __future__ import annotations

import json

import numpy as np
import pytest

from studio.cli import EXIT_BAD_INPUT, main
from studio.config import RunConfig
from studio.errors import StudioError
from studio.export import merge_adapter
from studio.inference import Predictor
from studio.onnx_export import (
    FP32_FILE,
    INT8_FILE,
    ONNX_DIR,
    PROB_TOLERANCE,
    OnnxPredictor,
    _torch_predictor,
    export_onnx,
    exported_model_dir,
    first_token_only,
    inference_session,
)
from studio.registry import Registry
from studio.training import Run

TEXTS = ["a wonderful, moving film", "dull and far too long", "", "the actors seem bored " * 30, "I laughed"]


@pytest.fixture(scope="module")
def runs(tiny_model_dir, tmp_path_factory):
    """(registry, get): get(family, method) trains one tiny run on first use (~1-2 s each)."""
    registry = Registry(tmp_path_factory.mktemp("onnx") / "runs")
    ids: dict[tuple[str, str], str] = {}

    def get(family: str, method: str = "full") -> str:
        if (family, method) not in ids:
            config = RunConfig.from_dict({
                "name": f"onnx-{family}-{method}",
                "data": {"source": "imdb-sample", "max_samples": 200, "max_length": 32},
                "model": {"name": str(tiny_model_dir(family))},
                "method": {"name": method, "r": 4},
                "train": {"max_steps": 3, "batch_size": 16, "learning_rate": 1e-2, "eval_strategy": "no"},
            })  # fmt: skip
            result = Run(config, registry).execute()
            assert result.status == "completed", result.message
            ids[(family, method)] = result.run_id
        return ids[(family, method)]

    return registry, get


def probs(predictions, names) -> np.ndarray:
    return np.array([[p.probs[n] for n in names] for p in predictions])


@pytest.mark.parametrize("family", ["bert", "distilbert", "roberta", "deberta-v2"])
def test_export_predicts_as_torch_does(runs, family):
    registry, get = runs
    run_id = get(family)
    done = export_onnx(registry, run_id, int8=True, max_int8_loss=100.0)  # tiny random models: int8 may flip some
    assert done.folder == registry.run_dir(run_id) / ONNX_DIR and done.int8 == done.folder / INT8_FILE
    fp32 = done.checks[0]
    assert fp32.model == "fp32" and fp32.passed and fp32.labels_differ == 0 and fp32.max_prob_diff <= PROB_TOLERANCE
    assert fp32.texts > 5 and fp32.accuracy_torch == fp32.accuracy_onnx  # the saved test texts were scored
    torch_predictor = Predictor.from_run(registry, run_id)
    onnx_predictor = OnnxPredictor.from_run(registry, run_id)
    assert onnx_predictor.temperature == torch_predictor.temperature and onnx_predictor.max_length == 32
    want, got = torch_predictor.predict(TEXTS, batch_size=2), onnx_predictor.predict(TEXTS, batch_size=3)
    assert [p.label for p in got] == [p.label for p in want] and [p.text for p in got] == TEXTS
    # a text of no tokens at all (the tiny roberta's GPT-2 tokenizer adds no <s> </s>) has no defined attention:
    # torch's sdpa and eager attention score it differently; the export follows eager (its reference)
    tokens = [bool(onnx_predictor.tokenizer(t)["input_ids"]) for t in TEXTS]
    np.testing.assert_allclose(probs(got, got[0].probs)[tokens], probs(want, got[0].probs)[tokens],
                               atol=PROB_TOLERANCE)  # fmt: skip
    eager = _torch_predictor(registry, run_id, exported_model_dir(registry, run_id)).predict(TEXTS)
    np.testing.assert_allclose(probs(got, got[0].probs), probs(eager, got[0].probs), atol=PROB_TOLERANCE)
    raw = onnx_predictor.predict(TEXTS, raw=True)
    raw_torch = torch_predictor.predict(TEXTS, raw=True)
    np.testing.assert_allclose(probs(raw, raw[0].probs)[tokens], probs(raw_torch, raw[0].probs)[tokens],
                               atol=PROB_TOLERANCE)  # fmt: skip
    quantized = OnnxPredictor.from_run(registry, run_id, int8=True).predict(TEXTS)
    assert len(quantized) == len(TEXTS) and all(abs(sum(p.probs.values()) - 1) < 1e-5 for p in quantized)
    meta = json.loads((done.folder / "onnx.json").read_text())
    assert meta["max_length"] == 32 and [c["model"] for c in meta["checks"]] == ["fp32", "int8"]
    if family == "distilbert":  # no token types: the graph takes only what the model's forward accepts
        assert "token_type_ids" not in meta["inputs"]


def test_an_export_folder_travels_alone(runs, tmp_path):
    """The folder holds all the predictor needs (tokenizer, labels, temperature): it works copied elsewhere."""
    import shutil

    registry, get = runs
    run_id = get("bert")
    folder = export_onnx(registry, run_id).folder
    copy = shutil.copytree(folder, tmp_path / "served")
    here = OnnxPredictor.from_folder(copy).predict(TEXTS)
    there = OnnxPredictor.from_run(registry, run_id).predict(TEXTS)
    assert [(p.label, p.probs) for p in here] == [(p.label, p.probs) for p in there]
    assert OnnxPredictor.from_folder(copy).predict([]) == []


def test_an_adapter_is_exported_once_merged(runs):
    registry, get = runs
    run_id = get("bert", "lora")
    with pytest.raises(StudioError, match=rf"adapter.*merge it.*python -m studio merge {run_id}"):
        export_onnx(registry, run_id)
    with pytest.raises(StudioError, match="merge"):
        OnnxPredictor.from_run(registry, run_id)
    merge_adapter(registry, run_id)
    done = export_onnx(registry, run_id)
    assert done.checks[0].passed and done.int8 is None
    want = Predictor.from_run(registry, run_id).predict(TEXTS)  # the unmerged adapter on its base, in torch
    got = OnnxPredictor.from_run(registry, run_id).predict(TEXTS)
    assert [p.label for p in got] == [p.label for p in want]
    np.testing.assert_allclose(probs(got, got[0].probs), probs(want, got[0].probs), atol=1e-4)


def test_a_decoder_run_is_refused(runs):
    registry, get = runs
    with pytest.raises(StudioError, match="gpt2 decoder: ONNX export covers the encoder classifiers"):
        export_onnx(registry, get("gpt2"))


def test_an_int8_model_that_loses_accuracy_is_not_kept(runs):
    registry, get = runs
    run_id = get("roberta")
    folder = registry.run_dir(run_id) / ONNX_DIR
    before = sorted((f.name, f.stat().st_mtime_ns) for f in folder.iterdir()) if folder.exists() else None
    with pytest.raises(StudioError, match=r"int8 export .* failed its check.*points lost \(allowed: -101\)"):
        export_onnx(registry, run_id, int8=True, max_int8_loss=-101.0, rebuild=True)  # always more than that
    after = sorted((f.name, f.stat().st_mtime_ns) for f in folder.iterdir()) if folder.exists() else None
    assert after == before, "a failed export leaves any earlier one as it was"
    assert not list(registry.run_dir(run_id).glob(".onnx.tmp-*"))


def test_no_export_yet(runs, tmp_path):
    registry, get = runs
    run_id = get("distilbert")
    export_onnx(registry, run_id, rebuild=True)  # fp32 only
    with pytest.raises(StudioError, match=rf"no ONNX int8 export: make one with python -m studio export {run_id} "
                       "--onnx --int8"):  # fmt: skip
        OnnxPredictor.from_run(registry, run_id, int8=True, export=False)
    with pytest.raises(StudioError, match="has no model.onnx"):
        OnnxPredictor.from_folder(tmp_path)


def test_cli_export_onnx(runs, capsys):
    registry, get = runs
    run_id = get("bert")
    code = main(["--runs-dir", str(registry.runs_dir), "export", run_id, "--onnx", "--int8"])
    out = capsys.readouterr()
    assert code == 0, out.err
    folder = registry.run_dir(run_id) / ONNX_DIR
    assert out.out.strip() == str(folder) and (folder / FP32_FILE).is_file() and (folder / INT8_FILE).is_file()
    assert "checked fp32:" in out.err and "checked int8:" in out.err
    assert main(["--runs-dir", str(registry.runs_dir), "export", run_id, "--int8"]) == EXIT_BAD_INPUT
    assert "use it with --onnx" in capsys.readouterr().err
    assert main(["--runs-dir", str(registry.runs_dir), "export", run_id, "--onnx", "--out", "x"]) == EXIT_BAD_INPUT
    assert "leave --out out" in capsys.readouterr().err


def test_a_link_out_of_the_run_folder_is_refused(runs, tmp_path):
    registry, get = runs
    run_id = get("distilbert")
    outside = tmp_path / "vocab.txt"
    outside.write_text("[PAD]\n")
    link = registry.run_dir(run_id) / "tokenizer" / "extra_vocab.txt"
    link.symlink_to(outside)
    try:
        with pytest.raises(StudioError, match="tokenizer/extra_vocab.txt is not a file inside the run folder"):
            export_onnx(registry, run_id, rebuild=True)
    finally:
        link.unlink()
    assert not list(registry.run_dir(run_id).glob(".onnx.tmp-*"))


def test_multi_label_scoring_matches_torch(runs, tmp_path):
    """Sigmoids, per-label temperatures and thresholds: a bert export read as a 3-label multi-label model."""
    import shutil

    from studio.multilabel import Thresholds
    from studio.onnx_export import exported_model_dir

    registry, get = runs
    run_id = get("bert")
    copy = shutil.copytree(export_onnx(registry, run_id).folder, tmp_path / "served")
    labels = json.loads((copy / "label_map.json").read_text())
    (copy / "label_map.json").write_text(json.dumps({**labels, "task": "multi_label"}))
    onnx_predictor = OnnxPredictor.from_folder(copy)
    from transformers import AutoModelForSequenceClassification

    model = AutoModelForSequenceClassification.from_pretrained(exported_model_dir(registry, run_id)).eval()
    names = onnx_predictor.label_names
    temperature, cuts = np.array([0.5, 2.0]), Thresholds(per_label={names[0]: 0.49, names[1]: 0.51})
    onnx_predictor.temperature, onnx_predictor.thresholds = temperature, cuts
    torch_predictor = Predictor(model, onnx_predictor.tokenizer, names, 32, "", temperature, "multi_label", cuts)
    want, got = torch_predictor.predict(TEXTS), onnx_predictor.predict(TEXTS)
    assert onnx_predictor.multi_label and [p.labels for p in got] == [p.labels for p in want]
    np.testing.assert_allclose(probs(got, names), probs(want, names), atol=PROB_TOLERANCE)
    assert [p.score for p in got] == pytest.approx([p.score for p in want], abs=PROB_TOLERANCE)


@pytest.mark.parametrize("family", ["bert", "deberta-v2"])
def test_the_graph_is_optimized_where_onnxruntime_can(runs, family, tmp_path):
    """bert: onnxruntime's transformer optimizer fused attention and BiasGelu, in both the fp32 and the int8 graph
    (the parity checks above passed on those), and the residual Add + LayerNormalization stay unfused, in the files
    and in the graph the session runs (SkipLayerNormalization was the slower); deberta-v2 keeps the plain graph and
    says so. The session uses as many threads as torch."""
    import onnx
    import torch

    registry, get = runs
    done = export_onnx(registry, get(family), int8=True, max_int8_loss=100.0)
    meta = json.loads((done.folder / "onnx.json").read_text())
    ops = {n.op_type for n in onnx.load(str(done.fp32)).graph.node}
    if family == "bert":
        assert meta["optimized"] and meta["fused_ops"]["Attention"] == 2 and meta["fused_ops"]["BiasGelu"] == 2
        assert {"Attention", "LayerNormalization", "BiasGelu"} <= ops and "Softmax" not in ops
        # the last layer after its attention runs on token 0 alone (the classifier reads no other)
        assert meta["first_token_only"] and {"FirstToken_0", "FirstToken_1"} <= {n.name for n in onnx.load(
            str(done.fp32)).graph.node}  # fmt: skip
        int8_ops = {n.op_type for n in onnx.load(str(done.int8)).graph.node}
        assert {"QAttention", "DynamicQuantizeLinear", "LayerNormalization", "BiasGelu"} <= int8_ops
        for graph in (done.fp32, done.int8):
            session = inference_session(graph, optimized_to=tmp_path / "run.onnx")
            assert session.get_session_options().intra_op_num_threads == torch.get_num_threads()  # same cores
            run_ops = {n.op_type for n in onnx.load(str(tmp_path / "run.onnx")).graph.node}
            assert "LayerNormalization" in run_ops and "SkipLayerNormalization" not in run_ops
        assert "SkipLayerNormalization" not in ops | int8_ops
    else:
        assert not meta["optimized"] and "no fusion for deberta-v2" in meta["fused_ops"]
        assert not meta["first_token_only"]
        assert "Attention" not in ops


# ---- first_token_only on graphs made here -----------------------------------------------------------------
HIDDEN, HEADS = 8, 2


def last_layer(tmp_path, pooling: str):
    """A fused Attention, its output projection and residual, LayerNorm, then `pooling` of the sequence axis:
    token0 (Gather index 0, axis 1: a classifier on the first token), token1, mean (ReduceMean) or outside (an
    input not from the layer added before the Gather). Returns the file and an input feed."""
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    rng = np.random.default_rng(0)

    def const(name, *shape, dtype=np.float32):
        return numpy_helper.from_array(rng.standard_normal(shape).astype(dtype), name)

    inits = [const("qkv_w", HIDDEN, 3 * HIDDEN), const("qkv_b", 3 * HIDDEN), const("out_w", HIDDEN, HIDDEN),
             const("ln_w", HIDDEN), const("ln_b", HIDDEN), const("cls_w", HIDDEN, 2),
             numpy_helper.from_array(np.array(1 if pooling == "token1" else 0, dtype=np.int64), "index")]  # fmt: skip
    nodes = [helper.make_node("Attention", ["x", "qkv_w", "qkv_b"], ["a"], domain="com.microsoft", num_heads=HEADS),
             helper.make_node("MatMul", ["a", "out_w"], ["o"]), helper.make_node("Add", ["o", "x"], ["r"]),
             helper.make_node("LayerNormalization", ["r", "ln_w", "ln_b"], ["h"], axis=-1)]  # fmt: skip
    inputs = [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["batch", "seq", HIDDEN])]
    if pooling == "outside":
        inputs.append(helper.make_tensor_value_info("y", TensorProto.FLOAT, ["batch", "seq", HIDDEN]))
        nodes.append(helper.make_node("Add", ["h", "y"], ["h2"]))
    last = "h2" if pooling == "outside" else "h"
    if pooling == "mean":
        nodes.append(helper.make_node("ReduceMean", [last], ["pooled"], axes=[1], keepdims=0))
    else:
        nodes.append(helper.make_node("Gather", [last, "index"], ["pooled"], axis=1))
    nodes.append(helper.make_node("MatMul", ["pooled", "cls_w"], ["logits"]))
    logits = helper.make_tensor_value_info("logits", TensorProto.FLOAT, ["batch", 2])
    graph = helper.make_graph(nodes, "last_layer", inputs, [logits], inits)
    opsets = [helper.make_opsetid("", 17), helper.make_opsetid("com.microsoft", 1)]
    model = helper.make_model(graph, opset_imports=opsets)
    path = tmp_path / f"{pooling}.onnx"
    onnx.save(model, str(path))
    feed = {"x": rng.standard_normal((3, 5, HIDDEN)).astype(np.float32)}
    if pooling == "outside":
        feed["y"] = rng.standard_normal((3, 5, HIDDEN)).astype(np.float32)
    return path, feed


@pytest.mark.parametrize("pooling", ["token0", "token1", "mean", "outside"])
def test_first_token_only_rewrites_only_a_classifier_on_token_0(tmp_path, pooling):
    """The rewrite applies where the logits read token 0 through token-wise operators only, and then gives the same
    logits; a classifier on another token, on the mean of all tokens, or an operator mixing in a tensor from
    outside the layer leave the graph as it was."""
    import onnx
    import onnxruntime as ort

    path, feed = last_layer(tmp_path, pooling)
    before_bytes = path.read_bytes()
    before = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"]).run(["logits"], feed)[0]
    rewritten = first_token_only(path)
    assert rewritten == (pooling == "token0")
    if not rewritten:
        assert path.read_bytes() == before_bytes
        return
    assert sum(n.op_type == "Slice" for n in onnx.load(str(path)).graph.node) == 2
    after = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"]).run(["logits"], feed)[0]
    np.testing.assert_allclose(after, before, atol=1e-6)


def test_first_token_only_needs_a_fused_attention(tmp_path):
    """A graph with no fused Attention (deberta-v2's plain graph) is left alone."""
    import onnx
    from onnx import TensorProto, helper

    graph = helper.make_graph([helper.make_node("Relu", ["x"], ["logits"])], "plain",
                              [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 2])],
                              [helper.make_tensor_value_info("logits", TensorProto.FLOAT, [1, 2])])  # fmt: skip
    onnx.save(helper.make_model(graph), str(tmp_path / "plain.onnx"))
    assert not first_token_only(tmp_path / "plain.onnx")
