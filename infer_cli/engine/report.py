"""``infer engine status``: what the engine environment holds, built, pending and prepared.

The report reads all three engine modules (``environment`` for paths and versions, ``build`` for
the steps not done yet, ``models`` for the prepared models), so it lives above them: each of those
stays free of the others' reverse imports.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from infer_cli import paths
from infer_cli.engine import build, environment, models


@dataclass(frozen=True)
class EngineReport:
    """What ``infer engine status`` shows (``to_json`` for ``--json``)."""

    home: Path
    venv: Path
    ready: bool
    python: Path | None
    vllm: Path | None
    lmcache: Path | None
    versions: dict[str, str | None]
    pending: list[str] = field(default_factory=list)  # build steps not done yet
    router: Path | None = None
    installed_at: str | None = None
    size_bytes: int | None = None
    models: list[str] = field(default_factory=list)
    log: Path | None = None

    def to_json(self) -> dict[str, Any]:
        return {
            "home": str(self.home),
            "venv": str(self.venv),
            "ready": self.ready,
            "python": str(self.python) if self.python else None,
            "vllm": str(self.vllm) if self.vllm else None,
            "lmcache": str(self.lmcache) if self.lmcache else None,
            "router": str(self.router) if self.router else None,
            "versions": self.versions,
            "pending": self.pending,
            "installed_at": self.installed_at,
            "size_bytes": self.size_bytes,
            "models": self.models,
            "log": str(self.log) if self.log else None,
        }


def status(*, measure_size: bool = True) -> EngineReport:
    """What is built and where, the build steps not done yet, and the models prepared."""
    versions = environment.installed_versions()
    marker = environment.read_marker() or {}
    venv = environment.venv_dir()
    python = environment.python_path()
    log = environment.log_path()
    return EngineReport(
        home=paths.engine_home(),
        venv=venv,
        ready=environment.is_ready(),
        python=python if python.is_file() else None,
        vllm=environment.vllm_executable(),
        lmcache=environment.lmcache_executable(),
        router=environment.router_executable(),
        versions={
            "python": environment.python_version(),
            **{
                name: versions.get(name)
                for name in ("vllm", "torch", "lmcache", "transformers", "vllm-router")
            },
        },
        pending=build.pending_steps(),
        installed_at=marker.get("installed_at"),
        size_bytes=disk_usage(paths.engine_home()) if measure_size and venv.is_dir() else None,
        models=models.prepared_models(),
        log=log if log.is_file() else None,
    )


def disk_usage(root: Path) -> int:
    """Bytes on disk under ``root`` (hard links counted once)."""
    total = 0
    seen: set[tuple[int, int]] = set()
    for folder, _dirs, files in os.walk(root):
        for name in files:
            try:
                info = os.lstat(os.path.join(folder, name))
            except OSError:
                continue
            if (info.st_dev, info.st_ino) in seen:
                continue
            seen.add((info.st_dev, info.st_ino))
            total += info.st_blocks * 512
    return total
