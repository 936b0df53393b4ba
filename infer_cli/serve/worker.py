"""``infer serve --worker``: this machine's engines for another machine's router, no proxy.

LMCache's server and the profile's replicas start on a reachable address with the key named by
``replicas.workers_api_key_env``, and are supervised as on the head; the line to add to the head's
``[replicas] workers`` is printed. The head's router health-checks them: a worker that goes away
only takes its own engines out of the rotation.
"""

from __future__ import annotations

import asyncio
import contextlib
import signal
import time

from infer_cli.engine.process import StartProgress
from infer_cli.errors import EngineCrashedError
from infer_cli.serve.listener import EngineListener
from infer_cli.serve.plan import ServePlan
from infer_cli.serve.run import ServeReporter, _shielded


async def run_worker(plan: ServePlan, reporter: ServeReporter) -> None:
    """Start and supervise the engines until Ctrl-C / SIGTERM, or until they cannot be kept up."""
    from infer_cli.engine.stack import EngineStack
    from infer_cli.engine.supervisor import Supervisor
    from infer_cli.proxy.state import UpstreamState

    started = time.monotonic()
    plan.run_dir.mkdir(parents=True, exist_ok=True)
    engines = plan.replica_names
    stack = EngineStack(
        plan.commands,
        plan.run_dir,
        replicas=engines if len(engines) > 1 else (),
        min_ready=plan.profile.replicas.min_ready,
    )
    loop = asyncio.get_running_loop()
    stop = asyncio.Event()
    received: list[str] = []

    # No proxy reads this state: it is the listener's record of which replicas serve.
    state = UpstreamState(url=None, api_key=None, model=plan.model)
    listener = EngineListener(
        state, reporter, stack.restart_order, engines if len(engines) > 1 else ()
    )

    def progress(update: StartProgress) -> None:
        reporter.engine_progress(update)

    def on_signal(signum: int) -> None:
        received.append(signal.Signals(signum).name)
        stop.set()

    for signum in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(signum, on_signal, signum)
    supervisor = Supervisor(stack, plan.profile.supervisor, listener, on_progress=progress)
    try:
        starting = asyncio.ensure_future(stack.start(progress))
        stopped = asyncio.ensure_future(stop.wait())
        await asyncio.wait({starting, stopped}, return_when=asyncio.FIRST_COMPLETED)
        if stop.is_set():
            starting.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await starting
            reporter.stopping(f"received {received[0]}")
            return
        starting.result()
        seconds = time.monotonic() - started
        listener.started(seconds, stack.start_failures, plan.profile.replicas.min_ready)
        reporter.step(
            f"worker ready in {seconds:.0f}s: add to the head's [replicas]: {plan.worker_line}",
            "done",
            seconds,
        )
        watch = asyncio.ensure_future(supervisor.run())
        await asyncio.wait({watch, stopped}, return_when=asyncio.FIRST_COMPLETED)
        if watch.done():
            watch.result()  # raises EngineCrashedError past the cap
        else:
            reporter.stopping(f"received {received[0]}")
    except EngineCrashedError:
        raise
    finally:
        for signum in (signal.SIGINT, signal.SIGTERM):
            loop.remove_signal_handler(signum)
        await _shielded(stack.stop())
        reporter.stopped()
