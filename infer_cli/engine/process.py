"""One supervised engine process (``vllm serve`` or ``lmcache server``), driven by asyncio.

The child runs in a session and process group of its own, with stdout and stderr appended to a log
file, so that :meth:`ManagedProcess.stop` can signal everything it started (vLLM's engine core and
worker are its children and grandchildren) and the user can read what happened. On Linux the kernel
is also asked to send the child SIGTERM when infer dies, so a ``kill -9`` of infer does not leave an
engine behind. (``PR_SET_PDEATHSIG`` fires when the *thread* that forked dies; asyncio forks in the
event-loop thread, which lives as long as infer serves.)
"""

from __future__ import annotations

import asyncio
import contextlib
import ctypes
import os
import re
import signal
import sys
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx

from infer_cli.engine import phases
from infer_cli.engine.procfs import ProcStat, alive, descendants_of, process_table
from infer_cli.errors import EngineStartError

_PR_SET_PDEATHSIG = 1
_MARK = "--- infer:"  # lines infer itself writes into a log; never a cause or a phase
_TICK = 0.5  # seconds between progress reports and health probes
_PROBE_TIMEOUT = httpx.Timeout(2.0, connect=1.0)
_KILL_WAIT = 5.0  # seconds to wait for the group to vanish after SIGKILL
_TAIL_BYTES = 64 * 1024
_CAUSE_CHARS = 300
_SECRET_NAMES = frozenset({"VLLM_API_KEY"})  # set per command; never the parent's
_EXECUTABLE_KEYS = {"vllm": "engine.vllm", "lmcache": "lmcache.lmcache"}  # profile keys naming them


@dataclass(frozen=True)
class Command:
    """How to run one engine process and how to tell that it is ready."""

    name: str  # "vllm" or "lmcache" (shown to users)
    argv: list[str]
    env: dict[str, str]  # added on top of os.environ
    health_url: str  # GET returns 200 when the process is ready
    startup_timeout: float  # seconds
    stop_timeout: float  # grace seconds between SIGTERM and SIGKILL
    health_headers: dict[str, str] = field(default_factory=dict)
    requires: tuple[str, ...] = ()
    """Processes this one needs: when one of them restarts, this one restarts after it."""
    after: tuple[str, ...] = ()
    """Processes that must be ready before this one first starts (it does not restart with them)."""
    reconnects: bool = False
    """It keeps running when a process it requires restarts, and connects to the new one (vLLM's
    LMCacheMPConnector registers its KV cache with a restarted LMCache server): checked with
    ``smoke`` after that restart, and restarted only when the check fails."""
    smoke: Smoke | None = None
    """A request that shows the process really works, beyond its health check."""


@dataclass(frozen=True)
class Smoke:
    """``POST url`` with a JSON ``body`` must answer 200 within ``timeout`` seconds."""

    url: str
    body: dict[str, object]
    headers: dict[str, str] = field(default_factory=dict)
    timeout: float = 60.0


@dataclass(frozen=True)
class StartProgress:
    """Where one process is in its start-up, for a progress display."""

    name: str
    phase: str
    elapsed: float
    timeout: float


# --- the child's set-up ---------------------------------------------------------------------------


def _preexec(parent: int) -> Callable[[], None] | None:
    """Runs in the child between fork and exec: die with infer (Linux only)."""
    if not sys.platform.startswith("linux"):
        return None
    try:
        prctl = ctypes.CDLL(None, use_errno=True).prctl  # looked up in the parent, not after fork
    except (OSError, AttributeError):
        return None
    term = int(signal.SIGTERM)

    def preexec() -> None:
        prctl(_PR_SET_PDEATHSIG, term, 0, 0, 0)
        if os.getppid() != parent:  # infer died before the request took effect
            os.kill(os.getpid(), signal.SIGKILL)

    return preexec


def child_environment(parent: Mapping[str, str]) -> dict[str, str]:
    """The parent's environment without infer's own settings and secrets.

    ``INFER_*`` variables (client keys in ``INFER_API_KEYS``, the upstream key, the proxy's
    settings) mean nothing to vLLM or LMCache and must not leak into processes that log their
    environment or run user code; what an engine needs arrives in its command's ``env``.
    """
    return {
        name: value
        for name, value in parent.items()
        if not name.startswith("INFER_") and name not in _SECRET_NAMES
    }


