"""The engine of one run: processes started in order, restarted, and stopped in reverse order.

LMCache's server starts first and must answer its health check before vLLM starts (vLLM connects to
it). Whatever goes wrong while starting (a crash, a timeout, Ctrl-C), everything already started is
stopped again and the shared memory it left is removed before the error reaches the caller.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Collection
from pathlib import Path

from infer_cli.engine.process import Command, ManagedProcess, StartProgress
from infer_cli.engine.shm import SharedMemoryTracker
from infer_cli.errors import EngineStartError


class EngineStack:
    def __init__(
        self,
        commands: list[Command],
        run_dir: Path,
        *,
        shm: SharedMemoryTracker | None = None,
        replicas: Collection[str] = (),
        min_ready: int | None = None,
    ) -> None:
        names = [command.name for command in commands]
        if len(set(names)) != len(names):
            raise ValueError(f"engine process names must be unique: {names}")
        self.commands = list(commands)
        self.run_dir = run_dir
        self.log_paths: dict[str, Path] = {name: run_dir / f"{name}.log" for name in names}
        self.shm = shm if shm is not None else SharedMemoryTracker()
        self.removed: list[Path] = []  # shared-memory files the last stop() removed
        self._processes: dict[str, ManagedProcess] = {}
        self._stopping = False
        self._restarting: set[str] = set()
        self._stop_lock = asyncio.Lock()
        self.replicas = set(replicas)
        """Copies of one engine: a start may go on without some of them (``min_ready``)."""
        self.min_ready = min_ready
        self.start_failures: dict[str, EngineStartError] = {}
        """Replicas that failed to start while enough others did (the supervisor retries them)."""

    @property
    def processes(self) -> dict[str, ManagedProcess]:
        """The processes started so far, in start order."""
        return dict(self._processes)

    # -- start ------------------------------------------------------------------------------------

    async def start(self, on_progress: Callable[[StartProgress], None] | None = None) -> None:
        """Start the processes in waves, each wave ready before the next; on failure stop them all.

        A wave is every process whose ``requires`` and ``after`` are ready (replicas of one model
        start together); when no command declares either, each process is a wave of its own.
        """
        if self._processes:
            raise RuntimeError("the engine stack was already started")
        try:
            for wave in self.waves():
                for command in wave:
                    process = ManagedProcess(command, self.log_paths[command.name])
                    self._processes[command.name] = process
                    await process.start()
                self._snapshot()
                processes = [self._processes[command.name] for command in wave]
                if self.min_ready is not None and {p.name for p in processes} <= self.replicas:
                    await self._wait_enough_ready(processes, on_progress)
                else:
                    await self._wait_all_ready(processes, on_progress)
                self._snapshot()
        except BaseException:
            await self._stop_despite_cancellation()
            raise

    async def _wait_enough_ready(
        self,
        processes: list[ManagedProcess],
        on_progress: Callable[[StartProgress], None] | None,
    ) -> None:
        """Replicas: go on when ``min_ready`` of them are ready and the others have failed."""
        results = await asyncio.gather(
            *(process.wait_ready(on_progress) for process in processes), return_exceptions=True
        )
        failures = {
            process.name: result
            for process, result in zip(processes, results, strict=True)
            if isinstance(result, BaseException)
        }
        for result in failures.values():
            if not isinstance(result, EngineStartError):
                raise result  # cancelled, or a bug: not a replica's failure to start
        ready = len(processes) - len(failures)
        if failures and ready < (self.min_ready or len(processes)):
            first = next(iter(failures.values()))
            assert isinstance(first, EngineStartError)
            raise EngineStartError(
                f"{first.message} ({ready} of {len(processes)} replicas ready, "
                f"replicas.min_ready = {self.min_ready})",
                hint=first.hint,
                log_path=first.log_path,
            )
        for name, failure in failures.items():
            assert isinstance(failure, EngineStartError)
            self.start_failures[name] = failure
            await self._processes[name].stop()  # the supervisor sees it exited and retries

    def waves(self) -> list[list[Command]]:
        """The commands grouped by when they can start, in start order."""
        if not any(command.requires or command.after for command in self.commands):
            return [[command] for command in self.commands]
        waves: list[list[Command]] = []
        ready: set[str] = set()
        pending = list(self.commands)
        while pending:
            wave = [c for c in pending if ready.issuperset((*c.requires, *c.after))]
            if not wave:
                names = [command.name for command in pending]
                raise ValueError(f"engine processes wait for each other or for nothing: {names}")
            waves.append(wave)
            ready.update(command.name for command in wave)
            pending = [command for command in pending if command not in wave]
        return waves

    @staticmethod
    async def _wait_all_ready(
        processes: list[ManagedProcess], on_progress: Callable[[StartProgress], None] | None
    ) -> None:
        """Wait until every process is ready; the first failure cancels the other waits."""
        if not processes:
            return
        if len(processes) == 1:
            await processes[0].wait_ready(on_progress)
            return
        tasks = [asyncio.ensure_future(process.wait_ready(on_progress)) for process in processes]
        try:
            done, _ = await asyncio.wait(tasks, return_when=asyncio.FIRST_EXCEPTION)
            for task in done:
                task.result()  # raises the first failure
        finally:
            for task in tasks:
                if not task.done():
                    task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)

    async def _stop_despite_cancellation(self) -> None:
        """Run stop() to the end even if the caller is cancelled again (a second Ctrl-C)."""
        task = asyncio.ensure_future(self.stop())
        cancelled = False
        while not task.done():
            try:
                await asyncio.shield(task)
            except asyncio.CancelledError:
                cancelled = True
        task.result()
        if cancelled:
            raise asyncio.CancelledError

    # -- what the supervisor reads ----------------------------------------------------------------

    @property
    def stopping(self) -> bool:
        return self._stopping

    def is_restarting(self, name: str) -> bool:
        """A process that :meth:`restart` is replacing may exit: that is not a crash."""
        return name in self._restarting

    def snapshot(self) -> None:
        """Remember the shared memory every process holds now (removed after it is gone)."""
        self._snapshot()

    def restart_order(self, name: str) -> list[str]:
        """``name`` and every process that depends on it, in start order.

        A process depends on those its command ``requires`` (and on what they depend on). When no
        command says what it requires, each depends on every process started before it.
        """
        names = [command.name for command in self.commands]
        if name not in names:
            raise ValueError(f"no engine process named {name!r} (have {names})")
        if not any(command.requires for command in self.commands):
            return names[names.index(name) :]
        chosen = {name}
        for command in self.commands:  # start order: what a command requires comes before it
            if chosen.intersection(command.requires) and not command.reconnects:
                chosen.add(command.name)
        return [n for n in names if n in chosen]

    def reconnecting(self, name: str) -> list[str]:
        """The processes that stay up through a restart of ``name`` and must reconnect to it."""
        order = set(self.restart_order(name))
        return [
            command.name
            for command in self.commands
            if command.reconnects
            and command.name not in order
            and order.intersection(command.requires)
        ]

    # -- restart ----------------------------------------------------------------------------------

    async def kill(self, name: str) -> None:
        """SIGKILL ``name``'s process group at once (a wedged process would ignore SIGTERM)."""
        process = self._processes.get(name)
        if process is not None:
            self.shm.snapshot(process.descendants())
            await process.stop(grace=0.0)

    async def restart(
        self, name: str, on_progress: Callable[[StartProgress], None] | None = None
    ) -> None:
        """Stop ``name`` and every process that depends on it, then start them again in order.

        The others keep running: restarting vLLM keeps LMCache's server (and the KV chunks it
        holds) up. Each new run appends to the same log file, after a marker line.
        """
        order = self.restart_order(name)
        if self._stopping:
            raise RuntimeError("the engine stack is stopping")
        later = [command for command in self.commands if command.name in order]
        self._restarting.update(order)
        try:
            for command in reversed(later):
                old = self._processes.get(command.name)
                if old is not None:
                    self.shm.snapshot(old.descendants())
                    await old.stop()
            for wave in self.waves():
                again = [command for command in wave if command.name in order]
                for command in again:
                    process = ManagedProcess(command, self.log_paths[command.name])
                    self._processes[command.name] = process
                    await process.start()
                self._snapshot()
                await self._wait_all_ready(
                    [self._processes[command.name] for command in again], on_progress
                )
                self._snapshot()
        finally:
            self._restarting.difference_update(order)

    # -- stop -------------------------------------------------------------------------------------

    async def stop(self) -> None:
        """Stop in reverse order, each with its grace period, then remove leftover shared memory."""
        self._stopping = True
        async with self._stop_lock:
            for process in reversed(list(self._processes.values())):
                self.shm.snapshot(process.descendants())
                await process.stop()
            self.removed = self.shm.cleanup()

    def _snapshot(self) -> None:
        for process in self._processes.values():
            self.shm.snapshot(process.descendants())
