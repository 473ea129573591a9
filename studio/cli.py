"""Command line: the same engine calls as the UI.

    python -m studio train presets/quick_demo.yaml [--set train.epochs=1 ...]
    python -m studio validate presets/*.yaml [--no-data]
    python -m studio inspect quick_demo [--no-tokens] [--json]
    python -m studio runs | show RUN_ID | predict RUN_ID "a text" | predict RUN_ID --file reviews.csv
    python -m studio presets
    python -m studio label-issues PRESET_OR_RUN [--mode crossfit|embeddings] [--k 5] [--apply drop|relabel]
    python -m studio lr-find quick_demo [--steps 100] [--methods full,lora] [--plot curve.html]
    python -m studio export RUN_ID [--out DIR] | merge RUN_ID | push RUN_ID OWNER/NAME [--merged] [--public]
        (each checked in a fresh process before it is finished; --no-check skips it)
    python -m studio export RUN_ID --onnx [--int8]
    python -m studio explain RUN_ID "a text" [--label L] [--html why.html]
    python -m studio serve RUN_ID [--onnx [--int8]] [--host 127.0.0.1] [--port 8000] [--batching queue|lock]

Bad input exits with status 2 and one line `error: <field or file>: <what to do>`; a run that fails while
training exits with 1.
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import json
import os
import signal
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from studio.config import RunConfig
from studio.errors import StudioError
from studio.presets import PRESETS_DIR, resolve

EXIT_FAILED, EXIT_BAD_INPUT = 1, 2


def default_runs_dir() -> Path:
    return Path(os.environ.get("STUDIO_RUNS_DIR", "runs"))


def load_config(preset: str, overrides: list[str] | None) -> RunConfig:
    config = RunConfig.from_yaml(resolve(preset))
    return config.with_overrides(overrides) if overrides else config


# ---- commands ------------------------------------------------------------------------------------------
def cmd_train(args: argparse.Namespace) -> int:
    from studio.distributed import world
    from studio.registry import Registry
    from studio.training import Run

    config = load_config(args.preset, args.set)
    if args.name:
        config = config.with_overrides([f"name={args.name}"])
    registry = Registry(args.runs_dir)
    if args.run_id and world().writes:  # a bad or taken id is refused now, not after loading the model
        registry.check_id(args.run_id)
    if args.gpus > 1 and not world().distributed:
        return _launch_processes(args, config, registry)
    _quiet_libraries()
    run = Run(config, registry, run_id=args.run_id)
    if run.world.writes:
        where = f" on {run.world.size} processes" if run.world.distributed else ""
        print(f"training {config.model.name} ({config.method.name}) on {config.data.source}{where}", flush=True)
    return _train(run, registry, args.quiet)


def _launch_processes(args: argparse.Namespace, config: RunConfig, registry: Any) -> int:
    """`train --gpus N`: the same command in N processes under torchrun (DDP), one per GPU (`launch.ChildRun`:
    its own session, so that Ctrl-C here becomes a clean stop of every rank instead of torchrun killing them
    mid-step)."""
    from studio.data import prepare
    from studio.distributed import require_gpus
    from studio.launch import ChildRun

    require_gpus(args.gpus, "train --gpus")
    prepare(config.data, config.seed)  # bad data is refused here, once, before N processes start
    train_args = [args.preset, *(a for value in args.set or [] for a in ("--set", value))]
    train_args += (["--name", args.name] if args.name else []) + (["--quiet"] if args.quiet else [])
    child = ChildRun(config, registry, processes=args.gpus, train_args=train_args, run_id=args.run_id,
                     console=True, data_checked=True).start()  # fmt: skip
    assert child.launch is not None
    print(f"launching {args.gpus} processes: torchrun -m studio {' '.join(child.launch.studio_args())}", flush=True)

    def stop(*_: Any) -> None:
        message = child.request_stop()  # before the run exists: the processes end, nothing to keep
        if message:
            print(message, flush=True)

    with _stop_signals(stop):
        while child.is_alive():  # waiting in short steps: Ctrl-C's handler runs between them
            child.wait(0.5)
    result = child.wait()
    if child.exit_code is None:  # stopped before the processes started
        return EXIT_FAILED if result is None or result.status == "failed" else 0
    return _exit_status(child.exit_code)


@contextlib.contextmanager
def _stop_signals(handler: Any) -> Iterator[None]:
    """Ctrl-C (SIGINT) and SIGTERM (`kill`, `timeout`, a job scheduler) both call `handler`: a clean stop that
    keeps what trained. Without it SIGTERM ended the studio at once and left its child runs (their own process
    groups) training as orphans."""
    previous = {sig: signal.signal(sig, handler) for sig in (signal.SIGINT, signal.SIGTERM)}
    try:
        yield
    finally:
        for sig, old in previous.items():
            signal.signal(sig, old)


def _interrupt(*_: Any) -> None:
    raise KeyboardInterrupt


def _exit_status(code: int) -> int:
    return code if code in (0, EXIT_FAILED, EXIT_BAD_INPUT) else EXIT_FAILED


def cmd_stop(args: argparse.Namespace) -> int:
    from studio.registry import Registry
    from studio.training import request_stop

    print(request_stop(Registry(args.runs_dir), args.run_id))
    return 0


def cmd_resume(args: argparse.Namespace) -> int:
    from studio.registry import Registry
    from studio.training import Run

    registry = Registry(args.runs_dir)
    _quiet_libraries()
    run = Run.resuming(registry, args.run_id)
    assert run.resume is not None
    print(f"resuming {args.run_id} from {run.resume[1].name}", flush=True)
    return _train(run, registry, args.quiet)


def _train(run: Any, registry: Any, quiet: bool) -> int:
    """Train `run` here, printing its events (rank 0 of a multi-GPU run; the others print only errors); the
    exit status."""
    from studio.console import RunPrinter
    from studio.recipe import freeze_long_lived

    freeze_long_lived()  # a process that exists to train this run
    printer = RunPrinter.for_stdout(quiet)
    with _stop_signals(lambda *_: run.stop()):  # Ctrl-C, SIGTERM: stop cleanly, keep what trained
        run.start()
        while run.is_alive() or not run.events.empty():
            event = _next_event(run)
            if event is not None and run.world.writes:
                printer.event(event)
    printer.close()
    result = run.wait()
    assert result is not None
    if not run.world.writes:
        return EXIT_FAILED if result.status == "failed" else 0
    if result.run_id is None:  # bad input found before training: nothing was written
        if result.status == "failed":
            print(f"error: {result.message}", file=sys.stderr)
            return EXIT_BAD_INPUT
        print(result.message)
        return 0
    if result.status == "failed":
        print(f"error: run {result.run_id} failed: {result.message}", file=sys.stderr)
        return EXIT_FAILED
    _print_summary(result.run_id, result.status, result.summary, registry)
    return 0


def _next_event(run: Any) -> Any:
    import queue

    try:
        return run.events.get(timeout=0.2)
    except queue.Empty:
        return None


def _print_summary(run_id: str, status: str, summary: Any, registry: Any) -> None:
    test, eff, nan = summary.test, summary.efficiency, float("nan")
    print(f"run {run_id} {status}")
    if summary.health is not None and summary.health.flag:
        from studio.health import to_event

        print(f"  warning: {to_event(summary.health).line}")
    if test.multi_label:
        x = test.extra
        print(f"  test macro-F1 {test.f1_macro:.4f}  micro-F1 {x.get('f1_micro', nan):.4f}  exact match "
              f"{test.accuracy:.4f}  Hamming {x.get('hamming_loss', nan):.4f}  ROC-AUC "
              f"{x.get('roc_auc_macro', nan):.4f}  (n={test.n}, thresholds tuned per label)")  # fmt: skip
    else:
        print(
            f"  test accuracy {test.accuracy:.4f}  f1_weighted {test.f1_weighted:.4f}  "
            f"f1_macro {test.f1_macro:.4f}  (n={test.n})"
        )
    print(
        f"  trained {eff.steps} steps in {eff.train_seconds:.1f} s ({eff.total_seconds:.1f} s in all), "
        f"{eff.trainable_params:,} of {eff.total_params:,} parameters trainable, "
        f"peak memory {eff.peak_memory_mb:.0f} MB ({eff.peak_memory_kind})"
    )
    print(f"  saved in {registry.run_dir(run_id)}")


def cmd_validate(args: argparse.Namespace) -> int:
    """Each preset's config, and (unless --no-data) its data prepared as a run would: every preset is checked, each
    failure one `error: PRESET: ...` line; exit status 2 when any failed."""
    failed = 0
    for preset in args.presets:
        try:
            config = load_config(preset, args.set)
            data = _check_data(config, args.no_data, args.hub)
        except StudioError as e:
            print(f"error: {preset}: {e}", file=sys.stderr, flush=True)
            failed += 1
            continue
        print(f"ok  {preset}: {config.name} ({config.model.name}, {config.method.name}, {config.data.source})")
        print(f"    {data}", flush=True)
    return EXIT_BAD_INPUT if failed else 0


def _check_data(config: RunConfig, skip: bool, hub: bool) -> str:
    """One line on the preset's data, prepared as a run prepares it (columns found, labels read, splits made);
    a bad source raises its DataError. A Hub dataset is loaded only with `hub` (it needs the network)."""
    from studio.dataview import is_hub_source

    if skip:
        return "data not checked (--no-data)"
    if is_hub_source(config.data) and not hub:
        return f"data not checked: {config.data.source} is a Hub dataset (needs the network; --hub loads it)"
    import datasets

    from studio.data import SPLITS, prepare

    datasets.disable_progress_bars()
    prepared = prepare(config.data, config.seed)
    rows = prepared.report["rows"]
    task = "multi-label" if prepared.multi_label else "single-label"
    return (f"data: {sum(rows.values()):,} rows ({' / '.join(f'{rows[s]:,} {s}' for s in SPLITS)}), "
            f"{len(prepared.label_names)} labels ({task}); text column '{prepared.report['text_column']}', label "
            f"column '{prepared.report['label_column']}'")  # fmt: skip


def cmd_inspect(args: argparse.Namespace) -> int:
    """What the Data tab's Inspect shows, from the same `dataview.overview`: the data as a run would prepare it."""
    import datasets

    from studio.dataview import overview

    config = load_config(args.preset, args.set)
    if args.no_tokens:
        datasets.disable_progress_bars()
    else:
        _quiet_libraries()  # the tokenizer loads
    o = overview(config, tokens=not args.no_tokens)
    if args.json:
        print(json.dumps(_overview_dict(o, config), indent=1, default=_plain_value))
        return 0
    sections = [_data_section(o, config), _labels_section(o), _lengths_section(o, config, args.no_tokens)]
    warnings = list(o.notes)
    from studio.losses import imbalance_note

    advice = None if o.multi_label else imbalance_note(o.label_counts.get("train") or {}, config.train)
    if advice and advice not in warnings:
        warnings.append(advice)
    _show(sections, [f"warning: {w}" for w in warnings])
    return 0


