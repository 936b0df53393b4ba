"""ManagedProcess against stub engines: start, readiness, failures, stop, no orphans."""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

from infer_cli.engine import phases
from infer_cli.engine.process import Command, ManagedProcess, StartProgress, best_cause
from infer_cli.errors import EngineStartError
from tests.helpers import free_port, pid_alive, stop_process

STUB = Path(__file__).parent / "stubs" / "engine.py"
REPO = Path(__file__).parent.parent


def stub_command(
    *args: str,
    port: int | None = None,
    name: str = "vllm",
    startup_timeout: float = 15.0,
    stop_timeout: float = 3.0,
) -> Command:
    port = port if port is not None else free_port()
    return Command(
        name=name,
        argv=[sys.executable, str(STUB), "--port", str(port), *args],
        env={"STUB_ENGINE": "1"},
        health_url=f"http://127.0.0.1:{port}/health",
        startup_timeout=startup_timeout,
        stop_timeout=stop_timeout,
    )


async def wait_for_file(path: Path, timeout: float = 10.0) -> int:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if path.exists():
            return int(path.read_text())
        await asyncio.sleep(0.05)
    raise AssertionError(f"{path} did not appear")


async def wait_dead(pid: int, timeout: float = 5.0) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if not pid_alive(pid):
            return True
        await asyncio.sleep(0.05)
    return False


async def test_ready_after_slow_start_reports_progress(tmp_path: Path) -> None:
    process = ManagedProcess(stub_command("--delay", "2"), tmp_path / "vllm.log")
    seen: list[tuple[StartProgress, float]] = []
    try:
        await process.start()
        assert process.pid is not None and process.returncode is None
        await process.wait_ready(lambda progress: seen.append((progress, time.monotonic())))
        assert process.returncode is None
    finally:
        await process.stop()
    assert seen, "no progress was reported"
    assert all(progress.name == "vllm" and progress.timeout == 15.0 for progress, _ in seen)
    assert seen[-1][0].phase == phases.READY
    assert seen[-1][0].elapsed >= 1.5
    assert phases.LOADING_WEIGHTS in {progress.phase for progress, _ in seen}
    stamps = [stamp for _, stamp in seen]
    assert max(b - a for a, b in itertools.pairwise(stamps)) < 1.5  # about twice a second
    elapsed = [progress.elapsed for progress, _ in seen]
    assert elapsed == sorted(elapsed)
    assert process.returncode is not None
    assert "Application startup complete" in "\n".join(process.tail(5))


async def test_crash_at_start_names_the_cause_and_the_log(tmp_path: Path) -> None:
    log_path = tmp_path / "runs" / "vllm.log"
    process = ManagedProcess(stub_command("--crash-at-start", "the model is broken"), log_path)
    await process.start()
    with pytest.raises(EngineStartError) as caught:
        await process.wait_ready()
    error = caught.value
    assert error.message == (
        "vllm exited with code 3 while starting: ValueError: the model is broken"
    )
    assert error.log_path == log_path
    assert process.returncode == 3
    assert "ValueError: the model is broken" in log_path.read_text()
    await process.stop()  # safe on a dead process


async def test_hang_times_out_and_the_process_is_gone(tmp_path: Path) -> None:
    process = ManagedProcess(
        stub_command("--hang", startup_timeout=1.5, stop_timeout=1.0), tmp_path / "vllm.log"
    )
    await process.start()
    pid = process.pid
    assert pid is not None
    started = time.monotonic()
    with pytest.raises(EngineStartError) as caught:
        await process.wait_ready()
    assert time.monotonic() - started < 8
    assert caught.value.message == "vllm was not ready after 1.5 s (phase: loading weights)"
    assert caught.value.hint is not None and "startup_timeout" in caught.value.hint
    assert caught.value.log_path == tmp_path / "vllm.log"
    assert process.returncode is not None
    assert not pid_alive(pid)


async def test_sigterm_ignored_is_killed_after_the_grace_period(tmp_path: Path) -> None:
    grandchild_file = tmp_path / "grandchild.pid"
    process = ManagedProcess(
        stub_command(
            "--ignore-sigterm", "--grandchild-pidfile", str(grandchild_file), stop_timeout=0.8
        ),
        tmp_path / "vllm.log",
    )
    await process.start()
    await process.wait_ready()
    grandchild = await wait_for_file(grandchild_file)
    started = time.monotonic()
    await process.stop()
    took = time.monotonic() - started
    assert 0.7 <= took < 6
    assert process.returncode == -signal.SIGKILL
    assert await wait_dead(grandchild)
    assert "SIGKILL" in (tmp_path / "vllm.log").read_text()
    await process.stop()  # idempotent


