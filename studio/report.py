"""A study's report: a self-contained HTML page and a Markdown twin, with the tables and plots, and a CSV.

`write_report(registry, out, grid=...)` covers a grid (its runs, matched by config hash, aggregated over
seeds); `write_report(registry, out, run_ids=[...])` covers chosen runs. The HTML embeds plotly once, so the
file opens offline; the Markdown holds the same tables for a README or an issue.
"""

from __future__ import annotations

import csv
import dataclasses
import html
import time
from pathlib import Path
from typing import Any

from studio.registry import Registry, RunRecord
from studio.sweep import METRICS, Grid, aggregate, grid_runs

RUN_COLUMNS = ("id", "status", "flag", "model", "method", "dataset", "seed", "accuracy", "f1_macro", "f1_weighted",
               "peak_memory_mb", "train_seconds", "trainable_params", "total_params", "config_hash")  # fmt: skip
"""The runs table's columns; `flag` is the run's health flag (collapsed, diverged, untrained: studio/health.py)."""


def write_report(registry: Registry, out: str | Path, grid: Grid | None = None,
                 run_ids: list[str] | None = None, images: bool = True) -> dict[str, Path]:  # fmt: skip
    """Write report.html, report.md, runs.csv and (with `images`) figures/NN-title.png into `out`; return the
    paths, the PNGs as "png:<figure title>". When no PNG exporter works here the report says why instead."""
    from studio import study_plots

    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    if grid is not None:
        runs = grid_runs(grid, registry)
        title, summary = f"Study: {grid.name}", grid.description
        rows = aggregate(grid, registry)
        flags = {run_id: flag for r in rows for run_id, flag in r["flags"].items()}
        runs = [dataclasses.replace(r, flag=flags.get(r.id, r.flag)) for r in runs]  # flagged after the fact too
        figures = study_plots.study_figures(list(grid.axes), rows, runs, registry)
    else:
        runs = [registry.get(i) for i in run_ids or []]
        title, summary, rows = "Runs", f"{len(runs)} runs", []
        figures = _runs_figures(registry, runs)
    axes = list(grid.axes) if grid else []
    metric = study_plots.headline_metric(registry, [r.id for r in runs])
    if metric != "accuracy":
        summary += (" Multi-label runs are scored by macro F1 (their accuracy column is the exact-match share: the "
                    "texts whose whole label set is right).")  # fmt: skip
    paths = {"csv": out / "runs.csv", "md": out / "report.md", "html": out / "report.html"}
    _write_csv(paths["csv"], runs)
    pngs, png_error = _write_pngs(figures, out / "figures") if images else ({}, None)
    agg_header, agg_rows = aggregate_table(rows, axes)
    run_rows = [[_fmt(getattr(r, c)) for c in RUN_COLUMNS] for r in runs]
    stamp = time.strftime("%Y-%m-%d %H:%M")
    timing = _timing(runs) + (f" {png_error}" if png_error else "")
    md = [f"# {title}", "", summary, "", f"Generated {stamp} from {registry.runs_dir}.", "", timing, ""]
    for key, png in pngs.items():
        name = study_plots.title(key, metric)
        md += [f"### {name}", "", f"![{name}](figures/{png.name})", ""]
    health = _health_line(rows)
    if agg_rows:
        md += ["## Aggregated over seeds", "", *([health, ""] if health else []), *_md_table(agg_header, agg_rows), ""]
    md += ["## Runs", "", *_md_table(list(RUN_COLUMNS), run_rows), ""]
    paths["md"].write_text("\n".join(md), encoding="utf-8")
    body = [f"<h1>{html.escape(title)}</h1><p>{html.escape(summary)}</p><p><small>Generated {stamp}</small></p>",
            f"<p>{html.escape(timing)}</p>"]  # fmt: skip
    for i, (key, fig) in enumerate(figures.items()):
        body.append(f"<h2>{html.escape(study_plots.title(key, metric))}</h2>")
        body.append(fig.to_html(full_html=False, include_plotlyjs=i == 0))  # plotly.js once: opens offline
    if agg_rows:
        body += ["<h2>Aggregated over seeds</h2>", f"<p>{html.escape(health)}</p>" if health else "",
                 _html_table(agg_header, agg_rows)]  # fmt: skip
    body += ["<h2>Runs</h2>", _html_table(list(RUN_COLUMNS), run_rows)]
    paths["html"].write_text(_PAGE.format(title=html.escape(title), body="\n".join(body)), encoding="utf-8")
    paths.update({f"png:{key}": path for key, path in pngs.items()})
    return paths


MAX_RUN_FIGURES = 8
"""A runs report draws each run's own figures for at most this many runs (the tables list them all)."""


