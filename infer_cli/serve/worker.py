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
from infer_cli.serve.plan import ServePlan
from infer_cli.serve.run import ServeReporter, _shielded


async def run_worker(plan: ServePlan, reporter: ServeReporter) -> None:
    """Start and supervise the engines until Ctrl-C / SIGTERM, or until they cannot be kept up."""
    from infer_cli.engine.stack import EngineStack
    from infer_cli.engine.supervisor import Failure, Supervisor

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

    class Console:
        def failed(self, failure: Failure, restart_in: float, attempt: int, allowed: int) -> None:
            reporter.warning(
                f"{failure.text}; restarting in {restart_in:g} s ({attempt}/{allowed})"
            )

        def restarting(self, names: list[str]) -> None:
            reporter.warning(f"restarting {', '.join(names)}")

        def restarted(self, names: list[str], seconds: float) -> None:
            reporter.warning(f"{', '.join(names)} ready again after {seconds:.0f}s")

    def progress(update: StartProgress) -> None:
        reporter.engine_progress(update)

    def on_signal(signum: int) -> None:
        received.append(signal.Signals(signum).name)
        stop.set()

    for signum in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(signum, on_signal, signum)
    supervisor = Supervisor(stack, plan.profile.supervisor, Console(), on_progress=progress)
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
        reporter.step(
            f"worker ready in {time.monotonic() - started:.0f}s: add to the head's [replicas]: "
            f"{plan.worker_line}",
            "done",
            time.monotonic() - started,
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
