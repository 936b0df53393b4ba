"""Keeping the engine up: watch every process of a started stack and restart what dies.

A process *fails* when it exits, or when it stops answering its health check for
``unhealthy_after`` checks in a row (a wedged engine: alive, holding its port, answering nothing).
With ``on_failure = "restart"`` the failed process is killed if it still runs, and after a backoff
(``backoff`` seconds, doubled for each restart in the window, at most ``backoff_max``) restarted
together with the processes that depend on it (:meth:`EngineStack.restart`): a dead LMCache server
restarts the vLLM that uses it after it (a process marked ``reconnects`` stays up instead and is
checked with one small request, restarted only when that fails), a dead vLLM leaves LMCache's
server, and the KV it holds, running. A restart that fails to start counts as one more failure.
More than ``max_restarts`` failures within ``restart_window`` seconds, or ``on_failure = "stop"``,
end the watch with :class:`EngineCrashedError`: the caller stops everything and exits non-zero, so
systemd or Kubernetes can take over.

Failures while the stack first starts are not retried: a profile that cannot start will not start
on the second try either, and the user is waiting for the answer.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

import httpx

from infer_cli.config.schema import SupervisorSection
from infer_cli.engine.process import ManagedProcess, StartProgress, exit_text
from infer_cli.engine.stack import EngineStack
from infer_cli.errors import EngineCrashedError, EngineStartError

_POLL = 0.2  # seconds between looks at the processes' exit codes


@dataclass(frozen=True)
class Failure:
    """Why one process had to be restarted (or why the engine gave up)."""

    name: str
    kind: str  # "exited", "unhealthy", "start_failed", "reconnect_failed" or "requested" (SIGHUP)
    reason: str  # in words, e.g. "exited with code -9 (SIGKILL)"
    cause: str  # the most telling line of its log, "" when there is none
    at: float  # time.time()

    @property
    def summary(self) -> str:
        """``vllm exited with code -9 (SIGKILL)``: what happened, without the log's line."""
        return f"{self.name} {self.reason}"

    @property
    def text(self) -> str:
        return f"{self.summary}: {self.cause}" if self.cause else self.summary


class SupervisorListener(Protocol):
    """What the supervisor tells ``infer serve`` (which updates the proxy and the console)."""

    def failed(self, failure: Failure, restart_in: float, attempt: int, allowed: int) -> None: ...
    def restarting(self, names: list[str]) -> None: ...
    def restarted(self, names: list[str], seconds: float) -> None: ...


