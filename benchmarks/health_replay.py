"""Replay the health rules (studio/health.py) on every finished run of a runs folder and compare verdicts.

    python benchmarks/health_replay.py RUNS_DIR

Each run's recorded events (metrics.jsonl) go through a fresh `HealthMonitor`, and its eval.json through
`HealthMonitor.final`, so a change to the rules can be checked against real runs: which verdicts it changes,
and that no run that learned is flagged. Prints (recorded flag, replayed flag) counts and every change.
"""

from __future__ import annotations

import json
import sys
from collections import Counter
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from studio.config import RunConfig  # noqa: E402
from studio.events import parse  # noqa: E402
from studio.health import HealthMonitor  # noqa: E402
from studio.results import RunSummary  # noqa: E402


def replay(folder: Path) -> tuple[str | None, str | None, str, RunSummary, RunConfig]:
    summary = RunSummary.read(folder / "eval.json")
    config = RunConfig.from_yaml(folder / "config.yaml")
    monitor = HealthMonitor(summary.label_names, config.method.name, config.train.learning_rate)
    for line in (folder / "metrics.jsonl").read_text().splitlines():
        event = parse(json.loads(line))
        if event is not None:
            monitor.observe(event)
    verdict = monitor.final(summary)
    return summary.health.flag if summary.health else None, verdict.flag, verdict.reason, summary, config


def main() -> int:
    runs = Path(sys.argv[1])
    counts: Counter = Counter()
    changes = []
    for folder in sorted(p for p in runs.iterdir() if (p / "eval.json").is_file()):
        recorded, replayed, reason, summary, config = replay(folder)
        counts[(recorded, replayed)] += 1
        if recorded != replayed:
            changes.append(f"  {folder.name} {config.model.name} {config.method.name} lr {config.train.learning_rate:g}"
                           f" test {summary.test.accuracy:.4f}: {recorded} -> {replayed} ({reason})")  # fmt: skip
    print(f"{sum(counts.values())} runs; (recorded, replayed): count")
    for (recorded, replayed), n in sorted(counts.items(), key=lambda kv: -kv[1]):
        print(f"  ({recorded}, {replayed}): {n}")
    print(f"{len(changes)} verdicts change" + (":" if changes else ""))
    print("\n".join(changes))
    return 0


if __name__ == "__main__":
    sys.exit(main())
