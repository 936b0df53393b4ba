"""Shared fixtures: every test keeps user state in a temporary INFER_HOME; ``fake`` is an engine."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import TYPE_CHECKING

import pytest

from infer_cli import paths
from infer_cli.config.loader import PROTOTYPE_ENV

if TYPE_CHECKING:
    from tests.fake_upstream import FakeUpstream

E2E_TIMEOUT = 1800
"""Seconds an e2e test may take (the default, ``timeout`` in pyproject, is 300): its setup may
build the engine environment (~4 minutes), prepare the model and start vLLM (up to 5 minutes)."""


@pytest.hookimpl(trylast=True)  # after tests/e2e/conftest.py has marked its tests e2e
def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        if item.get_closest_marker("e2e") and not item.get_closest_marker("timeout"):
            item.add_marker(pytest.mark.timeout(E2E_TIMEOUT))


# Where the heavy, shareable parts live when no test overrides them (read before any fixture runs).
SHARED_ENGINE_HOME = paths.engine_home()
SHARED_MODELS_HOME = paths.models_home()


@pytest.fixture(autouse=True)
def infer_home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    home = tmp_path / "infer-home"
    home.mkdir()
    monkeypatch.setenv("INFER_HOME", str(home))
    # the shared engine and models are opt-in (tests/e2e), never inherited from the caller's shell
    for name in (
        "INFER_PROFILE",
        "INFER_HOST",
        "INFER_PORT",
        "INFER_VERBOSE",
        "INFER_ENGINE_HOME",
        "INFER_MODELS_HOME",
        "INFER_UPSTREAM",
        "INFER_UPSTREAM_API_KEY",
        "INFER_API_KEYS",
        "INFER_API_KEYS_FILE",
        "INFER_URL",
        "INFER_API_KEY",
        "VLLM_BASE_URL",
        "VLLM_API_KEY",
        *PROTOTYPE_ENV,
    ):
        monkeypatch.delenv(name, raising=False)
    import os

    for name in list(os.environ):
        if name.startswith("INFER_") and "__" in name:
            monkeypatch.delenv(name)
    yield home


@pytest.fixture
async def fake() -> AsyncIterator[FakeUpstream]:
    """A fake engine on a free loopback port, for one test (the proxy tests' upstream).

    A test that holds responses with ``gate`` has them released at the end, so stopping the
    server never waits on a handler. A module that needs another kind of engine defines its own.
    """
    from tests.fake_upstream import FakeUpstream

    upstream = FakeUpstream()
    await upstream.start()
    try:
        yield upstream
    finally:
        if upstream.gate is not None:
            upstream.gate.set()
        await upstream.stop()
