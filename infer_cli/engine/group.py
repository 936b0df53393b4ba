"""Stopping everything a child started: its process group, and descendants that left the group.

vLLM's engine core and workers are children and grandchildren of ``vllm serve``; the child leads
a session and process group of its own (``start_new_session``), so one ``killpg`` reaches them.
Descendants that called ``setsid`` themselves (*strays*) are found in ``/proc`` before the first
signal and get the same signals, each checked by its start time so a reused pid is never hit.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import time
from asyncio.subprocess import Process

from infer_cli.engine.procfs import ProcStat, alive, descendants_of, process_table


def members(leader: int) -> list[int]:
    """``leader`` and all its descendants, with orphans still in its process group."""
    table = process_table()
    found = descendants_of(leader, table)
    for stat in table.values():
        if stat.pgrp == leader and stat.pid not in found and alive(stat):
            found.extend(pid for pid in descendants_of(stat.pid, table) if pid not in found)
    return found


class Family:
    """A child leading its own process group, and the strays found when this was made."""

    def __init__(self, proc: Process) -> None:
        self.proc = proc
        self.group = proc.pid  # start_new_session: the child leads its own group
        table = process_table()
        self.strays = {
            pid: table[pid].starttime
            for pid in descendants_of(proc.pid, table)
            if table[pid].pgrp != self.group and alive(table[pid])
        }

    def alive(self) -> bool:
        """Whether the child, anyone in its group, or a stray still runs."""
        if self.proc.returncode is None:
            return True
        table = process_table()
        group_alive = any(stat.pgrp == self.group and alive(stat) for stat in table.values())
        return group_alive or bool(self._live_strays(table))

    def signal(self, sig: signal.Signals) -> None:
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(self.group, sig)
        for pid in self._live_strays(process_table()):
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.kill(pid, sig)

    async def wait_gone(self, seconds: float) -> bool:
        """Whether everyone was gone within ``seconds``."""
        deadline = time.monotonic() + seconds
        while True:
            if not self.alive():
                return True
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                return False
            await asyncio.sleep(min(0.1, remaining))

    def _live_strays(self, table: dict[int, ProcStat]) -> list[int]:
        return [
            pid
            for pid, start in self.strays.items()
            if alive(table.get(pid)) and table[pid].starttime == start
        ]
