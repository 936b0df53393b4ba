"""Reading processes from ``/proc``: one process's stat line, the whole table, a process tree."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

PROC = Path("/proc")


@dataclass(frozen=True)
class ProcStat:
    """The fields of ``/proc/PID/stat`` infer uses."""

    pid: int
    ppid: int
    pgrp: int
    state: str
    starttime: int


def read_stat(pid: int, proc_root: Path = PROC) -> ProcStat | None:
    """One process's ``/proc/PID/stat``, or ``None`` if it is gone."""
    try:
        raw = (proc_root / str(pid) / "stat").read_text()
        fields = raw.rsplit(")", 1)[1].split()
        return ProcStat(pid, int(fields[1]), int(fields[2]), fields[0], int(fields[19]))
    except (OSError, IndexError, ValueError):
        return None


def process_table(proc_root: Path = PROC) -> dict[int, ProcStat]:
    """Every process this user can see, by pid."""
    table: dict[int, ProcStat] = {}
    try:
        entries = list(proc_root.iterdir())
    except OSError:
        return table
    for entry in entries:
        if entry.name.isdigit():
            stat = read_stat(int(entry.name), proc_root)
            if stat is not None:
                table[stat.pid] = stat
    return table


def descendants_of(root: int, table: dict[int, ProcStat]) -> list[int]:
    """``root`` (if it exists) and all its descendants, parents before children."""
    if root not in table:
        return []
    children: dict[int, list[int]] = {}
    for stat in table.values():
        children.setdefault(stat.ppid, []).append(stat.pid)
    found: list[int] = []
    todo = [root]
    while todo:
        pid = todo.pop(0)
        if pid in found:
            continue
        found.append(pid)
        todo.extend(sorted(children.get(pid, [])))
    return found


def alive(stat: ProcStat | None) -> bool:
    """The process exists and is neither a zombie nor dead."""
    return stat is not None and stat.state not in ("Z", "X")
