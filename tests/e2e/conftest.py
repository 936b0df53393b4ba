"""End-to-end fixtures: the real CPU engine (vLLM + LMCache) and the real SmolLM2 model.

The engine environment and the model are minutes of work to build, so they live in the shared
locations (``INFER_ENGINE_HOME`` / ``INFER_MODELS_HOME``, by default under ``~/.local/share/infer``)
and are built here on first use; every test still keeps its own ``INFER_HOME`` (runs, logs,
profiles) in a temporary folder.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import pytest

from tests.conftest import SHARED_ENGINE_HOME, SHARED_MODELS_HOME
from tests.helpers import descendants, free_port

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
        from infer_cli.engine import build, environment, models

        def report(step: object) -> None:
            print(
                f"[engine] {getattr(step, 'name', step)}: {getattr(step, 'state', '')}", flush=True
            )

        if not environment.is_ready():
            build.install(on_step=report, with_lmcache=True)
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


@dataclass
class Served:
    """A running ``infer serve`` process and what a test needs to talk to it and check it."""

    url: str
    process: subprocess.Popen[bytes]
    stderr: Path
    home: Path
    saw_503: bool
    pids: set[int] = field(default_factory=set)

    def remember_pids(self) -> None:
        self.pids |= set(descendants(self.process.pid))


@contextlib.contextmanager
def serve_cpu(
    home: Path, *extra: str, timeout: float = 300, profile: str = "cpu"
) -> Iterator[Served]:
    """``infer serve --profile cpu`` (real vLLM + LMCache + SmolLM2) until the block ends; call it
    from a module-scoped fixture that depends on ``cpu_engine``. Stops it with SIGINT at the end.
    ``profile``: another CPU profile (``cpu-2x``)."""
    port = free_port()
    env = {
        **os.environ,
        "INFER_HOME": str(home),
        "INFER_ENGINE_HOME": str(SHARED_ENGINE_HOME),
        "INFER_MODELS_HOME": str(SHARED_MODELS_HOME),
        "NO_COLOR": "1",
    }
    stderr = home / "serve.stderr"
    argv = [sys.executable, "-m", "infer_cli", "serve", "--profile", profile, "--port", str(port)]
    with stderr.open("wb") as sink:
        process = subprocess.Popen(
            [*argv, "--no-install", *extra], env=env, stdout=subprocess.DEVNULL, stderr=sink
        )
    served = Served(
        url=f"http://127.0.0.1:{port}", process=process, stderr=stderr, home=home, saw_503=False
    )
    deadline = time.monotonic() + timeout
    try:
        while True:
            assert process.poll() is None, f"infer serve exited:\n{stderr.read_text()[-3000:]}"
            assert time.monotonic() < deadline, f"not ready:\n{stderr.read_text()[-3000:]}"
            try:
                response = httpx.get(f"{served.url}/health", timeout=2)
                if response.status_code == 503:
                    served.saw_503 = True
                elif response.status_code == 200:
                    break
            except httpx.TransportError:
                pass
            served.remember_pids()
            time.sleep(0.5)
        served.remember_pids()
        yield served
    finally:
        if process.poll() is None:
            process.send_signal(signal.SIGINT)
            try:
                process.wait(timeout=60)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()