def exit_text(code: int) -> str:
    if code < 0:
        try:
            return f"exited with code {code} ({signal.Signals(-code).name})"
        except ValueError:
            pass
    return f"exited with code {code}"


# --- reading the log ------------------------------------------------------------------------------

_FRAME_STARTS = (
    'File "',
    "Traceback (most recent call last)",
    "During handling of the above exception",
    "The above exception was the direct cause",
    "raise ",
    "^",
    "~",
)
_EXCEPTION_LINE = re.compile(
    r"^(?:[A-Za-z_][\w.]*\.)?[A-Z]\w*(?:Error|Exception|Exit|Interrupt)\b(?::|$)"
)
_ERRORISH = re.compile(r"\berror:|\bError\b|\bException\b|\bFATAL\b|\bfailed\b", re.IGNORECASE)
# Wrapper messages that only point elsewhere; a more specific line wins over them.
_GENERIC = (
    "see root cause above",
    "see stack trace for root cause",
    "engine core initialization failed",
    "enginecore failed to start",
    "initialization failed due to an exception in a background process",
    "application startup failed",
    "worker proc",
)


def _is_generic(message: str) -> bool:
    lowered = message.lower()
    return any(word in lowered for word in _GENERIC)


_ACCESS_LINE = re.compile(r'"(?:GET|POST|PUT|DELETE|HEAD|OPTIONS|PATCH) \S+ HTTP/[\d.]+" \d{3}')
"""An HTTP server's access-log line (vLLM's uvicorn logs every request): never a cause."""


def best_cause(lines: Iterable[str], *, errors_only: bool = False) -> str:
    """The most telling line of a log tail: the root exception, else an error, else the last
    (not with ``errors_only``: a process killed by a signal says nothing about why)."""
    exceptions: list[str] = []
    errors: list[str] = []
    others: list[str] = []
    after_frame = False
    for raw in lines:
        if raw.startswith(_MARK):
            continue
        level, message = phases.parse(raw)
        if not message:
            continue
        if _ACCESS_LINE.search(message):
            continue
        if message.startswith(_FRAME_STARTS):
            after_frame = message.startswith('File "')
            continue
        is_exception = bool(_EXCEPTION_LINE.match(message))
        if after_frame and not is_exception:
            after_frame = False  # the source line under a frame
            continue
        after_frame = False
        if is_exception:
            exceptions.append(message)
        elif level in ("ERROR", "CRITICAL") or (level != "WARNING" and _ERRORISH.search(message)):
            errors.append(message)
        else:
            others.append(message)
    for group in (exceptions, errors):
        specific = [line for line in group if not _is_generic(line)]
        if specific:
            return _shorten(specific[-1])
    for group in (exceptions, errors) if errors_only else (exceptions, errors, others):
        if group:
            return _shorten(group[-1])
    return ""


def _shorten(message: str) -> str:
    return message if len(message) <= _CAUSE_CHARS else message[: _CAUSE_CHARS - 1] + "…"


def _split_lines(text: str) -> list[str]:
    return [line for line in re.split(r"[\r\n]+", text) if line.strip()]


# --- the process ----------------------------------------------------------------------------------


