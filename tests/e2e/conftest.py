"""End-to-end fixtures: the real CPU engine (vLLM + LMCache) and the real SmolLM2 model.

The engine environment and the model are minutes of work to build, so they live in the shared
locations (``INFER_ENGINE_HOME`` / ``INFER_MODELS_HOME``, by default under ``~/.local/share/infer``)
and are built here on first use; every test still keeps its own ``INFER_HOME`` (runs, logs,
profiles) in a temporary folder.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.conftest import SHARED_ENGINE_HOME, SHARED_MODELS_HOME

MODEL = "smollm2-135m-instruct"


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    here = Path(__file__).parent
    for item in items:
        if here in Path(str(item.fspath)).parents:
            item.add_marker(pytest.mark.e2e)


@pytest.fixture(scope="session")
def cpu_engine() -> Path:
    """Build (or reuse) the CPU engine environment and the model; returns the model folder."""
    previous = {k: os.environ.get(k) for k in ("INFER_ENGINE_HOME", "INFER_MODELS_HOME")}
    os.environ["INFER_ENGINE_HOME"] = str(SHARED_ENGINE_HOME)
    os.environ["INFER_MODELS_HOME"] = str(SHARED_MODELS_HOME)
    try:
        from infer_cli.engine import environment, models

        def report(step: object) -> None:
            print(
                f"[engine] {getattr(step, 'name', step)}: {getattr(step, 'state', '')}", flush=True
            )

        if not environment.is_ready():
            environment.install(on_step=report, with_lmcache=True)
        if not models.is_prepared(MODEL):
            models.prepare(MODEL, on_step=report)
        return models.model_dir(MODEL)
    finally:
        for key, value in previous.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value


@pytest.fixture
def shared_engine(cpu_engine: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    """Per test: point infer at the shared engine and models (INFER_HOME stays temporary)."""
    monkeypatch.setenv("INFER_ENGINE_HOME", str(SHARED_ENGINE_HOME))
    monkeypatch.setenv("INFER_MODELS_HOME", str(SHARED_MODELS_HOME))
    yield cpu_engine