async def test_stop_leaves_no_grandchild(tmp_path: Path) -> None:
    grandchild_file = tmp_path / "grandchild.pid"
    process = ManagedProcess(
        stub_command("--grandchild-pidfile", str(grandchild_file)), tmp_path / "vllm.log"
    )
    await process.start()
    await process.wait_ready()
    grandchild = await wait_for_file(grandchild_file)
    assert pid_alive(grandchild)
    assert process.pid is not None
    assert process.descendants()[0] == process.pid
    assert grandchild in process.descendants()
    started = time.monotonic()
    await process.stop()
    assert time.monotonic() - started < 2.5  # SIGTERM was enough
    assert process.returncode == -signal.SIGTERM
    assert await wait_dead(grandchild)
    assert process.descendants() == []


async def test_cancelled_during_start_then_stop_leaves_nothing(tmp_path: Path) -> None:
    grandchild_file = tmp_path / "grandchild.pid"
    process = ManagedProcess(
        stub_command("--hang", "--grandchild-pidfile", str(grandchild_file)),
        tmp_path / "vllm.log",
    )
    await process.start()
    waiting = asyncio.create_task(process.wait_ready())
    grandchild = await wait_for_file(grandchild_file)
    await asyncio.sleep(0.3)
    waiting.cancel()
    with pytest.raises(asyncio.CancelledError):
        await waiting
    assert process.returncode is None  # cancellation itself does not stop; the caller does
    pid = process.pid
    assert pid is not None
    await process.stop()
    assert not pid_alive(pid)
    assert await wait_dead(grandchild)


async def test_missing_executable_is_a_start_error(tmp_path: Path) -> None:
    command = Command(
        name="vllm",
        argv=[str(tmp_path / "no-such-vllm"), "serve"],
        env={},
        health_url="http://127.0.0.1:9/health",
        startup_timeout=5,
        stop_timeout=1,
    )
    process = ManagedProcess(command, tmp_path / "vllm.log")
    with pytest.raises(EngineStartError) as caught:
        await process.start()
    assert str(tmp_path / "no-such-vllm") in caught.value.message
    assert caught.value.hint is not None
    assert "infer engine install" in caught.value.hint and "engine.vllm" in caught.value.hint
    assert process.pid is None and process.returncode is None
    await process.stop()  # never started: nothing to do


async def test_never_started_process(tmp_path: Path) -> None:
    process = ManagedProcess(stub_command(), tmp_path / "vllm.log")
    await process.stop()
    assert process.pid is None and process.returncode is None
    assert process.tail() == [] and process.cause() == "" and process.descendants() == []


async def test_environment_is_added(tmp_path: Path) -> None:
    command = Command(
        name="lmcache",
        argv=[sys.executable, "-c", "import os; print('value=' + os.environ['STUB_VALUE'])"],
        env={"STUB_VALUE": "42"},
        health_url="http://127.0.0.1:9/health",
        startup_timeout=5,
        stop_timeout=1,
    )
    process = ManagedProcess(command, tmp_path / "lmcache.log")
    await process.start()
    assert await process.wait() == 0
    assert process.tail() == ["value=42"]


def test_child_dies_with_its_supervisor(tmp_path: Path) -> None:
    """Even a SIGKILL of infer does not orphan the engine (PR_SET_PDEATHSIG)."""
    if not sys.platform.startswith("linux"):
        pytest.skip("Linux only")
    pidfile = tmp_path / "engine.pid"
    port = free_port()
    script = textwrap.dedent(
        f"""
        import asyncio, sys
        from pathlib import Path
        from infer_cli.engine.process import Command, ManagedProcess

        async def main():
            command = Command("vllm", [sys.executable, {str(STUB)!r}, "--port", "{port}",
                                       "--pidfile", {str(pidfile)!r}],
                              {{}}, "http://127.0.0.1:{port}/health", 15, 2)
            process = ManagedProcess(command, Path({str(tmp_path / "vllm.log")!r}))
            await process.start()
            await process.wait_ready()
            print("ready", flush=True)
            await asyncio.sleep(60)

        asyncio.run(main())
        """
    )
    supervisor = subprocess.Popen(
        [sys.executable, "-c", script], cwd=REPO, stdout=subprocess.PIPE, text=True
    )
    try:
        assert supervisor.stdout is not None
        assert supervisor.stdout.readline().strip() == "ready"
        engine = int(pidfile.read_text())
        assert pid_alive(engine)
        supervisor.kill()
        supervisor.wait()
        deadline = time.monotonic() + 5
        while pid_alive(engine) and time.monotonic() < deadline:
            time.sleep(0.05)
        assert not pid_alive(engine)
    finally:
        stop_process(supervisor, signal.SIGKILL)
        if pidfile.exists():
            with contextlib.suppress(ProcessLookupError):
                os.kill(int(pidfile.read_text()), signal.SIGKILL)


