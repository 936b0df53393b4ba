"""The supervisor against stub engines: restarts with backoff, wedged processes, the cap, stop."""

from __future__ import annotations

import asyncio
import os
import signal
import time
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import pytest

from infer_cli.config.schema import SupervisorSection
from infer_cli.engine.process import Smoke
from infer_cli.engine.shm import SharedMemoryTracker
from infer_cli.engine.stack import EngineStack
from infer_cli.engine.supervisor import Failure, Supervisor
from infer_cli.errors import EngineCrashedError
from tests.helpers import pid_alive
from tests.test_process import stub_command, wait_dead, wait_for_file


def fast(**changes: Any) -> SupervisorSection:
    """A policy on a test's time scale: short backoff, frequent health checks."""
    settings: dict[str, Any] = {
        "backoff": 0.1,
        "backoff_max": 1.0,
        "health_interval": 0.3,
        "health_timeout": 0.5,
        "unhealthy_after": 2,
    }
    return SupervisorSection(**{**settings, **changes})


@dataclass
class Events:
    failures: list[tuple[Failure, float, int, int]] = field(default_factory=list)
    restarting_: list[list[str]] = field(default_factory=list)
    restarted_: list[list[str]] = field(default_factory=list)

    def failed(self, failure: Failure, restart_in: float, attempt: int, allowed: int) -> None:
        self.failures.append((failure, restart_in, attempt, allowed))

    def restarting(self, names: list[str]) -> None:
        self.restarting_.append(names)

    def restarted(self, names: list[str], seconds: float) -> None:
        self.restarted_.append(names)

    async def wait_restarted(self, count: int, timeout: float = 20.0) -> None:
        deadline = time.monotonic() + timeout
        while len(self.restarted_) < count:
            assert time.monotonic() < deadline, f"only {self.restarted_} restarts: {self.failures}"
            await asyncio.sleep(0.05)


async def supervised(
    stack: EngineStack, policy: SupervisorSection
) -> tuple[Supervisor, Events, asyncio.Task[None]]:
    await stack.start()
    events = Events()
    supervisor = Supervisor(stack, policy, events)
    return supervisor, events, asyncio.create_task(supervisor.run())


async def finish(stack: EngineStack, task: asyncio.Task[None]) -> None:
    await stack.stop()
    await asyncio.wait_for(task, 5)  # returns quietly once the stack is stopping


async def test_a_crashed_engine_is_restarted_and_lmcache_keeps_running(tmp_path: Path) -> None:
    runs = tmp_path / "runs"
    stack = EngineStack(
        [
            stub_command(name="lmcache"),
            stub_command("--crash-after", "0.5", "--crash-runs", str(runs), name="vllm"),
        ],
        tmp_path / "run",
    )
    supervisor, events, task = await supervised(stack, fast())
    try:
        lmcache = stack.processes["lmcache"].pid
        first = stack.processes["vllm"].pid
        await events.wait_restarted(1)
        failure, delay, attempt, allowed = events.failures[0]
        assert (failure.name, failure.kind) == ("vllm", "exited")
        assert failure.reason == "exited with code 7"
        assert failure.cause == "RuntimeError: stub engine died after ready"  # from its log
        assert (delay, attempt, allowed) == (0.1, 1, 5)
        assert events.restarted_ == [["vllm"]]
        assert stack.processes["lmcache"].pid == lmcache and lmcache and pid_alive(lmcache)
        second = stack.processes["vllm"]
        assert second.pid != first and second.returncode is None
        assert supervisor.restarts == 1 and not task.done()
        await asyncio.sleep(1.0)  # the second run does not crash: no further restart
        assert len(events.restarted_) == 1 and not task.done()
    finally:
        await finish(stack, task)
    assert all(process.returncode is not None for process in stack.processes.values())


async def test_a_dead_lmcache_is_restarted_first_then_vllm(tmp_path: Path) -> None:
    stack = EngineStack([stub_command(name="lmcache"), stub_command(name="vllm")], tmp_path / "run")
    _, events, task = await supervised(stack, fast())
    try:
        old = {name: process.pid for name, process in stack.processes.items()}
        assert old["lmcache"] is not None
        os.killpg(old["lmcache"], signal.SIGKILL)
        await events.wait_restarted(1)
        assert events.failures[0][0].name == "lmcache"
        assert events.restarted_ == [["lmcache", "vllm"]]
        new = {name: process.pid for name, process in stack.processes.items()}
        assert all(new[name] != old[name] for name in old)
        assert old["vllm"] is not None and await wait_dead(old["vllm"])
    finally:
        await finish(stack, task)


