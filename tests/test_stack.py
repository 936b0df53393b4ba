"""EngineStack against stub engines: start order, failures, watching, stopping, shared memory."""

from __future__ import annotations

import asyncio
from dataclasses import replace
from pathlib import Path

import pytest

from infer_cli.engine import phases
from infer_cli.engine.process import Command, StartProgress
from infer_cli.engine.stack import EngineStack
from infer_cli.errors import EngineStartError
from tests.helpers import pid_alive
from tests.test_process import stub_command, wait_dead, wait_for_file


async def test_starts_in_order_and_stops_in_reverse(tmp_path: Path) -> None:
    run_dir = tmp_path / "run"
    stack = EngineStack(
        [
            stub_command("--delay", "1", name="lmcache"),
            stub_command("--delay", "0.3", name="vllm"),
        ],
        run_dir,
    )
    assert stack.log_paths == {"lmcache": run_dir / "lmcache.log", "vllm": run_dir / "vllm.log"}
    events: list[StartProgress] = []

    def on_progress(progress: StartProgress) -> None:
        events.append(progress)
        if progress.name == "lmcache" and progress.phase != phases.READY:
            assert "vllm" not in stack.processes, "vllm started before lmcache was ready"
            assert not stack.log_paths["vllm"].exists()

    try:
        await stack.start(on_progress)
        names = [event.name for event in events]
        first_vllm = names.index("vllm")
        assert "vllm" not in names[:first_vllm]
        assert events[first_vllm - 1] == StartProgress(
            "lmcache", phases.READY, events[first_vllm - 1].elapsed, 15.0
        )
        assert events[-1].name == "vllm" and events[-1].phase == phases.READY
        assert list(stack.processes) == ["lmcache", "vllm"]
        pids = [process.pid for process in stack.processes.values()]
        assert all(pid is not None and pid_alive(pid) for pid in pids)
    finally:
        await stack.stop()
    for process in stack.processes.values():
        assert process.returncode is not None
    for path in stack.log_paths.values():
        assert path.exists()
    # reverse order: vllm was stopped (and wrote its stop note) before lmcache's note
    lmcache_log = stack.log_paths["lmcache"].stat().st_mtime_ns
    vllm_log = stack.log_paths["vllm"].stat().st_mtime_ns
    assert vllm_log <= lmcache_log
    await stack.stop()  # idempotent


async def test_second_failing_stops_the_first(tmp_path: Path) -> None:
    stack = EngineStack(
        [
            stub_command(name="lmcache"),
            stub_command("--crash-at-start", "no such model", name="vllm"),
        ],
        tmp_path,
    )
    with pytest.raises(EngineStartError) as caught:
        await stack.start()
    assert "vllm exited with code 3 while starting: ValueError: no such model" in str(caught.value)
    assert caught.value.log_path == tmp_path / "vllm.log"
    lmcache = stack.processes["lmcache"]
    assert lmcache.returncode is not None
    assert lmcache.pid is not None and not pid_alive(lmcache.pid)


async def test_cancel_during_start_stops_everything(tmp_path: Path) -> None:
    grandchild_file = tmp_path / "worker.pid"
    stack = EngineStack(
        [
            stub_command(name="lmcache"),
            stub_command("--hang", "--grandchild-pidfile", str(grandchild_file), name="vllm"),
        ],
        tmp_path / "run",
    )
    starting = asyncio.create_task(stack.start())
    grandchild = await wait_for_file(grandchild_file)
    starting.cancel()
    with pytest.raises(asyncio.CancelledError):
        await starting
    for process in stack.processes.values():
        assert process.returncode is not None
        assert process.pid is not None and not pid_alive(process.pid)
    assert await wait_dead(grandchild)


async def test_restart_replaces_a_process_and_keeps_the_ones_before_it(tmp_path: Path) -> None:
    stack = EngineStack([stub_command(name="lmcache"), stub_command(name="vllm")], tmp_path)
    await stack.start()
    try:
        lmcache_pid = stack.processes["lmcache"].pid
        old_vllm = stack.processes["vllm"]
        await asyncio.wait_for(stack.restart("vllm"), 20)
        new_vllm = stack.processes["vllm"]
        assert new_vllm is not old_vllm and new_vllm.pid != old_vllm.pid
        assert old_vllm.returncode is not None
        assert new_vllm.returncode is None and new_vllm.phase == phases.READY
        assert stack.processes["lmcache"].pid == lmcache_pid  # untouched
        assert lmcache_pid is not None and pid_alive(lmcache_pid)
        # both runs are in the one log, each after its own marker line
        assert stack.log_paths["vllm"].read_text().count("starting vllm at") == 2
    finally:
        await stack.stop()
    assert all(process.returncode is not None for process in stack.processes.values())


