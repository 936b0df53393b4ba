"""Serving a plan: the proxy on the public port, the engine started behind it and watched.

The public port is bound first (a port in use fails in a second, not after a model load);
``/health`` answers 503 while LMCache and vLLM start; Ctrl-C / SIGTERM stop everything in order.
"""

from __future__ import annotations

import asyncio
import signal
import time
from collections.abc import Coroutine
from pathlib import Path
from typing import Any, Protocol

from infer_cli.engine import launch
from infer_cli.engine.process import StartProgress
from infer_cli.errors import EngineCrashedError, InferError
from infer_cli.serve.app import proxy_app
from infer_cli.serve.plan import ServePlan


class ServeReporter(Protocol):
    """What ``infer serve`` tells the user; ``infer_cli.ui`` renders it."""

    def step(self, name: str, state: str, elapsed: float) -> None: ...
    def proxy_listening(self, url: str) -> None: ...
    def engine_progress(self, progress: StartProgress) -> None: ...
    def ready(
        self, url: str, model: str, seconds: float, run_dir: Path | None, simulated: bool = False
    ) -> None: ...
    def warning(self, message: str) -> None: ...
    def stopping(self, reason: str) -> None: ...
    def stopped(self) -> None: ...


async def run(plan: ServePlan, reporter: ServeReporter) -> None:
    """Serve until Ctrl-C / SIGTERM (returns) or until the engine dies (raises).

    SIGHUP restarts vLLM alone: LMCache's server keeps running, and with it the KV cache it holds,
    so the new vLLM gets cache hits for prompts the old one computed; meanwhile the proxy answers
    503.
    """
    from infer_cli.engine.stack import EngineStack
    from infer_cli.proxy.server import ProxyServer, bind
    from infer_cli.proxy.state import UpstreamState

    started = time.monotonic()
    sock = bind(plan.host, plan.port)
    state = UpstreamState(url=None, api_key=plan.api_key, model=plan.model)
    server = ProxyServer(proxy_app(plan.profile, state, plan.profile_name), sock)
    plan.run_dir.mkdir(parents=True, exist_ok=True)
    stack = EngineStack(plan.commands, plan.run_dir)

    loop = asyncio.get_running_loop()
    main = asyncio.current_task()
    assert main is not None
    received: list[str] = []
    failures: list[InferError] = []
    restarts: set[asyncio.Task[None]] = set()
    engine = plan.commands[-1].name  # vllm (or the simulator); LMCache's server comes before it
    simulated = plan.profile.engine.backend == "sim"

    def progress(update: StartProgress) -> None:
        state.detail = f"{update.name}: {update.phase}"
        reporter.engine_progress(update)

    async def restart_vllm() -> None:
        began = time.monotonic()
        state.status, state.detail = "starting", f"restarting {engine}"
        try:
            await stack.restart(engine, progress)
        except InferError as error:
            failures.append(error)
            main.cancel()
            return
        state.status, state.detail = "ready", ""
        reporter.ready(server.url, plan.model, time.monotonic() - began, plan.run_dir, simulated)

    def on_signal(signum: int) -> None:
        received.append(signal.Signals(signum).name)
        if len(received) == 1:
            main.cancel()

    def on_hangup() -> None:
        if state.status != "ready" or restarts:
            return  # starting or already restarting: nothing to do
        kept = ", ".join(command.name for command in plan.commands[:-1])
        reporter.warning(
            f"received SIGHUP: restarting {engine}" + (f", {kept} keeps running" if kept else "")
        )
        task = asyncio.create_task(restart_vllm())
        restarts.add(task)
        task.add_done_callback(restarts.discard)

    for signum in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(signum, on_signal, signum)
    loop.add_signal_handler(signal.SIGHUP, on_hangup)
    try:
        await server.start()
        reporter.proxy_listening(server.url)
        await stack.start(progress)
        state.url = f"http://{launch.LOOPBACK}:{plan.vllm_port}"
        state.status, state.detail = "ready", ""
        reporter.ready(server.url, plan.model, time.monotonic() - started, plan.run_dir, simulated)
        try:
            await stack.watch()
        except EngineCrashedError as crash:
            state.status, state.detail = "failed", crash.message
            raise
    except asyncio.CancelledError:
        if failures:
            state.status, state.detail = "failed", failures[0].message
            raise failures[0] from None
        if not received:
            raise
        reporter.stopping(f"received {received[0]}")
    finally:
        for signum in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
            loop.remove_signal_handler(signum)
        for task in list(restarts):
            task.cancel()
        if state.status != "failed":
            state.status = "stopped"
        await _shielded(stack.stop())
        await _shielded(server.stop())
        reporter.stopped()


async def _shielded(coro: Coroutine[Any, Any, None]) -> None:
    """Run a clean-up step to its end even if the surrounding task is being cancelled."""
    task = asyncio.ensure_future(coro)
    try:
        await asyncio.shield(task)
    except asyncio.CancelledError:
        await task
