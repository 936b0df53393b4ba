"""What one engine process is: its command line, how to tell it is ready, and start-up progress.

Plain data, built by ``launch`` (pure) and run by ``process``; importing it starts nothing.
"""

from __future__ import annotations

from dataclasses import dataclass, field


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