async def test_a_wedged_engine_is_killed_and_restarted(tmp_path: Path) -> None:
    stack = EngineStack([stub_command(name="vllm", stop_timeout=30)], tmp_path / "run")
    _, events, task = await supervised(stack, fast())
    try:
        wedged = stack.processes["vllm"].pid
        assert wedged is not None
        os.kill(wedged, signal.SIGSTOP)  # alive, holding its port, answering nothing
        started = time.monotonic()
        await events.wait_restarted(1)
        # two failed checks (0.3 s apart, 0.5 s each), then SIGKILL: not the 30 s SIGTERM grace
        assert time.monotonic() - started < 15
        failure = events.failures[0][0]
        assert (failure.name, failure.kind) == ("vllm", "unhealthy")
        assert "health check" in failure.reason
        assert await wait_dead(wedged)
        assert stack.processes["vllm"].pid != wedged
        assert "killing vllm (SIGKILL)" in stack.log_paths["vllm"].read_text()
    finally:
        await finish(stack, task)


async def test_a_crash_loop_backs_off_then_gives_up(tmp_path: Path) -> None:
    stack = EngineStack([stub_command("--crash-after", "1", name="vllm")], tmp_path / "run")
    _, events, task = await supervised(stack, fast(max_restarts=2, backoff=0.2))
    with pytest.raises(EngineCrashedError) as caught:
        await asyncio.wait_for(task, 30)
    await stack.stop()
    assert [(delay, attempt) for _, delay, attempt, _ in events.failures] == [(0.2, 1), (0.4, 2)]
    message = caught.value.message
    assert message.startswith("vllm exited with code 7: RuntimeError: stub engine died")
    assert "giving up: 2 restarts within 600 s, supervisor.max_restarts = 2" in message
    assert caught.value.log_path == tmp_path / "run" / "vllm.log"


async def test_restarts_outside_the_window_do_not_count(tmp_path: Path) -> None:
    stack = EngineStack([stub_command("--crash-after", "1", name="vllm")], tmp_path / "run")
    _, events, task = await supervised(stack, fast(max_restarts=1, restart_window=0.5))
    try:
        await events.wait_restarted(3)  # each crash is alone in its window: never gives up
        assert [attempt for _, _, attempt, _ in events.failures][:3] == [1, 1, 1]
        assert not task.done()
    finally:
        await finish(stack, task)


async def test_stop_policy_ends_the_watch_at_the_first_crash(tmp_path: Path) -> None:
    stack = EngineStack(
        [stub_command(name="lmcache"), stub_command("--crash-after", "1", name="vllm")],
        tmp_path,
    )
    _, events, task = await supervised(stack, fast(on_failure="stop"))
    try:
        with pytest.raises(EngineCrashedError) as caught:
            await asyncio.wait_for(task, 10)
        assert (
            caught.value.message
            == "vllm exited with code 7: RuntimeError: stub engine died after ready"
        )
        assert caught.value.log_path == tmp_path / "vllm.log"
        assert events.failures == [] and events.restarted_ == []
        assert stack.processes["lmcache"].returncode is None  # the caller stops the rest
    finally:
        await stack.stop()


async def test_a_restart_that_fails_to_start_counts_and_is_retried(tmp_path: Path) -> None:
    runs, starts = tmp_path / "runs", tmp_path / "starts"
    command = stub_command(
        "--crash-after",
        "1",
        "--crash-runs",
        str(runs),
        "--fail-start-run",
        f"{starts}:2",  # the first restart fails to start, the second holds
        name="vllm",
    )
    stack = EngineStack([command], tmp_path / "run")
    _, events, task = await supervised(stack, fast())
    try:
        await events.wait_restarted(1)
        kinds = [failure.kind for failure, *_ in events.failures]
        assert kinds == ["exited", "start_failed"]
        assert "stub engine refused to start again" in events.failures[1][0].cause
        assert [attempt for _, _, attempt, _ in events.failures] == [1, 2]
    finally:
        await finish(stack, task)


