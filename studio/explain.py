"""Why did a run say that: Integrated Gradients on the input embeddings, word by word.

`Explainer` wraps a loaded `inference.Predictor` (its model, tokenizer, max length and calibration: nothing is
loaded again) and attributes a label's calibrated probability to the words of a text with captum's
`LayerIntegratedGradients` on the model's input embedding layer (`get_input_embeddings()`: every family, full
fine-tunes and peft adapters alike, 4-bit bases included).

What is explained: f(x) = the calibrated probability of the label (softmax(logits / T)[label], or a multi-label
run's sigmoid(logit / T) of that label), so a word's score is the share of that probability it accounts for, in
probability points. The baseline x' is the same text with every word piece replaced by the pad token's embedding
and the special tokens ([CLS], [SEP], BOS/EOS) kept (`BASELINE`); positions and attention mask are the text's.
Completeness: the pieces' scores sum to f(x) - f(x') up to the integral's error, `Explanation.delta`, which is
measured (f(x') by a forward pass with the embeddings swapped), not assumed. Pieces are summed into words by the
tokenizer's word ids and offsets; special tokens score exactly 0 (they equal the baseline).
"""

from __future__ import annotations

import html
from dataclasses import dataclass, field
from typing import Any

from studio.errors import StudioError

N_STEPS = 32
"""Integration steps (captum's Gauss-Legendre rule). 32 keeps |delta| under 0.01 of probability on the quick demo's
MiniLM (benchmarks/results/explain) and a 128-token text under 2 s on 2 CPU cores."""
CPU_BATCH = 32
"""captum's `internal_batch_size` on a CPU: the scaled copies forwarded and backpropagated at once."""
GPU_BATCH = 64
BASELINE = "pad-token embeddings in place of every word piece, special tokens kept"


@dataclass(frozen=True)
class WordAttribution:
    word: str
    start: int
    """Character offsets of the word in the text (text[start:end] == word)."""
    end: int
    score: float
    """Its pieces' attributions summed: positive pushes the label's probability up, negative down."""


@dataclass(frozen=True)
class Explanation:
    text: str
    label: str
    """The label explained."""
    probability: float
    """f(x): the label's probability for the text (calibrated where the run fitted a temperature)."""
    baseline_probability: float
    """f(x'): its probability for the baseline (every word piece blanked to the pad token)."""
    words: list[WordAttribution]
    delta: float
    """sum(scores) - (f(x) - f(x')): the integral's error (completeness holds when it is near 0)."""
    predicted: str
    """The run's answer for the text (a multi-label run's labels given, joined by ", "; "" when none)."""
    predicted_probability: float
    """The score of that answer (`inference.Prediction.score`)."""
    n_steps: int = N_STEPS
    tokens: int = 0
    """Tokens scored (special tokens included)."""
    scored_until: int = 0
    """Characters of the text the model saw: beyond this the text was cut at the run's max length, not scored."""
    run_id: str = ""
    baseline: str = BASELINE
    method: str = "Integrated Gradients (captum LayerIntegratedGradients, input embeddings)"

    @property
    def total(self) -> float:
        return sum(w.score for w in self.words)

    @property
    def truncated(self) -> bool:
        return self.scored_until < len(self.text.rstrip())

    def strongest(self, n: int | None = None) -> list[WordAttribution]:
        """The words by |score|, strongest first (ties: in text order)."""
        ranked = sorted(self.words, key=lambda w: -abs(w.score))
        return ranked if n is None else ranked[:n]


@dataclass
class _Encoded:
    """One text as the model sees it, and where each piece sits in the text."""

    inputs: dict[str, Any]
    baseline_ids: Any
    offsets: list[tuple[int, int]]
    word_ids: list[int | None]
    special: list[int] = field(default_factory=list)


