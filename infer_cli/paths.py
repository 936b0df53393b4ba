"""Where infer keeps its files.

Everything lives under one home folder: ``$INFER_HOME`` when set, else ``$XDG_DATA_HOME/infer``
(``~/.local/share/infer``). Tests point ``INFER_HOME`` at a temporary folder; the heavy, shareable
parts (the engine environment and prepared models) can be pointed elsewhere with
``INFER_ENGINE_HOME`` and ``INFER_MODELS_HOME`` so that many test runs reuse one build.
"""

from __future__ import annotations

import os
from pathlib import Path


def home() -> Path:
    explicit = os.environ.get("INFER_HOME")
    if explicit:
        return Path(explicit).expanduser()
    xdg = os.environ.get("XDG_DATA_HOME") or str(Path.home() / ".local" / "share")
    return Path(xdg).expanduser() / "infer"


def engine_home() -> Path:
    """The CPU engine environment (a venv with vLLM and LMCache) lives here."""
    explicit = os.environ.get("INFER_ENGINE_HOME")
    return Path(explicit).expanduser() if explicit else home() / "engine"


def models_home() -> Path:
    """Models that infer prepares itself (e.g. SmolLM2 for the CPU engine)."""
    explicit = os.environ.get("INFER_MODELS_HOME")
    return Path(explicit).expanduser() if explicit else home() / "models"


def profiles_home() -> Path:
    """User profiles: ``infer profiles init NAME`` writes here, and names resolve here first."""
    return home() / "profiles"


def runs_home() -> Path:
    """One folder per ``infer serve`` run, with the logs of each engine process."""
    return home() / "runs"


def cache_home() -> Path:
    """Scratch space for the engine (vLLM / torch compile caches, TMPDIR)."""
    return home() / "cache"


def chat_home() -> Path:
    """``infer chat``'s state: the prompt history and the last conversation (``--continue``)."""
    return home() / "chat"
