"""Serving a plan: the proxy on the public port, the engine started behind it and watched.

The public port is bound first (a port in use fails in a second, not after a model load);
``/health`` answers 503 while LMCache and vLLM start or restart; Ctrl-C / SIGTERM stop everything in
order.
"""

from __future__ import annotations

import asyncio
import signal
import time
from collections.abc import Coroutine
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

from infer_cli.engine import launch
from infer_cli.engine.process import StartProgress
from infer_cli.errors import EngineCrashedError
from infer_cli.serve.app import connection_limits, proxy_app
from infer_cli.serve.listener import EngineListener
from infer_cli.serve.plan import ServePlan

if TYPE_CHECKING:
    from infer_cli.proxy.openrouter.generations import GenerationRecord
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
    answers 503 with ``Retry-After`` meanwhile, unless other replicas keep serving behind the
    router. SIGHUP restarts vLLM alone (each replica in turn, while the others serve): LMCache's
    server keeps running, and with it the KV cache it holds, so the new vLLM gets cache hits for
    prompts the old one computed.
    """
    from infer_cli.engine.stack import EngineStack
    from infer_cli.engine.supervisor import Supervisor
    from infer_cli.proxy.state import UpstreamState
    from infer_cli.serve import heap
    from infer_cli.wire.server import AppServer, bind

    started = time.monotonic()
    sock = bind(plan.host, plan.port)
    state = UpstreamState(url=None, api_key=plan.api_key, model=plan.model)
    server = AppServer(
        proxy_app(plan.profile, state, plan.profile_name, [reporter.generation]),
        sock,
        limits=connection_limits(plan.profile),
    )
    plan.run_dir.mkdir(parents=True, exist_ok=True)
    engines = plan.replica_names  # vllm, or vllm-0..N-1, or the simulator
    stack = EngineStack(
        plan.commands,
        plan.run_dir,
        replicas=engines if len(engines) > 1 else (),
        min_ready=plan.profile.replicas.min_ready,
    )

    loop = asyncio.get_running_loop()
    main = asyncio.current_task()
    assert main is not None
    received: list[str] = []
    simulated = plan.profile.engine.backend == "sim"

    def progress(update: StartProgress) -> None:
        state.detail = f"{update.name}: {update.phase}"
        reporter.engine_progress(update)

    listener = EngineListener(
        state,
        reporter,
        stack.restart_order,
        engines if len(engines) > 1 else (),
        on_ready=lambda seconds: reporter.ready(
            server.url, plan.model, seconds, plan.run_dir, simulated
        ),
    )
    supervisor = Supervisor(stack, plan.profile.supervisor, listener, on_progress=progress)

    def on_signal(signum: int) -> None:
        received.append(signal.Signals(signum).name)
        if len(received) == 1:
            main.cancel()

    def on_hangup() -> None:
        if state.status != "ready" or not supervisor.request_restart(*engines):
            return  # starting or already restarting: nothing to do
        kept = ", ".join(name for name in stack.processes if name not in engines)
        what = engines[0] if len(engines) == 1 else f"{', '.join(engines)}, one at a time"
        reporter.warning(
            f"received SIGHUP: restarting {what}" + (f"; {kept} keeps running" if kept else "")
        )

    for signum in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(signum, on_signal, signum)
    loop.add_signal_handler(signal.SIGHUP, on_hangup)
    watching: list[asyncio.Task[None]] = []
    try:
        await server.start()
        reporter.proxy_listening(server.url)
        await stack.start(progress)
        state.url = f"http://{launch.LOOPBACK}:{plan.vllm_port}"
        state.metrics_sources = _metrics_sources(plan)
        state.metrics_aliases = {url: name for name, url in state.metrics_sources if name}
        seconds = time.monotonic() - started
        listener.started(seconds, stack.start_failures, plan.profile.replicas.min_ready)
        reporter.ready(server.url, plan.model, seconds, plan.run_dir, simulated)
        heap.settle()  # the start-up heap, out of every later collection
        if plan.profile.replicas.workers:
            watching.append(asyncio.create_task(_watch_workers(plan, state, reporter)))
        try:
            await supervisor.run()
        except EngineCrashedError as crash:
            listener.gave_up(crash.message)
            raise
    except asyncio.CancelledError:
        if not received:
            raise
        reporter.stopping(f"received {received[0]}")
    finally:
        for signum in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
            loop.remove_signal_handler(signum)
        for task in watching:
            task.cancel()
        if state.status != "failed":
            state.status = "stopped"
        await _shielded(stack.stop())
        await _shielded(server.stop())
        reporter.stopped()


def _metrics_sources(plan: ServePlan) -> list[tuple[str, str]]:
    """Each replica's ``/metrics`` (labelled by replica) and the router's, when there is one."""
    if plan.router_port is None:
        return []
    sources = [
        (name, f"http://{launch.LOOPBACK}:{port}")
        for name, port in zip(plan.replica_names, plan.replica_ports, strict=False)
    ]
    if plan.router_metrics_port is not None:
        sources.append(("", f"http://{launch.LOOPBACK}:{plan.router_metrics_port}"))
    return sources


async def _watch_workers(plan: ServePlan, state: UpstreamState, reporter: ServeReporter) -> None:
    """Check the other machines' engines (``replicas.workers``) as the router does; say which
    went away or came back (the router stops sending them requests meanwhile)."""
    import httpx

    workers = plan.profile.replicas.workers
    state.workers = [True] * len(workers)
    interval = plan.profile.supervisor.health_interval
    async with httpx.AsyncClient(
        timeout=plan.profile.supervisor.health_timeout, trust_env=False
    ) as client:
        while True:
            for index, url in enumerate(workers):
                try:
                    up = (await client.get(url.rstrip("/") + "/health")).status_code == 200
                except httpx.HTTPError:
                    up = False
                if up != state.workers[index]:
                    state.workers[index] = up
                    news = "answers again" if up else "is unreachable; the rest serve"
                    reporter.warning(f"worker-{index} ({url}) {news}")
            await asyncio.sleep(interval)


async def _shielded(coro: Coroutine[Any, Any, None]) -> None:
    """Run a clean-up step to its end even if the surrounding task is being cancelled."""
    task = asyncio.ensure_future(coro)
    try:
        await asyncio.shield(task)
    except asyncio.CancelledError:
        await task
