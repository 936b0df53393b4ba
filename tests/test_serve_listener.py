"""EngineListener (serve and worker) driven by the supervisor's events, over the real launch plan.

The stack is built from the commands ``launch.plan`` gives for a bundled profile (nothing is
started: the listener asks the stack only which processes a restart takes down), so which
replicas a failure hits follows the real ``requires`` wiring. The last test runs ``infer serve
--worker``'s loop over two stub engines and kills one.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import sys
import time
from pathlib import Path
from typing import TYPE_CHECKING

from infer_cli.config import loader
from infer_cli.engine import launch
from infer_cli.engine.command import Command, StartProgress
from infer_cli.engine.stack import EngineStack
from infer_cli.engine.supervisor import Failure
from infer_cli.errors import EngineStartError
from infer_cli.proxy.state import UpstreamState
from infer_cli.serve.listener import EngineListener
from infer_cli.serve.plan import ServePlan
from infer_cli.serve.worker import run_worker
from tests.helpers import free_port, pid_alive, wait_until

if TYPE_CHECKING:
    from infer_cli.proxy.openrouter.generations import GenerationRecord

STUB = Path(__file__).parent / "stubs" / "engine.py"


class Lines:
    def __init__(self) -> None:
        self.lines: list[str] = []

    def warning(self, message: str) -> None:
        self.lines.append(message)


def listener_for(
    tmp_path: Path, profile: str, *overrides: str, with_ready: bool = True
) -> tuple[EngineListener, UpstreamState, Lines, list[float]]:
    loaded = loader.load(profile, overrides=overrides, environ={}).profile
    target = launch.LaunchTarget(
        vllm="vllm", model="/m", port=41000, api_key="k", device="cpu", run_dir=tmp_path
    )
    commands = launch.plan(loaded, target)
    engines = [c.name for c in commands if c.name.startswith("vllm")]
    stack = EngineStack(commands, tmp_path, replicas=engines if len(engines) > 1 else ())
    state = UpstreamState(url="http://127.0.0.1:41000", api_key="k", model="m")
    console = Lines()
    readies: list[float] = []
    listener = EngineListener(
        state,
        console,
        stack.restart_order,
        engines if len(engines) > 1 else (),
        on_ready=readies.append if with_ready else None,
    )
    return listener, state, console, readies


def failure(name: str, cause: str = "") -> Failure:
    return Failure(name, "exited", "exited with code -9 (SIGKILL)", cause, time.time())


def test_one_engine_down_takes_the_endpoint_and_comes_back(tmp_path: Path) -> None:
    listener, state, console, readies = listener_for(tmp_path, "cpu")
    listener.started(30.0)
    assert state.status == "ready" and state.replicas == {}

    listener.failed(failure("vllm", "bind failed on 127.0.0.1:41000"), 2.0, 1, 5)
    assert state.status == "restarting"
    assert state.retry_after == 32.0  # the backoff plus the last start's length
    assert "127.0.0.1" not in state.detail and "vllm exited" in state.detail
    assert state.restarts == {("vllm", "exited"): 1}
    assert console.lines == [
        "vllm exited with code -9 (SIGKILL): bind failed on 127.0.0.1:41000; restarting in 2 s "
        "(restart 1 of 5 allowed within the window)"
    ]

    listener.restarting(["vllm"])
    assert state.restarts == {("vllm", "exited"): 1}  # a failure's restart is not counted twice
    listener.restarted(["vllm"], 12.0)
    assert (state.status, state.detail, state.retry_after) == ("ready", "", None)
    assert readies == [12.0]
    listener.failed(failure("vllm"), 0.0, 2, 5)
    assert state.retry_after == 12.0  # the last restart's length now
    assert console.lines[-1].endswith("restarting now (restart 2 of 5 allowed within the window)")


def test_a_replica_down_leaves_the_endpoint_ready(tmp_path: Path) -> None:
    listener, state, console, readies = listener_for(tmp_path, "cpu-2x")
    listener.started(40.0)
    assert state.replicas == {"vllm-0": "ready", "vllm-1": "ready"}

    listener.failed(failure("vllm-1"), 1.0, 1, 5)
    assert state.status == "ready" and state.replicas["vllm-1"] == "restarting"
    assert console.lines[-1].endswith("; the other replicas keep serving")
    listener.restarting(["vllm-1"])
    assert state.restart_count == 1
    listener.restarted(["vllm-1"], 9.0)
    assert state.replicas == {"vllm-0": "ready", "vllm-1": "ready"}
    assert console.lines[-1] == "vllm-1 ready again after 9s" and readies == []


def test_the_last_ready_replica_down_takes_the_endpoint(tmp_path: Path) -> None:
    listener, state, console, _ = listener_for(tmp_path, "cpu-2x")
    listener.started(40.0)
    listener.failed(failure("vllm-0"), 1.0, 1, 5)
    listener.failed(failure("vllm-1"), 1.0, 2, 5)
    assert state.status == "restarting"
    assert "keep serving" not in console.lines[-1]


def test_the_shared_cache_server_or_the_router_takes_every_replica(tmp_path: Path) -> None:
    for name in ("lmcache", "router"):
        listener, state, console, readies = listener_for(tmp_path, "cpu-2x")
        listener.started(40.0)
        listener.failed(failure(name), 1.0, 1, 5)
        assert state.status == "restarting", name
        assert "keep serving" not in console.lines[-1]
        listener.restarted(listener.restart_order(name), 20.0)
        assert state.status == "ready" and readies == [20.0]


def test_an_unshared_cache_server_takes_its_replica_alone(tmp_path: Path) -> None:
    listener, state, _, _ = listener_for(tmp_path, "cpu-2x", "lmcache.shared=false")
    listener.started(40.0)
    listener.failed(failure("lmcache-1"), 1.0, 1, 5)
    assert state.status == "ready"
    assert state.replicas == {"vllm-0": "ready", "vllm-1": "restarting"}


def test_a_requested_restart_is_counted_as_requested(tmp_path: Path) -> None:
    listener, state, _, _ = listener_for(tmp_path, "cpu-2x")
    listener.started(40.0)
    listener.restarting(["vllm-0"])  # SIGHUP: one replica at a time, the other serves
    assert state.restarts == {("vllm-0", "requested"): 1}
    assert state.status == "ready" and state.replicas["vllm-0"] == "restarting"

    one, single, _, _ = listener_for(tmp_path, "cpu")
    one.started(30.0)
    one.restarting(["vllm"])
    assert single.restarts == {("vllm", "requested"): 1}
    assert (single.status, single.retry_after) == ("restarting", 30.0)


def test_a_replica_that_did_not_start_is_shown_restarting(tmp_path: Path) -> None:
    listener, state, console, _ = listener_for(tmp_path, "cpu-2x")
    listener.started(50.0, {"vllm-1": EngineStartError("vllm-1 exited with code 1")}, 1)
    assert state.status == "ready"
    assert state.replicas == {"vllm-0": "ready", "vllm-1": "restarting"}
    assert console.lines == [
        "vllm-1 exited with code 1; serving with the other replicas (replicas.min_ready = 1), "
        "retrying vllm-1"
    ]


def test_giving_up_fails_the_engine_without_addresses(tmp_path: Path) -> None:
    listener, state, _, _ = listener_for(tmp_path, "cpu")
    listener.started(30.0)
    listener.failed(failure("vllm"), 1.0, 1, 1)
    listener.gave_up("vllm failed 2 times; its last log line: refused by http://127.0.0.1:41000")
    assert (state.status, state.retry_after) == ("failed", None)
    assert "127.0.0.1" not in state.detail and "<internal>" in state.detail


def test_without_on_ready_the_console_says_the_engine_is_back(tmp_path: Path) -> None:
    """The worker's case: no proxy banner to print, a line instead."""
    listener, state, console, _ = listener_for(tmp_path, "cpu", with_ready=False)
    listener.started(30.0)
    listener.failed(failure("vllm"), 1.0, 1, 5)
    listener.restarted(["vllm"], 15.0)
    assert state.status == "ready"
    assert console.lines[-1] == "vllm ready again after 15s"


