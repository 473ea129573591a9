"""The Gradio UI: builds components and calls the engine; no training logic here.

For now one page lists the runs and shows how to train from the CLI; the full studio (data, model &
method, training, runs and playground tabs) is issue 4.
"""

from __future__ import annotations

from pathlib import Path

from studio.registry import Registry

COLUMNS = ["run", "status", "model", "method", "dataset", "accuracy", "f1_macro", "peak MB", "train s"]


def runs_table(runs_dir: str | Path) -> list[list]:
    """One row per run, newest first (what the Runs table shows)."""
    rows = []
    for r in Registry(runs_dir).list():
        rows.append([r.id, r.status, r.model, r.method, r.dataset,
                     None if r.accuracy is None else round(r.accuracy, 4),
                     None if r.f1_macro is None else round(r.f1_macro, 4),
                     None if r.peak_memory_mb is None else round(r.peak_memory_mb),
                     None if r.train_seconds is None else round(r.train_seconds, 1)])  # fmt: skip
    return rows


def build_app(runs_dir: str | Path):
    import gradio as gr

    with gr.Blocks(title="Fine-Tune Studio") as app:
        gr.Markdown(
            "# Fine-Tune Studio\nFine-tune text classifiers with full fine-tuning, LoRA, QLoRA or IA3.\n\n"
            "Train the embedded default (MiniLM-L6 on the shipped IMDb sample, ~4 min on a laptop CPU):\n"
            "```\npython -m studio train quick_demo\n```\n"
            'Then predict: `python -m studio predict RUN_ID "what a wonderful film"`.'
        )
        table = gr.Dataframe(headers=COLUMNS, value=lambda: runs_table(runs_dir), label="Runs", interactive=False)
        gr.Button("Refresh").click(lambda: runs_table(runs_dir), outputs=table)
    return app
