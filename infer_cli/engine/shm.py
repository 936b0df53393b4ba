"""Shared memory an engine run leaves behind, and removing it.

In LMCache's multi-process mode the vLLM worker puts its KV cache into
``/dev/shm/lmcache_kv_<worker_pid>_0`` (gigabytes) and nobody removes it, not even on a clean stop;
a killed vLLM also leaves ``psm_*`` and ``sem.mp-*`` files. While the engine runs,
:class:`SharedMemoryTracker` remembers every ``/dev/shm`` file its processes map or hold open; after
they stopped, :meth:`SharedMemoryTracker.cleanup` removes exactly those (if they are still the same
files) and the LMCache segments named after those pids, and nothing else.
"""

from __future__ import annotations

import contextlib
import os
import stat
from collections.abc import Iterable
from pathlib import Path

from infer_cli.engine.procfs import PROC

SHM = Path("/dev/shm")
_DELETED = " (deleted)"


class SharedMemoryTracker:
    def __init__(self, shm_root: Path = SHM, proc_root: Path = PROC) -> None:
        self.shm_root = shm_root
        self.proc_root = proc_root
        self._roots = {str(shm_root).rstrip("/")}
        with contextlib.suppress(OSError):
            self._roots.add(str(shm_root.resolve()).rstrip("/"))
        self._files: dict[Path, int] = {}  # path -> inode when last seen
        self._pids: set[int] = set()

    @property
    def files(self) -> dict[Path, int]:
        return dict(self._files)

    @property
    def pids(self) -> set[int]:
        return set(self._pids)

    def snapshot(self, pids: Iterable[int]) -> None:
        """Remember the shared-memory files these processes map or hold open (gone pids are ok)."""
        for pid in pids:
            self._pids.add(pid)
            for path in (*self._mapped(pid), *self._open(pid)):
                self._remember(path)

    def cleanup(self) -> list[Path]:
        """Remove what the snapshotted processes left in shared memory; return what was removed."""
        candidates: dict[Path, int | None] = dict(self._files)
        for pid in sorted(self._pids):
            with contextlib.suppress(OSError):
                for path in self.shm_root.glob(f"lmcache_kv_{pid}_*"):
                    candidates.setdefault(path, None)
        removed: list[Path] = []
        for path, inode in sorted(candidates.items()):
            try:
                if inode is not None and path.lstat().st_ino != inode:
                    continue  # the name now belongs to a file somebody else created
                path.unlink()
            except OSError:
                continue
            removed.append(path)
        for path in removed:
            self._files.pop(path, None)
        return removed

    # -- reading /proc ----------------------------------------------------------------------------

    def _inside(self, target: str) -> Path | None:
        """The path under the shared-memory folder that ``target`` names, or ``None``."""
        if target.endswith(_DELETED):
            return None
        for root in self._roots:
            if target.startswith(root + "/") and len(target) > len(root) + 1:
                relative = target[len(root) + 1 :]
                if ".." in relative.split("/"):
                    return None
                return self.shm_root / relative
        return None

    def _mapped(self, pid: int) -> list[Path]:
        try:
            maps = (self.proc_root / str(pid) / "maps").read_text()
        except (OSError, ValueError):
            return []
        found: list[Path] = []
        for line in maps.splitlines():
            fields = line.split(maxsplit=5)
            if len(fields) == 6:
                path = self._inside(fields[5].strip())
                if path is not None and path not in found:
                    found.append(path)
        return found

    def _open(self, pid: int) -> list[Path]:
        fd_dir = self.proc_root / str(pid) / "fd"
        try:
            entries = list(fd_dir.iterdir())
        except OSError:
            return []
        found: list[Path] = []
        for entry in entries:
            try:
                target = os.readlink(entry)
            except OSError:
                continue
            path = self._inside(target)
            if path is not None and path not in found:
                found.append(path)
        return found

    def _remember(self, path: Path) -> None:
        try:
            info = path.lstat()
        except OSError:
            return
        if not stat.S_ISDIR(info.st_mode):
            self._files[path] = info.st_ino  # the latest sighting wins if the name was reused