OVERVIEW_SHOWN = {"columns", "text_column", "label_column", "preview", "rows", "label_names", "label_counts",
                  "lengths", "notes", "task", "labels_per_row", "made_single", "origins", "duplicates",
                  "leaked"}  # fmt: skip
"""The `DataOverview` fields `inspect` lays out itself; any other field is listed as it is (`_data_section`)."""


@dataclasses.dataclass
class Section:
    """A titled block of `inspect`'s output: a table with a header, or name/value rows (`header` empty)."""

    title: str
    rows: list[list[str]]
    header: list[str] = dataclasses.field(default_factory=list)


def _overview_dict(o: Any, config: RunConfig) -> dict[str, Any]:
    """`inspect --json`: the overview's fields (the preview table left out), the source, and the length statistics."""
    from studio.data import length_stats

    fields = {f.name: getattr(o, f.name) for f in dataclasses.fields(o) if f.name != "preview"}
    stats = length_stats(o.lengths, config.data.max_length) if o.lengths else None
    if stats:
        stats["min"] = min(o.lengths)
    return {"source": config.data.source, "max_length": config.data.max_length,
            **json.loads(json.dumps(fields, default=_plain_value)), "length_stats": stats}  # fmt: skip


def _plain_value(value: Any) -> Any:
    """JSON for what `json` cannot write: dataclasses as dicts, numpy numbers as numbers, anything else as text."""
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return dataclasses.asdict(value)
    if hasattr(value, "item"):
        return value.item()
    return str(value)


def _data_section(o: Any, config: RunConfig) -> Section:
    from studio.data import SPLITS
    from studio.datasource import describe_source
    from studio.losses import imbalance_ratio

    per_split = " / ".join(f"{o.rows.get(s, 0):,} {s}" for s in SPLITS)
    rows = [["source", describe_source(config.data)],
            ["columns", f"text '{o.text_column}', label '{o.label_column}' (the source has: {', '.join(o.columns)})"],
            ["task", "multi-label (any number of labels per text)" if o.multi_label else "single-label"],
            ["rows", f"{sum(o.rows.values()):,}: {per_split}"]]  # fmt: skip
    counts = o.label_counts.get("train") or {}
    ratio = f"; {imbalance_ratio(counts):.1f}:1 largest to smallest in train" if len(counts) > 1 else ""
    rows.append(["labels", f"{len(o.label_names)}{ratio}"])
    if o.labels_per_row:
        rows.append(["labels per text", " / ".join(f"{v:.2f} {s}" for s, v in o.labels_per_row.items())])
    if o.made_single:
        rows.append(["made single-label", f"{o.made_single:,} rows carried several labels (see the warnings)"])
    rows += _where_section_rows(o)
    for f in dataclasses.fields(o):  # fields added to the overview since: shown as they are
        value = getattr(o, f.name)
        if f.name not in OVERVIEW_SHOWN and value not in (None, "", [], {}, 0):
            rows.append([f.name.replace("_", " "), _text(value)])
    return Section("data", rows)


def _where_section_rows(o: Any) -> list[list[str]]:
    """Where each split came from, and its repeated and leaked texts (counted only where there are some)."""
    rows = [[f"{split} from", origin] for split, origin in o.origins.items()]
    repeated = {k: v for k, v in o.duplicates.items() if v}
    leaked = {k: v for k, v in o.leaked.items() if v}
    if o.origins:
        rows.append(["repeated texts", _text(repeated) if repeated else "none"])
        rows.append(["also in train", _text(leaked) if leaked else "none (no validation/test text is in train)"])
    return rows


