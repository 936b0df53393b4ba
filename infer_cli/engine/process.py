"""One supervised engine process (``vllm serve`` or ``lmcache server``), driven by asyncio.

The child runs in a session and process group of its own, with stdout and stderr appended to a log
file, so that :meth:`ManagedProcess.stop` can signal everything it started (``group``) and the
user can read what happened (``logfile``); it dies with infer (``child``). What to run is a
:class:`Command` (``command``).
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx

from infer_cli.engine import logfile, phases
from infer_cli.engine.child import child_environment, die_with_parent, exit_text
from infer_cli.engine.command import Command, Smoke, StartProgress
from infer_cli.engine.group import Family, members
from infer_cli.engine.logfile import best_cause
from infer_cli.errors import EngineStartError

__all__ = [
    "Command",
    "ManagedProcess",
    "Smoke",
    "StartProgress",
    "best_cause",
    "child_environment",
    "exit_text",
]

_TICK = 0.5  # seconds between progress reports and health probes
_PROBE_TIMEOUT = httpx.Timeout(2.0, connect=1.0)
_KILL_WAIT = 5.0  # seconds to wait for the group to vanish after SIGKILL
_EXECUTABLE_KEYS = {"vllm": "engine.vllm", "lmcache": "lmcache.lmcache"}  # profile keys naming them


class ManagedProcess:
    """One child process: start it, wait until it answers its health check, watch it, stop it."""

    def __init__(self, command: Command, log_path: Path) -> None:
        self.command = command
        self.log_path = log_path
        self._proc: asyncio.subprocess.Process | None = None
        self._started_at = 0.0
        self._log_start = 0  # where this run's output begins in the (appended) log file
        self._follower = logfile.LogFollower(log_path, 0)
        self._phase = phases.STARTING
        self._stop_lock = asyncio.Lock()

    # -- state ------------------------------------------------------------------------------------

    @property
    def name(self) -> str:
        return self.command.name

    @property
    def pid(self) -> int | None:
        return self._proc.pid if self._proc is not None else None

    @property
    def returncode(self) -> int | None:
        return self._proc.returncode if self._proc is not None else None

    @property
    def phase(self) -> str:
        return self._phase

    # -- start ------------------------------------------------------------------------------------

    async def start(self) -> None:
        if self._proc is not None:
            raise RuntimeError(f"{self.name} was already started")
        env = {**child_environment(os.environ), **self.command.env}
        env.setdefault("PYTHONUNBUFFERED", "1")
        self._log_start = logfile.start_run(self.log_path, self.name)
        self._follower = logfile.LogFollower(self.log_path, self._log_start)
        with open(self.log_path, "ab") as log:
            try:
                self._proc = await asyncio.create_subprocess_exec(
                    *self.command.argv,
                    stdin=asyncio.subprocess.DEVNULL,
                    stdout=log,
                    stderr=asyncio.subprocess.STDOUT,
                    env=env,
                    start_new_session=True,
                    preexec_fn=die_with_parent(os.getpid()),
                )
            except FileNotFoundError as exc:
                raise self._missing_executable("was not found") from exc
            except PermissionError as exc:
                raise self._missing_executable("is not executable") from exc
        self._started_at = time.monotonic()

    def _missing_executable(self, what: str) -> EngineStartError:
        executable = self.command.argv[0] if self.command.argv else "(empty command)"
        key = _EXECUTABLE_KEYS.get(self.name, f"engine.{self.name}")
        return EngineStartError(
            f"cannot start {self.name}: the executable {executable} {what}",
            hint=(
                "run `infer engine install` to build the engine environment, or set "
                f"`{key}` in the profile to the {self.name} executable"
            ),
            log_path=self.log_path,
        )

    def _require(self) -> asyncio.subprocess.Process:
        if self._proc is None:
            raise RuntimeError(f"{self.name} was not started")
        return self._proc

    def elapsed(self) -> float:
        return time.monotonic() - self._started_at if self._proc is not None else 0.0

    # -- readiness --------------------------------------------------------------------------------

    async def wait_ready(self, on_progress: Callable[[StartProgress], None] | None = None) -> None:
        proc = self._require()
        timeout = self.command.startup_timeout
        exit_task: asyncio.Task[int] = asyncio.ensure_future(proc.wait())
        probe: asyncio.Task[bool] | None = None
        next_probe = 0.0

        def report() -> None:
            if on_progress is not None:
                on_progress(StartProgress(self.name, self._phase, self.elapsed(), timeout))

        try:
            async with httpx.AsyncClient(timeout=_PROBE_TIMEOUT, trust_env=False) as client:
                while True:
                    self._read_new_lines()
                    if exit_task.done():
                        self._read_new_lines()
                        raise self._start_failure(exit_task.result())
                    if probe is not None and probe.done():
                        healthy = probe.result()
                        probe = None
                        if healthy and proc.returncode is None:
                            self._phase = phases.READY
                            report()
                            return
                    if self.elapsed() >= timeout:
                        phase = self._phase
                        await self.stop()
                        raise EngineStartError(
                            f"{self.name} was not ready after {timeout:g} s (phase: {phase})",
                            hint="raise engine.startup_timeout in the profile or read the log",
                            log_path=self.log_path,
                        )
                    report()
                    now = time.monotonic()
                    if probe is None and now >= next_probe:
                        probe = asyncio.ensure_future(self._probe(client))
                        next_probe = now + _TICK
                    waiting: set[asyncio.Future[Any]] = {exit_task}
                    if probe is not None:
                        waiting.add(probe)
                    await asyncio.wait(waiting, timeout=_TICK, return_when=asyncio.FIRST_COMPLETED)
        finally:
            for task in (exit_task, probe):
                if task is not None and not task.done():
                    task.cancel()
                    with contextlib.suppress(asyncio.CancelledError, Exception):
                        await task

    async def _probe(self, client: httpx.AsyncClient) -> bool:
        try:
            response = await client.get(
                self.command.health_url, headers=self.command.health_headers
            )
        except httpx.HTTPError:
            return False
        return response.status_code == 200

    def _start_failure(self, code: int) -> EngineStartError:
        cause = self.cause()
        message = f"{self.name} {exit_text(code)} while starting"
        hint = None
        if "address already in use" in cause.lower():
            hint = "another program uses one of the engine's ports; stop it or choose other ports"
        return EngineStartError(
            f"{message}: {cause}" if cause else message, hint=hint, log_path=self.log_path
        )

    def _read_new_lines(self) -> None:
        """Follow the log and update the phase from every complete new line."""
        for line in self._follower.new_lines():
            phase = phases.phase_of(line)
            if phase is not None:
                self._phase = phase

    # -- running ----------------------------------------------------------------------------------

    async def wait(self) -> int:
        return await self._require().wait()

    def descendants(self) -> list[int]:
        """The process and all its descendants, from ``/proc``.

        Orphaned descendants still in the process group count too.
        """
        return members(self._proc.pid) if self._proc is not None else []

    # -- stop -------------------------------------------------------------------------------------

    async def stop(self, grace: float | None = None) -> None:
        """SIGTERM the process group, wait the grace period, then SIGKILL it; reap. Idempotent.

        ``grace`` overrides the command's ``stop_timeout``; 0 sends SIGKILL at once.
        """
        if self._proc is None:
            return
        grace = self.command.stop_timeout if grace is None else grace
        async with self._stop_lock:
            proc = self._proc
            family = Family(proc)
            if family.alive() and grace <= 0:
                logfile.note(self.log_path, f"killing {self.name} (SIGKILL)")
                family.signal(signal.SIGKILL)
                await family.wait_gone(_KILL_WAIT)
            elif family.alive():
                logfile.note(self.log_path, f"stopping {self.name} (SIGTERM)")
                family.signal(signal.SIGTERM)
                if not await family.wait_gone(grace):
                    note = f"{self.name} did not stop within {grace:g} s (SIGKILL)"
                    logfile.note(self.log_path, note)
                    family.signal(signal.SIGKILL)
                    await family.wait_gone(_KILL_WAIT)
            with contextlib.suppress(asyncio.TimeoutError):
                await asyncio.wait_for(proc.wait(), _KILL_WAIT)

    # -- the log ----------------------------------------------------------------------------------

    def tail(self, n: int = 20) -> list[str]:
        """The last ``n`` non-empty lines this run wrote to its log (colours removed)."""
        return logfile.tail(self.log_path, self._log_start, n)

    def cause(self, *, errors_only: bool = False) -> str:
        """The best one-line cause of a failure, from the end of the log."""
        return best_cause(self.tail(80), errors_only=errors_only)