# --- causes from log tails ------------------------------------------------------------------------


def test_cause_prefers_the_root_exception_over_wrappers() -> None:
    tail = [
        "(APIServer pid=10) INFO 05-01 12:00:00 [api_server.py:1] vLLM server version 0.32.0",
        "(EngineCore_DP0 pid=11) WARNING 05-01 12:00:01 [_custom_ops.py:2] Failed to import "
        "from vllm._C with ImportError('libcuda.so.1')",
        "(EngineCore_DP0 pid=11) ERROR 05-01 12:00:02 [core.py:3] EngineCore failed to start.",
        "(EngineCore_DP0 pid=11) ERROR 05-01 12:00:02 [core.py:3] Traceback (most recent call "
        "last):",
        '(EngineCore_DP0 pid=11) ERROR 05-01 12:00:02 [core.py:3]   File "/v/core.py", line 9, '
        "in run",
        "(EngineCore_DP0 pid=11) ERROR 05-01 12:00:02 [core.py:3]     raise ValueError(msg)",
        "(EngineCore_DP0 pid=11) ERROR 05-01 12:00:02 [core.py:3] ValueError: No available memory "
        "for the cache blocks. Try increasing `VLLM_CPU_KVCACHE_SPACE`.",
        "Traceback (most recent call last):",
        '  File "/venv/bin/vllm", line 10, in <module>',
        "    sys.exit(main())",
        "             ^^^^^^",
        "RuntimeError: Engine core initialization failed. See root cause above. "
        "Failed core proc(s): {}",
    ]
    assert best_cause(tail) == (
        "ValueError: No available memory for the cache blocks. Try increasing "
        "`VLLM_CPU_KVCACHE_SPACE`."
    )


def test_cause_of_argument_errors_and_lmcache_lines() -> None:
    assert (
        best_cause(
            [
                "usage: vllm serve [model_tag] [options]",
                "vllm serve: error: unrecognized arguments: --bogus",
            ]
        )
        == "vllm serve: error: unrecognized arguments: --bogus"
    )
    lmcache = [
        "\x1b[32;20m[2025-05-01 12:00:00,123] LMCache INFO:\x1b[0m Starting LMCache HTTP server "
        "\x1b[3m(http_server.py:77:lmcache.v1.multiprocess.http_server)\x1b[0m",
        "\x1b[31;20m[2025-05-01 12:00:01,123] LMCache ERROR:\x1b[0m --l1-size-gb requires "
        "--eviction-policy \x1b[3m(server.py:1:lmcache.v1.multiprocess.server)\x1b[0m",
    ]
    assert best_cause(lmcache) == "--l1-size-gb requires --eviction-policy"
    assert best_cause(["just a line", "the last words"]) == "the last words"
    assert best_cause([]) == ""
    assert len(best_cause(["OSError: " + "x" * 1000])) <= 300


def test_cause_of_a_port_clash() -> None:
    tail = [
        "(APIServer pid=10) INFO 05-01 12:00:00 [api_server.py:1] Starting vLLM server on "
        "http://127.0.0.1:8000",
        "OSError: [Errno 98] Address already in use",
    ]
    assert best_cause(tail) == "OSError: [Errno 98] Address already in use"


async def test_the_engine_does_not_inherit_infers_keys_or_settings(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("INFER_API_KEYS", "client-secret-1,client-secret-2")
    monkeypatch.setenv("INFER_UPSTREAM_API_KEY", "upstream-secret")
    monkeypatch.setenv("VLLM_API_KEY", "the-parents-key")
    monkeypatch.setenv("KEEP_ME", "yes")
    process = ManagedProcess(stub_command(name="vllm"), tmp_path / "vllm.log")
    await process.start()
    try:
        assert process.pid is not None
        raw = Path(f"/proc/{process.pid}/environ").read_bytes()
        env = dict(item.split("=", 1) for item in raw.decode().split("\0") if "=" in item)
        assert not [name for name in env if name.startswith("INFER_")]
        assert "client-secret-1" not in raw.decode() and "upstream-secret" not in raw.decode()
        assert "VLLM_API_KEY" not in env  # the command sets its own internal key when it has one
        assert env["KEEP_ME"] == "yes" and env["STUB_ENGINE"] == "1"
    finally:
        await process.stop()
