"""The machine's load while a benchmark measures: `os.getloadavg()` sampled on a thread (the dev machine is
shared, so every result file records it). Shared by the benchmark scripts; run from benchmarks/ they import it."""

from __future__ import annotations

import os
import statistics
import threading


class LoadSampler:
    """os.getloadavg()'s 1-minute figure every `every` seconds on a thread, while the measurement runs."""

    def __init__(self, every: float = 5.0):
        self.samples: list[float] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, args=(every,), daemon=True)

    def _run(self, every: float) -> None:
        while not self._stop.is_set():
            self.samples.append(os.getloadavg()[0])
            self._stop.wait(every)

    def __enter__(self) -> LoadSampler:
        self._thread.start()
        return self

    def __exit__(self, *_: object) -> None:
        self._stop.set()
        self._thread.join()

    def summary(self) -> dict:
        s = self.samples or [os.getloadavg()[0]]
        return {"load_1min_median": round(statistics.median(s), 2), "load_1min_max": round(max(s), 2),
                "load_samples": len(s)}  # fmt: skip