async def test_a_requested_restart_is_not_counted(tmp_path: Path) -> None:
    stack = EngineStack([stub_command(name="lmcache"), stub_command(name="vllm")], tmp_path)
    supervisor, events, task = await supervised(stack, fast(max_restarts=0))
    try:
        lmcache = stack.processes["lmcache"].pid
        assert supervisor.request_restart("vllm")
        assert not supervisor.request_restart("vllm")  # one at a time
        await events.wait_restarted(1)
        assert events.failures == []  # max_restarts = 0 would have given up on a failure
        assert events.restarted_ == [["vllm"]]
        assert stack.processes["lmcache"].pid == lmcache
    finally:
        await finish(stack, task)


async def test_shared_memory_of_a_crashed_process_is_removed_at_stop(tmp_path: Path) -> None:
    shm_root = tmp_path / "shm"
    shm_root.mkdir()
    decoys = [shm_root / "lmcache_kv_999999_0", shm_root / "psm_somebody_else", shm_root / "other"]
    for decoy in decoys:
        decoy.write_bytes(b"keep me")
    worker_file = tmp_path / "worker.pid"
    stack = EngineStack(
        [
            stub_command("--shm-root", str(shm_root), name="lmcache"),
            stub_command(
                "--shm-root",
                str(shm_root),
                "--grandchild-pidfile",
                str(worker_file),
                "--crash-after",
                "2",
                name="vllm",
            ),
        ],
        tmp_path / "run",
        shm=SharedMemoryTracker(shm_root=shm_root),
    )
    try:
        _, _, task = await supervised(stack, fast(on_failure="stop"))
        worker = await wait_for_file(worker_file)
        vllm = stack.processes["vllm"].pid
        lmcache = stack.processes["lmcache"].pid
        mine = {
            shm_root / f"psm_stub{vllm}",
            shm_root / f"psm_stub{lmcache}",
            shm_root / f"lmcache_kv_{worker}_0",
        }
        # vllm's main process crashes after ready; its worker (a grandchild) still holds its segment
        with pytest.raises(EngineCrashedError):
            await asyncio.wait_for(task, 10)
        assert all(path.exists() for path in mine)
    finally:
        await stack.stop()
    assert set(stack.removed) == mine
    assert not any(path.exists() for path in mine)
    assert all(decoy.exists() for decoy in decoys)
    assert await wait_dead(worker)


def reconnecting_stack(tmp_path: Path, *vllm_args: str) -> EngineStack:
    """LMCache, and a vLLM that stays up through LMCache's restart and reconnects to it."""
    vllm = stub_command(*vllm_args, name="vllm")
    port = vllm.health_url.rsplit(":", 1)[1].split("/")[0]
    smoke = Smoke(url=f"http://127.0.0.1:{port}/v1/completions", body={"max_tokens": 1})
    vllm = replace(vllm, requires=("lmcache",), reconnects=True, smoke=smoke)
    return EngineStack([stub_command(name="lmcache"), vllm], tmp_path / "run")


async def test_lmcache_is_restarted_alone_when_vllm_reconnects(tmp_path: Path) -> None:
    stack = reconnecting_stack(tmp_path)
    _, events, task = await supervised(stack, fast())
    try:
        cache, vllm = stack.processes["lmcache"].pid, stack.processes["vllm"].pid
        assert cache is not None
        os.killpg(cache, signal.SIGKILL)
        await events.wait_restarted(1)
        assert events.restarted_ == [["lmcache"]]
        assert stack.processes["lmcache"].pid != cache
        assert stack.processes["vllm"].pid == vllm  # kept its loaded model
    finally:
        await finish(stack, task)


async def test_vllm_that_cannot_reconnect_is_restarted_too(tmp_path: Path) -> None:
    broken = tmp_path / "broken"
    stack = reconnecting_stack(tmp_path, "--smoke-fails", str(broken))
    _, events, task = await supervised(stack, fast())
    try:
        cache, vllm = stack.processes["lmcache"].pid, stack.processes["vllm"].pid
        assert cache is not None
        broken.touch()  # from now on the old vLLM fails its smoke request
        os.killpg(cache, signal.SIGKILL)
        await events.wait_restarted(1)
        broken.unlink()
        kinds = [(failure.name, failure.kind) for failure, *_ in events.failures]
        assert kinds == [("lmcache", "exited"), ("vllm", "reconnect_failed")]
        assert "did not work with the restarted lmcache (HTTP 500)" in events.failures[1][0].reason
        assert events.restarted_ == [["vllm"]]
        assert stack.processes["vllm"].pid != vllm
    finally:
        await finish(stack, task)