def _text(value: Any) -> str:
    """A value of any type on one line: a mapping as 'key value, ...', a list joined, a number with separators."""
    if isinstance(value, dict):
        return ", ".join(f"{k} {_text(v)}" for k, v in value.items())
    if isinstance(value, (list, tuple, set)):
        return ", ".join(_text(v) for v in value)
    if isinstance(value, int) and not isinstance(value, bool):
        return f"{value:,}"
    if isinstance(value, float):
        return f"{value:,.4g}"
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return _text(dataclasses.asdict(value))
    return str(value)


def _labels_section(o: Any) -> Section:
    splits = [s for s in ("train", "validation", "test") if s in o.label_counts]
    rows = [[name, *(f"{o.label_counts[s].get(name, 0):,}" for s in splits)] for name in o.label_names]
    what = "rows carrying each label" if o.multi_label else "rows per split"
    return Section(f"labels ({what})", rows, ["label", *splits])


def _lengths_section(o: Any, config: RunConfig, skipped: bool) -> Section:
    from studio.data import length_stats

    limit = config.data.max_length
    if skipped:
        return Section("token lengths", [["not counted", "--no-tokens"]])
    if not o.lengths:
        return Section("token lengths", [["unavailable", "the tokenizer did not load (see the warnings)"]])
    stats = length_stats(o.lengths, limit)
    spread = f"min {min(o.lengths):,}, median {stats['p50']:,.0f}, p95 {stats['p95']:,.0f}, max {stats['max']:,}"
    cut = f"{stats['truncated_share']:.1%} of texts are cut at data.max_length"
    return Section(f"token lengths ({len(o.lengths):,} train texts, {config.model.name}'s tokenizer)",
                   [["tokens", spread], [f"over {limit:,}", cut]])  # fmt: skip


def _show(sections: list[Section], lines: list[str]) -> None:
    """The sections as tables (rich when installed, else aligned plain text), then the lines (warnings)."""
    try:
        from rich.console import Console
    except ImportError:
        for section in sections:
            print(f"{section.title}")
            table = ([section.header] if section.header else []) + section.rows
            widths = [max(len(r[i]) for r in table) for i in range(len(table[0]))] if table else []
            for r in table:
                cells = [c.ljust(w) if i == 0 or not section.header else c.rjust(w)
                         for i, (c, w) in enumerate(zip(r, widths, strict=True))]  # fmt: skip
                print("  " + "  ".join(cells).rstrip())
        for line in lines:
            print(line)
        return
    console = Console(highlight=False)
    if not console.is_terminal:  # a pipe or a file: no wrapping at 80 columns
        console = Console(highlight=False, width=200)
    for section in sections:
        console.print(section.title, style="bold", markup=False, soft_wrap=True)
        console.print(_rich_table(section))
        if not section.header:  # a table with a header ends with a blank line of its own
            console.print()
    for line in lines:
        console.print(line, style="yellow", markup=False, soft_wrap=True)


def _rich_table(section: Section) -> Any:
    from rich import box
    from rich.table import Table
    from rich.text import Text

    if section.header:
        table = Table(box=box.SIMPLE_HEAD)
        for i, name in enumerate(section.header):
            table.add_column(name, justify="right" if i else "left")
    else:
        table = Table.grid(padding=(0, 2), pad_edge=True)
        table.add_column(style="dim")
        table.add_column()
    for row in section.rows:
        table.add_row(*(Text(cell) for cell in row))
    return table


def cmd_estimate(args: argparse.Namespace) -> int:
    from studio.memory import format_estimate
    from studio.memory_advice import format_suggestions, suggestions
    from studio.probe import CPU_RUN_GROWTH, probe
    from studio.speed_plan import planned_estimate

    e, speed = planned_estimate(load_config(args.preset, args.set), args.labels)
    config = speed.config  # what would train: the estimate, the advice and the probe are about it
    print(format_estimate(e))
    print("\n".join([speed.note] + [f"  {c.text()}" for c in speed.choices]))
    advice = format_suggestions(suggestions(config, num_labels=args.labels))
    if advice:
        print(advice)
    if args.probe:
        _quiet_libraries()
        r = probe(config, num_labels=args.labels)
        largest = f"; largest batch from the measurement ~{r.largest_batch:,}" if r.largest_batch else ""
        print(f"Probe: {r.steps} real steps with full-length batches: measured peak {r.measured_mb:,.0f} MB "
              f"({r.measured_kind}) vs estimate {r.estimate.total_mb:,.0f} MB ({r.error_pct:+.1f}%){largest}; "
              f"{r.seconds:.0f} s")  # fmt: skip
        if r.measured_kind == "process_rss":
            print(f"  on a CPU {CPU_RUN_GROWTH}")
    return 0


def cmd_lr_find(args: argparse.Namespace) -> int:
    from studio.lr_find import lr_find
    from studio.methods import METHODS

    config = load_config(args.preset, args.set)
    methods = [m.strip() for m in args.methods.split(",") if m.strip()] if args.methods else [config.method.name]
    unknown = [m for m in methods if m not in METHODS]
    if unknown:
        raise StudioError(f"--methods: unknown method {', '.join(unknown)}; choose from {', '.join(METHODS)}")
    _quiet_libraries()
    results = []
    for method in methods:
        one = config if method == config.method.name else config.with_overrides([f"method.name={method}"])
        print(f"lr-find: {one.model.name} ({method}) on {one.data.source}, {args.steps} steps", flush=True)
        result = lr_find(one, steps=args.steps, start=args.start, end=args.end,
                         cache_dir=Path(args.runs_dir) / ".cache")  # fmt: skip
        results.append(result)
        for note in result.notes:
            print(f"  {note}")
        print(result.table())
        print(f"suggested train.learning_rate: {result.suggested:.2g} ({result.rule_text})")
        if result.steepest:
            print(f"  steepest descent at {result.steepest:.2g}: the top of the usable range; whole runs there can "
                  "collapse")  # fmt: skip
        for caveat in result.caveats:
            print(f"  note: {caveat}")
        print(f"cost: {result.cost()}", flush=True)
        suffix = method if len(methods) > 1 else ""
        if args.plot:
            print(f"plot: {_write_plot(result, _suffixed(Path(args.plot), suffix))}")
        if args.json:
            path = _suffixed(Path(args.json), suffix)
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(json.dumps({"command": _command(args), **result.to_dict()}, indent=1), encoding="utf-8")
            print(f"json: {path}")
    if len(results) > 1:
        print("\nsuggested train.learning_rate per method:")
        for r in results:
            print(f"  {r.method:6} {r.suggested:.2g}  ({r.rule}; {r.seconds:.0f} s)")
    return 0


def _suffixed(path: Path, suffix: str) -> Path:
    """curve.png -> curve-lora.png: one file per method when several are tested."""
    return path.with_name(f"{path.stem}-{suffix}{path.suffix}") if suffix else path


def _command(args: argparse.Namespace) -> str:
    import shlex

    return shlex.join(["python", "-m", "studio", *args.argv])


