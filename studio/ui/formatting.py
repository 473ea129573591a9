"""How the tabs write numbers, durations, runs and results: one place, so every tab says them the same way."""

from __future__ import annotations

import math
from pathlib import Path
from typing import TYPE_CHECKING, Any

from studio.datasource import SUFFIXES
from studio.registry import Registry, RunRecord
from studio.results import Calibration, RunSummary, SplitMetrics
from studio.runlog import RunView

if TYPE_CHECKING:
    from studio.file_eval import FileEvaluation
    from studio.lr_find import LrFindResult

UPLOAD_TYPES = [*SUFFIXES, ".gz"]
"""Data files a page accepts (the Data tab's source, the Playground's file to label): the files the engine reads;
.gz for its text formats gzipped (reviews.csv.gz)."""


def rounded(value: float | None, digits: int) -> float | None:
    """`value` to `digits` decimals for a table cell; None stays an empty cell."""
    return None if value is None else round(value, digits)


def duration(seconds: float) -> str:
    """12m05s, or 1h02m from an hour on."""
    seconds = int(seconds)
    return (
        f"{seconds // 3600}h{seconds % 3600 // 60:02d}m" if seconds >= 3600 else f"{seconds // 60}m{seconds % 60:02d}s"
    )


def percent(share: float | None, digits: int = 1) -> str:
    """80.2%: a share (0.8019) for a table cell; "" when missing."""
    return "" if share is None or not math.isfinite(share) else f"{share:.{digits}%}"


def span(seconds: float | None) -> str:
    """How long something took, in words for a table cell: 45 s, 10 min 5 s, 1 h 2 min; "" when missing."""
    if seconds is None or not math.isfinite(seconds):
        return ""
    s = round(seconds)
    if s < 60:
        return f"{seconds:.1f} s" if seconds < 10 else f"{s} s"
    if s < 3600:
        return f"{s // 60} min {s % 60} s" if s % 60 else f"{s // 60} min"
    return f"{s // 3600} h {s % 3600 // 60} min"


def count(n: float | None) -> str:
    """22.7M, 1.2B, 12.3k, 604: a count (parameters, rows) for a table cell; "" when missing."""
    if n is None or not math.isfinite(n):
        return ""
    for size, suffix in ((1e9, "B"), (1e6, "M"), (1e3, "k")):
        if abs(n) >= size:
            return f"{n / size:.1f}{suffix}"
    return f"{n:.0f}"


def megabytes(mb: float | None, in_gb: bool | None = None) -> str:
    """605 MB, or 2.4 GB from 2 GB on (or as `in_gb` says: one unit for a whole column, `megabytes_column`): memory
    in a table cell; "" when missing."""
    if mb is None or not math.isfinite(mb):
        return ""
    return f"{mb / 1024:.1f} GB" if (mb >= 2048 if in_gb is None else in_gb) else f"{mb:,.0f} MB"


def megabytes_column(values: list[float | None]) -> list[str]:
    """A table column of memory figures in one unit (GB when any reaches 2 GB), so "1,740 MB" never stands beside
    "2.1 GB"."""
    in_gb = any(v is not None and math.isfinite(v) and v >= 2048 for v in values)
    return [megabytes(v, in_gb) for v in values]


CELL_CHARS = 120
"""How much of a text a table cell shows; the rest is cut with "…" (the full text shows when the row is picked)."""


def clip(value: object, limit: int = CELL_CHARS) -> object:
    """A long text cut to `limit` characters with "…", on one line; anything else as it is."""
    if not isinstance(value, str):
        return value
    one_line = " ".join(value.split())
    return one_line if len(one_line) <= limit else one_line[: limit - 1].rstrip() + "…"


def text_table(frame: Any, first: list[str], percents: tuple[str, ...] = ()) -> Any:
    """A table of texts as the page shows it: the `first` columns (labels, predictions) first, `percents` columns
    as 80.2%, and every text cut to CELL_CHARS (pandas DataFrame in, a new one out)."""
    if frame is None or not hasattr(frame, "columns"):
        return frame
    order = [c for c in first if c in frame.columns] + [c for c in frame.columns if c not in first]
    out = frame[order].copy()
    for column in out.columns:
        if column in percents:
            out[column] = [percent(v) for v in out[column]]
        elif out[column].dtype.kind not in "biufcmM":  # text (object, or pandas' string dtype), not numbers or dates
            out[column] = [clip(v) for v in out[column]]
    return out


AXIS_NAMES = {"model.name": "", "method.name": "", "method": "", "setup": "", "change": "", "dataset": "",
              "data.source": "", "seed": "seed ", "data.balance.num_labels": "{} labels",
              "data.balance.num_samples": "{} samples", "method.r": "r={}", "train.learning_rate": "lr {}"}  # fmt: skip
