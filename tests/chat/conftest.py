"""Fixtures for the client commands (chat, models, status): ``infer serve --profile sim`` processes
started once per session, in parallel, each with the settings its tests need; and a reasoning model
(``tests/fake_upstream.py`` thinking before it answers).
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest

from tests.fake_upstream import REASONING, FakeUpstream
from tests.helpers import free_port

KEY = "test-key-123"


@dataclass
class SimServer:
    url: str
    process: subprocess.Popen[bytes]
    home: Path
    api_key: str | None = None


@dataclass
class SimServers:
    fast: SimServer
    """Default sim: quick answers, no key."""
    slow: SimServer
    """200 ms per token: time to press Ctrl-C mid-answer."""
    failing: SimServer
    """Needs API key ``KEY``; every answer fails after 3 tokens."""


def _start(home: Path, *settings: str, env: dict[str, str] | None = None) -> SimServer:
    port = free_port()
    home.mkdir(parents=True, exist_ok=True)
    argv = [sys.executable, "-m", "infer_cli", "serve", "--profile", "sim", "--port", str(port)]
    for setting in settings:
        argv += ["--set", setting]
    with (home / "serve.stderr").open("wb") as stderr:  # the child has its own copy
        process = subprocess.Popen(
            argv,
            env={**os.environ, "INFER_HOME": str(home), "NO_COLOR": "1", **(env or {})},
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=stderr,
        )
    return SimServer(f"http://127.0.0.1:{port}", process, home)


def _wait(server: SimServer, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while True:
        if server.process.poll() is not None:
            raise RuntimeError((server.home / "serve.stderr").read_text()[-2000:])
        assert time.monotonic() < deadline, f"{server.url} never became ready"
        try:
            if httpx.get(f"{server.url}/health", timeout=2, trust_env=False).status_code == 200:
                return
        except httpx.TransportError:
            pass
        time.sleep(0.05)


def _stop(*servers: SimServer) -> None:
    running = [server.process for server in servers if server.process.poll() is None]
    for process in running:
        process.terminate()
    for process in running:
        try:
            process.wait(timeout=15)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


@pytest.fixture(scope="session")
def sims(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SimServers]:
    root = tmp_path_factory.mktemp("sims")
    servers = SimServers(
        fast=_start(root / "fast", "sim.ms_per_output_token=1"),
        slow=_start(root / "slow", "sim.ms_per_output_token=200"),
        failing=_start(root / "failing", "sim.fail_after_tokens=3", env={"INFER_API_KEYS": KEY}),
    )
    servers.failing.api_key = KEY
    try:
        for server in (servers.fast, servers.slow, servers.failing):
            _wait(server)
        yield servers
    finally:
        _stop(servers.fast, servers.slow, servers.failing)


@pytest.fixture(autouse=True)
def _no_client_env(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("INFER_URL", "INFER_API_KEY", "INFER_MODEL", "INFER_HIDE_REASONING", "NO_COLOR"):
        monkeypatch.delenv(name, raising=False)


@pytest.fixture(scope="session")
def bare_sim() -> Iterator[str]:
    """The simulated engine alone, as a bare vLLM would be: /v1 only, no proxy."""
    import asyncio
    import threading

    from infer_cli.sim import SimSettings, running

    ready: list[str] = []
    stop = threading.Event()

    async def serve() -> None:
        async with running(SimSettings(model="bare-model", ms_per_output_token=1)) as url:
            ready.append(url)
            while not stop.is_set():
                await asyncio.sleep(0.05)

    thread = threading.Thread(target=asyncio.run, args=(serve(),), daemon=True)
    thread.start()
    deadline = time.monotonic() + 30
    while not ready:
        assert thread.is_alive() and time.monotonic() < deadline, "the bare sim did not start"
        time.sleep(0.02)
    try:
        yield ready[0]
    finally:
        stop.set()
        thread.join(timeout=10)


@pytest.fixture
def thinker() -> Iterator[FakeUpstream]:
    """A reasoning model: the fake upstream streams its thinking (``REASONING``, in vLLM's
    ``delta.reasoning_content``) before the answer. It runs in a thread of its own, so that
    ``CliRunner`` and subprocesses can talk to it; tests may change its settings between requests.
    """
    import asyncio
    import threading

    fake = FakeUpstream(reasoning_chunks=len(REASONING))
    ready = threading.Event()
    stop = threading.Event()

    async def serve() -> None:
        await fake.start()
        ready.set()
        try:
            while not stop.is_set():
                await asyncio.sleep(0.02)
        finally:
            await fake.stop()

    thread = threading.Thread(target=asyncio.run, args=(serve(),), daemon=True)
    thread.start()
    assert ready.wait(30), "the fake upstream did not start"
    try:
        yield fake
    finally:
        stop.set()
        thread.join(timeout=10)
