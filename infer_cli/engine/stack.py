"""The engine of one run: several processes started in order, watched, and stopped in reverse order.

LMCache's server starts first and must answer its health check before vLLM starts (vLLM connects to
it). Whatever goes wrong while starting (a crash, a timeout, Ctrl-C), everything already started is
stopped again and the shared memory it left is removed before the error reaches the caller.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable
from pathlib import Path

from infer_cli.engine.process import Command, ManagedProcess, StartProgress, exit_text
from infer_cli.engine.shm import SharedMemoryTracker
from infer_cli.errors import EngineCrashedError

SNAPSHOT_INTERVAL = 2.0  # seconds between shared-memory snapshots while watching


class EngineStack:
    def __init__(
        self,
        commands: list[Command],
        run_dir: Path,
        *,
        shm: SharedMemoryTracker | None = None,
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

    @property
    def processes(self) -> dict[str, ManagedProcess]:
        """The processes started so far, in start order."""
        return dict(self._processes)

    # -- start ------------------------------------------------------------------------------------

    async def start(self, on_progress: Callable[[StartProgress], None] | None = None) -> None:
        """Start the processes in order, each ready before the next; on failure stop them all."""
        if self._processes:
            raise RuntimeError("the engine stack was already started")
        try:
            for command in self.commands:
                process = ManagedProcess(command, self.log_paths[command.name])
                self._processes[command.name] = process
                await process.start()
                self._snapshot()
                await process.wait_ready(on_progress)
                self._snapshot()
        except BaseException:
            await self._stop_despite_cancellation()
            raise

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

    # -- watch ------------------------------------------------------------------------------------

    async def watch(self) -> None:
        """Return only after stop() was called; raise EngineCrashedError when a process exits.

        A process that :meth:`restart` is replacing may exit: that is not a crash.
        """
        if not self._processes:
            raise RuntimeError("the engine stack was not started")
        waits: dict[asyncio.Future[int], ManagedProcess] = {}
        try:
            while True:
                self._snapshot()
                watched = set(waits.values())
                for process in self._processes.values():
                    if process not in watched and process.pid is not None:
                        waits[asyncio.ensure_future(process.wait())] = process
                if not waits:  # a restart is between stopping the old process and starting anew
                    if self._stopping:
                        return
                    await asyncio.sleep(0.1)
                    continue
                done, _ = await asyncio.wait(
                    waits, timeout=SNAPSHOT_INTERVAL, return_when=asyncio.FIRST_COMPLETED
                )
                if self._stopping:
                    return
                for finished in done:
                    process = waits.pop(finished)
                    if self._processes.get(process.name) is not process:
                        continue  # replaced by a restart
                    if process.name in self._restarting:
                        continue  # being stopped by a restart
                    self._snapshot()  # what is left of the crashed process's tree, and the others
                    cause = process.cause()
                    message = f"{process.name} {exit_text(finished.result())}"
                    raise EngineCrashedError(
                        f"{message}: {cause}" if cause else message,
                        log_path=process.log_path,
                    )
        finally:
            for task in waits:
                if not task.done():
                    task.cancel()
                    with contextlib.suppress(asyncio.CancelledError):
                        await task

    # -- restart ----------------------------------------------------------------------------------

    async def restart(
        self, name: str, on_progress: Callable[[StartProgress], None] | None = None
    ) -> None:
        """Stop ``name`` and every process started after it, then start them again in order.

        The processes before it keep running: restarting vLLM keeps LMCache's server (and the KV
        chunks it holds) up. Each new run appends to the same log file, after a marker line.
        """
        names = [command.name for command in self.commands]
        if name not in names:
            raise ValueError(f"no engine process named {name!r} (have {names})")
        if self._stopping:
            raise RuntimeError("the engine stack is stopping")
        later = self.commands[names.index(name) :]
        self._restarting.update(command.name for command in later)
        try:
            for command in reversed(later):
                old = self._processes.get(command.name)
                if old is not None:
                    self.shm.snapshot(old.descendants())
                    await old.stop()
            for command in later:
                process = ManagedProcess(command, self.log_paths[command.name])
                self._processes[command.name] = process
                await process.start()
                self._snapshot()
                await process.wait_ready(on_progress)
                self._snapshot()
        finally:
            self._restarting.difference_update(command.name for command in later)

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
