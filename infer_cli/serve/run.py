"""Serving a plan: the proxy on the public port, the engine started behind it and watched.

The public port is bound first (a port in use fails in a second, not after a model load);
``/health`` answers 503 while LMCache and vLLM start or restart; Ctrl-C / SIGTERM stop everything in
order.
"""

from __future__ import annotations

import asyncio
import signal
import time
from collections.abc import Callable, Coroutine
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

from infer_cli.engine import launch
from infer_cli.engine.process import StartProgress
from infer_cli.errors import EngineCrashedError
from infer_cli.serve.app import connection_limits, proxy_app
from infer_cli.serve.plan import ServePlan

if TYPE_CHECKING:
    from infer_cli.engine.supervisor import Failure
    from infer_cli.proxy.generations import GenerationRecord
    from infer_cli.proxy.state import UpstreamState


class ServeReporter(Protocol):
    """What ``infer serve`` tells the user; ``infer_cli.ui`` renders it."""

    def step(self, name: str, state: str, elapsed: float) -> None: ...
    def proxy_listening(self, url: str) -> None: ...
    def engine_progress(self, progress: StartProgress) -> None: ...
    def ready(
        self, url: str, model: str, seconds: float, run_dir: Path | None, simulated: bool = False
    ) -> None: ...
    def warning(self, message: str) -> None: ...
    def generation(self, record: GenerationRecord) -> None: ...
    def stopping(self, reason: str) -> None: ...
    def stopped(self) -> None: ...


async def run(plan: ServePlan, reporter: ServeReporter) -> None:
    """Serve until Ctrl-C / SIGTERM (returns) or until the engine cannot be kept up (raises).

    Once the engine was ready, a process that dies or stops answering its health check is
    restarted by the :class:`Supervisor` (``[supervisor]`` in the profile): the proxy stays up and
    answers 503 with ``Retry-After`` meanwhile. SIGHUP restarts vLLM alone: LMCache's server keeps
    running, and with it the KV cache it holds, so the new vLLM gets cache hits for prompts the old
    one computed.
    """
    from infer_cli.engine.stack import EngineStack
    from infer_cli.engine.supervisor import Supervisor
    from infer_cli.proxy.server import ProxyServer, bind
    from infer_cli.proxy.state import UpstreamState

    started = time.monotonic()
    sock = bind(plan.host, plan.port)
    state = UpstreamState(url=None, api_key=plan.api_key, model=plan.model)
    server = ProxyServer(
        proxy_app(plan.profile, state, plan.profile_name, [reporter.generation]),
        sock,
        limits=connection_limits(plan.profile),
    )
    plan.run_dir.mkdir(parents=True, exist_ok=True)
    stack = EngineStack(plan.commands, plan.run_dir)

    loop = asyncio.get_running_loop()
    main = asyncio.current_task()
    assert main is not None
    received: list[str] = []
    engine = plan.commands[-1].name  # vllm (or the simulator); LMCache's server comes before it
    simulated = plan.profile.engine.backend == "sim"
    start_seconds = [0.0]  # how long the engine took to be ready, last time

    def progress(update: StartProgress) -> None:
        state.detail = f"{update.name}: {update.phase}"
        reporter.engine_progress(update)

    listener = _Listener(state, reporter, start_seconds)
    supervisor = Supervisor(stack, plan.profile.supervisor, listener, on_progress=progress)
    listener.ready = lambda seconds: reporter.ready(
        server.url, plan.model, seconds, plan.run_dir, simulated
    )

    def on_signal(signum: int) -> None:
        received.append(signal.Signals(signum).name)
        if len(received) == 1:
            main.cancel()

    def on_hangup() -> None:
        if state.status != "ready" or not supervisor.request_restart(engine):
            return  # starting or already restarting: nothing to do
        kept = ", ".join(name for name in stack.processes if name != engine)
        reporter.warning(
            f"received SIGHUP: restarting {engine}" + (f", {kept} keeps running" if kept else "")
        )

    for signum in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(signum, on_signal, signum)
    loop.add_signal_handler(signal.SIGHUP, on_hangup)
    try:
        await server.start()
        reporter.proxy_listening(server.url)
        await stack.start(progress)
        state.url = f"http://{launch.LOOPBACK}:{plan.vllm_port}"
        state.status, state.detail = "ready", ""
        start_seconds[0] = time.monotonic() - started
        reporter.ready(server.url, plan.model, start_seconds[0], plan.run_dir, simulated)
        try:
            await supervisor.run()
        except EngineCrashedError as crash:
            state.status, state.detail = "failed", _in_words(crash.message)
            state.retry_after = None
            raise
    except asyncio.CancelledError:
        if not received:
            raise
        reporter.stopping(f"received {received[0]}")
    finally:
        for signum in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
            loop.remove_signal_handler(signum)
        if state.status != "failed":
            state.status = "stopped"
        await _shielded(stack.stop())
        await _shielded(server.stop())
        reporter.stopped()


class _Listener:
    """Turns the supervisor's news into the proxy's state and the console's lines."""

    def __init__(
        self, state: UpstreamState, reporter: ServeReporter, start_seconds: list[float]
    ) -> None:
        self.state = state
        self.reporter = reporter
        self.start_seconds = start_seconds
        self.ready: Callable[[float], None] = lambda seconds: None

    def failed(self, failure: Failure, restart_in: float, attempt: int, allowed: int) -> None:
        state = self.state
        state.count_restart(failure.name, failure.kind, failure.text, failure.at)
        state.status = "restarting"
        state.detail = _in_words(f"{failure.summary}; restarting")
        state.retry_after = restart_in + self.start_seconds[0]
        when = f"in {restart_in:g} s" if restart_in > 0 else "now"
        self.reporter.warning(
            f"{failure.text}; restarting {when} (restart {attempt} of {allowed} allowed "
            f"within the window)"
        )

    def restarting(self, names: list[str]) -> None:
        state = self.state
        if state.status == "ready":  # a requested restart: not counted as a failure
            state.count_restart(names[0], "requested", "restart requested (SIGHUP)", time.time())
        state.status = "restarting"
        state.detail = f"restarting {', '.join(names)}"
        state.retry_after = self.start_seconds[0] or None

    def restarted(self, names: list[str], seconds: float) -> None:
        self.start_seconds[0] = seconds
        self.state.status, self.state.detail, self.state.retry_after = "ready", "", None
        self.ready(seconds)


def _in_words(message: str) -> str:
    from infer_cli.proxy.state import scrub

    return scrub(message)


async def _shielded(coro: Coroutine[Any, Any, None]) -> None:
    """Run a clean-up step to its end even if the surrounding task is being cancelled."""
    task = asyncio.ensure_future(coro)
    try:
        await asyncio.shield(task)
    except asyncio.CancelledError:
        await task