def _write_plot(result: Any, path: Path) -> Path:
    """The curve as HTML (plotly.js inside: opens offline) or PNG (kaleido and a Chrome/Chromium)."""
    if path.suffix.lower() not in (".html", ".png"):
        raise StudioError(f"--plot: write a .html or a .png file, not {path.name}")
    path.parent.mkdir(parents=True, exist_ok=True)
    fig = result.figure()
    if path.suffix.lower() == ".html":
        fig.write_html(path, include_plotlyjs=True)
        return path
    try:
        fig.write_image(path, width=900, height=420)
    except Exception as e:  # noqa: BLE001 - kaleido raises several kinds (missing package, browser, timeout)
        reason = (str(e).strip().splitlines() or [""])[0][:200]
        raise StudioError(f"--plot: the PNG export failed ({type(e).__name__}: {reason}); write a .html file "
                          "instead, or pip install kaleido and a Chrome/Chromium") from None  # fmt: skip
    return path


def cmd_sweep(args: argparse.Namespace) -> int:
    from studio.registry import Registry
    from studio.sweep import Sweep

    grid = _grid(args)
    if args.dry_run:
        _print_plan(grid)
        return 0
    _quiet_libraries()
    registry = Registry(args.runs_dir)
    slots, ray, connected = _sweep_placement(args)

    def show(kind: str, data: dict) -> None:
        if kind == "skipped":
            print(f"skip  {data['point']}: completed before as {data['run_id']}")
        elif kind == "start":
            print(f"run {data['index'] + 1}/{data['total']}: {data['point']}", flush=True)
        elif kind == "end":
            many = slots or ray
            print(f"  {data['status']}: {data['message']}" + (f"  [{data['point']}]" if many else ""), flush=True)
        elif kind == "retried":
            print(f"  {data['point']}: {data['how']}", flush=True)
        elif kind == "cluster":
            nodes = f"{data['nodes']} node" + ("s" if data["nodes"] != 1 else "")
            print(f"Ray cluster at {data['address']}: {nodes}, {data['slots']} runs at a time; every "
                  f"node must see the runs folder at {data['runs_dir']}", flush=True)  # fmt: skip

    sweep = Sweep(grid, registry, on_event=show, slots=slots, ray=ray)
    try:
        with _stop_signals(_interrupt):
            state = sweep.start().wait()
    except KeyboardInterrupt:  # Ctrl-C or SIGTERM: the runs training stop cleanly (none is left an orphan)
        sweep.stop()
        state = sweep.wait()
    finally:
        if connected:
            import ray as ray_api

            ray_api.shutdown()
    print(f"{grid.name}: {state.done} run, {state.skipped} skipped (done before), {state.failed} failed "
          f"of {state.total}")  # fmt: skip
    return EXIT_FAILED if state.failed else 0


def _print_plan(grid: Any) -> None:
    """`sweep --dry-run`: the grid's runs and each one's memory estimate."""
    from studio.speed_plan import planned_estimate

    points = grid.points()
    print(f"{grid.name}: {len(points)} runs")
    for p in points:
        balance = p.config.data.balance
        try:
            e, _ = planned_estimate(p.config, balance.num_labels if balance else 2)
            memory = f"{e.total_mb / 1024:6.2f} GB {'fits' if e.fits else 'does NOT fit'}"
        except StudioError as err:
            memory = f"no estimate: {err}"
        print(f"  {p.index + 1:>3}. {p.key}  [{memory}]")


def _sweep_placement(args: argparse.Namespace) -> tuple[Any, Any, bool]:
    """(the local slots, or the Ray placement, of `sweep`'s runs; whether Ray was connected here). The cluster is
    joined now, so that a wrong address is said before anything runs."""
    from studio.sweep import device_slots

    if not args.ray:
        slots = device_slots(args.gpus, args.workers)
        if slots:
            where = ", ".join(f"GPU {g}" if g is not None else "CPU" for g in slots)
            print(f"{len(slots)} runs at a time, each in its own process: {where}", flush=True)
        return slots, None, False
    from studio.ray_sweep import RayPlacement, connect

    if args.gpus != "auto":
        raise StudioError("--gpus picks this machine's GPUs; on a Ray cluster Ray places each run on a free GPU "
                          "(give each node its GPUs with `ray start --num-gpus N`)")  # fmt: skip
    placement = RayPlacement(args.ray, args.workers, args.retries)
    return None, placement, connect(placement)


def _grid(args: argparse.Namespace) -> Any:
    """The grid named on the command line, with its --set overrides on the base (sweep and report agree)."""
    from studio.sweep import Grid

    grid = Grid.from_yaml(args.grid)
    if args.set:
        grid.base = grid.base.with_overrides(args.set)
    return grid


def cmd_report(args: argparse.Namespace) -> int:
    from studio.registry import Registry
    from studio.report import write_report

    registry = Registry(args.runs_dir)
    if args.runs:
        paths = write_report(registry, args.out, run_ids=args.runs)
    else:
        if not args.grid:
            raise StudioError("name a grid (e.g. imdb_peft_ablation) or pass --runs RUN_ID ...")
        paths = write_report(registry, args.out, grid=_grid(args))
    for kind, path in paths.items():
        print(f"{kind}: {path}")
    return 0


def cmd_runs(args: argparse.Namespace) -> int:
    from studio.registry import Registry

    records = Registry(args.runs_dir).list(status=args.status)
    if args.json:
        print(json.dumps([r.__dict__ for r in records], indent=2))
        return 0
    if not records:
        print(f"no runs in {Path(args.runs_dir).resolve()}")
        return 0
    print(f"{'run id':42} {'status':11} {'model':16} {'method':24} {'accuracy':>8} {'f1_macro':>8}  flag")
    for r in records:
        acc = f"{r.accuracy:.4f}" if r.accuracy is not None else "-"
        f1 = f"{r.f1_macro:.4f}" if r.f1_macro is not None else "-"
        line = f"{r.id:42} {r.status:11} {r.model[-16:]:16} {r.method[:24]:24} {acc:>8} {f1:>8}  {r.flag or ''}"
        print(line.rstrip())
    return 0


def cmd_show(args: argparse.Namespace) -> int:
    """A run's record as aligned text (metrics, efficiency, reproducibility); `--json` the raw record."""
    from studio.file_eval import evaluations
    from studio.registry import Registry

    registry = Registry(args.runs_dir)
    record = registry.get(args.run_id)
    summary = registry.summary(args.run_id)
    files = evaluations(registry.run_dir(args.run_id))
    if args.json:
        named = [{"name": e.name, "file": e.file, "rows": e.rows, **e.metrics.scalars()} for e in files]
        shown = {"run": record.__dict__, **(summary.to_dict() if summary else {})}
        print(json.dumps({**shown, **({"evaluations": named} if named else {})}, indent=2, default=str))
        return 0
    sections = [_run_section(record, registry.run_dir(args.run_id))]
    if summary is not None:
        sections += [_metrics_section(summary), _efficiency_section(summary), _reproducibility_section(summary)]
    if files:
        rows = [[e.name, f"{e.rows:,}", f"{e.metrics.accuracy:.4f}", f"{e.metrics.f1_macro:.4f}"] for e in files]
        sections.append(Section("evaluations on files", rows, ["name", "rows", "accuracy", "f1_macro"]))
    lines = []
    if summary is None:
        lines = ["no results yet: eval.json is written when the run ends" if record.status == "running"
                 else f"no results: this {record.status} run has no readable eval.json"]  # fmt: skip
    _show(sections, lines + [f"the full record: python -m studio show {record.id} --json"])
    return 0