"""How a grid's axis names a run: "" for its value alone, "seed " before it, or a pattern around it."""


def axis_title(axis: str) -> str:
    """A grid axis as a column header: labels, samples, r, seed, model, speed (its last part)."""
    titles = {"data.balance.num_labels": "labels", "data.balance.num_samples": "samples", "model.name": "model",
              "method.name": "method", "train.learning_rate": "learning rate"}  # fmt: skip
    return titles.get(axis, axis.rsplit(".", 1)[-1].replace("_", " "))


def run_name(labels: dict[str, Any]) -> str:
    """A grid run in words, from its axis values: "bert-base · 2 labels · 800 samples · seed 42"."""
    said = []
    for axis, value in labels.items():
        pattern = AXIS_NAMES.get(axis, f"{axis_title(axis)} {{}}")
        said.append(pattern.format(value) if "{}" in pattern else f"{pattern}{value}")
    return " · ".join(said)


def gigabytes(mb: float) -> str:
    """1.23 GB: how memory estimates are shown."""
    return f"{mb / 1024:.2f} GB"


def run_choices(registry: Registry, with_model: bool = False) -> list[tuple[str, str]]:
    """(label, run id) pairs for dropdowns, newest first; `with_model` keeps runs that saved a model (to
    predict with)."""
    out = []
    for r in registry.list():
        if with_model and not (registry.run_dir(r.id) / "label_map.json").is_file():
            continue
        out.append((f"{r.id} · {r.status}{_headline_of(registry, r)}", r.id))
    return out


def _headline_of(registry: Registry, r: RunRecord) -> str:
    """' · 80.0%' (accuracy), or ' · macro-F1 0.512' for a multi-label run (whose accuracy is the exact-match share,
    a harsh figure beside a single-label run's); '' before the run has results."""
    if r.accuracy is None:
        return ""
    if r.f1_macro is not None and registry.task(r.id) == "multi_label":
        return f" · macro-F1 {r.f1_macro:.3f}"
    return f" · {r.accuracy:.1%}"


def run_summary(registry: Registry, run_id: str) -> RunSummary | None:
    """The run's results (`Registry.summary`); a multi-label run's per-label thresholds filled from the
    thresholds.json that travels with its model where its eval.json lacks them (runs written before results kept
    them)."""
    import dataclasses

    from studio import multilabel
    from studio.errors import StudioError

    summary = registry.summary(run_id)
    if summary is None or not summary.test.multi_label:
        return summary
    if all(c.threshold is not None for c in summary.test.per_class.values()):
        return summary
    try:
        found = multilabel.read(registry.run_dir(run_id), summary.label_names)
    except StudioError:  # a damaged file: the table says n/a, the playground says what is wrong
        return summary
    if found is not None:
        cut = dict(zip(summary.label_names, found.array(summary.label_names), strict=True))
        for name, scores in summary.test.per_class.items():
            if scores.threshold is None and name in cut:
                summary.test.per_class[name] = dataclasses.replace(scores, threshold=float(cut[name]))
    return summary


def number(value: float | None, spec: str = ".3f") -> str:
    """`value` formatted, or "n/a" when it is missing or not a number (ROC-AUC of a label with no positives)."""
    return "n/a" if value is None or not math.isfinite(value) else format(value, spec)


def metrics_line(m: SplitMetrics) -> str:
    """The headline figures of a split, in words: accuracy and F1, or a multi-label split's macro / micro F1,
    exact match, Hamming loss, ROC-AUC and average precision."""
    if not m.multi_label:
        return f"accuracy {m.accuracy:.1%} · macro F1 {m.f1_macro:.3f} · weighted F1 {m.f1_weighted:.3f}"
    x = m.extra
    return (f"macro F1 {m.f1_macro:.3f} · micro F1 {number(x.get('f1_micro'))} · exact match {m.accuracy:.2%} · "
            f"Hamming loss {number(x.get('hamming_loss'), '.4f')} · ROC-AUC {number(x.get('roc_auc_macro'))} · "
            f"average precision {number(x.get('ap_macro'))}")  # fmt: skip


NO_CONFUSION_MULTI_LABEL = (
    "No confusion matrix: a text may carry several labels or none, so there is no one predicted class to set "
    "against one true class; the table gives each label's own errors."
)


