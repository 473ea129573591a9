"""How the tabs write numbers, durations, runs and results: one place, so every tab says them the same way."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

from studio.datasource import SUFFIXES
from studio.registry import Registry
from studio.results import RunSummary
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
        acc = f" · {r.accuracy:.1%}" if r.accuracy is not None else ""
        out.append((f"{r.id} · {r.status}{acc}", r.id))
    return out


def latest_eval_md(view: RunView) -> str:
    """While training: the latest validation evaluation, with per-class F1."""
    e = view.latest_eval()
    if not e:
        return "Validation metrics appear here at each evaluation."
    lines = [
        f"### Validation at step {e.get('step')}: accuracy {e.get('accuracy', 0):.2%} · macro F1 "
        f"{e.get('f1_macro', 0):.3f}",
        "",
        "| class | F1 |",
        "|---|---|",
    ]
    lines += [f"| {k.removeprefix('f1/')} | {v:.3f} |" for k, v in e.items() if k.startswith("f1/")][:30]
    return "\n".join(lines)


def results_md(summary: RunSummary | None) -> str:
    """Test metrics, efficiency, GPUs and the memory estimate's error of a finished run (its eval.json)."""
    if summary is None:
        return ""
    test = summary.test
    lines = [
        f"### Test accuracy {test.accuracy:.2%} · macro F1 {test.f1_macro:.3f} · weighted F1 {test.f1_weighted:.3f}",
        f"{test.n:,} test texts; status **{summary.status or ''}**",
        *_health_lines(summary),
        *_calibration_lines(summary),
        "",
        "| class | precision | recall | F1 | support |",
        "|---|---|---|---|---|",
    ]
    for label, m in list(test.per_class.items())[:30]:
        lines.append(f"| {label} | {m.precision:.3f} | {m.recall:.3f} | {m.f1:.3f} | {m.support} |")
    return "\n".join(lines + _efficiency_lines(summary))


def _health_lines(summary: RunSummary) -> list[str]:
    """A warning when the run did not learn (studio/health.py): what it does, and what to change."""
    h = summary.health
    if h is None or not h.flag:
        return []
    advice = f". {h.advice[0].upper()}{h.advice[1:]}." if h.advice else ""
    return ["", f"⚠ **{h.flag}**: this run {h.reason}{advice}"]


def _calibration_lines(summary: RunSummary) -> list[str]:
    """The temperature fitted on validation, ECE and Brier on test before -> after, and a few thresholds of
    accuracy against coverage (what `predict --min-confidence` would answer)."""
    c = summary.calibration
    if c is None:
        return []
    figures = []
    if c.ece_before is not None and c.ece_after is not None:
        figures.append(f"ECE {c.ece_before:.3f} → {c.ece_after:.3f}")
    if c.brier_before is not None and c.brier_after is not None:
        figures.append(f"Brier {c.brier_before:.3f} → {c.brier_after:.3f}")
    lines = ["", f"**Calibrated confidence:** temperature {c.temperature:.2f}, fitted on {c.validation_rows:,} "
                 f"validation texts" + (f"; on test {', '.join(figures)}" if figures else "") + "  "]  # fmt: skip
    picks = [p for p in c.coverage if p.get("threshold") in (0.5, 0.7, 0.9) and p.get("accuracy") is not None]
    said = [f"{p['threshold']:.1f}: {p['coverage']:.0%} of texts at {p['accuracy']:.1%} accuracy" for p in picks]
    if said:
        lines.append("answering only above a confidence of " + "; ".join(said))
    return lines


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
    """A named evaluation on a labelled file: headline metrics, per-class table, confusion matrix, where saved."""
    m = result.metrics
    left = f" ({result.left_out} without a text or label left out)" if result.left_out else ""
    lines = [
        f"**{result.name}**: {result.rows:,} rows of `{Path(result.file).name}`{left}, text `{result.text_column}`, "
        f"label `{result.label_column}`  ",
        f"**accuracy {m.accuracy:.4f}** · macro F1 {m.f1_macro:.4f} · weighted F1 {m.f1_weighted:.4f}",
        "",
        "| label | precision | recall | F1 | support |",
        "|---|---:|---:|---:|---:|",
        *(f"| {n} | {c.precision:.3f} | {c.recall:.3f} | {c.f1:.3f} | {c.support} |" for n, c in m.per_class.items()),
        "",
        f"confusion matrix (rows: true, columns: predicted): `{m.confusion_matrix}`  ",
        f"saved: `{saved}`",
    ]
    return "\n".join(lines)