class Explainer:
    """Integrated Gradients for a loaded run. Thread-safe as the predictor is (no state changes between calls)."""

    def __init__(self, predictor: Any, n_steps: int = N_STEPS, internal_batch_size: int | None = None):
        if n_steps < 2:
            raise StudioError(f"n_steps must be at least 2 (got {n_steps}); 32 is the default")
        self.predictor, self.n_steps = predictor, n_steps
        self.internal_batch_size = internal_batch_size

    @property
    def model(self) -> Any:
        return self.predictor.model

    def label_index(self, label: str) -> int:
        names = self.predictor.label_names
        if label not in names:
            raise StudioError(f"label '{label}' is not one of this run's labels: {', '.join(names)}")
        return names.index(label)

    def explain(self, text: str, label: str | None = None) -> Explanation:
        """Why the run gives `label` (default: its predicted label; a multi-label run's most probable one)."""
        return self.explain_labels(text, [label] if label is not None else None)[0]

    def explain_labels(self, text: str, labels: list[str] | None = None) -> list[Explanation]:
        """One explanation per label, in one batched attribution. Default: the predicted label; a multi-label run's
        every label given (its most probable one when none reached its threshold)."""
        if not isinstance(text, str) or not text.strip():
            raise StudioError("type a text to explain first")
        prediction = self.predictor.predict([text])[0]
        if labels is None:
            labels = list(prediction.labels) if prediction.labels else [max(prediction.probs, key=prediction.probs.get)]
        targets = [self.label_index(label) for label in labels]
        encoded = self._encode(text)
        scores, f_x, f_base = self._attribute(encoded, targets)
        out = []
        for row, (label, target) in enumerate(zip(labels, targets, strict=True)):
            words = _words(text, encoded, scores[row])
            total = float(scores[row].sum())
            out.append(Explanation(
                text, label, float(f_x[row, target]), float(f_base[row, target]), words,
                total - float(f_x[row, target] - f_base[row, target]), prediction.label, float(prediction.score),
                self.n_steps, len(encoded.offsets), max((e for _, e in encoded.offsets), default=0),
                self.predictor.run_id,
            ))  # fmt: skip
        return out

    # ---- the attribution ---------------------------------------------------------------------------------
    def _encode(self, text: str) -> _Encoded:
        import torch

        tok = self.predictor.tokenizer
        if not getattr(tok, "is_fast", False):
            raise StudioError("explaining needs a fast (Rust) tokenizer for the word offsets; this run's is not one")
        enc = tok(text, truncation=True, max_length=self.predictor.max_length, return_offsets_mapping=True,
                  return_special_tokens_mask=True)  # fmt: skip
        special = list(enc["special_tokens_mask"])
        ids = list(enc["input_ids"])
        pad = tok.pad_token_id if tok.pad_token_id is not None else (tok.unk_token_id or 0)
        device = next(self.model.parameters()).device
        inputs = {k: torch.tensor([enc[k]], device=device) for k in ("input_ids", "attention_mask", "token_type_ids")
                  if k in enc}  # fmt: skip
        baseline = torch.tensor([[i if s else pad for i, s in zip(ids, special, strict=True)]], device=device)
        offsets = [tuple(o) for o in enc["offset_mapping"]]
        return _Encoded(inputs, baseline, offsets, enc.word_ids(), special)

    def _probabilities(self, logits: Any) -> Any:
        import torch

        logits = logits.float()
        if self.predictor.temperature is not None:
            logits = logits / torch.as_tensor(self.predictor.temperature, dtype=logits.dtype, device=logits.device)
        return torch.sigmoid(logits) if self.predictor.multi_label else torch.softmax(logits, dim=-1)

    def _forward(self, embeds: Any, attention_mask: Any, token_type_ids: Any = None) -> Any:
        kwargs = {"inputs_embeds": embeds, "attention_mask": attention_mask}
        if token_type_ids is not None:
            kwargs["token_type_ids"] = token_type_ids
        return self._probabilities(self.model(**kwargs).logits)

    def _attribute(self, encoded: _Encoded, targets: list[int]) -> tuple[Any, Any, Any]:
        """(per-piece scores, one row per target; f(x); f(x')) as numpy arrays.

        captum hooks the layer it attributes to; the layer given is a probe of this call's own (`_probe`) that
        looks the ids up in the model's embedding layer, and the model takes its output as `inputs_embeds`, so no
        hook ever sits on the shared model: predictions made meanwhile by other threads are untouched."""
        import torch
        from captum.attr import LayerIntegratedGradients

        k = len(targets)
        rows = {name: t.repeat(k, 1) for name, t in encoded.inputs.items()}
        cuda = rows["input_ids"].device.type == "cuda"
        batch = self.internal_batch_size or (GPU_BATCH if cuda else CPU_BATCH)
        probe = _probe(self.model.get_input_embeddings())

        def forward(input_ids: Any, attention_mask: Any, token_type_ids: Any = None) -> Any:
            return self._forward(probe(input_ids), attention_mask, token_type_ids)

        extra = (rows["attention_mask"], rows.get("token_type_ids"))
        with torch.inference_mode(False), torch.enable_grad():
            attributions = LayerIntegratedGradients(forward, probe).attribute(
                rows["input_ids"], baselines=encoded.baseline_ids.repeat(k, 1), target=targets,
                additional_forward_args=extra, n_steps=self.n_steps, internal_batch_size=max(batch, 1),
            )  # fmt: skip
        scores = attributions.sum(dim=-1).detach().float().cpu().numpy()
        with torch.no_grad():  # the two ends of the path, for completeness: f(x) and f(x')
            extra = (encoded.inputs["attention_mask"], encoded.inputs.get("token_type_ids"))
            f_x = self._forward(probe(encoded.inputs["input_ids"]), *extra).float().cpu().numpy()
            f_base = self._forward(probe(encoded.baseline_ids), *extra).float().cpu().numpy()
        return scores, f_x.repeat(k, 0), f_base.repeat(k, 0)