def class_table(m: SplitMetrics, limit: int = 30) -> list[str]:
    """The per-class (per-label) table: precision, recall, F1, support, and a multi-label label's threshold."""
    if m.multi_label:
        lines = ["| label | precision | recall | F1 | support | threshold |", "|---|---:|---:|---:|---:|---:|"]
        lines += [f"| {n} | {c.precision:.3f} | {c.recall:.3f} | {c.f1:.3f} | {c.support} | "
                  f"{number(c.threshold, '.2f')} |" for n, c in list(m.per_class.items())[:limit]]  # fmt: skip
    else:
        lines = ["| class | precision | recall | F1 | support |", "|---|---:|---:|---:|---:|"]
        lines += [f"| {n} | {c.precision:.3f} | {c.recall:.3f} | {c.f1:.3f} | {c.support} |"
                  for n, c in list(m.per_class.items())[:limit]]  # fmt: skip
    more = len(m.per_class) - limit
    return lines + ([f"| ... {more} more |"] if more > 0 else [])


def latest_eval_md(view: RunView) -> str:
    """While training: the latest validation evaluation, with per-class F1 (multi-label: macro and micro F1 and
    the exact-match share, each label given at probability 0.5 until the thresholds are tuned at the end)."""
    e = view.latest_eval()
    if not e:
        return "Validation metrics appear here at each evaluation."
    if "f1_micro" in e:  # only a multi-label run's evaluations carry it
        head = [f"### Validation at step {e.get('step')}: macro F1 {e.get('f1_macro', 0):.3f} · micro F1 "
                f"{e['f1_micro']:.3f} · exact match {e.get('accuracy', 0):.2%}",
                "each label given at probability 0.5 while training; its own threshold is tuned on validation at "
                "the end"]  # fmt: skip
        header = "| label | F1 |"
    else:
        head = [f"### Validation at step {e.get('step')}: accuracy {e.get('accuracy', 0):.2%} · macro F1 "
                f"{e.get('f1_macro', 0):.3f}"]  # fmt: skip
        header = "| class | F1 |"
    lines = [*head, "", header, "|---|---|"]
    lines += [f"| {k.removeprefix('f1/')} | {v:.3f} |" for k, v in e.items() if k.startswith("f1/")][:30]
    return "\n".join(lines)


def results_md(summary: RunSummary | None) -> str:
    """Test metrics, efficiency, GPUs and the memory estimate's error of a finished run (its eval.json)."""
    if summary is None:
        return ""
    test = summary.test
    if test.multi_label:
        head = [f"### Test macro F1 {test.f1_macro:.3f} · micro F1 {number(test.extra.get('f1_micro'))} · exact "
                f"match {test.accuracy:.2%}", *_multi_label_lines(test)]  # fmt: skip
    else:
        head = [f"### Test accuracy {test.accuracy:.2%} · macro F1 {test.f1_macro:.3f} · weighted F1 "
                f"{test.f1_weighted:.3f}", f"{test.n:,} test texts; status **{summary.status or ''}**"]  # fmt: skip
    lines = [*head, *_health_lines(summary), *_calibration_lines(summary), "", *class_table(test)]
    return "\n".join(lines + _efficiency_lines(summary))


def _multi_label_lines(test: SplitMetrics) -> list[str]:
    """What a multi-label result needs said: its other figures, how a label is given, and why no confusion matrix."""
    x = test.extra
    cuts = sorted(c.threshold for c in test.per_class.values() if c.threshold is not None)
    given = (f"; a text gets every label whose probability reaches that label's threshold (tuned on validation, "
             f"{cuts[0]:.2f}-{cuts[-1]:.2f})" if cuts else "")  # fmt: skip
    return [
        f"Hamming loss {number(x.get('hamming_loss'), '.4f')} · ROC-AUC {number(x.get('roc_auc_macro'))} · average "
        f"precision {number(x.get('ap_macro'))} (macro: the mean over labels)  ",
        f"{test.n:,} test texts, {len(test.per_class)} labels{given}  ",
        "exact match: the share of texts whose whole label set is right  ",
        NO_CONFUSION_MULTI_LABEL,
    ]


def _health_lines(summary: RunSummary) -> list[str]:
    """A warning when the run did not learn (studio/health.py): what it does, and what to change."""
    h = summary.health
    if h is None or not h.flag:
        return []
    advice = f". {h.advice[0].upper()}{h.advice[1:]}." if h.advice else ""
    return ["", f"⚠ **{h.flag}**: this run {h.reason}{advice}"]