def _when(timestamp: float | None) -> str:
    import time

    return time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(timestamp)) if timestamp else "-"


def _run_section(record: Any, run_dir: Path) -> Section:
    rows = [["status", record.status + (f" ({record.flag})" if record.flag else "")],
            ["model", record.model], ["method", record.method], ["data", record.dataset],
            ["created", _when(record.created)], ["finished", _when(record.finished)],
            ["folder", str(run_dir)]]  # fmt: skip
    if record.message:
        rows.append(["message", record.message])
    return Section(f"run {record.id}", rows)


def _metrics_section(summary: Any) -> Section:
    test, nan = summary.test, float("nan")
    rows = [["test", summary.test.headline().removeprefix("test ") + f" (n={test.n:,})"],
            ["f1_macro / f1_weighted", f"{test.f1_macro:.4f} / {test.f1_weighted:.4f}"]]  # fmt: skip
    if test.multi_label:
        rows.append(["Hamming / ROC-AUC", f"{test.extra.get('hamming_loss', nan):.4f} / "
                                           f"{test.extra.get('roc_auc_macro', nan):.4f}"])  # fmt: skip
    for label, c in test.per_class.items():  # the test split's, under its headline
        rows.append([f"  {label}", f"precision {c.precision:.4f}  recall {c.recall:.4f}  f1 {c.f1:.4f}  "
                                   f"support {c.support:,}"])  # fmt: skip
    if summary.validation is not None:
        rows.append(["validation", summary.validation.headline().removeprefix("test ")])
    cal = summary.calibration
    if cal is not None and cal.ece_before is not None and cal.ece_after is not None:
        rows.append(["calibration", f"temperature {cal.temperature:.3f}: ECE {cal.ece_before:.4f} -> "
                                    f"{cal.ece_after:.4f}"])  # fmt: skip
    if summary.health is not None and summary.health.flag:
        rows.append(["health", f"{summary.health.flag}: {summary.health.reason}"])
    return Section("metrics", rows)


def _efficiency_section(summary: Any) -> Section:
    eff, layout = summary.efficiency, summary.distributed
    rate = f", {eff.train_samples_per_second:.1f} samples/s" if eff.train_samples_per_second else ""
    rows = [["trained", f"{eff.steps:,} steps, {eff.epochs:.2f} epochs in {eff.train_seconds:.1f} s{rate}"],
            ["in all", f"{eff.total_seconds:.1f} s"],
            ["parameters", f"{eff.trainable_params:,} of {eff.total_params:,} trainable "
                           f"({eff.trainable_percent:.2f}%)"]]  # fmt: skip
    peak, kind = eff.measured_peak()
    if peak is not None:
        estimate = f"; estimated {summary.memory.estimate_mb:,.0f} MB" if summary.memory.estimate_mb else ""
        rows.append(["peak memory", f"{peak:,.0f} MB ({kind}){estimate}"])
    if layout is not None:
        rows.append(["batch", f"{layout.processes} x {layout.per_device_batch} x accumulation {layout.grad_accum} "
                              f"= {layout.effective_batch}"])  # fmt: skip
    return Section("efficiency", rows)


def _reproducibility_section(summary: Any) -> Section:
    r = summary.reproducibility
    versions = ", ".join(f"{k} {v}" for k, v in r.versions.items() if v)
    device = ", ".join(f"{k} {v}" for k, v in r.device.items())
    rows = [["config hash", r.config_hash], ["seed", str(r.seed)], ["data fingerprint", r.data_fingerprint],
            ["command", r.command], ["python", r.python], ["versions", versions], ["device", device]]  # fmt: skip
    return Section("reproducibility", [row for row in rows if row[1] not in ("", "None")])


def cmd_evaluate(args: argparse.Namespace) -> int:
    from studio.file_eval import evaluate_file
    from studio.registry import Registry

    registry = Registry(args.runs_dir)
    _quiet_libraries()
    result, path = evaluate_file(registry, args.run_id, args.file, text_column=args.text_column,
                                 label_column=args.label_column, name=args.name,
                                 label_separator=args.label_separator)  # fmt: skip
    m = result.metrics
    left = f" ({result.left_out} without a text or label left out)" if result.left_out else ""
    print(f"{result.name}: {result.rows} rows of {Path(result.file).name}{left}, text '{result.text_column}', "
          f"label '{result.label_column}'")  # fmt: skip
    if m.multi_label:
        x = m.extra
        print(f"macro-F1 {m.f1_macro:.4f}  micro-F1 {x['f1_micro']:.4f}  exact match {m.accuracy:.4f}  Hamming "
              f"{x['hamming_loss']:.4f}  ROC-AUC {x['roc_auc_macro']:.4f}  AP {x['ap_macro']:.4f}")  # fmt: skip
    else:
        print(f"accuracy {m.accuracy:.4f}  macro-F1 {m.f1_macro:.4f}  weighted-F1 {m.f1_weighted:.4f}")
    width = max(len(n) for n in m.per_class)
    print(f"  {'label':{width}}  precision  recall      f1  support")
    for label, c in m.per_class.items():
        print(f"  {label:{width}}  {c.precision:9.4f}  {c.recall:6.4f}  {c.f1:6.4f}  {c.support:7d}")
    if m.confusion_matrix:
        print(f"confusion matrix (rows: true, columns: predicted): {m.confusion_matrix}")
    print(f"saved: {path}")
    return 0


def cmd_explain(args: argparse.Namespace) -> int:
    """Integrated Gradients word scores for one text (studio/explain.py): printed strongest first, --html a page."""
    from studio.explain import N_STEPS, Explainer, page, to_text
    from studio.inference import Predictor
    from studio.registry import Registry

    registry = Registry(args.runs_dir)
    registry.get(args.run_id)  # a clear error before loading any library
    html_out = _html_path(args.html) if args.html else None
    _quiet_libraries()
    explainer = Explainer(Predictor.from_run(registry, args.run_id), n_steps=args.steps or N_STEPS)
    labels = args.label or None
    explanations = explainer.explain_labels(args.text, labels)
    for e in explanations:
        print(to_text(e, args.top))
    if html_out is not None:
        html_out.write_text(page(explanations, f"Why did {args.run_id} say that?"), encoding="utf-8")
        print(f"saved: {html_out}")
    return 0


def _html_path(value: str) -> Path:
    path = Path(value).expanduser()
    if path.is_dir():
        raise StudioError(f"--html: {path} is a folder; name a file in it, e.g. --html {path / 'explain.html'}")
    if not path.parent.is_dir():
        raise StudioError(f"--html: folder {path.parent} does not exist; create it or pick another file")
    return path