class Supervisor:
    """Watch ``stack`` (already started) until it is stopped; restart failed processes."""

    def __init__(
        self,
        stack: EngineStack,
        policy: SupervisorSection,
        listener: SupervisorListener,
        *,
        on_progress: Callable[[StartProgress], None] | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.stack = stack
        self.policy = policy
        self.listener = listener
        self.on_progress = on_progress
        self._clock = clock
        self._recent: deque[float] = deque()  # when each counted restart happened
        self._failed_checks: dict[tuple[str, int], int] = {}  # (name, pid) -> checks in a row
        self._wedged: list[tuple[str, int]] = []
        self._requested: list[str] = []
        self._wake = asyncio.Event()
        self._busy = False  # a restart is under way: no probes, no new failures
        self.restarts = 0
        self.last_failure: Failure | None = None

    # -- requests from outside --------------------------------------------------------------------

    def request_restart(self, *names: str) -> bool:
        """Restart each of ``names`` (and what depends on it) in turn, without counting against
        the cap: one replica at a time while the others serve.

        False when a restart is already under way or asked for.
        """
        if self._busy or self._requested or not names:
            return False
        self._requested.extend(names)
        self._wake.set()
        return True

    @property
    def restarting(self) -> bool:
        return self._busy

    # -- the watch --------------------------------------------------------------------------------

    async def run(self) -> None:
        """Return once the stack is stopping; raise EngineCrashedError when giving up."""
        if not self.stack.processes:
            raise RuntimeError("the engine stack was not started")
        timeout = httpx.Timeout(self.policy.health_timeout)
        async with httpx.AsyncClient(timeout=timeout, trust_env=False) as client:
            prober = asyncio.create_task(self._probe_forever(client))
            try:
                while True:
                    failure = await self._next_failure()
                    if failure is None:
                        return
                    await self._recover(failure)
            finally:
                prober.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await prober

    async def _next_failure(self) -> Failure | None:
        last_snapshot = 0.0
        while True:
            if self.stack.stopping:
                return None
            if self._requested:
                name = self._requested.pop(0)
                return Failure(name, "requested", "restart requested (SIGHUP)", "", time.time())
            for process in self.stack.processes.values():
                code = process.returncode
                if code is not None and not self.stack.is_restarting(process.name):
                    self.stack.snapshot()  # what is left of its tree, for the clean-up
                    # killed by a signal: only an error in its log says why, not its last line
                    cause = process.cause(errors_only=code < 0)
                    return Failure(process.name, "exited", exit_text(code), cause, time.time())
            while self._wedged:
                name, pid = self._wedged.pop(0)
                current = self.stack.processes.get(name)
                if current is not None and current.pid == pid and current.returncode is None:
                    checks = self.policy.unhealthy_after
                    reason = f"stopped answering its health check ({checks} checks in a row)"
                    return Failure(name, "unhealthy", reason, "", time.time())
            now = self._clock()
            if now - last_snapshot >= 2.0:
                self.stack.snapshot()
                last_snapshot = now
            self._wake.clear()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), _POLL)

    async def _recover(self, failure: Failure) -> None:
        """Restart after ``failure`` until a restart holds; raise when the policy says stop."""
        self._busy = True
        try:
            while True:
                self.last_failure = failure
                delay = 0.0
                if failure.kind != "requested":
                    delay = self._count(failure)
                self.restarts += 1
                if failure.kind == "unhealthy":
                    await self.stack.kill(failure.name)
                if delay > 0:
                    await asyncio.sleep(delay)
                names = self.stack.restart_order(failure.name)
                self.listener.restarting(names)
                began = self._clock()
                try:
                    await self.stack.restart(failure.name, self.on_progress)
                except EngineStartError as error:
                    failure = Failure(
                        failure.name,
                        "start_failed",
                        "failed to start again",
                        error.message,
                        time.time(),
                    )
                    continue
                stranded = await self._check_reconnected(failure.name)
                if stranded is not None:
                    failure = stranded
                    continue
                self.listener.restarted(names, self._clock() - began)
                return
        finally:
            self._busy = False
            self._failed_checks.clear()
            self._wedged.clear()

    async def _check_reconnected(self, restarted: str) -> Failure | None:
        """A process that stayed up through ``restarted``'s restart must work with the new one.

        The first that does not is a failure of its own (restarted next, and counted).
        """
        for name in self.stack.reconnecting(restarted):
            process = self.stack.processes.get(name)
            if process is None or process.returncode is not None:
                continue  # the exit is seen and handled by the watch
            smoke = process.command.smoke
            if smoke is None:
                continue
            try:
                async with httpx.AsyncClient(timeout=smoke.timeout, trust_env=False) as client:
                    response = await client.post(smoke.url, json=smoke.body, headers=smoke.headers)
                ok, why = response.status_code == 200, f"HTTP {response.status_code}"
            except httpx.HTTPError as error:
                ok, why = False, type(error).__name__
            if not ok:
                reason = f"did not work with the restarted {restarted} ({why})"
                return Failure(name, "reconnect_failed", reason, process.cause(), time.time())
        return None

    def _count(self, failure: Failure) -> float:
        """Count a failure against the cap; the backoff before its restart (or raise)."""
        if self.policy.on_failure == "stop":
            raise EngineCrashedError(failure.text, log_path=self._log(failure.name))
        now = self._clock()
        while self._recent and now - self._recent[0] > self.policy.restart_window:
            self._recent.popleft()
        if len(self._recent) >= self.policy.max_restarts:
            window = f"{self.policy.restart_window:g} s"
            raise EngineCrashedError(
                f"{failure.text} (giving up: {len(self._recent)} restarts within {window}, "
                f"supervisor.max_restarts = {self.policy.max_restarts})",
                log_path=self._log(failure.name),
            )
        self._recent.append(now)
        attempt = len(self._recent)
        delay = min(self.policy.backoff_max, self.policy.backoff * 2.0 ** (attempt - 1))
        self.listener.failed(failure, delay, attempt, self.policy.max_restarts)
        return delay

    def _log(self, name: str) -> Path | None:
        return self.stack.log_paths.get(name)

    # -- health checks ----------------------------------------------------------------------------

    async def _probe_forever(self, client: httpx.AsyncClient) -> None:
        while True:
            await asyncio.sleep(self.policy.health_interval)
            if self._busy or self.stack.stopping:
                continue
            running = [
                process
                for process in self.stack.processes.values()
                if process.pid is not None and process.returncode is None
            ]
            results = await asyncio.gather(*(self._check(client, p) for p in running))
            if self._busy:
                continue  # a failure began meanwhile: these answers say nothing new
            for process, healthy in zip(running, results, strict=True):
                assert process.pid is not None
                key = (process.name, process.pid)
                if healthy:
                    self._failed_checks.pop(key, None)
                    continue
                count = self._failed_checks.get(key, 0) + 1
                self._failed_checks[key] = count
                if count >= self.policy.unhealthy_after and key not in self._wedged:
                    self._wedged.append(key)
                    self._wake.set()

    @staticmethod
    async def _check(client: httpx.AsyncClient, process: ManagedProcess) -> bool:
        command = process.command
        try:
            response = await client.get(command.health_url, headers=command.health_headers)
        except httpx.HTTPError:
            return False
        return response.status_code == 200