async def test_restart_of_an_unknown_process_is_refused(tmp_path: Path) -> None:
    stack = EngineStack([stub_command(name="vllm")], tmp_path)
    with pytest.raises(ValueError, match="no engine process named 'lmcache'"):
        await stack.restart("lmcache")


def test_restart_order_follows_what_each_process_requires(tmp_path: Path) -> None:
    def named(name: str, *requires: str) -> Command:
        return replace(stub_command(name=name), requires=requires)

    stack = EngineStack(
        [
            named("lmcache"),
            named("vllm-0", "lmcache"),
            named("vllm-1", "lmcache"),
            named("router"),
        ],
        tmp_path,
    )
    assert stack.restart_order("vllm-0") == ["vllm-0"]  # the other replica keeps serving
    assert stack.restart_order("lmcache") == ["lmcache", "vllm-0", "vllm-1"]
    assert stack.restart_order("router") == ["router"]
    legacy = EngineStack([stub_command(name="lmcache"), stub_command(name="vllm")], tmp_path)
    assert legacy.restart_order("lmcache") == ["lmcache", "vllm"]  # nothing declared: all later


async def test_replicas_start_together_after_what_they_require(tmp_path: Path) -> None:
    def named(
        name: str, *args: str, requires: tuple[str, ...] = (), after: tuple[str, ...] = ()
    ) -> Command:
        return replace(stub_command(*args, name=name), requires=requires, after=after)

    stack = EngineStack(
        [
            named("lmcache", "--delay", "0.5"),
            named("vllm-0", "--delay", "2", requires=("lmcache",)),
            named("vllm-1", "--delay", "2", requires=("lmcache",)),
            named("router", after=("vllm-0", "vllm-1")),
        ],
        tmp_path,
    )
    assert [[c.name for c in wave] for wave in stack.waves()] == [
        ["lmcache"],
        ["vllm-0", "vllm-1"],
        ["router"],
    ]
    try:
        await stack.start()
        # the two replicas (2 s to be ready each) started side by side, not one after the other
        ages = [stack.processes[name].elapsed() for name in ("vllm-0", "vllm-1")]
        assert abs(ages[0] - ages[1]) < 1.0, ages
        assert stack.processes["router"].elapsed() < min(ages)
        assert all(p.returncode is None for p in stack.processes.values())
        router = stack.processes["router"].pid
        await stack.restart("vllm-1")  # the router and the other replica keep running
        assert stack.processes["router"].pid == router
        assert stack.restart_order("lmcache") == ["lmcache", "vllm-0", "vllm-1"]
    finally:
        await stack.stop()


def _replicas_stack(tmp_path: Path, *, min_ready: int | None) -> EngineStack:
    def named(name: str, *args: str, **fields: tuple[str, ...]) -> Command:
        return replace(stub_command(*args, name=name), **fields)

    return EngineStack(
        [
            named("lmcache"),
            named("vllm-0", requires=("lmcache",)),
            named("vllm-1", "--crash-at-start", "CUDA error: no device", requires=("lmcache",)),
            named("router", after=("vllm-0", "vllm-1")),
        ],
        tmp_path,
        replicas=("vllm-0", "vllm-1"),
        min_ready=min_ready,
    )


async def test_a_partial_start_goes_on_with_enough_replicas(tmp_path: Path) -> None:
    stack = _replicas_stack(tmp_path, min_ready=1)
    try:
        await stack.start()
        assert list(stack.start_failures) == ["vllm-1"]
        assert "CUDA error: no device" in stack.start_failures["vllm-1"].message
        assert stack.processes["vllm-0"].returncode is None
        assert stack.processes["router"].returncode is None
        assert stack.processes["vllm-1"].returncode is not None  # for the supervisor to retry
    finally:
        await stack.stop()


async def test_too_few_replicas_stop_the_start_with_the_cause(tmp_path: Path) -> None:
    stack = _replicas_stack(tmp_path, min_ready=2)
    with pytest.raises(EngineStartError) as caught:
        await stack.start()
    assert "CUDA error: no device" in caught.value.message
    assert "1 of 2 replicas ready, replicas.min_ready = 2" in caught.value.message
    assert "router" not in stack.processes
    assert all(process.returncode is not None for process in stack.processes.values())