class ManagedProcess:
    """One child process: start it, wait until it answers its health check, watch it, stop it."""

    def __init__(self, command: Command, log_path: Path) -> None:
        self.command = command
        self.log_path = log_path
        self._proc: asyncio.subprocess.Process | None = None
        self._started_at = 0.0
        self._log_start = 0  # where this run's output begins in the (appended) log file
        self._read_pos = 0
        self._partial = ""
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
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        env = {**child_environment(os.environ), **self.command.env}
        env.setdefault("PYTHONUNBUFFERED", "1")
        with open(self.log_path, "ab") as log:
            stamp = time.strftime("%Y-%m-%d %H:%M:%S")
            log.write(f"{_MARK} starting {self.name} at {stamp} ---\n".encode())
            log.flush()
            self._log_start = self._read_pos = log.tell()
            try:
                self._proc = await asyncio.create_subprocess_exec(
                    *self.command.argv,
                    stdin=asyncio.subprocess.DEVNULL,
                    stdout=log,
                    stderr=asyncio.subprocess.STDOUT,
                    env=env,
                    start_new_session=True,
                    preexec_fn=_preexec(os.getpid()),
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
        try:
            with open(self.log_path, "rb") as log:
                log.seek(self._read_pos)
                chunk = log.read()
        except OSError:
            return
        if not chunk:
            return
        self._read_pos += len(chunk)
        text = self._partial + chunk.decode("utf-8", errors="replace")
        *complete, self._partial = re.split(r"[\r\n]", text)
        for line in complete:
            if line.strip() and not line.startswith(_MARK):
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
        if self._proc is None:
            return []
        table = process_table()
        found = descendants_of(self._proc.pid, table)
        for stat in table.values():
            if stat.pgrp == self._proc.pid and stat.pid not in found and alive(stat):
                found.extend(pid for pid in descendants_of(stat.pid, table) if pid not in found)
        return found

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
            group = proc.pid  # start_new_session: the child leads its own group
            table = process_table()
            # Descendants that left the group (setsid) get the same signals (checked by start time).
            strays = {
                pid: table[pid].starttime
                for pid in descendants_of(proc.pid, table)
                if table[pid].pgrp != group and alive(table[pid])
            }
            if self._anything_alive(proc, group, strays) and grace <= 0:
                self._note(f"killing {self.name} (SIGKILL)")
                self._signal(group, strays, signal.SIGKILL)
                await self._wait_gone(proc, group, strays, _KILL_WAIT)
            elif self._anything_alive(proc, group, strays):
                self._note(f"stopping {self.name} (SIGTERM)")
                self._signal(group, strays, signal.SIGTERM)
                gone = await self._wait_gone(proc, group, strays, grace)
                if not gone:
                    self._note(f"{self.name} did not stop within {grace:g} s (SIGKILL)")
                    self._signal(group, strays, signal.SIGKILL)
                    await self._wait_gone(proc, group, strays, _KILL_WAIT)
            with contextlib.suppress(asyncio.TimeoutError):
                await asyncio.wait_for(proc.wait(), _KILL_WAIT)

    @staticmethod
    def _group_alive(group: int, table: dict[int, ProcStat]) -> bool:
        return any(stat.pgrp == group and alive(stat) for stat in table.values())

    @staticmethod
    def _strays_alive(strays: dict[int, int], table: dict[int, ProcStat]) -> list[int]:
        return [
            pid
            for pid, start in strays.items()
            if alive(table.get(pid)) and table[pid].starttime == start
        ]

    def _anything_alive(
        self, proc: asyncio.subprocess.Process, group: int, strays: dict[int, int]
    ) -> bool:
        if proc.returncode is None:
            return True
        table = process_table()
        return self._group_alive(group, table) or bool(self._strays_alive(strays, table))

    def _signal(self, group: int, strays: dict[int, int], sig: signal.Signals) -> None:
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(group, sig)
        for pid in self._strays_alive(strays, process_table()):
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.kill(pid, sig)

    async def _wait_gone(
        self, proc: asyncio.subprocess.Process, group: int, strays: dict[int, int], seconds: float
    ) -> bool:
        deadline = time.monotonic() + seconds
        while True:
            if not self._anything_alive(proc, group, strays):
                return True
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                return False
            await asyncio.sleep(min(0.1, remaining))

    def _note(self, text: str) -> None:
        with contextlib.suppress(OSError), open(self.log_path, "a", encoding="utf-8") as log:
            log.write(f"\n{_MARK} {text} ---\n")

    # -- the log ----------------------------------------------------------------------------------

    def tail(self, n: int = 20) -> list[str]:
        """The last ``n`` non-empty lines this run wrote to its log (colours removed)."""
        try:
            with open(self.log_path, "rb") as log:
                size = log.seek(0, os.SEEK_END)
                start = max(self._log_start, size - _TAIL_BYTES)
                log.seek(start)
                text = log.read().decode("utf-8", errors="replace")
        except OSError:
            return []
        lines = [
            phases.strip_colours(line).rstrip()
            for line in _split_lines(text)
            if not line.startswith(_MARK)
        ]
        return lines[-n:] if n > 0 else []

    def cause(self, *, errors_only: bool = False) -> str:
        """The best one-line cause of a failure, from the end of the log."""
        return best_cause(self.tail(80), errors_only=errors_only)