def _calibration_lines(summary: RunSummary) -> list[str]:
    """The temperature(s) fitted on validation, ECE and Brier on test before -> after, and a few thresholds of
    accuracy against coverage (what `predict --min-confidence` would answer). Multi-label: one temperature or one
    per label, the figures over every (text, label) probability, and the exact-match share of the texts answered."""
    c = summary.calibration
    if c is None:
        return []
    multi = summary.test.multi_label
    figures = []
    if c.ece_before is not None and c.ece_after is not None:
        figures.append(f"ECE {c.ece_before:.3f} → {c.ece_after:.3f}")
    if c.brier_before is not None and c.brier_after is not None:
        figures.append(f"Brier {c.brier_before:.3f} → {c.brier_after:.3f}")
    where = "on test, over every (text, label) probability:" if multi else "on test"
    lines = ["", f"**Calibrated confidence:** {_temperatures(c, multi)}, fitted on {c.validation_rows:,} validation "
                 f"texts" + (f"; {where} {', '.join(figures)}" if figures else "") + "  "]  # fmt: skip
    picks = [p for p in c.coverage if p.get("threshold") in (0.5, 0.7, 0.9) and p.get("accuracy") is not None]
    right = "exact match" if multi else "accuracy"
    said = [f"{p['threshold']:.1f}: {p['coverage']:.0%} of texts at {p['accuracy']:.1%} {right}" for p in picks]
    if said:
        sure = "when the least sure label decision reaches" if multi else "above a confidence of"
        lines.append(f"answering only {sure} " + "; ".join(said))
    return lines


def _temperatures(c: Calibration, multi: bool) -> str:
    if c.per_label:
        values = sorted(c.per_label.values())
        return (f"a temperature per label ({values[0]:.2f}-{values[-1]:.2f}; it predicted held-out validation texts "
                "better than one)")  # fmt: skip
    return f"one temperature {c.temperature:.2f} for every label" if multi else f"temperature {c.temperature:.2f}"


def _efficiency_lines(summary: RunSummary) -> list[str]:
    eff = summary.efficiency
    lines = [
        "",
        f"**Efficiency:** {eff.trainable_params:,} trainable of {eff.total_params:,} "
        f"parameters ({eff.trainable_percent:.2f}%) · peak memory {eff.peak_memory_mb or 0:,.0f} MB "
        f"({eff.peak_memory_kind or ''}) · training {eff.train_seconds:,.0f} s for "
        f"{eff.steps} steps ({eff.total_seconds:,.0f} s in all)",
    ]
    spread = summary.distributed
    if spread is not None and spread.processes > 1:
        lines.append(
            f"  \n**{spread.processes} GPUs{' (FSDP)' if spread.fsdp else ''}:** batch "
            f"{spread.per_device_batch} per GPU x accumulation {spread.grad_accum} = effective batch "
            f"{spread.effective_batch}; peak memory is rank 0's"
        )
    memory = summary.memory
    if memory.error_pct is not None and memory.estimate_mb is not None and memory.measured_mb is not None:
        lines.append(
            f"  \n**Memory estimate** {memory.estimate_mb:,.0f} MB vs measured {memory.measured_mb:,.0f} MB "
            f"({memory.error_pct:+.1f}%, {memory.measured_kind})"
        )
    return lines


def lr_find_md(r: LrFindResult) -> str:
    """The range test's suggestion, how it was read, what the test cost, and its caveats."""
    head = (f"**Suggested learning rate {r.suggested:.2g}** for {r.method} ({r.rule_text}) · swept {r.start:.0e} "
            f"to {r.end:.0e} · {r.cost()}")  # fmt: skip
    steep = [f"- the loss fell fastest at {r.steepest:.2g}: the top of the usable range (whole runs there can "
             "collapse)"] if r.steepest else []  # fmt: skip
    return "\n\n".join([head, "\n".join([*steep, *(f"- {c}" for c in r.caveats)])]).strip()


def file_eval_md(result: FileEvaluation, saved: Path) -> str:
    """A named evaluation on a labelled file: headline metrics, per-class table, confusion matrix (multi-label: why
    there is none), where saved."""
    m = result.metrics
    left = f" ({result.left_out} without a text or label left out)" if result.left_out else ""
    first, _, rest = metrics_line(m).partition(" · ")
    confusion = (NO_CONFUSION_MULTI_LABEL if m.multi_label
                 else f"confusion matrix (rows: true, columns: predicted): `{m.confusion_matrix}`")  # fmt: skip
    lines = [
        f"**{result.name}**: {result.rows:,} rows of `{Path(result.file).name}`{left}, text `{result.text_column}`, "
        f"label `{result.label_column}`  ",
        f"**{first}** · {rest}",
        "",
        *class_table(m, limit=len(m.per_class)),
        "",
        f"{confusion}  ",
        f"saved: `{saved}`",
    ]
    return "\n".join(lines)