def cmd_predict(args: argparse.Namespace) -> int:
    from studio.inference import Predictor
    from studio.registry import Registry

    if not args.texts and not args.file:
        raise StudioError("predict needs texts or --file FILE")
    if args.min_confidence is not None:
        from studio.calibration import check_threshold

        args.min_confidence = check_threshold(args.min_confidence)  # refused before anything loads or is written
    if args.threshold is not None:
        from studio.multilabel import check_threshold as check_label_threshold

        args.threshold = check_label_threshold(args.threshold)
    registry = Registry(args.runs_dir)
    registry.get(args.run_id)  # a clear error before loading any library
    source = out = None
    if args.file:  # where the predictions go, and the texts, checked before the model loads
        from studio.inference import output_path, read_texts

        out = output_path(args.file, args.out)
        source = read_texts(args.file, args.text_column)
    _quiet_libraries()
    predictor = Predictor.from_run(registry, args.run_id)
    if args.threshold is not None and not predictor.multi_label:
        raise StudioError("--threshold: this run is single-label (it answers with its most probable class); use "
                          "--min-confidence to abstain under a confidence")  # fmt: skip
    if source is not None and out is not None:
        return _predict_file(args, predictor, source, out, registry.run_dir(args.run_id))
    for p in predictor.predict(args.texts, raw=args.raw, min_confidence=args.min_confidence,
                               label_threshold=args.threshold):  # fmt: skip
        probs = "  ".join(f"{k} {v:.3f}" for k, v in sorted(p.probs.items(), key=lambda kv: -kv[1])[:5])
        print(f"{p.answer}\t{p.score:.3f}\t{probs}\t{p.text[:60]}")
    return 0


def _predict_file(args: argparse.Namespace, predictor: Any, source: Any, out: Path, run_dir: Path) -> int:
    """Score the file and write the table; should writing fail now (after the checks), the predictions go to a
    temporary file (or the run folder) and the exit status is 1."""
    import tempfile

    from studio.inference import save_table

    result = predictor.score_file(source, raw=args.raw, min_confidence=args.min_confidence,
                                  label_threshold=args.threshold)  # fmt: skip
    saved = save_table(result.table, out, fallbacks=(Path(tempfile.gettempdir()), run_dir))
    if result.no_text:
        rows = "1 row has" if result.no_text == 1 else f"{result.no_text:,} rows have"
        print(f"{rows} no text in column '{result.text_column}': marked, not predicted")
    if saved.failed:
        print(f"error: could not write {out} ({saved.failed}); the {result.predicted:,} predictions were saved to "
              f"{saved.path} instead", file=sys.stderr)  # fmt: skip
        return EXIT_FAILED
    print(f"{result.predicted:,} predictions written to {out}")
    return 0


def cmd_serve(args: argparse.Namespace) -> int:
    """An HTTP JSON API predicting with the run (studio/serve.py) until Ctrl-C."""
    from studio import serve
    from studio.registry import Registry

    registry = Registry(args.runs_dir)
    backend = ("onnx-int8" if args.int8 else "onnx") if args.onnx else "torch"
    info = serve.run_info(registry, args.run_id, backend)  # a clear error before loading any library
    load = serve.loader(registry, args.run_id, onnx=args.onnx, int8=args.int8)
    limits = serve.Limits(max_texts=args.max_texts, max_chars=args.max_chars, max_body_bytes=args.max_body_bytes,
                          max_batch_texts=args.max_batch_texts)  # fmt: skip
    service = serve.Service(info, load, limits, batching=args.batching)
    _quiet_libraries()
    print(f"serving run {info.run_id} ({info.model}, {info.method}, {info.task}) on http://{args.host}:{args.port}: "
          f"{serve.ROUTES}; the model loads now (GET /health says when it is ready)", flush=True)  # fmt: skip
    serve.serve(service, args.host, args.port, access_log=args.access_log)
    return 0


def cmd_label_issues(args: argparse.Namespace) -> int:
    """Rank a run's (or preset's) training rows by how likely their label is wrong; optionally correct a copy."""
    from studio import label_issues as li

    target = li.target(args.target, args.runs_dir)
    if args.threshold is not None and not args.apply:
        raise StudioError("--threshold picks the rows --apply changes; give --apply drop or --apply relabel too")
    _quiet_libraries()
    report = li.find(target, args.mode, k=args.k, encoder=args.encoder, progress=lambda m: print(m, flush=True))
    print(f"{len(report.issues)} of {len(report.ranked)} training rows flagged ({report.mode}, k={report.k}, "
          f"{report.seconds:.0f} s); report in {report.folder}")  # fmt: skip
    for issue in report.ranked[: args.show]:
        text = " ".join(issue.text.split())
        print(f"  row {issue.row:>6}  {issue.score:.3f}  {issue.given} -> {issue.suggested}  {text[:70]}")
    if args.out:
        report.frame().to_csv(args.out, index=False)
        print(f"every row, most suspicious first: {args.out}")
    if args.apply:
        copy = li.write_corrected(target, report, li.decisions_from(report, args.apply, args.threshold))
        print(f"corrected copy ({copy.dropped} dropped, {copy.relabelled} relabelled): {copy.folder}\n"
              f"train on it: python -m studio train {copy.config}")  # fmt: skip
    return 0


def cmd_presets(args: argparse.Namespace) -> int:
    for path in sorted(PRESETS_DIR.glob("*.yaml")):
        try:
            description = RunConfig.from_yaml(path).description.strip().splitlines()[0]
        except (StudioError, IndexError):
            description = ""
        print(f"{path.stem:28} {description}")
    return 0


def cmd_export(args: argparse.Namespace) -> int:
    from studio.export import export_zip
    from studio.registry import Registry

    if args.onnx or args.int8:
        return _export_onnx(args)
    _quiet_libraries()
    _say_exported(export_zip(Registry(args.runs_dir), args.run_id, Path(args.out) if args.out else None,
                             check=not args.no_check))  # fmt: skip
    return 0


def _export_onnx(args: argparse.Namespace) -> int:
    """export --onnx [--int8]: <run>/onnx/ (studio/onnx_export.py), its checks printed, then its folder."""
    from studio.onnx_export import export_onnx
    from studio.registry import Registry

    if not args.onnx:
        raise StudioError("--int8 quantizes the ONNX export: use it with --onnx (python -m studio export RUN_ID "
                          "--onnx --int8)")  # fmt: skip
    if args.out:
        raise StudioError("--out names the zip's folder; the ONNX export goes to <run folder>/onnx: leave --out out")
    _quiet_libraries()
    done = export_onnx(Registry(args.runs_dir), args.run_id, int8=args.int8)
    for check in done.checks:
        print(f"checked {check.line()}", file=sys.stderr)
    print(done.folder)
    return 0


def cmd_merge(args: argparse.Namespace) -> int:
    from studio.export import merge_adapter
    from studio.registry import Registry

    _quiet_libraries()
    _say_exported(merge_adapter(Registry(args.runs_dir), args.run_id, check=not args.no_check))
    return 0


def cmd_push(args: argparse.Namespace) -> int:
    from studio.export import push_to_hub
    from studio.registry import Registry

    _quiet_libraries()
    token = os.environ.get("HF_TOKEN")
    registry = Registry(args.runs_dir)
    _say_exported(push_to_hub(registry, args.run_id, args.repo_id, token, private=not args.public, merged=args.merged,
                              check=not args.no_check))  # fmt: skip
    return 0