def _probe(layer: Any) -> Any:
    """A module of its own around the model's input embedding layer (what captum hooks)."""
    import torch

    class Probe(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.layer = layer

        def forward(self, input_ids: Any) -> Any:
            return self.layer(input_ids)

    return Probe()


def _words(text: str, encoded: _Encoded, scores: Any) -> list[WordAttribution]:
    """The pieces' scores summed per word (the tokenizer's word ids), each word's span its pieces' offsets with
    surrounding spaces trimmed. A piece with no word id or no characters (a lone SentencePiece '▁') joins the next
    word (or the last), so the words' scores sum to every non-special piece's."""
    spans: dict[Any, list[float]] = {}  # key -> [start, end, score]
    order: list[Any] = []
    carry = 0.0
    for i, ((start, end), word) in enumerate(zip(encoded.offsets, encoded.word_ids, strict=True)):
        if encoded.special[i]:
            continue
        key = word if word is not None else ("piece", i)
        if start >= end or not text[start:end].strip():
            carry += float(scores[i])
            continue
        if key not in spans:
            spans[key] = [start, end, 0.0]
            order.append(key)
        span = spans[key]
        span[0], span[1] = min(span[0], start), max(span[1], end)
        span[2] += float(scores[i]) + carry
        carry = 0.0
    if carry and order:
        spans[order[-1]][2] += carry
    out = []
    for key in sorted(order, key=lambda k: spans[k][0]):
        start, end, score = spans[key]
        while start < end and text[start].isspace():
            start += 1
        while end > start and text[end - 1].isspace():
            end -= 1
        out.append(WordAttribution(text[start:end], start, end, score))
    return out


# ---- showing it ------------------------------------------------------------------------------------------
FOR, AGAINST = (22, 163, 74), (220, 38, 38)
"""Green: the word pushes the label's probability up; red: down. Strength: |score| against the text's strongest."""


def _shade(score: float, strongest: float) -> str:
    strength = abs(score) / strongest if strongest > 0 else 0.0
    r, g, b = FOR if score >= 0 else AGAINST
    return f"rgba({r},{g},{b},{0.85 * strength:.3f})"


def legend_html(label: str) -> str:
    """Six swatches from the strongest 'against' to the strongest 'for'."""
    steps = (-1.0, -0.5, -0.15, 0.15, 0.5, 1.0)
    swatch = '<span style="background:{};padding:0 0.7em;margin:0 1px"></span>'
    swatches = "".join(swatch.format(_shade(s, 1.0)) for s in steps)
    name = html.escape(label)
    return (f'<div class="explain-legend" style="font-size:0.85em;opacity:0.85;margin:0.3em 0">'
            f"against <b>{name}</b> {swatches} for <b>{name}</b> · shade: the word's share of the probability, "
            "against the strongest word</div>")  # fmt: skip


def to_html(explanation: Explanation, title: str = "") -> str:
    """The text with each word shaded by its score (escaped; a word's score in its tooltip), a header with the
    label and its probability, a legend, and how it was measured. A fragment (gr.HTML, or `page`)."""
    e = explanation
    strongest = max((abs(w.score) for w in e.words), default=0.0)
    parts, at = [], 0
    for w in e.words:
        parts.append(html.escape(e.text[at : w.start]))
        parts.append(f'<span title="{w.score:+.4f}" style="background:{_shade(w.score, strongest)};'
                     f'border-radius:3px;padding:0 1px">{html.escape(w.word)}</span>')  # fmt: skip
        at = w.end
    tail = e.text[at:]
    if e.truncated:
        cut = max(e.scored_until, at)
        parts.append(html.escape(e.text[at:cut]))
        parts.append(f'<span style="opacity:0.45" title="beyond the run\'s max length: not seen by the model">'
                     f"{html.escape(e.text[cut:])}</span>")  # fmt: skip
    else:
        parts.append(html.escape(tail))
    answer = e.predicted or "(none)"
    head = (f"{html.escape(title) + ' · ' if title else ''}why <b>{html.escape(e.label)}</b> "
            f"(probability {e.probability:.1%}) · the run answers <b>{html.escape(answer)}</b>")  # fmt: skip
    foot = (f"{html.escape(e.method)}, {e.n_steps} steps; baseline: {html.escape(e.baseline)} "
            f"(probability {e.baseline_probability:.1%}). The scores sum to {e.total:+.3f} = "
            f"{e.probability:.3f} − {e.baseline_probability:.3f} {'+' if e.delta >= 0 else '−'} {abs(e.delta):.3f} "
            "(integration error).")  # fmt: skip
    if e.truncated:
        foot += " The greyed tail was cut at the run's max length and not scored."
    return (f'<div class="studio-explain" style="margin:0.4em 0">'
            f'<div style="margin-bottom:0.2em">{head}</div>{legend_html(e.label)}'
            f'<div style="white-space:pre-wrap;line-height:1.9;padding:0.5em;border:1px solid rgba(128,128,128,0.3);'
            f'border-radius:6px">{"".join(parts)}</div>'
            f'<div style="font-size:0.8em;opacity:0.7;margin-top:0.3em">{foot}</div></div>')  # fmt: skip


def page(explanations: list[Explanation], title: str = "Why did it say that?") -> str:
    """A whole HTML document of one or more explanations (the CLI's --html)."""
    body = "\n".join(to_html(e, e.run_id) for e in explanations)
    return (f'<!doctype html>\n<html><head><meta charset="utf-8"><title>{html.escape(title)}</title></head>'
            f'<body style="font-family:system-ui,sans-serif;max-width:60em;margin:2em auto">'
            f"<h2>{html.escape(title)}</h2>\n{body}\n</body></html>\n")  # fmt: skip


def to_text(explanation: Explanation, top: int = 15) -> str:
    """For a terminal: the label explained and its probability, then the words, strongest first, with scores."""
    e = explanation
    lines = [f"why {e.label} ({e.probability:.1%}); the run answers {e.predicted or '(none)'} "
             f"({e.predicted_probability:.1%})"]  # fmt: skip
    ranked = e.strongest(top)
    width = max((len(_short(w.word)) for w in ranked), default=4)
    for w in ranked:
        bar = ("+" if w.score >= 0 else "-") * max(1, min(20, round(20 * abs(w.score) / (abs(ranked[0].score) or 1))))
        lines.append(f"  {_short(w.word):{width}}  {w.score:+.4f}  {bar}")
    if len(e.words) > top:
        lines.append(f"  … {len(e.words) - top} more words")
    lines.append(
        f"scores sum to {e.total:+.4f} = p {e.probability:.4f} - p(baseline) {e.baseline_probability:.4f} "
        f"{'+' if e.delta >= 0 else '-'} error {abs(e.delta):.4f} ({e.n_steps} steps; baseline: {e.baseline})"
    )
    if e.truncated:
        lines.append(f"the text was cut at the run's max length: words after character {e.scored_until} not scored")
    return "\n".join(lines)


def _short(word: str, limit: int = 24) -> str:
    word = " ".join(word.split())
    return word if len(word) <= limit else word[: limit - 1] + "…"