def _runs_figures(registry: Registry, runs: list[RunRecord]) -> dict[str, Any]:
    from studio import study_plots

    figures: dict[str, Any] = {}
    finished = [r for r in runs if (registry.run_dir(r.id) / "metrics.jsonl").is_file()]
    if len(finished) > 1:
        metric = study_plots.headline_metric(registry, [r.id for r in finished])
        figures["curves"] = study_plots.curves(registry, {r.id: r.id for r in finished}, metric)
    completed = [r for r in runs if r.status == "completed"]
    figures["pareto_memory"] = study_plots.runs_pareto(completed, registry=registry)
    figures["pareto_time"] = study_plots.runs_pareto(completed, "train_seconds", registry)
    for r in finished[:MAX_RUN_FIGURES]:
        figures.update({f"{r.id}: {name}": fig for name, fig in study_plots.run_figures(registry, r.id).items()})
    return figures


def _write_pngs(figures: dict[str, Any], folder: Path) -> tuple[dict[str, Path], str | None]:
    """Each figure as a PNG (plotly's kaleido renders them in a headless Chromium), or no PNGs and the
    reason when that cannot run here (no kaleido, no browser): the HTML and Markdown are written anyway."""
    import plotly.io as pio

    folder.mkdir(parents=True, exist_ok=True)
    paths = {key: folder / f"{i + 1:02d}-{_slug(key)}.png" for i, key in enumerate(figures)}
    try:
        pio.write_images(list(figures.values()), [str(p) for p in paths.values()], width=1100, scale=1)
    except Exception as e:  # noqa: BLE001 - kaleido raises several kinds (missing package, browser, timeout)
        reason = (str(e).strip().splitlines() or [""])[0][:200]
        return {}, f"No PNGs: the image export failed ({type(e).__name__}: {reason}); pip install kaleido, and Chrome."
    return paths, None


def _slug(name: str) -> str:
    return "-".join("".join(c if c.isalnum() else " " for c in name.lower()).split())[:60]


def _timing(runs: list[RunRecord]) -> str:
    """Training time in all and per run, and how many runs shared the device at once (their times include
    the sharing)."""
    done = [r for r in runs if r.train_seconds is not None]
    if not done:
        return "No run has finished training yet."
    total = sum(r.train_seconds for r in done)
    text = f"{len(done)} runs trained for {total / 60:,.1f} min in all ({total / len(done):,.0f} s a run on average)"
    spans = sorted((r.created, r.finished) for r in runs if r.finished)
    most = max((sum(1 for a, b in spans if a <= start < b) for start, _ in spans), default=1)
    if most > 1:
        text += f"; up to {most} runs trained at the same time, sharing the device, so a run's time includes that"
    return text + "."


def _health_line(rows: list[dict]) -> str:
    """What the means leave out: the runs flagged as not learning (studio/health.py), by flag."""
    flags = [flag for r in rows for flag in r["flags"].values()]
    if not flags:
        return ""
    counts = ", ".join(f"{flags.count(f)} {f}" for f in dict.fromkeys(flags))
    return (f"{len(flags)} run(s) did not learn ({counts}: they predict one class, their loss diverged, or they "
            "score at chance) and are left out of the means; n counts the runs averaged, and the cell says how many "
            "were left out.")  # fmt: skip


def aggregate_table(rows: list[dict], axes: list[str]) -> tuple[list[str], list[list[str]]]:
    labels = [a for a in axes if a != "seed"]
    header = [*labels, "n", *(m for m in METRICS)]
    table = []
    for r in rows:
        n = f"{r['n']} ({r['note']})" if r.get("note") else str(r["n"])
        cells = [str(r.get(a, "")) for a in labels] + [n]
        for m in METRICS:
            mean, std = r.get(f"{m}_mean"), r.get(f"{m}_std")
            cells.append("" if mean is None else f"{_fmt(mean)} ± {_fmt(std)}" if r["n"] > 1 else _fmt(mean))
        table.append(cells)
    return header, table


def _write_csv(path: Path, runs: list[RunRecord]) -> None:
    with open(path, "w", newline="", encoding="utf-8") as f:
        w = csv.writer(f)
        w.writerow(RUN_COLUMNS)
        w.writerows([[getattr(r, c) for c in RUN_COLUMNS] for r in runs])


def _fmt(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, float):
        return f"{value:.4f}" if abs(value) < 10 else f"{value:,.0f}"
    return str(value)


def _md_table(header: list[str], rows: list[list[str]]) -> list[str]:
    return ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)] + ["| " + " | ".join(r) + " |" for r in rows]


def _html_table(header: list[str], rows: list[list[str]]) -> str:
    head = "".join(f"<th>{html.escape(h)}</th>" for h in header)
    body = "".join("<tr>" + "".join(f"<td>{html.escape(c)}</td>" for c in r) + "</tr>" for r in rows)
    return f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"


_PAGE = """<!doctype html>
<html><head><meta charset="utf-8"><title>{title}</title>
<style>body{{font-family:system-ui,sans-serif;max-width:1200px;margin:2rem auto;padding:0 1rem;color:#222}}
table{{border-collapse:collapse;font-size:0.85rem;margin:1rem 0}}td,th{{border:1px solid #ddd;padding:4px 8px;
text-align:right}}th{{background:#f4f4f8}}</style></head>
<body>
{body}
</body></html>
"""
