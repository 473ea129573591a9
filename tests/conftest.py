"""Shared fixtures: tiny model folders, temporary runs directories, quiet libraries, seeds."""

from __future__ import annotations

import os
import random
from pathlib import Path

import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")  # tests never touch the network
os.environ.setdefault("HF_DATASETS_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
os.environ.pop("STUDIO_REGISTRY_URL", None)  # registries are the tests' own (the `backend` fixture sets it)
os.environ.pop("MLFLOW_TRACKING_URI", None)  # runs log to MLflow only in the tests that start a server


def _threads_per_worker() -> int | None:
    """The CPU threads each pytest-xdist worker's torch may use: the cores shared among the workers (1 each on CI's
    2 cores and 2 workers). With torch's default (every core, in every worker and in the processes the tests
    start) the workers' thread pools fought over the cores: two processes training a MiniLM-sized model at once
    took 45 s at 2 threads each and 20 s at 1 (medians of 3 on a shared machine, benchmarks/results/test_threads/).
    None: not under xdist."""
    workers = int(os.environ.get("PYTEST_XDIST_WORKER_COUNT", "0"))
    return max(1, (os.cpu_count() or 1) // workers) if workers > 1 else None


if _threads_per_worker() is not None:  # before torch is imported; the processes the tests start inherit it
    os.environ.setdefault("OMP_NUM_THREADS", str(_threads_per_worker()))
    os.environ.setdefault("MKL_NUM_THREADS", str(_threads_per_worker()))


@pytest.fixture(autouse=True)
def _seed():
    import numpy as np
    import torch

    random.seed(0)
    np.random.seed(0)
    torch.manual_seed(0)


@pytest.fixture(scope="module", autouse=True)
def _freeze_long_lived():
    """At each test file's start, what is alive then (the libraries the files imported, the session's fixtures)
    leaves the garbage collector's scans (`gc.freeze`, as `studio.recipe.freeze_long_lived` does once per
    process): every full collection (the Trainer runs one per training, the runs' cleanup another) otherwise
    walks 0.6-0.7 million objects, 0.6 s on 2 cores. Collected first, so no garbage is frozen; each test's own
    objects stay collectable as before."""
    import gc

    gc.collect()
    gc.freeze()


@pytest.fixture(scope="session", autouse=True)
def _quiet_transformers():
    import datasets
    import transformers

    datasets.disable_progress_bars()
    if _threads_per_worker() is not None:
        import torch

        torch.set_num_threads(_threads_per_worker())  # in case a plugin imported torch before this file
    transformers.logging.set_verbosity_error()
    transformers.utils.logging.disable_progress_bar()


@pytest.fixture(scope="session")
def tiny_model_dir(tmp_path_factory):
    """factory(family) -> folder of a tiny random model of that family (built once per session)."""
    from tiny import make_tiny_model

    root = tmp_path_factory.mktemp("tiny-models")
    built: dict[str, Path] = {}

    def get(family: str) -> Path:
        if family not in built:
            built[family] = make_tiny_model(family, root / family)
        return built[family]

    return get


@pytest.fixture
def runs_dir(tmp_path) -> Path:
    return tmp_path / "runs"


@pytest.fixture(scope="session")
def bert_tokenizer():
    """The real bert-base-uncased WordPiece tokenizer, loaded offline from tests/assets."""
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(Path(__file__).parent / "assets" / "tokenizers" / "bert-base-uncased")


@pytest.fixture
def cache_dir(tmp_path) -> Path:
    """An empty cache folder (tokenized datasets land in cache_dir/tokenized/)."""
    return tmp_path / "cache"


@pytest.fixture(scope="session")
def postgres():
    """A PostgreSQL server of its own for the session (tests/postgres.py); skipped where none can be started."""
    import postgres as pg

    reason = pg.missing()
    if reason:
        pytest.skip(reason)
    server = pg.PostgresServer().start()
    yield server
    server.remove()


@pytest.fixture
def postgres_database(postgres, monkeypatch):
    """A fresh database on the session's server, named by STUDIO_REGISTRY_URL for this test: its name."""
    from studio import registry_db

    name = postgres.new_database()
    monkeypatch.setenv("STUDIO_REGISTRY_URL", postgres.url(name))
    yield name
    registry_db.close_all()
    postgres.drop_database(name)


@pytest.fixture(params=["sqlite", "postgresql"])
def backend(request, monkeypatch) -> str:
    """Runs the test on each registry backend: SQLite in the runs folder, and PostgreSQL (a fresh database)."""
    monkeypatch.delenv("STUDIO_REGISTRY_URL", raising=False)
    if request.param == "postgresql":
        request.getfixturevalue("postgres_database")
    return request.param


def pytest_collection_modifyitems(config, items):
    """The files with a slow test first, each file's tests in their order: spread over workers file by file
    (pytest-xdist's `--dist loadfile --no-loadscope-reorder`, as pyproject.toml asks), the long files start early
    and the short ones fill the end, so no worker is left alone with a long file while the others wait."""
    slow = {item.path for item in items if item.get_closest_marker("slow")}
    items.sort(key=lambda item: item.path not in slow)  # a stable sort: the order within a group is kept