class Reporter:
    """A ServeReporter that keeps what the worker says."""

    def __init__(self) -> None:
        self.warnings: list[str] = []
        self.steps: list[str] = []
        self.stopped_at: float | None = None

    def step(self, name: str, state: str, elapsed: float) -> None:
        self.steps.append(name)

    def proxy_listening(self, url: str) -> None:
        raise AssertionError("a worker has no proxy")

    def engine_progress(self, progress: StartProgress) -> None:
        pass

    def ready(
        self, url: str, model: str, seconds: float, run_dir: Path | None, simulated: bool = False
    ) -> None:
        raise AssertionError("a worker has no proxy to be ready")

    def warning(self, message: str) -> None:
        self.warnings.append(message)

    def generation(self, record: GenerationRecord) -> None:
        pass

    def stopping(self, reason: str) -> None:
        pass

    def stopped(self) -> None:
        self.stopped_at = time.monotonic()


async def test_the_worker_restarts_a_dead_replica_and_says_the_other_serves(
    tmp_path: Path,
) -> None:
    profile = loader.load(
        "cpu-2x",
        overrides=["supervisor.backoff=0.1", "supervisor.health_interval=0.2"],
        environ={},
    ).profile
    ports = [free_port(), free_port()]
    commands = [
        Command(
            name=f"vllm-{i}",
            argv=[
                sys.executable,
                str(STUB),
                "--port",
                str(port),
                "--pidfile",
                str(tmp_path / f"{i}"),
            ],
            env={},
            health_url=f"http://127.0.0.1:{port}/health",
            startup_timeout=20.0,
            stop_timeout=3.0,
        )
        for i, port in enumerate(ports)
    ]
    plan = ServePlan(
        profile=profile,
        profile_name="cpu-2x",
        commands=commands,
        run_dir=tmp_path / "run",
        host="127.0.0.1",
        port=0,
        api_key="k",
        vllm_port=ports[0],
        replica_ports=tuple(ports),
        worker=True,
        worker_urls=tuple(f"http://127.0.0.1:{port}" for port in ports),
    )
    reporter = Reporter()
    worker = asyncio.create_task(run_worker(plan, reporter))
    try:
        await wait_until(lambda: bool(reporter.steps), timeout=30, what="the worker started")
        assert "worker ready" in reporter.steps[0] and "workers = [" in reporter.steps[0]
        first = int((tmp_path / "1").read_text())
        os.kill(first, signal.SIGKILL)
        await wait_until(
            lambda: any("vllm-1 ready again" in line for line in reporter.warnings),
            timeout=30,
            what="vllm-1 came back",
        )
        died = next(line for line in reporter.warnings if line.startswith("vllm-1 exited"))
        assert "(SIGKILL)" in died and died.endswith("; the other replicas keep serving")
        assert int((tmp_path / "1").read_text()) != first
    finally:
        worker.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await worker
    assert reporter.stopped_at is not None
    assert not pid_alive(int((tmp_path / "0").read_text()))
    assert not pid_alive(int((tmp_path / "1").read_text()))