def _no_check_flag(p: argparse.ArgumentParser) -> None:
    p.add_argument("--no-check", action="store_true",
                   help="skip the check (a fresh process loading the export with plain transformers must predict "
                        "what the run predicted on its test texts); the card then says it was not checked")  # fmt: skip


def _say_exported(exported: Any) -> None:
    """The export's path or URL on stdout (for scripts), how it was checked on stderr (for the person)."""
    where, said = exported.lines()
    print(where)
    print(said, file=sys.stderr)


def _quiet_libraries() -> None:
    """Library chatter (load reports, weight-loading bars, known warnings) would drown the run's own lines."""
    from studio.console import quiet_libraries

    quiet_libraries()


# ---- parser --------------------------------------------------------------------------------------------
def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="studio", description="Fine-Tune Studio: fine-tune text classifiers.")
    parser.add_argument("--runs-dir", default=default_runs_dir(), help="runs folder (env STUDIO_RUNS_DIR)")
    sub = parser.add_subparsers(dest="command", required=True)

    p = sub.add_parser("train", help="train a run from a preset")
    p.add_argument("preset", help="preset file, or a name from presets/ (e.g. quick_demo)")
    p.add_argument("--set", action="append", metavar="KEY=VALUE", help="override a field, e.g. train.epochs=1")
    p.add_argument("--name", help="run name (part of the run id)")
    p.add_argument("--quiet", action="store_true", help="no progress bar or per-evaluation lines")
    p.add_argument("--gpus", type=int, default=1, metavar="N",
                   help="train this one run data-parallel on N GPUs (torchrun DDP; the effective batch "
                        "batch_size x grad_accum is kept)")  # fmt: skip
    p.add_argument("--run-id", metavar="ID",
                   help="the run's id (its folder's name) instead of a drawn one; what a launcher passes the "
                        "process it starts, to know its run")  # fmt: skip
    p.set_defaults(func=cmd_train)

    p = sub.add_parser("stop", help="stop a run training in another process: it evaluates and saves what it trained")
    p.add_argument("run_id")
    p.set_defaults(func=cmd_stop)

    p = sub.add_parser("resume", help="continue an interrupted run from its last checkpoint (train.checkpoint_steps)")
    p.add_argument("run_id")
    p.add_argument("--quiet", action="store_true", help="no progress bar or per-evaluation lines")
    p.set_defaults(func=cmd_resume)

    p = sub.add_parser("validate", help="check presets and their data without training")
    p.add_argument("presets", nargs="+")
    p.add_argument("--set", action="append", metavar="KEY=VALUE")
    p.add_argument("--no-data", action="store_true", help="check the configs only, not their data sources")
    p.add_argument("--hub", action="store_true",
                   help="also load Hub datasets (needs the network or a cached copy; default: skipped)")  # fmt: skip
    p.set_defaults(func=cmd_validate)

    p = sub.add_parser("inspect", help="what a preset's data looks like: columns, task, rows, labels, token lengths")
    p.add_argument("preset")
    p.add_argument("--set", action="append", metavar="KEY=VALUE")
    p.add_argument("--no-tokens", action="store_true", help="skip the token lengths (the model's tokenizer not loaded)")
    p.add_argument("--json", action="store_true", help="print the overview as JSON (without the preview rows)")
    p.set_defaults(func=cmd_inspect)

    p = sub.add_parser("estimate", help="estimate a preset's training memory on this machine's GPU (or RAM)")
    p.add_argument("preset")
    p.add_argument("--set", action="append", metavar="KEY=VALUE")
    p.add_argument("--labels", type=int, default=2, help="number of classes (default 2)")
    p.add_argument("--probe", action="store_true", help="also train 3 real steps here and measure the peak")
    p.set_defaults(func=cmd_estimate)

    p = sub.add_parser("lr-find", help="learning-rate range test: a short run with a rising rate, the suggested rate")
    p.add_argument("preset")
    p.add_argument("--set", action="append", metavar="KEY=VALUE")
    p.add_argument("--steps", type=int, default=100, help="steps of the sweep (default 100)")
    p.add_argument("--start", type=float, help="first rate (default: the method's sweep, e.g. 1e-7 for full)")
    p.add_argument("--end", type=float, help="last rate (default: the method's sweep, e.g. 1e-1 for full)")
    p.add_argument(
        "--methods",
        metavar="M1,M2",
        help="test each of these methods (e.g. full,lora) instead of the preset's: a rate per method",
    )
    p.add_argument("--plot", metavar="FILE", help="write the curve as .html or .png")
    p.add_argument("--json", metavar="FILE", help="write the curve, the suggestion and its cost as JSON")
    p.set_defaults(func=cmd_lr_find)

    p = sub.add_parser("sweep", help="run a grid preset (presets/grids/) in order; resumes where it stopped")
    p.add_argument("grid", help="grid file, or a name from presets/grids/ (e.g. imdb_peft_ablation)")
    p.add_argument("--dry-run", action="store_true", help="list the runs and each one's memory estimate")
    p.add_argument("--set", action="append", metavar="KEY=VALUE", help="override a field of the grid's base")
    p.add_argument("--gpus", default="auto",
                   help="GPUs to spread runs over, one process per run pinned to one GPU: auto (all; with one GPU "
                        "or none, runs train in this process), none, or indices like 0,1")  # fmt: skip
    p.add_argument("--workers", type=int, default=1, metavar="N",
                   help="runs at a time per GPU (or on the CPU), each in its own process (default 1)")  # fmt: skip
    p.add_argument("--ray", metavar="ADDRESS", default=os.environ.get("STUDIO_RAY_ADDRESS") or None,
                   help="run the grid on a Ray cluster: its head's HOST:PORT, auto (the cluster this machine "
                        "joined) or local (start one here); env STUDIO_RAY_ADDRESS. The runs folder must be the "
                        "same path on every node")  # fmt: skip
    p.add_argument("--retries", type=int, default=3, metavar="N",
                   help="with --ray: how often a run whose worker died runs again (it resumes from its last "
                        "checkpoint, train.checkpoint_steps); default 3")  # fmt: skip
    p.set_defaults(func=cmd_sweep)

    p = sub.add_parser("report", help="an HTML + Markdown report (tables, plots) and a CSV of a grid or of runs")
    p.add_argument("grid", nargs="?", help="grid file or name from presets/grids/")
    p.add_argument("--runs", nargs="+", metavar="RUN_ID", help="report these runs instead of a grid")
    p.add_argument("--out", default="report", help="output folder (default ./report)")
    p.add_argument("--set", action="append", metavar="KEY=VALUE", help="the overrides the grid was swept with")
    p.set_defaults(func=cmd_report)

    p = sub.add_parser("runs", help="list runs")
    p.add_argument("--status", choices=["running", "completed", "stopped", "failed", "interrupted"])
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=cmd_runs)

    p = sub.add_parser("show", help="a run's metrics, efficiency and reproducibility record")
    p.add_argument("run_id")
    p.add_argument("--json", action="store_true", help="the raw record (the run's row and its eval.json) as JSON")
    p.set_defaults(func=cmd_show)

    p = sub.add_parser("predict", help="predict with a finished run")
    p.add_argument("run_id")
    p.add_argument("texts", nargs="*")
    p.add_argument("--file", help="CSV/TSV/JSONL/Parquet file of texts")
    p.add_argument("--text-column", help="column of the file holding the texts (default: detect)")
    p.add_argument("--out", help="where to write the predictions CSV")
    p.add_argument("--min-confidence", metavar="X",
                   help="answer 'unsure' when the top (calibrated) probability is under X, in [0, 1]; eval.json's "
                        "calibration.coverage gives the accuracy and coverage at thresholds")  # fmt: skip
    p.add_argument("--raw", action="store_true",
                   help="the model's raw probabilities, without the run's temperature scaling")  # fmt: skip
    p.add_argument("--threshold", metavar="T",
                   help="multi-label runs: give every label whose probability reaches T, in [0, 1], instead of "
                        "each label's threshold tuned on validation (thresholds.json)")  # fmt: skip
    p.set_defaults(func=cmd_predict)

    p = sub.add_parser("serve", help="serve a finished run as an HTTP JSON API: POST /predict, GET /labels, /health")
    p.add_argument("run_id")
    p.add_argument("--host", default="127.0.0.1", help="address to listen on (default 127.0.0.1: this machine only)")
    p.add_argument("--port", type=int, default=8000, help="port (default 8000)")
    p.add_argument("--onnx", action="store_true", help="serve the run's ONNX export with onnxruntime")
    p.add_argument("--int8", action="store_true", help="with --onnx: its dynamically int8-quantized model")
    p.add_argument("--batching", choices=["queue", "lock"], default="queue",
                   help="queue (default): requests waiting while the model works are scored together, up to "
                        "--max-batch-texts a call; lock: one request at a time (docs/serving.md)")  # fmt: skip
    p.add_argument("--max-batch-texts", type=int, metavar="N",
                   help="queue: texts scored in one call at most (default 4 on a CPU, 256 on a GPU)")  # fmt: skip
    p.add_argument("--max-texts", type=int, default=256, metavar="N", help="texts per request at most (default 256)")
    p.add_argument("--max-chars", type=int, default=20_000, metavar="N",
                   help="characters per text at most (default 20000)")  # fmt: skip
    p.add_argument("--max-body-bytes", type=int, default=2 * 1024 * 1024, metavar="N",
                   help="bytes per request body at most (default 2 MiB)")  # fmt: skip
    p.add_argument("--access-log", action="store_true", help="log every request (default: errors and start only)")
    p.set_defaults(func=cmd_serve)

    p = sub.add_parser("explain", help="why a run gives a label: each word's Integrated Gradients score")
    p.add_argument("run_id")
    p.add_argument("text")
    p.add_argument("--label", action="append", help="the label to explain (default: the predicted one; a multi-label "
                   "run's labels given); repeat for several")  # fmt: skip
    p.add_argument("--html", metavar="FILE", help="also write the text with its words shaded to an HTML page")
    p.add_argument("--steps", type=int, help="integration steps (default 32: studio/explain.py N_STEPS)")
    p.add_argument("--top", type=int, default=15, help="words to print, strongest first (default 15)")
    p.set_defaults(func=cmd_explain)

    p = sub.add_parser("evaluate", help="evaluate a finished run on a labelled file (saved in the run folder)")
    p.add_argument("run_id")
    p.add_argument("--file", required=True, help="CSV/TSV/JSONL/JSON/Parquet file (or folder) of texts and labels")
    p.add_argument("--text-column", help="column holding the texts (default: detect)")
    p.add_argument("--label-column", help="column holding the labels (default: detect)")
    p.add_argument("--name", help="name of the evaluation (default: the file's name)")
    p.add_argument(
        "--label-separator",
        default=",",
        help="multi-label runs: what separates a row's labels written as one string (default ',')",
    )
    p.set_defaults(func=cmd_evaluate)

    p = sub.add_parser("export", help="zip a finished run with a model card (prints the zip's path)")
    p.add_argument("run_id")
    p.add_argument("--out", help="folder for <run_id>.zip (default: <runs-dir>/exports)")
    _no_check_flag(p)
    p.add_argument("--onnx", action="store_true", help="instead of a zip: an ONNX model checked against torch, in "
                   "<run>/onnx (encoders; merge an adapter first)")  # fmt: skip
    p.add_argument("--int8", action="store_true", help="with --onnx: also a dynamic int8 model (model.int8.onnx)")
    p.set_defaults(func=cmd_export)

    p = sub.add_parser("merge", help="merge a LoRA/QLoRA/IA3 adapter into its base (prints <run>/merged)")
    p.add_argument("run_id")
    _no_check_flag(p)
    p.set_defaults(func=cmd_merge)

    p = sub.add_parser("push", help="upload a finished run to the Hugging Face Hub (token: env HF_TOKEN)")
    p.add_argument("run_id")
    p.add_argument("repo_id", help="owner/name of the model repo (created if missing)")
    p.add_argument("--merged", action="store_true", help="push the merged model instead of the adapter")
    p.add_argument("--public", action="store_true", help="make a new repo public (default: private)")
    _no_check_flag(p)
    p.set_defaults(func=cmd_push)

    p = sub.add_parser("label-issues", help="rank training rows whose label is likely wrong (cleanlab); write a "
                       "corrected copy")  # fmt: skip
    p.add_argument("target", help="a run id (report in its folder) or a preset (report under <runs>/label_issues)")
    p.add_argument("--mode", choices=["embeddings", "crossfit"], default="embeddings",
                   help="embeddings: frozen encoder + cross-validated logistic regression (minutes); crossfit: "
                        "k trainings of the run's recipe, each predicting its held-out fold")  # fmt: skip
    p.add_argument("--k", type=int, default=5, help="folds (default 5)")
    p.add_argument("--encoder", choices=["base", "run"], default="base",
                   help="embeddings: the base model's hidden states, or a full fine-tune's own")  # fmt: skip
    p.add_argument("--out", help="also write the ranked rows to this CSV")
    p.add_argument("--show", type=int, default=10, help="rows to print (default 10)")
    p.add_argument("--apply", choices=["drop", "relabel"], help="write a corrected copy: drop or relabel the flagged "
                   "rows (or those under --threshold). Measured: applied to every flagged row (or the 10%% lowest) "
                   "it lowered test accuracy, since hard rows with right labels are flagged too; read the report "
                   "(--out) first (benchmarks/results/label_recovery)")  # fmt: skip
    p.add_argument("--threshold", type=float, help="with --apply: every row whose label quality is under this")
    p.set_defaults(func=cmd_label_issues)

    p = sub.add_parser("presets", help="list the presets")
    p.set_defaults(func=cmd_presets)
    return parser


def main(argv: list[str] | None = None) -> int:
    from studio.console import silence_known_noise

    silence_known_noise()  # before any library loads: some warn as they are imported
    argv = sys.argv[1:] if argv is None else argv
    args = build_parser().parse_args(argv)
    args.argv = argv
    try:
        return args.func(args)
    except StudioError as e:
        print(f"error: {e}", file=sys.stderr)
        return EXIT_BAD_INPUT


if __name__ == "__main__":
    sys.exit(main())
